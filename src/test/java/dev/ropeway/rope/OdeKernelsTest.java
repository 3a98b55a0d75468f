package dev.ropeway.rope;

import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

/** The vector kernels against plain loops with the same rounding, bit for bit, at sizes with and without tails. */
class OdeKernelsTest {
    private static final int[] SIZES = {1, 3, 8, 13, 16, 32, 37, 64, 128, 136};

    @Test
    void floatRowTimesMatrixIsTheIndexOrderSum() {
        SplittableRandom r = new SplittableRandom(1);
        for (int rows : new int[] {1, 5, 32})
            for (int cols : SIZES) {
                float[] x = floats(r, rows + 2), m = floats(r, rows * cols);
                float[] got = new float[cols + 3], want = new float[cols + 3];
                OdeKernels.rowTimesMatrix(x, 2, rows, m, cols, got, 3);
                for (int q = 0; q < cols; q++) {
                    float s = 0;
                    for (int p = 0; p < rows; p++) s += x[2 + p] * m[p * cols + q];
                    want[3 + q] = s;
                }
                assertArrayEquals(want, got, rows + "x" + cols);
            }
    }

    @Test
    void doubleRowTimesMatrixIsTheIndexOrderFusedSum() {
        SplittableRandom r = new SplittableRandom(2);
        for (int rows : new int[] {1, 5, 32})
            for (int cols : SIZES) {
                double[] x = doubles(r, rows + 1), m = doubles(r, rows * cols);
                double[] got = new double[cols + 2], want = new double[cols + 2];
                OdeKernels.rowTimesMatrix(x, 1, rows, m, cols, got, 2);
                for (int q = 0; q < cols; q++) {
                    double s = 0;
                    for (int p = 0; p < rows; p++) s = Math.fma(x[1 + p], m[p * cols + q], s);
                    want[2 + q] = s;
                }
                assertArrayEquals(want, got, rows + "x" + cols);
            }
    }

    @Test
    void transposedProductAddsInRecordOrder() {
        SplittableRandom r = new SplittableRandom(3);
        for (int records : new int[] {1, 31, 32, 33, 100})
            for (int m : new int[] {1, 4, 13})
                for (int n : SIZES) {
                    double[] a = doubles(r, records * m), b = doubles(r, records * n), start = doubles(r, m * n);
                    double[] got = start.clone(), want = start.clone();
                    OdeKernels.addTransposedProduct(a, m, b, n, records, got);
                    for (int p = 0; p < m; p++)
                        for (int q = 0; q < n; q++)
                            for (int k = 0; k < records; k++)
                                want[p * n + q] = Math.fma(a[k * m + p], b[k * n + q], want[p * n + q]);
                    assertArrayEquals(want, got, records + " records, " + m + "x" + n);
                }
    }

    private static float[] floats(SplittableRandom r, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) r.nextGaussian();
        return v;
    }

    private static double[] doubles(SplittableRandom r, int n) {
        double[] v = new double[n];
        for (int i = 0; i < n; i++) v[i] = r.nextGaussian();
        return v;
    }
}
