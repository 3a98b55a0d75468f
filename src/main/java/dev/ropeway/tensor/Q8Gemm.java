package dev.ropeway.tensor;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/**
 * {@code C = alpha A · Wᵀ + beta C} with W a Q8_0 matrix ({@link CpuQ8Tensor}, row-major [n, k], rows starting on a
 * block boundary and k a multiple of 32). A few rows of A (a decode step) read W directly: each weight vector is its
 * int8 values converted to float32 and multiplied by the block's scale, exactly the dequantised value, then used as
 * {@link Gemv} uses a float32 one, so the sums are those of the float32 product of the dequantised weights, in the same
 * order; a quarter of the bytes. More rows dequantise W in chunks of columns into a float32 buffer for OpenBLAS.
 */
final class Q8Gemm {
    private static final VectorSpecies<Float> F = VectorMath.F;
    private static final int LANES = VectorMath.LANES;
    /** Bytes loaded per float vector: at least LANES of them (the smallest byte vector is 8 bytes). */
    private static final VectorSpecies<Byte> B = VectorSpecies.of(byte.class, VectorShape.forBitSize(Math.max(64, F.vectorBitSize() / 4)));
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    private static final int BLOCK = Q8Blocks.BLOCK;

    private Q8Gemm() {}

    /** True when W's rows of {@code ldw} values from element {@code wOffset} start on block boundaries. */
    static boolean aligned(long wOffset, int ldw) {
        return wOffset % BLOCK == 0 && ldw % BLOCK == 0;
    }

    /** Offsets and leading dimensions in elements; W must be {@link #aligned} and k a multiple of 32. */
    static void run(WorkerPool pool, int m, int n, int k, float alpha, MemorySegment a, long aOffset, int lda,
                    CpuQ8Tensor w, long wOffset, int ldw, float beta, MemorySegment c, long cOffset, int ldc,
                    ParallelGemm.Epilogue epilogue) {
        if (m == 0 || n == 0) return;
        if (!aligned(wOffset, ldw) || k % BLOCK != 0)
            throw new IllegalArgumentException("Q8_0 weights need rows on block boundaries and k a multiple of " + BLOCK
                    + " (offset " + wOffset + ", ld " + ldw + ", k " + k + ")");
        MemorySegment q = w.quants(), s = w.scales();
        if (k > 0 && Gemv.applies(false, true, m, alpha, beta)) {
            Gemv.ColumnBlock kernel;
            if (m == 2) {
                long x1 = aOffset + lda, y1 = cOffset + ldc;
                kernel = (c0, c1) -> columns2(c0, c1, k, a, aOffset, x1, q, s, wOffset, ldw, c, cOffset, y1);
            } else if (m > 2) {
                long[] x = Gemv.fourRows(aOffset, lda, m), y = Gemv.fourRows(cOffset, ldc, m);
                kernel = (c0, c1) -> columns4(c0, c1, k, a, x[0], x[1], x[2], x[3], q, s, wOffset, ldw, c, y[0], y[1], y[2], y[3]);
            }
            else kernel = (c0, c1) -> columns1(c0, c1, k, a, aOffset, q, s, wOffset, ldw, c, cOffset);
            Gemv.forColumns(pool, m, n, k, kernel, epilogue);
            return;
        }
        ParallelGemm.sgemmWidened(pool, m, n, k, alpha, a, aOffset, lda, (j0, cols, wide) -> {
            for (int j = 0; j < cols; j++)
                dequantize(q, s, wOffset + (long) (j0 + j) * ldw, wide, (long) j * k * Float.BYTES, k);
        }, beta, c, cOffset, ldc, epilogue);
    }

    /** Elements {@code [from, from + count)} of a Q8_0 tensor's values as float32 from byte {@code to} of {@code dst}. */
    static void dequantize(MemorySegment q, MemorySegment s, long from, MemorySegment dst, long to, long count) {
        long e = from, end = from + count;
        while (e < end) {
            long block = e / BLOCK, blockEnd = Math.min(end, (block + 1) * BLOCK);
            float d = s.getAtIndex(JAVA_FLOAT, block);
            long out = to + (e - from) * Float.BYTES;
            if (blockEnd - e == BLOCK && BLOCK % LANES == 0) {
                for (int v = 0; v < BLOCK; v += LANES)
                    weights(q, e + v, d).intoMemorySegment(dst, out + v * 4L, NATIVE);
            } else {
                for (long i = e; i < blockEnd; i++) dst.set(JAVA_FLOAT, out + (i - e) * Float.BYTES, q.get(JAVA_BYTE, i) * d);
            }
            e = blockEnd;
        }
    }

    /** LANES weights from element {@code at}: their int8 values as float32, times the block's scale (exact). */
    private static FloatVector weights(MemorySegment q, long at, float d) {
        return ((FloatVector) ByteVector.fromMemorySegment(B, q, at, NATIVE).convertShape(VectorOperators.B2F, F, 0)).mul(d);
    }

    /** One row of A (element offset {@code x0}), four columns at a time: {@link Gemv}'s one-row kernel on dequantised W. */
    private static void columns1(int c0, int c1, int k, MemorySegment a, long x0, MemorySegment q, MemorySegment s,
                                 long wOffset, int ldw, MemorySegment c, long y0) {
        float[] lanes = new float[LANES];
        long seen = 0;
        int lines = ReadAhead.count(1, 4L * ldw * DType.Q8_0.blockBytes() / BLOCK);
        long aRow = x0 * 4;
        int j = c0;
        for (; j + 4 <= c1; j += 4) {
            long w0 = wOffset + (long) j * ldw, b0 = w0 / BLOCK, blocks = ldw / BLOCK;
            FloatVector s0 = FloatVector.zero(F), s1 = s0, s2 = s0, s3 = s0;
            long qAhead = ReadAhead.from(q, w0, w0 + 4L * ldw, 4L * ldw);
            long sAhead = ReadAhead.from(s, b0 * Float.BYTES, (b0 + 4 * blocks) * Float.BYTES, 4 * blocks * Float.BYTES);
            for (int i0 = 0; i0 < k; i0 += BLOCK) {
                long b = b0 + i0 / BLOCK, p = qAhead + 4L * i0;
                seen += ReadAhead.lines(q, p, 2 * lines) + ReadAhead.lines(s, sAhead + 4L * (b - b0) * Float.BYTES, lines);
                float d0 = s.getAtIndex(JAVA_FLOAT, b), d1 = s.getAtIndex(JAVA_FLOAT, b + blocks);
                float d2 = s.getAtIndex(JAVA_FLOAT, b + 2 * blocks), d3 = s.getAtIndex(JAVA_FLOAT, b + 3 * blocks);
                for (int i = i0; i < i0 + BLOCK; i += LANES) {
                    FloatVector x = FloatVector.fromMemorySegment(F, a, aRow + i * 4L, NATIVE);
                    s0 = weights(q, w0 + i, d0).fma(x, s0);
                    s1 = weights(q, w0 + ldw + i, d1).fma(x, s1);
                    s2 = weights(q, w0 + 2L * ldw + i, d2).fma(x, s2);
                    s3 = weights(q, w0 + 3L * ldw + i, d3).fma(x, s3);
                }
            }
            long out = (y0 + j) * Float.BYTES;
            c.set(JAVA_FLOAT, out, Gemv.sum(s0, lanes));
            c.set(JAVA_FLOAT, out + 4, Gemv.sum(s1, lanes));
            c.set(JAVA_FLOAT, out + 8, Gemv.sum(s2, lanes));
            c.set(JAVA_FLOAT, out + 12, Gemv.sum(s3, lanes));
        }
        for (; j < c1; j++) {
            long w0 = wOffset + (long) j * ldw, b0 = w0 / BLOCK;
            FloatVector acc = FloatVector.zero(F);
            for (int i0 = 0; i0 < k; i0 += BLOCK) {
                float d = s.getAtIndex(JAVA_FLOAT, b0 + i0 / BLOCK);
                for (int i = i0; i < i0 + BLOCK; i += LANES)
                    acc = weights(q, w0 + i, d).fma(FloatVector.fromMemorySegment(F, a, aRow + i * 4L, NATIVE), acc);
            }
            c.set(JAVA_FLOAT, (y0 + j) * Float.BYTES, Gemv.sum(acc, lanes));
        }
        ReadAhead.keep(seen);
    }

    /**
     * Four rows of A (a repeated row is computed twice), two columns at a time, each weight vector dequantised once for
     * the four; per row and column the one-row kernel's sums, operation for operation.
     */
    private static void columns4(int c0, int c1, int k, MemorySegment a, long x0, long x1, long x2, long x3,
                                 MemorySegment q, MemorySegment s, long wOffset, int ldw,
                                 MemorySegment c, long y0, long y1, long y2, long y3) {
        float[] lanes = new float[LANES];
        long seen = 0;
        int lines = ReadAhead.count(1, 2L * ldw * DType.Q8_0.blockBytes() / BLOCK);
        long a0 = x0 * 4, a1 = x1 * 4, a2 = x2 * 4, a3 = x3 * 4;
        int j = c0;
        for (; j + 2 <= c1; j += 2) {
            long w0 = wOffset + (long) j * ldw, b0 = w0 / BLOCK, blocks = ldw / BLOCK;
            FloatVector s00 = FloatVector.zero(F), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;
            long qAhead = ReadAhead.from(q, w0, w0 + 2L * ldw, 2L * ldw);
            long sAhead = ReadAhead.from(s, b0 * Float.BYTES, (b0 + 2 * blocks) * Float.BYTES, 2 * blocks * Float.BYTES);
            for (int i0 = 0; i0 < k; i0 += BLOCK) {
                seen += ReadAhead.lines(q, qAhead + 2L * i0, lines) + ReadAhead.lines(s, sAhead + 2L * (i0 / BLOCK) * Float.BYTES, lines);
                float d0 = s.getAtIndex(JAVA_FLOAT, b0 + i0 / BLOCK), d1 = s.getAtIndex(JAVA_FLOAT, b0 + blocks + i0 / BLOCK);
                for (int i = i0; i < i0 + BLOCK; i += LANES) {
                    long o = i * 4L;
                    FloatVector v0 = weights(q, w0 + i, d0), v1 = weights(q, w0 + ldw + i, d1);
                    FloatVector x = FloatVector.fromMemorySegment(F, a, a0 + o, NATIVE);
                    s00 = v0.fma(x, s00);
                    s01 = v1.fma(x, s01);
                    x = FloatVector.fromMemorySegment(F, a, a1 + o, NATIVE);
                    s10 = v0.fma(x, s10);
                    s11 = v1.fma(x, s11);
                    x = FloatVector.fromMemorySegment(F, a, a2 + o, NATIVE);
                    s20 = v0.fma(x, s20);
                    s21 = v1.fma(x, s21);
                    x = FloatVector.fromMemorySegment(F, a, a3 + o, NATIVE);
                    s30 = v0.fma(x, s30);
                    s31 = v1.fma(x, s31);
                }
            }
            Gemv.storePair(Gemv.sum(s00, lanes), Gemv.sum(s01, lanes), c, (y0 + j) * 4);
            Gemv.storePair(Gemv.sum(s10, lanes), Gemv.sum(s11, lanes), c, (y1 + j) * 4);
            Gemv.storePair(Gemv.sum(s20, lanes), Gemv.sum(s21, lanes), c, (y2 + j) * 4);
            Gemv.storePair(Gemv.sum(s30, lanes), Gemv.sum(s31, lanes), c, (y3 + j) * 4);
        }
        ReadAhead.keep(seen);
        if (j < c1) for (long[] row : new long[][] {{x0, y0}, {x1, y1}, {x2, y2}, {x3, y3}})
            columns1(j, c1, k, a, row[0], q, s, wOffset, ldw, c, row[1]);
    }

    /**
     * Two rows of A (element offsets of A's and C's rows), four columns at a time: {@link #columns4} with half the rows,
     * so that two rows (a batch of two, two serving slots) do not pay for four; per row and column the one-row kernel's
     * sums, operation for operation.
     */
    private static void columns2(int c0, int c1, int k, MemorySegment a, long x0, long x1, MemorySegment q, MemorySegment s,
                                 long wOffset, int ldw, MemorySegment c, long y0, long y1) {
        float[] lanes = new float[LANES];
        long seen = 0;
        int lines = ReadAhead.count(1, 4L * ldw * DType.Q8_0.blockBytes() / BLOCK);
        long a0 = x0 * 4, a1 = x1 * 4;
        int j = c0;
        for (; j + 4 <= c1; j += 4) {
            long w0 = wOffset + (long) j * ldw, b0 = w0 / BLOCK, blocks = ldw / BLOCK;
            FloatVector s00 = FloatVector.zero(F), s01 = s00, s02 = s00, s03 = s00, s10 = s00, s11 = s00, s12 = s00, s13 = s00;
            long qAhead = ReadAhead.from(q, w0, w0 + 4L * ldw, 4L * ldw);
            long sAhead = ReadAhead.from(s, b0 * Float.BYTES, (b0 + 4 * blocks) * Float.BYTES, 4 * blocks * Float.BYTES);
            for (int i0 = 0; i0 < k; i0 += BLOCK) {
                long b = b0 + i0 / BLOCK, p = qAhead + 4L * i0;
                seen += ReadAhead.lines(q, p, 2 * lines) + ReadAhead.lines(s, sAhead + 4L * (b - b0) * Float.BYTES, lines);
                float d0 = s.getAtIndex(JAVA_FLOAT, b), d1 = s.getAtIndex(JAVA_FLOAT, b + blocks);
                float d2 = s.getAtIndex(JAVA_FLOAT, b + 2 * blocks), d3 = s.getAtIndex(JAVA_FLOAT, b + 3 * blocks);
                for (int i = i0; i < i0 + BLOCK; i += LANES) {
                    long o = i * 4L;
                    FloatVector v0 = weights(q, w0 + i, d0), v1 = weights(q, w0 + ldw + i, d1);
                    FloatVector v2 = weights(q, w0 + 2L * ldw + i, d2), v3 = weights(q, w0 + 3L * ldw + i, d3);
                    FloatVector x = FloatVector.fromMemorySegment(F, a, a0 + o, NATIVE);
                    s00 = v0.fma(x, s00);
                    s01 = v1.fma(x, s01);
                    s02 = v2.fma(x, s02);
                    s03 = v3.fma(x, s03);
                    x = FloatVector.fromMemorySegment(F, a, a1 + o, NATIVE);
                    s10 = v0.fma(x, s10);
                    s11 = v1.fma(x, s11);
                    s12 = v2.fma(x, s12);
                    s13 = v3.fma(x, s13);
                }
            }
            Gemv.storePair(Gemv.sum(s00, lanes), Gemv.sum(s01, lanes), c, (y0 + j) * 4);
            Gemv.storePair(Gemv.sum(s02, lanes), Gemv.sum(s03, lanes), c, (y0 + j + 2) * 4);
            Gemv.storePair(Gemv.sum(s10, lanes), Gemv.sum(s11, lanes), c, (y1 + j) * 4);
            Gemv.storePair(Gemv.sum(s12, lanes), Gemv.sum(s13, lanes), c, (y1 + j + 2) * 4);
        }
        ReadAhead.keep(seen);
        if (j < c1) for (long[] row : new long[][] {{x0, y0}, {x1, y1}})
            columns1(j, c1, k, a, row[0], q, s, wOffset, ldw, c, row[1]);
    }

}
