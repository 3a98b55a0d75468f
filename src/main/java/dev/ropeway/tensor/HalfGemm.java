package dev.ropeway.tensor;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/**
 * {@code C = alpha A · Wᵀ + beta C} with W a bfloat16 or float16 matrix ({@link CpuBf16Tensor}, {@link CpuF16Tensor};
 * row-major [n, k]). A few rows of A (a decode step) read W directly, widening it in registers: half the bytes of the
 * float32 product for the same sums in the same order. More rows widen W in chunks of columns into a float32 buffer for
 * OpenBLAS. Widening is exact, so both give what the float32 product of the widened weights gives.
 *
 * <p>A finite float16 widens in three vector steps: its bits moved to a float32's exponent and mantissa fields
 * (sign in place), which reads as the value times 2^-112, then a multiplication by 2^112, exact for normal and
 * subnormal float16 alike. Infinities and NaNs would come out finite, so float16 matrices holding any stay float32
 * ({@link CpuBackend#uploadWeights}).
 */
final class HalfGemm {
    private static final VectorSpecies<Float> F = VectorMath.F;
    private static final int LANES = VectorMath.LANES;
    private static final VectorSpecies<Short> S = VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    private static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, F.vectorShape());
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT;

    private HalfGemm() {}

    /**
     * Offsets and leading dimensions in elements: floats for A and C, 16-bit values for W, which holds float16 values
     * (all finite) when {@code f16} is set and bfloat16 ones otherwise.
     */
    static void run(WorkerPool pool, int m, int n, int k, float alpha, MemorySegment a, long aOffset, int lda,
                    MemorySegment w, long wOffset, int ldw, boolean f16, float beta, MemorySegment c, long cOffset, int ldc,
                    ParallelGemm.Epilogue epilogue) {
        if (m == 0 || n == 0) return;
        if (k > 0 && Gemv.applies(false, true, m, alpha, beta)) {
            Gemv.ColumnBlock kernel;
            if (m > 1) {
                // Rows share each widened weight vector, four at a time (fewer repeat the last).
                long[] x = Gemv.fourRows(aOffset, lda, m), y = Gemv.fourRows(cOffset, ldc, m);
                float[] scaled = f16 ? scaledRows(a, x, k) : null;
                if (scaled != null)
                    kernel = (c0, c1) -> columns4F16Lines(c0, c1, k, scaled, a, x[0], x[1], x[2], x[3], w, wOffset, ldw, c, y[0], y[1], y[2], y[3]);
                else kernel = f16 ? (c0, c1) -> columns4F16(c0, c1, k, a, x[0], x[1], x[2], x[3], w, wOffset, ldw, c, y[0], y[1], y[2], y[3])
                        : (c0, c1) -> columns4(c0, c1, k, a, x[0], x[1], x[2], x[3], w, wOffset, ldw, c, y[0], y[1], y[2], y[3]);
            }
            else if (f16) {
                float[] scaled = scaledRow(a, aOffset, k);
                kernel = scaled != null ? (c0, c1) -> columnsF16Lines(c0, c1, k, scaled, a, aOffset, w, wOffset, ldw, c, cOffset)
                        : (c0, c1) -> columnsF16(c0, c1, k, a, aOffset, w, wOffset, ldw, c, cOffset);
            }
            else kernel = (c0, c1) -> columns(c0, c1, k, a, aOffset, w, wOffset, ldw, c, cOffset);
            Gemv.forColumns(pool, m, n, k, kernel, epilogue);
            return;
        }
        ParallelGemm.sgemmWidened(pool, m, n, k, alpha, a, aOffset, lda, (j0, cols, wide) -> {
            for (int j = 0; j < cols; j++) {
                long from = (wOffset + (long) (j0 + j) * ldw) * 2, to = (long) j * k * Float.BYTES;
                if (f16) widenF16(w, from, wide, to, k);
                else widen(w, from, wide, to, k);
            }
        }, beta, c, cOffset, ldc, epilogue);
    }

    /**
     * Four rows of A (element offsets of A's and C's rows; a repeated row is computed twice), two columns at a time:
     * each weight vector is widened once for the four. Per row and column the sums of the one-row kernels, operation
     * for operation ({@link Gemv}'s four-row kernel with W widened in registers). W is bfloat16 here and float16 in its
     * twin {@link #columns4F16}: one kernel for both, branching on the type for each vector, was compiled for the type
     * that ran first, and the other one then recompiled it with both branches, past the JIT's inlining budget, which
     * left the widening helpers out of line and boxed their vectors (measured: bfloat16 at 2 rows 20 times slower).
     */
    private static void columns4(int c0, int c1, int k, MemorySegment a, long x0, long x1, long x2, long x3,
                                 MemorySegment w, long wOffset, int ldw, MemorySegment c, long y0, long y1, long y2, long y3) {
        float[] lanes = new float[LANES];
        long seen = 0;
        int bound = F.loopBound(k);
        long a0 = x0 * 4, a1 = x1 * 4, a2 = x2 * 4, a3 = x3 * 4, step = (long) ldw * 2;
        int lines = ReadAhead.count(AHEAD2, 2L * step);
        int j = c0;
        for (; j + 2 <= c1; j += 2) {
            long b0 = (wOffset + (long) j * ldw) * 2;
            FloatVector s00 = FloatVector.zero(F), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;
            int i = 0;
            long ahead = ReadAhead.from(w, b0, b0 + 2 * step, 2L * step);
            for (; i < bound; i += LANES) {
                long o = i * 4L;
                seen += ReadAhead.lines(w, ahead + o, lines);
                FloatVector w0 = wide(w, b0 + i * 2L);
                FloatVector w1 = wide(w, b0 + step + i * 2L);
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
            store2(false, Gemv.sum(s00, lanes), Gemv.sum(s01, lanes), i, k, a, a0, w, b0, step, c, (y0 + j) * 4);
            store2(false, Gemv.sum(s10, lanes), Gemv.sum(s11, lanes), i, k, a, a1, w, b0, step, c, (y1 + j) * 4);
            store2(false, Gemv.sum(s20, lanes), Gemv.sum(s21, lanes), i, k, a, a2, w, b0, step, c, (y2 + j) * 4);
            store2(false, Gemv.sum(s30, lanes), Gemv.sum(s31, lanes), i, k, a, a3, w, b0, step, c, (y3 + j) * 4);
        }
        ReadAhead.keep(seen);
        if (j < c1) {
            for (long[] row : new long[][] {{x0, y0}, {x1, y1}, {x2, y2}, {x3, y3}})
                columns(j, c1, k, a, row[0], w, wOffset, ldw, c, row[1]);
        }
    }

    /** {@link #columns4} with W float16 (all finite). */
    private static void columns4F16(int c0, int c1, int k, MemorySegment a, long x0, long x1, long x2, long x3,
                                    MemorySegment w, long wOffset, int ldw, MemorySegment c, long y0, long y1, long y2, long y3) {
        float[] lanes = new float[LANES];
        long seen = 0;
        int bound = F.loopBound(k);
        long a0 = x0 * 4, a1 = x1 * 4, a2 = x2 * 4, a3 = x3 * 4, step = (long) ldw * 2;
        int lines = ReadAhead.count(AHEAD2, 2L * step);
        int j = c0;
        for (; j + 2 <= c1; j += 2) {
            long b0 = (wOffset + (long) j * ldw) * 2;
            FloatVector s00 = FloatVector.zero(F), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;
            int i = 0;
            long ahead = ReadAhead.from(w, b0, b0 + 2 * step, 2L * step);
            for (; i < bound; i += LANES) {
                long o = i * 4L;
                seen += ReadAhead.lines(w, ahead + o, lines);
                FloatVector w0 = wideF16(w, b0 + i * 2L);
                FloatVector w1 = wideF16(w, b0 + step + i * 2L);
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
            store2(true, Gemv.sum(s00, lanes), Gemv.sum(s01, lanes), i, k, a, a0, w, b0, step, c, (y0 + j) * 4);
            store2(true, Gemv.sum(s10, lanes), Gemv.sum(s11, lanes), i, k, a, a1, w, b0, step, c, (y1 + j) * 4);
            store2(true, Gemv.sum(s20, lanes), Gemv.sum(s21, lanes), i, k, a, a2, w, b0, step, c, (y2 + j) * 4);
            store2(true, Gemv.sum(s30, lanes), Gemv.sum(s31, lanes), i, k, a, a3, w, b0, step, c, (y3 + j) * 4);
        }
        ReadAhead.keep(seen);
        if (j < c1) {
            for (long[] row : new long[][] {{x0, y0}, {x1, y1}, {x2, y2}, {x3, y3}})
                columnsF16(j, c1, k, a, row[0], w, wOffset, ldw, c, row[1]);
        }
    }

    /** One row's two dot products from their lanes' sums: the tail of k added in order (from element i), then stored. */
    private static void store2(boolean f16, float d0, float d1, int i, int k, MemorySegment a, long aRow, MemorySegment w,
                               long b0, long step, MemorySegment c, long out) {
        for (; i < k; i++) {
            float x = a.get(JAVA_FLOAT, aRow + i * 4L);
            d0 += x * (f16 ? valueF16(w, b0 + i * 2L) : value(w, b0 + i * 2L));
            d1 += x * (f16 ? valueF16(w, b0 + step + i * 2L) : value(w, b0 + step + i * 2L));
        }
        c.set(JAVA_FLOAT, out, d0);
        c.set(JAVA_FLOAT, out + 4, d1);
    }

    /** {@code count} bfloat16 values at byte {@code from} of {@code src} as float32 at byte {@code to} of {@code dst}. */
    static void widen(MemorySegment src, long from, MemorySegment dst, long to, int count) {
        int i = 0;
        for (int bound = S.loopBound(count); i < bound; i += S.length())
            wide(src, from + 2L * i).intoMemorySegment(dst, to + 4L * i, NATIVE);
        for (; i < count; i++) dst.set(JAVA_FLOAT, to + 4L * i, Float.intBitsToFloat(src.get(SHORT, from + 2L * i) << 16));
    }

    /** {@code count} finite float16 values at byte {@code from} of {@code src} as float32 at byte {@code to} of {@code dst}. */
    static void widenF16(MemorySegment src, long from, MemorySegment dst, long to, int count) {
        int i = 0;
        for (int bound = S.loopBound(count); i < bound; i += S.length())
            wideF16(src, from + 2L * i).intoMemorySegment(dst, to + 4L * i, NATIVE);
        for (; i < count; i++) dst.set(JAVA_FLOAT, to + 4L * i, Float.float16ToFloat(src.get(SHORT, from + 2L * i)));
    }

    /** {@code count} floats from byte {@code from} of {@code src} as bfloat16 values from byte {@code to} of {@code dst}. */
    static void narrow(MemorySegment src, long from, MemorySegment dst, long to, long count) {
        for (long i = 0; i < count; i++) dst.set(SHORT, to + 2 * i, Bfloat16.round(src.get(JAVA_FLOAT, from + 4 * i)));
    }

    /*
     * The helpers below return vectors, so each stays within the JIT's always-inline size (35 bytes of bytecode): one
     * left out of line would box its result on every call.
     */

    /** LANES bfloat16 values at byte {@code offset}, widened: the bits moved to the top half of each float. */
    private static FloatVector wide(MemorySegment src, long offset) {
        return ints(ShortVector.fromMemorySegment(S, src, offset, NATIVE)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    /** The 16-bit values, sign-extended to ints. */
    private static IntVector ints(ShortVector s) {
        return (IntVector) s.convertShape(VectorOperators.S2I, I, 0);
    }

    /**
     * LANES finite float16 values at byte {@code offset}, widened. Each is sign-extended to an int and shifted left by
     * 13: exponent and mantissa land in the float32 fields (bits 13 to 27), the sign in bit 31 (the mask clears the
     * copies between). Read as a float32 that is the value times 2^-112, exactly; the product with 2^112 is exact too.
     */
    private static FloatVector wideF16(MemorySegment src, long offset) {
        return scaledF16(ints(ShortVector.fromMemorySegment(S, src, offset, NATIVE)).lanewise(VectorOperators.LSHL, 13));
    }

    /** Shifted float16 bits with the copies of the sign masked off, read as float32 and scaled by 2^112. */
    private static FloatVector scaledF16(IntVector shifted) {
        return shifted.and(F16_BITS).reinterpretAsFloats().mul(F16_SCALE);
    }

    /**
     * True when none of the float16 values {@code [from, to)} of {@code src} is an infinity or a NaN (all five exponent
     * bits set: adding 0x0400 to the exponent bits then carries into bit 15). A plain loop over a heap block, which the
     * JIT compiles and vectorises early: this runs once per matrix as a model loads.
     */
    static boolean finiteF16(MemorySegment src, long from, long to) {
        short[] block = new short[8192];
        int special = 0;
        for (long i = from; i < to; i += block.length) {
            int n = (int) Math.min(block.length, to - i);
            MemorySegment.copy(src, SHORT, 2 * i, block, 0, n);
            for (int j = 0; j < n; j++) special |= ((block[j] & 0x7C00) + 0x0400) & 0x8000;
            if (special != 0) return false;
        }
        return true;
    }

    /** Cache lines read ahead per step of the kernels taking four rows of W at a time, and two ({@link ReadAhead}). */
    private static final int AHEAD4 = ReadAhead.perStep(4 * LANES * 2), AHEAD2 = ReadAhead.perStep(2 * LANES * 2);

    /** The bits a shifted, sign-extended float16 keeps: sign, 5 exponent bits, 10 mantissa bits. */
    private static final int F16_BITS = 0x8FFFE000;
    /** 2^(127 - 15): the gap between the float32 and float16 exponent biases. */
    private static final float F16_SCALE = 0x1p112f;

    /** The decode kernel of {@link Gemv}, with W read as bfloat16: same lanes, same order of sums. */
    private static void columns(int c0, int c1, int k, MemorySegment a, long x0,
                                MemorySegment w, long wOffset, int ldw, MemorySegment c, long y0) {
        float[] lanes = new float[LANES];
        long seen = 0;
        int bound = F.loopBound(k), lines = ReadAhead.count(AHEAD4, 8L * ldw);
        long aRow = x0 * Float.BYTES;
        int j = c0;
        for (; j + 4 <= c1; j += 4) {
            long w0 = (wOffset + (long) j * ldw) * 2, step = (long) ldw * 2;
            FloatVector s0 = FloatVector.zero(F), s1 = FloatVector.zero(F), s2 = FloatVector.zero(F), s3 = FloatVector.zero(F);
            int i = 0;
            long ahead = ReadAhead.from(w, w0, w0 + 4 * step, 4L * step);
            for (; i < bound; i += LANES) {
                seen += ReadAhead.lines(w, ahead + i * 8L, lines);
                FloatVector x = FloatVector.fromMemorySegment(F, a, aRow + i * 4L, NATIVE);
                s0 = wide(w, w0 + i * 2L).fma(x, s0);
                s1 = wide(w, w0 + step + i * 2L).fma(x, s1);
                s2 = wide(w, w0 + 2 * step + i * 2L).fma(x, s2);
                s3 = wide(w, w0 + 3 * step + i * 2L).fma(x, s3);
            }
            float d0 = Gemv.sum(s0, lanes), d1 = Gemv.sum(s1, lanes), d2 = Gemv.sum(s2, lanes), d3 = Gemv.sum(s3, lanes);
            for (; i < k; i++) {
                float x = a.get(JAVA_FLOAT, aRow + i * 4L);
                d0 += x * value(w, w0 + i * 2L);
                d1 += x * value(w, w0 + step + i * 2L);
                d2 += x * value(w, w0 + 2 * step + i * 2L);
                d3 += x * value(w, w0 + 3 * step + i * 2L);
            }
            long out = (y0 + j) * Float.BYTES;
            c.set(JAVA_FLOAT, out, d0);
            c.set(JAVA_FLOAT, out + 4, d1);
            c.set(JAVA_FLOAT, out + 8, d2);
            c.set(JAVA_FLOAT, out + 12, d3);
        }
        for (; j < c1; j++) {
            long w0 = (wOffset + (long) j * ldw) * 2;
            FloatVector s = FloatVector.zero(F);
            int i = 0;
            for (; i < bound; i += LANES)
                s = wide(w, w0 + i * 2L).fma(FloatVector.fromMemorySegment(F, a, aRow + i * 4L, NATIVE), s);
            float d = Gemv.sum(s, lanes);
            for (; i < k; i++) d += a.get(JAVA_FLOAT, aRow + i * 4L) * value(w, w0 + i * 2L);
            c.set(JAVA_FLOAT, (y0 + j) * Float.BYTES, d);
        }
        ReadAhead.keep(seen);
    }

    /** Per calling thread, the buffer {@link #scaledRow} fills (a call's kernels finish before its thread calls again). */
    private static final ThreadLocal<float[]> SCALED = ThreadLocal.withInitial(() -> new float[0]);

    /**
     * The row of A at element {@code x0} times 2^112, for {@link #columnsF16Lines}, or null where that kernel does not
     * apply: k not a multiple of 32, or a value of 2^16 or more in magnitude (or not finite), whose product with 2^112
     * would overflow. Scaling by a power of two is exact, and so is the product of a widened weight that still carries
     * its 2^-112 with a value that carries 2^112: each fused multiply-add rounds the same exact product as before.
     */
    private static float[] scaledRow(MemorySegment a, long x0, int k) {
        return scaledRows(a, new long[] {x0}, k);
    }

    /**
     * {@link #scaledRow} for several rows of A (element offsets {@code x}), one after another in the array: row r from
     * element {@code r * k}; null where any row is not scaled.
     */
    private static float[] scaledRows(MemorySegment a, long[] x, int k) {
        if (k % (2 * LANES) != 0 || LANES != 16) return null;
        float[] rows = SCALED.get();
        if (rows.length < x.length * k) SCALED.set(rows = new float[x.length * k]);
        FloatVector largest = FloatVector.zero(F);
        for (int r = 0; r < x.length; r++) {
            MemorySegment.copy(a, JAVA_FLOAT, x[r] * Float.BYTES, rows, r * k, k);
            for (int i = r * k; i < (r + 1) * k; i += LANES) {
                FloatVector v = FloatVector.fromArray(F, rows, i);
                largest = largest.max(v.abs());
                v.mul(F16_SCALE).intoArray(rows, i);
            }
        }
        // A NaN carries through max (as Math.max) and compares false: a row holding one takes the other kernel, which
        // gives the NaNs the float32 product gives.
        return largest.reduceLanes(VectorOperators.MAX) < 0x1p16f ? rows : null;
    }

    /** Where {@link #columnsF16Lines} finds the values of a 32-value block in order from its evens and its odds. */
    private static final FloatVector FIRST16 = interleave(0), SECOND16 = interleave(LANES);

    private static FloatVector interleave(int first) {
        float[] index = new float[LANES];
        for (int l = 0; l < LANES; l++) {
            int e = first + l;
            index[l] = (e & 1) == 0 ? e / 2 : LANES + e / 2;
        }
        return FloatVector.fromArray(F, index, 0);
    }

    /** The even float16 values of 32 read as 16 ints, each times 2^-112 (the low half moved up, then as {@link #oddF16}). */
    private static FloatVector evenF16(IntVector pairs) {
        return pairs.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 3).and(F16_BITS).reinterpretAsFloats();
    }

    /**
     * The odd float16 values of 32 read as 16 ints, each times 2^-112: shifted right by 3, exponent and mantissa land
     * in the float32 fields, the sign stays in bit 31 and the mask clears its copies and the even value's bits.
     */
    private static FloatVector oddF16(IntVector pairs) {
        return pairs.lanewise(VectorOperators.ASHR, 3).and(F16_BITS).reinterpretAsFloats();
    }

    /**
     * {@link #columnsF16} for k a multiple of 32 with the row of A scaled by 2^112 ({@link #scaledRow}): each row of W
     * read 64 bytes (32 values, a cache line) at a time as 16 ints, its evens and odds widened by shifts and a mask
     * without the multiplication by 2^112, and put back in order by two two-vector selections; each accumulator then
     * sums the same 16 values per step as {@link #columnsF16}, in the same order, so the products are its bit for bit.
     * Measured on one core streaming [2048, 4096] float16 matrices: 0.094 ns per weight against 0.13 (whole cache
     * lines per load, and fewer operations per weight).
     */
    private static void columnsF16Lines(int c0, int c1, int k, float[] x, MemorySegment a, long x0,
                                        MemorySegment w, long wOffset, int ldw, MemorySegment c, long y0) {
        float[] lanes = new float[LANES];
        long seen = 0;
        int lines = ReadAhead.count(2 * AHEAD4, 8L * ldw);
        int j = c0;
        for (; j + 4 <= c1; j += 4) {
            long w0 = (wOffset + (long) j * ldw) * 2, step = (long) ldw * 2;
            FloatVector s0 = FloatVector.zero(F), s1 = s0, s2 = s0, s3 = s0;
            long ahead = ReadAhead.from(w, w0, w0 + 4 * step, 4L * step);
            for (int i = 0; i < k; i += 2 * LANES) {
                seen += ReadAhead.lines(w, ahead + i * 8L, lines);
                FloatVector lo = FloatVector.fromArray(F, x, i), hi = FloatVector.fromArray(F, x, i + LANES);
                IntVector p0 = IntVector.fromMemorySegment(I, w, w0 + i * 2L, NATIVE);
                IntVector p1 = IntVector.fromMemorySegment(I, w, w0 + step + i * 2L, NATIVE);
                IntVector p2 = IntVector.fromMemorySegment(I, w, w0 + 2 * step + i * 2L, NATIVE);
                IntVector p3 = IntVector.fromMemorySegment(I, w, w0 + 3 * step + i * 2L, NATIVE);
                FloatVector e0 = evenF16(p0), o0 = oddF16(p0), e1 = evenF16(p1), o1 = oddF16(p1);
                FloatVector e2 = evenF16(p2), o2 = oddF16(p2), e3 = evenF16(p3), o3 = oddF16(p3);
                s0 = FIRST16.selectFrom(e0, o0).fma(lo, s0);
                s1 = FIRST16.selectFrom(e1, o1).fma(lo, s1);
                s2 = FIRST16.selectFrom(e2, o2).fma(lo, s2);
                s3 = FIRST16.selectFrom(e3, o3).fma(lo, s3);
                s0 = SECOND16.selectFrom(e0, o0).fma(hi, s0);
                s1 = SECOND16.selectFrom(e1, o1).fma(hi, s1);
                s2 = SECOND16.selectFrom(e2, o2).fma(hi, s2);
                s3 = SECOND16.selectFrom(e3, o3).fma(hi, s3);
            }
            long out = (y0 + j) * Float.BYTES;
            c.set(JAVA_FLOAT, out, Gemv.sum(s0, lanes));
            c.set(JAVA_FLOAT, out + 4, Gemv.sum(s1, lanes));
            c.set(JAVA_FLOAT, out + 8, Gemv.sum(s2, lanes));
            c.set(JAVA_FLOAT, out + 12, Gemv.sum(s3, lanes));
        }
        ReadAhead.keep(seen);
        // The last columns (fewer than four) in the other kernel, which sums them the same way.
        if (j < c1) columnsF16(j, c1, k, a, x0, w, wOffset, ldw, c, y0);
    }

    /**
     * {@link #columns4F16} as {@link #columnsF16Lines} reads W: two rows of W a cache line (32 values) at a time, each
     * widened once for the four rows of A (scaled by 2^112, {@link #scaledRows}: row r from element {@code r * k} of
     * {@code xs}); the same sums in the same order, so the products are the float32 product's bit for bit.
     */
    private static void columns4F16Lines(int c0, int c1, int k, float[] xs, MemorySegment a, long x0, long x1, long x2,
                                         long x3, MemorySegment w, long wOffset, int ldw, MemorySegment c, long y0,
                                         long y1, long y2, long y3) {
        float[] lanes = new float[LANES];
        long seen = 0;
        long step = (long) ldw * 2;
        int lines = ReadAhead.count(2 * AHEAD2, 2L * step), r1 = k, r2 = 2 * k, r3 = 3 * k;
        int j = c0;
        for (; j + 2 <= c1; j += 2) {
            long b0 = (wOffset + (long) j * ldw) * 2;
            FloatVector s00 = FloatVector.zero(F), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;
            long ahead = ReadAhead.from(w, b0, b0 + 2 * step, 2L * step);
            for (int i = 0; i < k; i += 2 * LANES) {
                seen += ReadAhead.lines(w, ahead + i * 4L, lines);
                IntVector p0 = IntVector.fromMemorySegment(I, w, b0 + i * 2L, NATIVE);
                IntVector p1 = IntVector.fromMemorySegment(I, w, b0 + step + i * 2L, NATIVE);
                FloatVector e0 = evenF16(p0), o0 = oddF16(p0), e1 = evenF16(p1), o1 = oddF16(p1);
                FloatVector w0 = FIRST16.selectFrom(e0, o0), w1 = FIRST16.selectFrom(e1, o1);
                FloatVector x = FloatVector.fromArray(F, xs, i);
                s00 = w0.fma(x, s00);
                s01 = w1.fma(x, s01);
                x = FloatVector.fromArray(F, xs, r1 + i);
                s10 = w0.fma(x, s10);
                s11 = w1.fma(x, s11);
                x = FloatVector.fromArray(F, xs, r2 + i);
                s20 = w0.fma(x, s20);
                s21 = w1.fma(x, s21);
                x = FloatVector.fromArray(F, xs, r3 + i);
                s30 = w0.fma(x, s30);
                s31 = w1.fma(x, s31);
                w0 = SECOND16.selectFrom(e0, o0);
                w1 = SECOND16.selectFrom(e1, o1);
                x = FloatVector.fromArray(F, xs, i + LANES);
                s00 = w0.fma(x, s00);
                s01 = w1.fma(x, s01);
                x = FloatVector.fromArray(F, xs, r1 + i + LANES);
                s10 = w0.fma(x, s10);
                s11 = w1.fma(x, s11);
                x = FloatVector.fromArray(F, xs, r2 + i + LANES);
                s20 = w0.fma(x, s20);
                s21 = w1.fma(x, s21);
                x = FloatVector.fromArray(F, xs, r3 + i + LANES);
                s30 = w0.fma(x, s30);
                s31 = w1.fma(x, s31);
            }
            Gemv.storePair(Gemv.sum(s00, lanes), Gemv.sum(s01, lanes), c, (y0 + j) * 4);
            Gemv.storePair(Gemv.sum(s10, lanes), Gemv.sum(s11, lanes), c, (y1 + j) * 4);
            Gemv.storePair(Gemv.sum(s20, lanes), Gemv.sum(s21, lanes), c, (y2 + j) * 4);
            Gemv.storePair(Gemv.sum(s30, lanes), Gemv.sum(s31, lanes), c, (y3 + j) * 4);
        }
        ReadAhead.keep(seen);
        // The last column (if the block's count is odd) in the other kernel, which sums it the same way.
        if (j < c1) columns4F16(j, c1, k, a, x0, x1, x2, x3, w, wOffset, ldw, c, y0, y1, y2, y3);
    }


    /** The decode kernel of {@link Gemv}, with W read as float16 (all finite): same lanes, same order of sums. */
    private static void columnsF16(int c0, int c1, int k, MemorySegment a, long x0,
                                   MemorySegment w, long wOffset, int ldw, MemorySegment c, long y0) {
        float[] lanes = new float[LANES];
        long seen = 0;
        int bound = F.loopBound(k), lines = ReadAhead.count(AHEAD4, 8L * ldw);
        long aRow = x0 * Float.BYTES;
        int j = c0;
        for (; j + 4 <= c1; j += 4) {
            long w0 = (wOffset + (long) j * ldw) * 2, step = (long) ldw * 2;
            FloatVector s0 = FloatVector.zero(F), s1 = FloatVector.zero(F), s2 = FloatVector.zero(F), s3 = FloatVector.zero(F);
            int i = 0;
            long ahead = ReadAhead.from(w, w0, w0 + 4 * step, 4L * step), rowBytes = 2L * k;
            boolean next = w0 + 8 * step <= w.byteSize();
            for (; i < bound; i += LANES) {
                if (lines > 0) {
                    seen += ReadAhead.lines(w, ahead + i * 8L, lines);
                } else {
                    // Long rows: each row DISTANCE bytes ahead, past its end the next group's row.
                    long off = i * 2L + ReadAhead.DISTANCE;
                    long at = off < rowBytes ? w0 + off : next ? w0 + 4 * step + off - rowBytes : w0 + rowBytes - 1;
                    seen += ReadAhead.line(w, at) + ReadAhead.line(w, at + step) + ReadAhead.line(w, at + 2 * step) + ReadAhead.line(w, at + 3 * step);
                }
                FloatVector x = FloatVector.fromMemorySegment(F, a, aRow + i * 4L, NATIVE);
                s0 = wideF16(w, w0 + i * 2L).fma(x, s0);
                s1 = wideF16(w, w0 + step + i * 2L).fma(x, s1);
                s2 = wideF16(w, w0 + 2 * step + i * 2L).fma(x, s2);
                s3 = wideF16(w, w0 + 3 * step + i * 2L).fma(x, s3);
            }
            float d0 = Gemv.sum(s0, lanes), d1 = Gemv.sum(s1, lanes), d2 = Gemv.sum(s2, lanes), d3 = Gemv.sum(s3, lanes);
            for (; i < k; i++) {
                float x = a.get(JAVA_FLOAT, aRow + i * 4L);
                d0 += x * valueF16(w, w0 + i * 2L);
                d1 += x * valueF16(w, w0 + step + i * 2L);
                d2 += x * valueF16(w, w0 + 2 * step + i * 2L);
                d3 += x * valueF16(w, w0 + 3 * step + i * 2L);
            }
            long out = (y0 + j) * Float.BYTES;
            c.set(JAVA_FLOAT, out, d0);
            c.set(JAVA_FLOAT, out + 4, d1);
            c.set(JAVA_FLOAT, out + 8, d2);
            c.set(JAVA_FLOAT, out + 12, d3);
        }
        for (; j < c1; j++) {
            long w0 = (wOffset + (long) j * ldw) * 2;
            FloatVector s = FloatVector.zero(F);
            int i = 0;
            for (; i < bound; i += LANES)
                s = wideF16(w, w0 + i * 2L).fma(FloatVector.fromMemorySegment(F, a, aRow + i * 4L, NATIVE), s);
            float d = Gemv.sum(s, lanes);
            for (; i < k; i++) d += a.get(JAVA_FLOAT, aRow + i * 4L) * valueF16(w, w0 + i * 2L);
            c.set(JAVA_FLOAT, (y0 + j) * Float.BYTES, d);
        }
        ReadAhead.keep(seen);
    }

    private static float value(MemorySegment w, long byteOffset) {
        return Float.intBitsToFloat(w.get(SHORT, byteOffset) << 16);
    }

    private static float valueF16(MemorySegment w, long byteOffset) {
        return Float.float16ToFloat(w.get(SHORT, byteOffset));
    }
}
