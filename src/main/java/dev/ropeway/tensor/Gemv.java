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

    /**
     * The element offsets of four rows of a matrix for the four-row kernels: {@code first} and the next three at
     * stride {@code ld}, those past row {@code m - 1} repeating it (its sums are computed again, to the same values).
     */
    static long[] fourRows(long first, int ld, int m) {
        long[] rows = new long[4];
        for (int r = 0; r < 4; r++) rows[r] = first + Math.min(r, m - 1) * (long) ld;
        return rows;
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

    /**
     * Columns {@code [c0, c1)} of all m rows. Rows go through the weights together, four (three: the last one twice) or
     * two at a time, so each block of weight rows is read once for them; every sum is the one-row kernel's, operation
     * for operation, so a row's result does not depend on the rows beside it. (The kernels keep few vectors live and
     * hand only floats to their helpers: a vector passed to a method the JIT does not inline is boxed.)
     */
    static void columns(int m, int c0, int c1, int k, MemorySegment a, long aOffset, int lda,
                                MemorySegment b, long bOffset, int ldb, MemorySegment c, long cOffset, int ldc) {
        if (m >= 3) {
            int last = Math.min(3, m - 1);
            columns4(c0, c1, k, a, aOffset, aOffset + lda, aOffset + 2L * lda, aOffset + (long) last * lda, b, bOffset, ldb,
                    c, cOffset, cOffset + ldc, cOffset + 2L * ldc, cOffset + (long) last * ldc);
        } else if (m == 2) {
            columns2(c0, c1, k, a, aOffset, aOffset + lda, b, bOffset, ldb, c, cOffset, cOffset + ldc);
        } else {
            columns1(m, c0, c1, k, a, aOffset, lda, b, bOffset, ldb, c, cOffset, ldc);
        }
    }

    /** Four rows (element offsets of A's and C's rows), two columns at a time. */
    private static void columns4(int c0, int c1, int k, MemorySegment a, long x0, long x1, long x2, long x3,
                                 MemorySegment b, long bOffset, int ldb, MemorySegment c, long y0, long y1, long y2, long y3) {
        float[] lanes = new float[LANES];
        int bound = F.loopBound(k);
        long a0 = x0 * 4, a1 = x1 * 4, a2 = x2 * 4, a3 = x3 * 4, step = (long) ldb * Float.BYTES;
        int j = c0;
        for (; j + 2 <= c1; j += 2) {
            long b0 = (bOffset + (long) j * ldb) * Float.BYTES;
            FloatVector s00 = FloatVector.zero(F), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;
            int i = 0;
            for (; i < bound; i += LANES) {
                long o = i * 4L;
                FloatVector w0 = FloatVector.fromMemorySegment(F, b, b0 + o, NATIVE);
                FloatVector w1 = FloatVector.fromMemorySegment(F, b, b0 + step + o, NATIVE);
                FloatVector x = FloatVector.fromMemorySegment(F, a, a0 + o, NATIVE);
                s00 = w0.fma(x, s00);
                s01 = w1.fma(x, s01);
                x = FloatVector.fromMemorySegment(F, a, a1 + o, NATIVE);
                s10 = w0.fma(x, s10);
                s11 = w1.fma(x, s11);
                x = FloatVector.fromMemorySegment(F, a, a2 + o, NATIVE);
                s20 = w0.fma(x, s20);
                s21 = w1.fma(x, s21);
                x = FloatVector.fromMemorySegment(F, a, a3 + o, NATIVE);
                s30 = w0.fma(x, s30);
                s31 = w1.fma(x, s31);
            }
            store2(sum(s00, lanes), sum(s01, lanes), i, k, a, a0, b, b0, step, c, (y0 + j) * 4);
            store2(sum(s10, lanes), sum(s11, lanes), i, k, a, a1, b, b0, step, c, (y1 + j) * 4);
            store2(sum(s20, lanes), sum(s21, lanes), i, k, a, a2, b, b0, step, c, (y2 + j) * 4);
            store2(sum(s30, lanes), sum(s31, lanes), i, k, a, a3, b, b0, step, c, (y3 + j) * 4);
        }
        if (j < c1) {
            columns1(1, j, c1, k, a, x0, 0, b, bOffset, ldb, c, y0, 0);
            columns1(1, j, c1, k, a, x1, 0, b, bOffset, ldb, c, y1, 0);
            columns1(1, j, c1, k, a, x2, 0, b, bOffset, ldb, c, y2, 0);
            columns1(1, j, c1, k, a, x3, 0, b, bOffset, ldb, c, y3, 0);
        }
    }

    /** Two rows, two columns at a time. */
    private static void columns2(int c0, int c1, int k, MemorySegment a, long x0, long x1,
                                 MemorySegment b, long bOffset, int ldb, MemorySegment c, long y0, long y1) {
        float[] lanes = new float[LANES];
        int bound = F.loopBound(k);
        long a0 = x0 * 4, a1 = x1 * 4, step = (long) ldb * Float.BYTES;
        int j = c0;
        for (; j + 2 <= c1; j += 2) {
            long b0 = (bOffset + (long) j * ldb) * Float.BYTES;
            FloatVector s00 = FloatVector.zero(F), s01 = s00, s10 = s00, s11 = s00;
            int i = 0;
            for (; i < bound; i += LANES) {
                long o = i * 4L;
                FloatVector w0 = FloatVector.fromMemorySegment(F, b, b0 + o, NATIVE);
                FloatVector w1 = FloatVector.fromMemorySegment(F, b, b0 + step + o, NATIVE);
                FloatVector x = FloatVector.fromMemorySegment(F, a, a0 + o, NATIVE);
                s00 = w0.fma(x, s00);
                s01 = w1.fma(x, s01);
                x = FloatVector.fromMemorySegment(F, a, a1 + o, NATIVE);
                s10 = w0.fma(x, s10);
                s11 = w1.fma(x, s11);
            }
            store2(sum(s00, lanes), sum(s01, lanes), i, k, a, a0, b, b0, step, c, (y0 + j) * 4);
            store2(sum(s10, lanes), sum(s11, lanes), i, k, a, a1, b, b0, step, c, (y1 + j) * 4);
        }
        if (j < c1) {
            columns1(1, j, c1, k, a, x0, 0, b, bOffset, ldb, c, y0, 0);
            columns1(1, j, c1, k, a, x1, 0, b, bOffset, ldb, c, y1, 0);
        }
    }

    /**
     * One row's two dot products from their lanes' sums: the tail of k added in order (from element {@code i}), stored
     * at byte {@code out} of C. The same operations as the one-row kernel's.
     */
    private static void store2(float d0, float d1, int i, int k, MemorySegment a, long aRow, MemorySegment b, long b0,
                               long step, MemorySegment c, long out) {
        for (; i < k; i++) {
            float x = a.get(java.lang.foreign.ValueLayout.JAVA_FLOAT, aRow + i * 4L);
            d0 += x * b.get(java.lang.foreign.ValueLayout.JAVA_FLOAT, b0 + i * 4L);
            d1 += x * b.get(java.lang.foreign.ValueLayout.JAVA_FLOAT, b0 + step + i * 4L);
        }
        c.set(java.lang.foreign.ValueLayout.JAVA_FLOAT, out, d0);
        c.set(java.lang.foreign.ValueLayout.JAVA_FLOAT, out + 4, d1);
    }

    /** Row after row (each streaming the columns' weights). */
    private static void columns1(int m, int c0, int c1, int k, MemorySegment a, long aOffset, int lda,
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

    /**
     * The lanes of {@code v} summed pairwise in a fixed order (see {@link VectorMath#sumLanes}). Kept below the JIT's
     * always-inline size (35 bytes of bytecode): a vector handed to a method left out of line is boxed, and at one call
     * per column of a decode-step product that once cost as much as the product.
     */
    /** Two adjacent outputs of C, at byte {@code out}. */
    static void storePair(float d0, float d1, MemorySegment c, long out) {
        c.set(java.lang.foreign.ValueLayout.JAVA_FLOAT, out, d0);
        c.set(java.lang.foreign.ValueLayout.JAVA_FLOAT, out + 4, d1);
    }

    static float sum(FloatVector v, float[] lanes) {
        v.intoArray(lanes, 0);
        return VectorMath.sumLanes(lanes, 0);
    }
}
