package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;

/**
 * Row-major sgemm split into a grid of blocks of C, each computed by a single-threaded OpenBLAS call on one of the
 * pool's threads.
 *
 * <p>Each block packs its own slices of A and B, so a tm x tn grid packs A tn times and B tm times; the grid is
 * chosen to keep that duplicate packing small ({@code tn*m + tm*n} least) while giving every thread a block of at
 * least {@link #MIN_BLOCK} rows and columns (or the whole dimension when it is smaller).
 */
final class ParallelGemm {
    /** Below this many multiply-adds a product runs as one call: dispatch would cost more than it saves. */
    static final long SERIAL_MACS = 1L << 21;
    static final int MIN_BLOCK = 32;
    /** Block edges fall on multiples of this, the widest OpenBLAS micro-kernel edge, so blocks stay whole panels. */
    static final int EDGE = 16;

    /** Work done on a finished block of C while it is still in cache, such as adding a bias. */
    @FunctionalInterface
    interface Epilogue {
        void apply(int rowFrom, int rowTo, int colFrom, int colTo);
    }

    private ParallelGemm() {}

    /** Offsets are in floats from the start of each segment; the caller has checked all bounds. */
    static void sgemm(WorkerPool pool, boolean transA, boolean transB, int m, int n, int k, float alpha,
                      MemorySegment a, long aOffset, int lda, MemorySegment b, long bOffset, int ldb,
                      float beta, MemorySegment c, long cOffset, int ldc, Epilogue epilogue) {
        if (m == 0 || n == 0) return;
        if (k > 0 && Gemv.applies(transA, transB, m, alpha, beta)) {
            Gemv.run(pool, m, n, k, a, aOffset, lda, b, bOffset, ldb, c, cOffset, ldc, epilogue);
            return;
        }
        forBlocks(pool, m, n, k, (r0, r1, c0, c1) -> {
            long aStart = aOffset + (transA ? r0 : (long) r0 * lda);
            long bStart = bOffset + (transB ? (long) c0 * ldb : c0);
            long cStart = cOffset + (long) r0 * ldc + c0;
            OpenBlas.sgemm(transA, transB, r1 - r0, c1 - c0, k, alpha,
                    a.asSlice(aStart * Float.BYTES), lda, b.asSlice(bStart * Float.BYTES), ldb,
                    beta, c.asSlice(cStart * Float.BYTES), ldc);
        }, epilogue);
    }

    /** Rows {@code [j0, j0 + cols)} of a narrow [n, k] weight matrix W, widened to a row-major [cols, k] float32 block. */
    @FunctionalInterface
    interface Widener {
        void widen(int j0, int cols, MemorySegment wide);
    }

    /** Columns of C (rows of W) widened at a time by one task: 256 x k floats stay in cache with the A block. */
    private static final int WIDE_CHUNK = 256;

    /**
     * {@code C = alpha A · Wᵀ + beta C} for a W that OpenBLAS cannot read (bfloat16, float16, Q8_0): each block of C
     * widens its rows of W a chunk at a time into a float32 buffer and multiplies that. Offsets are in floats.
     */
    static void sgemmWidened(WorkerPool pool, int m, int n, int k, float alpha, MemorySegment a, long aOffset, int lda,
                             Widener w, float beta, MemorySegment c, long cOffset, int ldc, Epilogue epilogue) {
        forBlocks(pool, m, n, k, (r0, r1, c0, c1) -> {
            MemorySegment wide = wideBuffer((long) Math.min(WIDE_CHUNK, c1 - c0) * Math.max(k, 1) * Float.BYTES);
            for (int j0 = c0; j0 < c1; j0 += WIDE_CHUNK) {
                int cols = Math.min(WIDE_CHUNK, c1 - j0);
                w.widen(j0, cols, wide);
                OpenBlas.sgemm(false, true, r1 - r0, cols, k, alpha, a.asSlice((aOffset + (long) r0 * lda) * Float.BYTES),
                        lda, wide, Math.max(k, 1), beta, c.asSlice((cOffset + (long) r0 * ldc + j0) * Float.BYTES), ldc);
            }
        }, epilogue);
    }

    /** Each worker's widening buffer, kept between calls (grown when a wider matrix needs more). */
    private static final ThreadLocal<MemorySegment[]> WIDE = ThreadLocal.withInitial(() -> new MemorySegment[1]);

    private static MemorySegment wideBuffer(long bytes) {
        MemorySegment[] held = WIDE.get();
        if (held[0] == null || held[0].byteSize() < bytes) held[0] = java.lang.foreign.Arena.ofAuto().allocate(bytes, 64);
        return held[0];
    }

    /** Rows {@code [r0, r1)} by columns {@code [c0, c1)} of C. */
    @FunctionalInterface
    interface Block {
        void run(int r0, int r1, int c0, int c1);
    }

    /**
     * C cut into the {@link #grid} of blocks, one product per block on the pool, the epilogue on each finished block.
     * Shared by the float32 and the narrow-weight products.
     */
    static void forBlocks(WorkerPool pool, int m, int n, int k, Block kernel, Epilogue epilogue) {
        int[] grid = grid(pool.threads(), m, n, (long) m * n * k);
        int tm = grid[0], tn = grid[1];
        int rowStep = roundUp(ceilDiv(m, tm), EDGE), colStep = roundUp(ceilDiv(n, tn), EDGE);
        int rowBlocks = ceilDiv(m, rowStep), colBlocks = ceilDiv(n, colStep);
        pool.run(rowBlocks * colBlocks, block -> {
            int r0 = (block / colBlocks) * rowStep, r1 = Math.min(m, r0 + rowStep);
            int c0 = (block % colBlocks) * colStep, c1 = Math.min(n, c0 + colStep);
            kernel.run(r0, r1, c0, c1);
            if (epilogue != null) epilogue.apply(r0, r1, c0, c1);
        });
    }

    /** {tm, tn}: how many blocks to cut the rows and the columns of C into. */
    static int[] grid(int threads, int m, int n, long macs) {
        if (threads <= 1 || macs < SERIAL_MACS) return new int[]{1, 1};
        int maxTm = Math.max(1, m / MIN_BLOCK), maxTn = Math.max(1, n / MIN_BLOCK);
        for (int parts = threads; parts > 1; parts--) {
            int bestTm = 0;
            long bestCost = Long.MAX_VALUE;
            for (int tm = 1; tm <= parts; tm++) {
                if (parts % tm != 0) continue;
                int tn = parts / tm;
                if (tm > maxTm || tn > maxTn) continue;
                long cost = (long) tn * m + (long) tm * n;
                if (cost < bestCost) {
                    bestCost = cost;
                    bestTm = tm;
                }
            }
            if (bestTm > 0) return new int[]{bestTm, parts / bestTm};
        }
        return new int[]{1, 1};
    }

    static int ceilDiv(int a, int b) {
        return (int) (((long) a + b - 1) / b);
    }

    /** Rounds up to a multiple, but never past {@code a}'s own range (the last block is the short one). */
    static int roundUp(int a, int multiple) {
        return (int) Math.min(Integer.MAX_VALUE, (long) ceilDiv(a, multiple) * multiple);
    }
}
