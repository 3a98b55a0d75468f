package dev.ropeway.tensor;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

/**
 * {@code C = A · Bᵀ} for a few rows of A (a decode step's one token per sequence): every column of C is a dot product
 * of rows, so B (the weight matrix) is streamed once, where a GEMM call would first copy all of it into packed panels
 * for one row of output. Columns are split across the pool's threads. Sums run in a fixed order (lanes reduced
 * pairwise), so a result never depends on the thread count or on JIT state.
 */
final class Gemv {
    /** Rows of A handled here; more go to GEMM. */
    static final int MAX_ROWS = 4;
    private static final VectorSpecies<Float> F = VectorMath.F;
    private static final int LANES = VectorMath.LANES;
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    /** Columns per parallel task at least, so each task streams a useful amount of B. */
    private static final long MIN_MACS_PER_TASK = 1 << 16;

    private Gemv() {}

    /** True when this kernel takes the product (row-major, B transposed, alpha 1, beta 0, few rows). */
    static boolean applies(boolean transA, boolean transB, int m, float alpha, float beta) {
        return !transA && transB && m <= MAX_ROWS && alpha == 1f && beta == 0f;
    }

    /** Offsets and leading dimensions in floats, as {@link ParallelGemm#sgemm}. */
    static void run(WorkerPool pool, int m, int n, int k, MemorySegment a, long aOffset, int lda,
                    MemorySegment b, long bOffset, int ldb, MemorySegment c, long cOffset, int ldc,
                    ParallelGemm.Epilogue epilogue) {
        forColumns(pool, m, n, k, (c0, c1) -> columns(m, c0, c1, k, a, aOffset, lda, b, bOffset, ldb, c, cOffset, ldc),
                epilogue);
    }

    /** Columns {@code [c0, c1)} of all m rows of C. */
    @FunctionalInterface
    interface ColumnBlock {
        void run(int c0, int c1);
    }

    /**
     * The columns of C split across the pool's threads, each block large enough to stream a useful amount of B; the
     * epilogue runs on each finished block. Shared by the float32 and bfloat16 kernels.
     */
    static void forColumns(WorkerPool pool, int m, int n, int k, ColumnBlock kernel, ParallelGemm.Epilogue epilogue) {
        long macs = (long) m * n * k;
        int tasks = (int) Math.max(1, Math.min(2L * pool.threads(), macs / MIN_MACS_PER_TASK));
        int step = (n + tasks - 1) / tasks;
        int blocks = (n + step - 1) / step;
        pool.run(blocks, block -> {
            int c0 = block * step, c1 = Math.min(n, c0 + step);
            kernel.run(c0, c1);
            if (epilogue != null) epilogue.apply(0, m, c0, c1);
        });
    }

    private static void columns(int m, int c0, int c1, int k, MemorySegment a, long aOffset, int lda,
                                MemorySegment b, long bOffset, int ldb, MemorySegment c, long cOffset, int ldc) {
        float[] lanes = new float[LANES];
        int bound = F.loopBound(k);
        for (int r = 0; r < m; r++) {
            long aRow = (aOffset + (long) r * lda) * Float.BYTES;
            int j = c0;
            for (; j + 4 <= c1; j += 4) {
                long b0 = (bOffset + (long) j * ldb) * Float.BYTES, step = (long) ldb * Float.BYTES;
                FloatVector s0 = FloatVector.zero(F), s1 = FloatVector.zero(F), s2 = FloatVector.zero(F), s3 = FloatVector.zero(F);
                int i = 0;
                for (; i < bound; i += LANES) {
                    FloatVector x = FloatVector.fromMemorySegment(F, a, aRow + i * 4L, NATIVE);
                    s0 = FloatVector.fromMemorySegment(F, b, b0 + i * 4L, NATIVE).fma(x, s0);
                    s1 = FloatVector.fromMemorySegment(F, b, b0 + step + i * 4L, NATIVE).fma(x, s1);
                    s2 = FloatVector.fromMemorySegment(F, b, b0 + 2 * step + i * 4L, NATIVE).fma(x, s2);
                    s3 = FloatVector.fromMemorySegment(F, b, b0 + 3 * step + i * 4L, NATIVE).fma(x, s3);
                }
                float d0 = sum(s0, lanes), d1 = sum(s1, lanes), d2 = sum(s2, lanes), d3 = sum(s3, lanes);
                for (; i < k; i++) {
                    float x = a.get(java.lang.foreign.ValueLayout.JAVA_FLOAT, aRow + i * 4L);
                    d0 += x * b.get(java.lang.foreign.ValueLayout.JAVA_FLOAT, b0 + i * 4L);
                    d1 += x * b.get(java.lang.foreign.ValueLayout.JAVA_FLOAT, b0 + step + i * 4L);
                    d2 += x * b.get(java.lang.foreign.ValueLayout.JAVA_FLOAT, b0 + 2 * step + i * 4L);
                    d3 += x * b.get(java.lang.foreign.ValueLayout.JAVA_FLOAT, b0 + 3 * step + i * 4L);
                }
                long out = (cOffset + (long) r * ldc + j) * Float.BYTES;
                c.set(java.lang.foreign.ValueLayout.JAVA_FLOAT, out, d0);
                c.set(java.lang.foreign.ValueLayout.JAVA_FLOAT, out + 4, d1);
                c.set(java.lang.foreign.ValueLayout.JAVA_FLOAT, out + 8, d2);
                c.set(java.lang.foreign.ValueLayout.JAVA_FLOAT, out + 12, d3);
            }
            for (; j < c1; j++) {
                long b0 = (bOffset + (long) j * ldb) * Float.BYTES;
                FloatVector s = FloatVector.zero(F);
                int i = 0;
                for (; i < bound; i += LANES)
                    s = FloatVector.fromMemorySegment(F, b, b0 + i * 4L, NATIVE)
                            .fma(FloatVector.fromMemorySegment(F, a, aRow + i * 4L, NATIVE), s);
                float d = sum(s, lanes);
                for (; i < k; i++)
                    d += a.get(java.lang.foreign.ValueLayout.JAVA_FLOAT, aRow + i * 4L)
                            * b.get(java.lang.foreign.ValueLayout.JAVA_FLOAT, b0 + i * 4L);
                c.set(java.lang.foreign.ValueLayout.JAVA_FLOAT, (cOffset + (long) r * ldc + j) * Float.BYTES, d);
            }
        }
    }

    /** The lanes of {@code v} summed pairwise in a fixed order (see {@link VectorMath#sumLanes}). */
    static float sum(FloatVector v, float[] lanes) {
        v.intoArray(lanes, 0);
        for (int width = lanes.length / 2; width > 0; width /= 2)
            for (int i = 0; i < width; i++) lanes[i] += lanes[i + width];
        return lanes[0];
    }
}
