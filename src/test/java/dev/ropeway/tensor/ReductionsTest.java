package dev.ropeway.tensor;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.Random;

import static dev.ropeway.tensor.GemmTest.random;
import static dev.ropeway.tensor.GradCheck.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

class ReductionsTest {
    private static CpuBackend cpu;

    @BeforeAll
    static void start() {
        cpu = new CpuBackend(3);
    }

    @AfterAll
    static void stop() {
        cpu.close();
    }

    static float[] download(Tensor t) {
        float[] out = new float[(int) t.size()];
        cpu.download(t, 0, out, 0, out.length);
        return out;
    }

    /**
     * A vector's lanes summed in the fixed pairwise order (lane i plus lane i + w, w halving), bit for bit, on values
     * of mixed signs and magnitudes where another order rounds differently.
     */
    @Test
    void lanesSumPairwiseInAFixedOrder() {
        Random rnd = new Random(3);
        int n = VectorMath.LANES, differs = 0;
        for (int trial = 0; trial < 2000; trial++) {
            float[] a = new float[n + 3];
            for (int i = 0; i < a.length; i++) a[i] = (float) (rnd.nextGaussian() * Math.pow(10, rnd.nextInt(9) - 4));
            float[] tree = java.util.Arrays.copyOfRange(a, 3, 3 + n);
            for (int w = n / 2; w > 0; w /= 2)
                for (int i = 0; i < w; i++) tree[i] += tree[i + w];
            float inOrder = 0;
            for (int i = 3; i < 3 + n; i++) inOrder += a[i];
            if (inOrder != tree[0]) differs++;
            assertEquals(Float.floatToRawIntBits(tree[0]), Float.floatToRawIntBits(VectorMath.sumLanes(a, 3)), "trial " + trial);
            assertEquals(Float.floatToRawIntBits(tree[0]),
                    Float.floatToRawIntBits(VectorMath.sumLanes(jdk.incubator.vector.FloatVector.fromArray(VectorMath.F, a, 3))));
        }
        if (n > 2) assertEquals(true, differs > 100, "the values should tell the orders apart: " + differs);
    }

    @ParameterizedTest(name = "rows={0} cols={1}")
    @CsvSource({"1,7", "5,37", "300,101", "40,2053", "3000,3"})
    void sumRowsAddsColumnSums(int rows, int cols) {
        Random rnd = new Random(rows + cols);
        float[] x = random(rnd, rows * cols), out0 = random(rnd, cols);
        double[] expect = new double[cols];
        for (int c = 0; c < cols; c++) {
            expect[c] = out0[c];
            for (int r = 0; r < rows; r++) expect[c] += x[r * cols + c];
        }
        try (Tensor tx = cpu.upload(x); Tensor out = cpu.upload(out0)) {
            cpu.sumRows(out, tx, rows, cols);
            assertClose(expect, download(out), 1e-5, "column sums");
        }
    }

    @Test
    void scaleMultipliesAndZeroClearsNonFiniteValues() {
        int n = 100_003;
        Random rnd = new Random(12);
        float[] y = random(rnd, n);
        try (Tensor t = cpu.upload(y)) {
            cpu.scale(t, -0.25f, n - 1);
            float[] got = download(t);
            for (int i = 0; i < n - 1; i++) assertEquals(y[i] * -0.25f, got[i]);
            assertEquals(y[n - 1], got[n - 1], "element past n untouched");
            float[] bad = {Float.NaN, Float.POSITIVE_INFINITY, 3f};
            try (Tensor b = cpu.upload(bad)) {
                cpu.scale(b, 0f, 3);
                float[] zero = download(b);
                for (float v : zero) assertEquals(0f, v);
            }
        }
    }

    @Test
    void sumOfSquaresIsExactToDoublePrecisionOfTheFloatSquares() {
        int n = 300_007;
        Random rnd = new Random(13);
        float[] x = random(rnd, n);
        for (int i = 0; i < n; i += 1000) x[i] *= 1000;
        double expect = 0;
        for (int i = 0; i < n - 2; i++) expect += (double) x[i] * x[i];
        try (Tensor t = cpu.upload(x)) {
            double got = cpu.sumOfSquares(t, n - 2);
            assertEquals(expect, got, 1e-6 * expect);
            assertEquals(got, cpu.sumOfSquares(t, n - 2), 0.0, "deterministic");
            assertEquals(0.0, cpu.sumOfSquares(t, 0));
            var e = assertThrows(IllegalArgumentException.class, () -> cpu.sumOfSquares(t, n + 1));
            assertEquals("sumOfSquares: x has 300007 floats, needs n = 300008", e.getMessage());
        }
    }
}
