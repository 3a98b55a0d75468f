package dev.ropeway.rope;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * The small dense products of the CLEX ODE (a row vector times a matrix, thousands of times per solve; the
 * weight gradients of all stage evaluations as one product).
 *
 * <p>Each output element is one chain over the inner index in ascending order, with the vector lanes running over
 * output elements: no lane is ever summed with another, so the result is the same whether the JIT has compiled the
 * caller or not, and a training run repeats itself bit for bit. The float32 product multiplies and adds with a
 * rounding after each, as a plain float32 loop would (it tracked the reference layer more closely than fused
 * multiply-adds on the fixtures: 1.0e-6 against 2.0e-6 worst relative error); the double products, which only feed
 * gradients, fuse them. Vectors never leave the method that creates them (a vector passed between methods that are
 * not inlined is boxed on the heap).
 */
final class OdeKernels {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Double> D = DoubleVector.SPECIES_PREFERRED;
    private static final int FL = F.length();
    private static final int DL = D.length();

    private OdeKernels() {
    }

    /**
     * {@code out[outOff + q] = sum_p x[xOff + p] * m[p * cols + q]} for q in [0, cols): x (rows values) times the
     * row-major matrix m [rows, cols]. Four output vectors at a time, so that four independent chains hide the
     * latency.
     */
    static void rowTimesMatrix(float[] x, int xOff, int rows, float[] m, int cols, float[] out, int outOff) {
        int q = 0;
        for (; q + 4 * FL <= cols; q += 4 * FL) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            for (int p = 0, o = q; p < rows; p++, o += cols) {
                FloatVector xp = FloatVector.broadcast(F, x[xOff + p]);
                a0 = a0.add(FloatVector.fromArray(F, m, o).mul(xp));
                a1 = a1.add(FloatVector.fromArray(F, m, o + FL).mul(xp));
                a2 = a2.add(FloatVector.fromArray(F, m, o + 2 * FL).mul(xp));
                a3 = a3.add(FloatVector.fromArray(F, m, o + 3 * FL).mul(xp));
            }
            a0.intoArray(out, outOff + q);
            a1.intoArray(out, outOff + q + FL);
            a2.intoArray(out, outOff + q + 2 * FL);
            a3.intoArray(out, outOff + q + 3 * FL);
        }
        for (; q + FL <= cols; q += FL) {
            FloatVector a0 = FloatVector.zero(F);
            for (int p = 0, o = q; p < rows; p++, o += cols)
                a0 = a0.add(FloatVector.fromArray(F, m, o).mul(FloatVector.broadcast(F, x[xOff + p])));
            a0.intoArray(out, outOff + q);
        }
        for (; q < cols; q++) {
            float s = 0;
            for (int p = 0, o = q; p < rows; p++, o += cols) s += x[xOff + p] * m[o];
            out[outOff + q] = s;
        }
    }

    /** The same product in double, with fused multiply-adds. */
    static void rowTimesMatrix(double[] x, int xOff, int rows, double[] m, int cols, double[] out, int outOff) {
        int q = 0;
        for (; q + 4 * DL <= cols; q += 4 * DL) {
            DoubleVector a0 = DoubleVector.zero(D), a1 = a0, a2 = a0, a3 = a0;
            for (int p = 0, o = q; p < rows; p++, o += cols) {
                DoubleVector xp = DoubleVector.broadcast(D, x[xOff + p]);
                a0 = DoubleVector.fromArray(D, m, o).fma(xp, a0);
                a1 = DoubleVector.fromArray(D, m, o + DL).fma(xp, a1);
                a2 = DoubleVector.fromArray(D, m, o + 2 * DL).fma(xp, a2);
                a3 = DoubleVector.fromArray(D, m, o + 3 * DL).fma(xp, a3);
            }
            a0.intoArray(out, outOff + q);
            a1.intoArray(out, outOff + q + DL);
            a2.intoArray(out, outOff + q + 2 * DL);
            a3.intoArray(out, outOff + q + 3 * DL);
        }
        for (; q + DL <= cols; q += DL) {
            DoubleVector a0 = DoubleVector.zero(D);
            for (int p = 0, o = q; p < rows; p++, o += cols)
                a0 = DoubleVector.fromArray(D, m, o).fma(DoubleVector.broadcast(D, x[xOff + p]), a0);
            a0.intoArray(out, outOff + q);
        }
        for (; q < cols; q++) {
            double s = 0;
            for (int p = 0, o = q; p < rows; p++, o += cols) s = Math.fma(x[xOff + p], m[o], s);
            out[outOff + q] = s;
        }
    }

    /** Records per block of {@link #addTransposedProduct}: a block of both inputs stays in the L1 cache. */
    private static final int RECORD_BLOCK = 32;

    /**
     * {@code out[p * n + q] += sum_r a[r * m + p] * b[r * n + q]} over r in [0, records): a^T b for a [records, m]
     * and b [records, n], added to out [m, n]. The weight gradients of all stage evaluations at once, summed over
     * r in ascending order.
     */
    static void addTransposedProduct(double[] a, int m, double[] b, int n, int records, double[] out) {
        for (int r0 = 0; r0 < records; r0 += RECORD_BLOCK) {
            int r1 = Math.min(records, r0 + RECORD_BLOCK);
            for (int p = 0, row = 0; p < m; p++, row += n) {
                int q = 0;
                for (; q + 4 * DL <= n; q += 4 * DL) {
                    DoubleVector c0 = DoubleVector.fromArray(D, out, row + q);
                    DoubleVector c1 = DoubleVector.fromArray(D, out, row + q + DL);
                    DoubleVector c2 = DoubleVector.fromArray(D, out, row + q + 2 * DL);
                    DoubleVector c3 = DoubleVector.fromArray(D, out, row + q + 3 * DL);
                    for (int r = r0; r < r1; r++) {
                        DoubleVector ar = DoubleVector.broadcast(D, a[r * m + p]);
                        int o = r * n + q;
                        c0 = DoubleVector.fromArray(D, b, o).fma(ar, c0);
                        c1 = DoubleVector.fromArray(D, b, o + DL).fma(ar, c1);
                        c2 = DoubleVector.fromArray(D, b, o + 2 * DL).fma(ar, c2);
                        c3 = DoubleVector.fromArray(D, b, o + 3 * DL).fma(ar, c3);
                    }
                    c0.intoArray(out, row + q);
                    c1.intoArray(out, row + q + DL);
                    c2.intoArray(out, row + q + 2 * DL);
                    c3.intoArray(out, row + q + 3 * DL);
                }
                for (; q + DL <= n; q += DL) {
                    DoubleVector c0 = DoubleVector.fromArray(D, out, row + q);
                    for (int r = r0; r < r1; r++)
                        c0 = DoubleVector.fromArray(D, b, r * n + q).fma(DoubleVector.broadcast(D, a[r * m + p]), c0);
                    c0.intoArray(out, row + q);
                }
                for (; q < n; q++) {
                    double c = out[row + q];
                    for (int r = r0; r < r1; r++) c = Math.fma(a[r * m + p], b[r * n + q], c);
                    out[row + q] = c;
                }
            }
        }
    }
}
