package dev.ropeway.tensor;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import static dev.ropeway.tensor.VectorMath.F;
import static dev.ropeway.tensor.VectorMath.LANES;

/**
 * The inner loops of tiled attention, on one tile of query lanes held transposed: {@code qT[d * width + t]} is
 * feature d of lane t (a query row of one head), so every loop runs along lanes with broadcast-FMAs and never
 * needs a horizontal sum.
 *
 * <p>Two widths: "wide" tiles of four vectors, register-blocked four keys (or four features) by four vectors
 * (16 accumulators; two by four below 512-bit vectors); and "narrow" tiles of one vector for decode steps and short
 * chunks, where a wide tile would be mostly padding.
 */
final class AttentionKernels {
    static final int WIDE = 4 * LANES;
    static final int NARROW = LANES;
    /**
     * Register blocking of the wide kernels: 4 keys (or features) x 4 vectors needs 16 accumulators plus about 8
     * more registers, which fits the 32 of AVX-512 but spills on AVX2's 16 (measured there: 41 GFLOP/s on one
     * thread); narrower vectors use 2 x 4. A constant, so the JIT drops the loop not taken.
     */
    private static final boolean FOUR_BY_FOUR = F.vectorBitSize() >= 512;
    private static final VectorSpecies<Integer> I = F.withLanes(int.class);

    private AttentionKernels() {}

    /**
     * {@code sT[j * width + t] = sum_d k[k0 + j * ld + d] * qT[d * width + t]} for keys j < nk, and in
     * {@code max[t]} the largest of them (taken while the scores are still in registers, saving the softmax a pass).
     */
    static void scores(int width, float[] qT, float[] k, int k0, int ld, float[] sT, float[] max, int nk, int dim) {
        if (width == WIDE) scoresWide(qT, k, k0, ld, sT, max, nk, dim);
        else scoresNarrow(qT, k, k0, ld, sT, max, nk, dim);
    }

    /** {@code oT[d * width + t] = oT[d * width + t] * alpha[t] + sum_j v[v0 + j * ld + d] * p[j * width + t]}. */
    static void accumulate(int width, float[] p, float[] v, int v0, int ld, float[] oT, float[] alpha, int nk, int dim) {
        if (width == WIDE) accumulateWide(p, v, v0, ld, oT, alpha, nk, dim);
        else accumulateNarrow(p, v, v0, ld, oT, alpha, nk, dim);
    }

    private static void scoresWide(float[] qT, float[] k, int kStart, int ld, float[] sT, float[] max, int nk, int dim) {
        final int w = WIDE;
        FloatVector m0 = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY), m1 = m0, m2 = m0, m3 = m0;
        int j = 0;
        for (; FOUR_BY_FOUR && j + 4 <= nk; j += 4) {
            FloatVector a00 = FloatVector.zero(F), a01 = a00, a02 = a00, a03 = a00;
            FloatVector a10 = a00, a11 = a00, a12 = a00, a13 = a00;
            FloatVector a20 = a00, a21 = a00, a22 = a00, a23 = a00;
            FloatVector a30 = a00, a31 = a00, a32 = a00, a33 = a00;
            int k0 = kStart + j * ld, k1 = k0 + ld, k2 = k1 + ld, k3 = k2 + ld;
            for (int d = 0, qo = 0; d < dim; d++, qo += w) {
                FloatVector q0 = FloatVector.fromArray(F, qT, qo);
                FloatVector q1 = FloatVector.fromArray(F, qT, qo + LANES);
                FloatVector q2 = FloatVector.fromArray(F, qT, qo + 2 * LANES);
                FloatVector q3 = FloatVector.fromArray(F, qT, qo + 3 * LANES);
                FloatVector b = FloatVector.broadcast(F, k[k0 + d]);
                a00 = q0.fma(b, a00); a01 = q1.fma(b, a01); a02 = q2.fma(b, a02); a03 = q3.fma(b, a03);
                b = FloatVector.broadcast(F, k[k1 + d]);
                a10 = q0.fma(b, a10); a11 = q1.fma(b, a11); a12 = q2.fma(b, a12); a13 = q3.fma(b, a13);
                b = FloatVector.broadcast(F, k[k2 + d]);
                a20 = q0.fma(b, a20); a21 = q1.fma(b, a21); a22 = q2.fma(b, a22); a23 = q3.fma(b, a23);
                b = FloatVector.broadcast(F, k[k3 + d]);
                a30 = q0.fma(b, a30); a31 = q1.fma(b, a31); a32 = q2.fma(b, a32); a33 = q3.fma(b, a33);
            }
            int s = j * w;
            a00.intoArray(sT, s); a01.intoArray(sT, s + LANES); a02.intoArray(sT, s + 2 * LANES); a03.intoArray(sT, s + 3 * LANES);
            s += w;
            a10.intoArray(sT, s); a11.intoArray(sT, s + LANES); a12.intoArray(sT, s + 2 * LANES); a13.intoArray(sT, s + 3 * LANES);
            s += w;
            a20.intoArray(sT, s); a21.intoArray(sT, s + LANES); a22.intoArray(sT, s + 2 * LANES); a23.intoArray(sT, s + 3 * LANES);
            s += w;
            a30.intoArray(sT, s); a31.intoArray(sT, s + LANES); a32.intoArray(sT, s + 2 * LANES); a33.intoArray(sT, s + 3 * LANES);
            m0 = m0.max(a00.max(a10)).max(a20.max(a30));
            m1 = m1.max(a01.max(a11)).max(a21.max(a31));
            m2 = m2.max(a02.max(a12)).max(a22.max(a32));
            m3 = m3.max(a03.max(a13)).max(a23.max(a33));
        }
        for (; j + 2 <= nk; j += 2) {
            FloatVector a00 = FloatVector.zero(F), a01 = a00, a02 = a00, a03 = a00;
            FloatVector a10 = a00, a11 = a00, a12 = a00, a13 = a00;
            int k0 = kStart + j * ld, k1 = k0 + ld;
            for (int d = 0, qo = 0; d < dim; d++, qo += w) {
                FloatVector q0 = FloatVector.fromArray(F, qT, qo);
                FloatVector q1 = FloatVector.fromArray(F, qT, qo + LANES);
                FloatVector q2 = FloatVector.fromArray(F, qT, qo + 2 * LANES);
                FloatVector q3 = FloatVector.fromArray(F, qT, qo + 3 * LANES);
                FloatVector b = FloatVector.broadcast(F, k[k0 + d]);
                a00 = q0.fma(b, a00); a01 = q1.fma(b, a01); a02 = q2.fma(b, a02); a03 = q3.fma(b, a03);
                b = FloatVector.broadcast(F, k[k1 + d]);
                a10 = q0.fma(b, a10); a11 = q1.fma(b, a11); a12 = q2.fma(b, a12); a13 = q3.fma(b, a13);
            }
            int s = j * w;
            a00.intoArray(sT, s); a01.intoArray(sT, s + LANES); a02.intoArray(sT, s + 2 * LANES); a03.intoArray(sT, s + 3 * LANES);
            s += w;
            a10.intoArray(sT, s); a11.intoArray(sT, s + LANES); a12.intoArray(sT, s + 2 * LANES); a13.intoArray(sT, s + 3 * LANES);
            m0 = m0.max(a00.max(a10));
            m1 = m1.max(a01.max(a11));
            m2 = m2.max(a02.max(a12));
            m3 = m3.max(a03.max(a13));
        }
        for (; j < nk; j++) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            int k0 = kStart + j * ld;
            for (int d = 0, qo = 0; d < dim; d++, qo += w) {
                FloatVector b = FloatVector.broadcast(F, k[k0 + d]);
                a0 = FloatVector.fromArray(F, qT, qo).fma(b, a0);
                a1 = FloatVector.fromArray(F, qT, qo + LANES).fma(b, a1);
                a2 = FloatVector.fromArray(F, qT, qo + 2 * LANES).fma(b, a2);
                a3 = FloatVector.fromArray(F, qT, qo + 3 * LANES).fma(b, a3);
            }
            int s = j * w;
            a0.intoArray(sT, s); a1.intoArray(sT, s + LANES); a2.intoArray(sT, s + 2 * LANES); a3.intoArray(sT, s + 3 * LANES);
            m0 = m0.max(a0); m1 = m1.max(a1); m2 = m2.max(a2); m3 = m3.max(a3);
        }
        m0.intoArray(max, 0); m1.intoArray(max, LANES); m2.intoArray(max, 2 * LANES); m3.intoArray(max, 3 * LANES);
    }

    private static void scoresNarrow(float[] qT, float[] k, int kStart, int ld, float[] sT, float[] max, int nk, int dim) {
        final int w = NARROW;
        FloatVector mx = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
        int j = 0;
        for (; j + 4 <= nk; j += 4) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            int k0 = kStart + j * ld, k1 = k0 + ld, k2 = k1 + ld, k3 = k2 + ld;
            for (int d = 0, qo = 0; d < dim; d++, qo += w) {
                FloatVector q = FloatVector.fromArray(F, qT, qo);
                a0 = q.fma(FloatVector.broadcast(F, k[k0 + d]), a0);
                a1 = q.fma(FloatVector.broadcast(F, k[k1 + d]), a1);
                a2 = q.fma(FloatVector.broadcast(F, k[k2 + d]), a2);
                a3 = q.fma(FloatVector.broadcast(F, k[k3 + d]), a3);
            }
            int s = j * w;
            a0.intoArray(sT, s); a1.intoArray(sT, s + w); a2.intoArray(sT, s + 2 * w); a3.intoArray(sT, s + 3 * w);
            mx = mx.max(a0.max(a1)).max(a2.max(a3));
        }
        for (; j < nk; j++) {
            FloatVector a = FloatVector.zero(F);
            int k0 = kStart + j * ld;
            for (int d = 0, qo = 0; d < dim; d++, qo += w)
                a = FloatVector.fromArray(F, qT, qo).fma(FloatVector.broadcast(F, k[k0 + d]), a);
            a.intoArray(sT, j * w);
            mx = mx.max(a);
        }
        mx.intoArray(max, 0);
    }

    private static void accumulateWide(float[] p, float[] v, int vStart, int ld, float[] oT, float[] alpha, int nk, int dim) {
        final int w = WIDE;
        FloatVector s0 = FloatVector.fromArray(F, alpha, 0);
        FloatVector s1 = FloatVector.fromArray(F, alpha, LANES);
        FloatVector s2 = FloatVector.fromArray(F, alpha, 2 * LANES);
        FloatVector s3 = FloatVector.fromArray(F, alpha, 3 * LANES);
        int d = 0;
        for (; FOUR_BY_FOUR && d + 4 <= dim; d += 4) {
            int o0 = d * w, o1 = o0 + w, o2 = o1 + w, o3 = o2 + w;
            FloatVector a00 = FloatVector.fromArray(F, oT, o0).mul(s0), a01 = FloatVector.fromArray(F, oT, o0 + LANES).mul(s1);
            FloatVector a02 = FloatVector.fromArray(F, oT, o0 + 2 * LANES).mul(s2), a03 = FloatVector.fromArray(F, oT, o0 + 3 * LANES).mul(s3);
            FloatVector a10 = FloatVector.fromArray(F, oT, o1).mul(s0), a11 = FloatVector.fromArray(F, oT, o1 + LANES).mul(s1);
            FloatVector a12 = FloatVector.fromArray(F, oT, o1 + 2 * LANES).mul(s2), a13 = FloatVector.fromArray(F, oT, o1 + 3 * LANES).mul(s3);
            FloatVector a20 = FloatVector.fromArray(F, oT, o2).mul(s0), a21 = FloatVector.fromArray(F, oT, o2 + LANES).mul(s1);
            FloatVector a22 = FloatVector.fromArray(F, oT, o2 + 2 * LANES).mul(s2), a23 = FloatVector.fromArray(F, oT, o2 + 3 * LANES).mul(s3);
            FloatVector a30 = FloatVector.fromArray(F, oT, o3).mul(s0), a31 = FloatVector.fromArray(F, oT, o3 + LANES).mul(s1);
            FloatVector a32 = FloatVector.fromArray(F, oT, o3 + 2 * LANES).mul(s2), a33 = FloatVector.fromArray(F, oT, o3 + 3 * LANES).mul(s3);
            for (int j = 0, po = 0, vo = vStart + d; j < nk; j++, po += w, vo += ld) {
                FloatVector p0 = FloatVector.fromArray(F, p, po);
                FloatVector p1 = FloatVector.fromArray(F, p, po + LANES);
                FloatVector p2 = FloatVector.fromArray(F, p, po + 2 * LANES);
                FloatVector p3 = FloatVector.fromArray(F, p, po + 3 * LANES);
                FloatVector b = FloatVector.broadcast(F, v[vo]);
                a00 = p0.fma(b, a00); a01 = p1.fma(b, a01); a02 = p2.fma(b, a02); a03 = p3.fma(b, a03);
                b = FloatVector.broadcast(F, v[vo + 1]);
                a10 = p0.fma(b, a10); a11 = p1.fma(b, a11); a12 = p2.fma(b, a12); a13 = p3.fma(b, a13);
                b = FloatVector.broadcast(F, v[vo + 2]);
                a20 = p0.fma(b, a20); a21 = p1.fma(b, a21); a22 = p2.fma(b, a22); a23 = p3.fma(b, a23);
                b = FloatVector.broadcast(F, v[vo + 3]);
                a30 = p0.fma(b, a30); a31 = p1.fma(b, a31); a32 = p2.fma(b, a32); a33 = p3.fma(b, a33);
            }
            a00.intoArray(oT, o0); a01.intoArray(oT, o0 + LANES); a02.intoArray(oT, o0 + 2 * LANES); a03.intoArray(oT, o0 + 3 * LANES);
            a10.intoArray(oT, o1); a11.intoArray(oT, o1 + LANES); a12.intoArray(oT, o1 + 2 * LANES); a13.intoArray(oT, o1 + 3 * LANES);
            a20.intoArray(oT, o2); a21.intoArray(oT, o2 + LANES); a22.intoArray(oT, o2 + 2 * LANES); a23.intoArray(oT, o2 + 3 * LANES);
            a30.intoArray(oT, o3); a31.intoArray(oT, o3 + LANES); a32.intoArray(oT, o3 + 2 * LANES); a33.intoArray(oT, o3 + 3 * LANES);
        }
        for (; d + 2 <= dim; d += 2) {
            int o0 = d * w, o1 = o0 + w;
            FloatVector a00 = FloatVector.fromArray(F, oT, o0).mul(FloatVector.fromArray(F, alpha, 0));
            FloatVector a01 = FloatVector.fromArray(F, oT, o0 + LANES).mul(FloatVector.fromArray(F, alpha, LANES));
            FloatVector a02 = FloatVector.fromArray(F, oT, o0 + 2 * LANES).mul(FloatVector.fromArray(F, alpha, 2 * LANES));
            FloatVector a03 = FloatVector.fromArray(F, oT, o0 + 3 * LANES).mul(FloatVector.fromArray(F, alpha, 3 * LANES));
            FloatVector a10 = FloatVector.fromArray(F, oT, o1).mul(FloatVector.fromArray(F, alpha, 0));
            FloatVector a11 = FloatVector.fromArray(F, oT, o1 + LANES).mul(FloatVector.fromArray(F, alpha, LANES));
            FloatVector a12 = FloatVector.fromArray(F, oT, o1 + 2 * LANES).mul(FloatVector.fromArray(F, alpha, 2 * LANES));
            FloatVector a13 = FloatVector.fromArray(F, oT, o1 + 3 * LANES).mul(FloatVector.fromArray(F, alpha, 3 * LANES));
            for (int j = 0, po = 0, vo = vStart + d; j < nk; j++, po += w, vo += ld) {
                FloatVector p0 = FloatVector.fromArray(F, p, po);
                FloatVector p1 = FloatVector.fromArray(F, p, po + LANES);
                FloatVector p2 = FloatVector.fromArray(F, p, po + 2 * LANES);
                FloatVector p3 = FloatVector.fromArray(F, p, po + 3 * LANES);
                FloatVector b = FloatVector.broadcast(F, v[vo]);
                a00 = p0.fma(b, a00); a01 = p1.fma(b, a01); a02 = p2.fma(b, a02); a03 = p3.fma(b, a03);
                b = FloatVector.broadcast(F, v[vo + 1]);
                a10 = p0.fma(b, a10); a11 = p1.fma(b, a11); a12 = p2.fma(b, a12); a13 = p3.fma(b, a13);
            }
            a00.intoArray(oT, o0); a01.intoArray(oT, o0 + LANES); a02.intoArray(oT, o0 + 2 * LANES); a03.intoArray(oT, o0 + 3 * LANES);
            a10.intoArray(oT, o1); a11.intoArray(oT, o1 + LANES); a12.intoArray(oT, o1 + 2 * LANES); a13.intoArray(oT, o1 + 3 * LANES);
        }
        for (; d < dim; d++) {
            int o = d * w;
            FloatVector a0 = FloatVector.fromArray(F, oT, o).mul(s0), a1 = FloatVector.fromArray(F, oT, o + LANES).mul(s1);
            FloatVector a2 = FloatVector.fromArray(F, oT, o + 2 * LANES).mul(s2), a3 = FloatVector.fromArray(F, oT, o + 3 * LANES).mul(s3);
            for (int j = 0, po = 0, vo = vStart + d; j < nk; j++, po += w, vo += ld) {
                FloatVector b = FloatVector.broadcast(F, v[vo]);
                a0 = FloatVector.fromArray(F, p, po).fma(b, a0);
                a1 = FloatVector.fromArray(F, p, po + LANES).fma(b, a1);
                a2 = FloatVector.fromArray(F, p, po + 2 * LANES).fma(b, a2);
                a3 = FloatVector.fromArray(F, p, po + 3 * LANES).fma(b, a3);
            }
            a0.intoArray(oT, o); a1.intoArray(oT, o + LANES); a2.intoArray(oT, o + 2 * LANES); a3.intoArray(oT, o + 3 * LANES);
        }
    }

    private static void accumulateNarrow(float[] p, float[] v, int vStart, int ld, float[] oT, float[] alpha, int nk, int dim) {
        final int w = NARROW;
        FloatVector s = FloatVector.fromArray(F, alpha, 0);
        int d = 0;
        for (; d + 4 <= dim; d += 4) {
            int o = d * w;
            FloatVector a0 = FloatVector.fromArray(F, oT, o).mul(s), a1 = FloatVector.fromArray(F, oT, o + w).mul(s);
            FloatVector a2 = FloatVector.fromArray(F, oT, o + 2 * w).mul(s), a3 = FloatVector.fromArray(F, oT, o + 3 * w).mul(s);
            for (int j = 0, po = 0, vo = vStart + d; j < nk; j++, po += w, vo += ld) {
                FloatVector pj = FloatVector.fromArray(F, p, po);
                a0 = pj.fma(FloatVector.broadcast(F, v[vo]), a0);
                a1 = pj.fma(FloatVector.broadcast(F, v[vo + 1]), a1);
                a2 = pj.fma(FloatVector.broadcast(F, v[vo + 2]), a2);
                a3 = pj.fma(FloatVector.broadcast(F, v[vo + 3]), a3);
            }
            a0.intoArray(oT, o); a1.intoArray(oT, o + w); a2.intoArray(oT, o + 2 * w); a3.intoArray(oT, o + 3 * w);
        }
        for (; d < dim; d++) {
            int o = d * w;
            FloatVector a = FloatVector.fromArray(F, oT, o).mul(s);
            for (int j = 0, po = 0, vo = vStart + d; j < nk; j++, po += w, vo += ld)
                a = FloatVector.fromArray(F, p, po).fma(FloatVector.broadcast(F, v[vo]), a);
            a.intoArray(oT, o);
        }
    }

    /**
     * The online-softmax step for one key tile. On entry {@code max} holds each lane's largest score in the tile
     * (from {@link #scores}); when {@code masked}, scores of keys after a lane's position are first set to -inf and
     * the maximum retaken. Then raises the running maximum {@code m}, turns the scores into probabilities in place,
     * rescales the running sum {@code l}, and leaves in {@code alpha} the factor for the output accumulators.
     * {@code sums} is scratch of {@code width} floats.
     */
    static void softmaxStep(int width, float[] sT, int nk, float[] max, float[] m, float[] l, float[] alpha,
                            float[] sums, boolean masked, int[] pos, int firstKey, int window) {
        if (masked) mask(width, sT, nk, max, pos, firstKey, window);
        for (int t = 0; t < width; t += LANES) {
            FloatVector mOld = FloatVector.fromArray(F, m, t);
            FloatVector mNew = mOld.max(FloatVector.fromArray(F, max, t));
            // A lane that has seen no unmasked key yet (possible only in a key range that does not start at 0, as
            // when the keys are split between threads) keeps -inf; subtracting 0 instead keeps its probabilities
            // and alpha at exactly 0 rather than NaN.
            mNew.blend(0f, mNew.compare(VectorOperators.EQ, Float.NEGATIVE_INFINITY)).intoArray(max, t);
            mNew.intoArray(m, t);
            mOld.intoArray(alpha, t);
        }
        VectorMath.expShiftedColumns(sT, nk, width, max, sums);
        VectorMath.expShiftedColumns(alpha, 1, width, max, null);
        for (int t = 0; t < width; t += LANES)
            FloatVector.fromArray(F, l, t).fma(FloatVector.fromArray(F, alpha, t), FloatVector.fromArray(F, sums, t)).intoArray(l, t);
    }

    /**
     * Sets scores of keys after each lane's position (and, with a window W > 0, of keys at or before position - W)
     * to -inf and retakes each lane's maximum.
     */
    private static void mask(int width, float[] sT, int nk, float[] max, int[] pos, int firstKey, int window) {
        for (int t = 0; t < width; t += LANES) {
            IntVector p = IntVector.fromArray(I, pos, t);
            FloatVector mx = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
            for (int j = 0, o = t; j < nk; j++, o += width) {
                VectorMask<Float> after = p.compare(VectorOperators.LT, firstKey + j).cast(F);
                if (window > 0) {
                    // Key j is too old for position p when j <= p - W, that is p >= j + W.
                    int oldFrom = (int) Math.min(Integer.MAX_VALUE, (long) firstKey + j + window);
                    after = after.or(p.compare(VectorOperators.GE, oldFrom).cast(F));
                }
                FloatVector s = FloatVector.fromArray(F, sT, o).blend(Float.NEGATIVE_INFINITY, after);
                s.intoArray(sT, o);
                mx = mx.max(s);
            }
            mx.intoArray(max, t);
        }
    }
}
