package dev.ropeway.tensor;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import static dev.ropeway.tensor.VectorMath.F;
import static dev.ropeway.tensor.VectorMath.LANES;

/**
 * Tiled attention with the two products of every tile done by single-threaded OpenBLAS sgemm calls, the design
 * {@link Attention} was chosen over. Kept so {@link KernelBenchmark} can measure the choice again on any machine.
 *
 * <p>Per task: one query head, {@link #ROWS} query rows; per key tile, {@code S = scale * Q K^T} and
 * {@code O = alpha * O + P V} by sgemm straight from the strided q/k/v buffers (no copies), the online softmax row
 * by row on the heap tiles in between. Same results as {@link Attention} to float rounding.
 */
final class TileSgemmAttention {
    static final int ROWS = 64;
    static final int KEYS = 64;

    private TileSgemmAttention() {}

    /** One thread's tiles, on the heap: the critical downcall reads and writes them in place. */
    private static final class Scratch {
        final float[] s = new float[ROWS * KEYS], m = new float[ROWS], l = new float[ROWS];
        float[] o = new float[0];
    }

    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    static void run(WorkerPool pool, AttentionGeometry g) {
        long tilesPerHead = (g.seqQ() + ROWS - 1) / ROWS;
        int heads = g.batch() * g.heads();
        pool.run((int) (tilesPerHead * heads), task -> tile(g, task % heads, tilesPerHead - 1 - task / heads));
    }

    private static void tile(AttentionGeometry g, int batchHead, long tile) {
        int d = g.headDim(), b = batchHead / g.heads(), h = batchHead % g.heads(), kvh = h / g.group();
        long i0 = tile * ROWS;
        int rows = (int) Math.min(ROWS, g.seqQ() - i0);
        long firstPos = g.qStart() + i0, lastPos = firstPos + rows - 1;
        Scratch sc = SCRATCH.get();
        if (sc.o.length < ROWS * d) sc.o = new float[ROWS * d];
        float[] s = sc.s, o = sc.o, m = sc.m, l = sc.l;
        Arrays.fill(o, 0, rows * d, 0f);
        Arrays.fill(m, Float.NEGATIVE_INFINITY);
        Arrays.fill(l, 0f);
        MemorySegment sSeg = MemorySegment.ofArray(s), oSeg = MemorySegment.ofArray(o);
        int qLd = g.heads() * d, kvLd = (int) g.shape().kvRowStride();
        MemorySegment q = g.q().asSlice((((long) b * g.seqQ() + i0) * g.heads() + h) * d * Float.BYTES);
        long kvBase = g.shape().kvHeadOffset(b, kvh);
        for (long k0 = 0; k0 <= lastPos; k0 += KEYS) {
            int nk = (int) Math.min(KEYS, lastPos + 1 - k0);
            long kvOffset = (kvBase + k0 * kvLd) * Float.BYTES;
            OpenBlas.sgemmCritical(false, true, rows, nk, d, g.scale(), q, qLd, g.k().asSlice(kvOffset), kvLd, 0f, sSeg, KEYS);
            for (int r = 0; r < rows; r++) {
                float alpha = softmaxRow(s, r * KEYS, nk, firstPos + r - k0, m, l, r);
                if (alpha != 1f) for (int x = r * d; x < (r + 1) * d; x++) o[x] *= alpha;
            }
            OpenBlas.sgemmCritical(false, false, rows, d, nk, 1f, sSeg, KEYS, g.v().asSlice(kvOffset), kvLd, 1f, oSeg, d);
        }
        for (int r = 0; r < rows; r++) {
            float inv = 1f / l[r];
            for (int x = r * d; x < (r + 1) * d; x++) o[x] *= inv;
            MemorySegment.copy(o, r * d, g.out(), java.lang.foreign.ValueLayout.JAVA_FLOAT,
                    ((((long) b * g.seqQ() + i0 + r) * g.heads() + h) * d) * Float.BYTES, d);
        }
    }

    /** Online-softmax update of one score row (keys after {@code lastKey} masked); returns the output's rescale. */
    private static float softmaxRow(float[] s, int off, int nk, long lastKey, float[] m, float[] l, int r) {
        int valid = (int) Math.max(0, Math.min(nk, lastKey + 1));
        Arrays.fill(s, off + valid, off + nk, Float.NEGATIVE_INFINITY);
        FloatVector mx = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
        int j = 0;
        for (int bound = F.loopBound(nk); j < bound; j += LANES) mx = mx.max(FloatVector.fromArray(F, s, off + j));
        float max = mx.reduceLanes(VectorOperators.MAX);
        for (; j < nk; j++) max = Math.max(max, s[off + j]);
        float mNew = Math.max(m[r], max);
        for (j = off; j < off + nk; j++) s[j] -= mNew;
        VectorMath.expInPlace(s, off, off + nk);
        float sum = 0;
        for (j = off; j < off + nk; j++) sum += s[j];
        float alpha = (float) Math.exp(m[r] - mNew);
        l[r] = l[r] * alpha + sum;
        m[r] = mNew;
        return alpha;
    }
}
