package dev.ropeway.tensor;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.LongVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/**
 * {@code C = alpha A · Wᵀ + beta C} with W a matrix of ggml blocks other than Q8_0 ({@link CpuKQuantTensor}: Q2_K,
 * Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS, the lattice and ternary types (IQ1_S to IQ3_S, TQ1_0, TQ2_0), and Q4_0, Q4_1, Q5_0,
 * Q5_1, IQ4_NL, whose 32-value blocks are read eight at a time),
 * row-major [n, k] in blocks, rows starting on a block boundary, k a whole number of blocks (the kernels read 256
 * values at a time; where k is not a multiple of 256, small blocks only, a row's last values are a short group of
 * blocks or go through {@link Tail}).
 * A few rows of A (a decode step) read W as it is stored: each vector of weights is decoded in registers (Q4_K, and the
 * small blocks for one row: bytes loaded, the nibbles masked out; Q5_K, Q5_0 and Q5_1 for one row: the same, each
 * topped with its fifth bit) or read from
 * the block's values unpacked to signed bytes just before (the other types), then converted to float32 and scaled with
 * its group's factors, giving exactly ggml's dequantised values, and used as {@link Gemv} uses a float32 one: the sums
 * are those of the float32 product of the dequantised weights, in the same order, from a twelfth (Q2_K) to a fifth
 * (Q6_K) of the bytes. More rows dequantise W in chunks of columns into a float32 buffer for OpenBLAS. The layouts of
 * Q2_K, Q3_K, IQ4_XS and the small blocks are described beside their unpacking code.
 *
 * <p>The blocks (little-endian, d and dmin float16):
 * <ul>
 *   <li>Q4_K, 144 bytes: d @0, dmin @2, scales[12] @4, qs[128] @16. Sub-block j (32 values) has a 6-bit scale sc and
 *   min m: for j &lt; 4 {@code sc = scales[j] & 63, m = scales[j+4] & 63}; for j &ge; 4 the low 4 bits come from
 *   {@code scales[j+4]} (sc its low nibble, m its high one) and the top 2 from the top bits of {@code scales[j-4]} (sc)
 *   and {@code scales[j]} (m). Values 64c .. 64c+31 are the low nibbles of {@code qs[32c .. 32c+32)} (sub-block 2c),
 *   values 64c+32 .. 64c+63 their high nibbles (sub-block 2c+1); a value is {@code (d*sc)*q - (dmin*m)}.</li>
 *   <li>Q5_K, 176 bytes: d @0, dmin @2, scales[12] @4 as in Q4_K, qh[32] @16, qs[128] @48. The low 4 bits of a value
 *   come from qs as in Q4_K; value l of sub-block s (0 to 7) takes bit s of {@code qh[l]} as its fifth; a value is
 *   {@code (d*sc)*q - (dmin*m)} with q from 0 to 31.</li>
 *   <li>Q6_K, 210 bytes: ql[128] @0, qh[64] @128, scales[16] int8 @192, d @208. Value 16g .. 16g+15 share scale
 *   {@code scales[g]}; in half h (128 values: ql from 64h, qh from 32h), quarter t (32 values) takes its low 4 bits from
 *   {@code ql[32(t & 1) + l]} (the low nibble for t &lt; 2, the high one after) and its top 2 from bits 2t, 2t+1 of
 *   {@code qh[l]}; a value is {@code (d*scale)*(q - 32)}.</li>
 * </ul>
 *
 * <p>Each helper taking or returning a vector stays small (within the JIT's always-inline size, 35 bytes of bytecode, and a
 * few operations, so that a copy compiled on its own is no "big method" the JIT then refuses to inline): one left out
 * of line would box its vector on every call. The kernels are cut per block for the same reason ({@link #row}).
 */
final class KQuantGemm {
    /** Values per block (ggml's QK_K). */
    static final int BLOCK = 256;
    /**
     * Bytes past the unpacked blocks of a scratch array: 64 that a vector load may read beyond the last block, then
     * {@link #STAGE} where a lattice block's bytes are copied before unpacking.
     */
    private static final int STAGE = 128, PAD = 64 + STAGE;
    private static final VectorSpecies<Float> F = VectorMath.F;
    private static final int LANES = VectorMath.LANES;
    /** Bytes loaded per float vector: at least LANES of them (the smallest byte vector is 8 bytes). */
    private static final VectorSpecies<Byte> B = VectorSpecies.of(byte.class, VectorShape.forBitSize(Math.max(64, F.vectorBitSize() / 4)));
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    private static final ValueLayout.OfShort HALF = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Those bytes as 32-bit lanes, for shifts (x86 has no byte shifts). */
    private static final VectorSpecies<Integer> BI = VectorSpecies.of(int.class, B.vectorShape());
    /** Bytes unpacked at a time (Q6_K): 32, or fewer where vectors are narrower; and as 32-bit lanes. */
    private static final VectorSpecies<Byte> U = VectorSpecies.of(byte.class, VectorShape.forBitSize(Math.min(256, Math.max(64, F.vectorBitSize()))));
    private static final VectorSpecies<Integer> UI = VectorSpecies.of(int.class, U.vectorShape());
    /** The 16 bytes of a Q4_K block's scales and mins, and the two longs they are gathered in. */
    private static final VectorSpecies<Byte> B16 = ByteVector.SPECIES_128;
    private static final VectorSpecies<Long> L = LongVector.SPECIES_128;
    /** Those 16 bytes as four 32-bit lanes, for shifts. */
    private static final VectorSpecies<Integer> I4 = IntVector.SPECIES_128;
    /** A nibble (or two bits) in each byte of a 32-bit lane. */
    private static final int NIBBLE = 0x0F0F0F0F, PAIR = 0x03030303, ONES = 0x01010101;

    static {
        if (16 % LANES != 0) throw new ExceptionInInitializerError("k-quant kernels need a vector of 16 floats or a divisor of it, not " + LANES);
    }

    private KQuantGemm() {}

    /**
     * True when W's rows of {@code ldw} values from element {@code wOffset} start on boundaries of {@code type}'s blocks
     * (256 values, or 32 for the small-block types).
     */
    static boolean aligned(DType type, long wOffset, int ldw) {
        int size = type.blockSize();
        return wOffset % size == 0 && ldw % size == 0;
    }

    /**
     * Offsets and leading dimensions in elements; W must be {@link #aligned} and k a multiple of the type's block size.
     * The kernels read 256 values at a time; where k is not a multiple of 256 (small blocks only), a row's last k % 256
     * values are a short group of blocks for the one-row kernels that decode in registers and go through {@link Tail}
     * for the others, continuing the same sums.
     */
    static void run(WorkerPool pool, int m, int n, int k, float alpha, MemorySegment a, long aOffset, int lda,
                    CpuKQuantTensor w, long wOffset, int ldw, float beta, MemorySegment c, long cOffset, int ldc,
                    ParallelGemm.Epilogue epilogue) {
        if (m == 0 || n == 0) return;
        DType type = w.type();
        int size = type.blockSize(), blockBytes = type.blockBytes();
        if (!aligned(type, wOffset, ldw) || k % size != 0)
            throw new IllegalArgumentException(type + " weights need rows on block boundaries and k a multiple of " + size
                    + " (offset " + wOffset + ", ld " + ldw + ", k " + k + ")");
        MemorySegment q = w.blocks();
        // Byte offsets: of W's first row, and from one row to the next.
        long first = wOffset / size * blockBytes, stride = (long) ldw / size * blockBytes;
        if (k > 0 && Gemv.applies(false, true, m, alpha, beta)) {
            Gemv.ColumnBlock kernel;
            if (m == 2) {
                long x1 = aOffset + lda, y1 = cOffset + ldc;
                kernel = (c0, c1) -> rows2(type, c0, c1, k, a, aOffset, x1, q, first, stride, c, cOffset, y1);
            } else if (m > 2) {
                long[] x = Gemv.fourRows(aOffset, lda, m), y = Gemv.fourRows(cOffset, ldc, m);
                kernel = (c0, c1) -> rows4(type, c0, c1, k, a, x[0], x[1], x[2], x[3], q, first, stride, c, y[0], y[1], y[2], y[3]);
            } else {
                kernel = (c0, c1) -> row(type, c0, c1, k, a, aOffset, q, first, stride, c, cOffset);
            }
            Gemv.forColumns(pool, m, n, k, kernel, epilogue);
            return;
        }
        ParallelGemm.sgemmWidened(pool, m, n, k, alpha, a, aOffset, lda, (j0, cols, wide) -> {
            for (int j = 0; j < cols; j++)
                decode(type, q, first + (j0 + j) * stride, k / size, wide, (long) j * k * Float.BYTES);
        }, beta, c, cOffset, ldc, epilogue);
    }

    /**
     * Elements {@code [from, from + count)} of a matrix of a {@link CpuKQuantTensor} type (block b at byte
     * {@code b * blockBytes} of {@code blocks}) as float32 from byte {@code to} of {@code dst}: bit for bit ggml's dequantisation. Both segments
     * are native or over a {@code byte[]}, and {@code blocks} may be read up to 8 bytes past the last block it uses.
     */
    static void dequantize(DType type, MemorySegment blocks, long from, MemorySegment dst, long to, long count) {
        int size = type.blockSize(), blockBytes = type.blockBytes();
        MemorySegment scratch = null;
        long e = from, end = from + count;
        while (e < end) {
            long b = e / size, start = b * size;
            long out = to + (e - from) * Float.BYTES;
            if (e == start && end - e >= size) {
                long whole = (end - e) / size;
                decode(type, blocks, b * blockBytes, whole, dst, out);
                e += whole * size;
            } else {
                // Part of a block: decoded whole beside, the part copied.
                if (scratch == null) scratch = MemorySegment.ofArray(new byte[size * Float.BYTES]);
                long stop = Math.min(end, start + size);
                decode(type, blocks, b * blockBytes, 1, scratch, 0);
                MemorySegment.copy(scratch, (e - start) * Float.BYTES, dst, out, (stop - e) * Float.BYTES);
                e = stop;
            }
        }
    }

    /**
     * {@code count} whole blocks of {@code type} (a {@link CpuKQuantTensor} type; blocks of its own {@link
     * DType#blockSize()}, 32 values for the types with small blocks) from byte {@code at} of {@code blocks}, as float32
     * from byte {@code to} of {@code dst} (see {@link #dequantize}).
     */
    static void decode(DType type, MemorySegment blocks, long at, long count, MemorySegment dst, long to) {
        int blockBytes = type.blockBytes(), size = type.blockSize();
        float[] factors = new float[32];
        byte[] unpacked = new byte[BLOCK + PAD];
        for (long i = 0; i < count; i++) {
            long p = at + i * blockBytes, out = to + i * size * Float.BYTES;
            switch (type) {
                case Q4_K -> q4Block(blocks, p, dst, out, factors);
                case Q5_K -> q5Block(blocks, p, dst, out, factors);
                case Q2_K, Q3_K, Q6_K, IQ4_XS, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, TQ1_0, TQ2_0 ->
                        unpackedBlock(type, blocks, p, dst, out, factors, unpacked);
                case Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL -> smallBlock(type, blocks, p, dst, out, unpacked);
                default -> throw new IllegalArgumentException("not a k-quant type: " + type);
            }
        }
    }

    /** Bytes of 256 values of {@code type}: a block, or eight of the small ones (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL). */
    static int superBytes(DType type) {
        return type.blockBytes() * (BLOCK / type.blockSize());
    }


    /**
     * True when none of the float16 factors (d, and dmin or m for Q2_K, Q4_K, Q5_K, Q4_1 and Q5_1) of blocks
     * {@code [from, to)} (of the type's own size) is an infinity or a NaN.
     */
    static boolean finiteFactors(DType type, MemorySegment blocks, long from, long to) {
        int blockBytes = type.blockBytes();
        int special = 0;
        for (long b = from; b < to; b++) {
            long p = b * blockBytes;
            special |= switch (type) {
                case Q6_K -> special(blocks.get(HALF, p + 208));
                case Q3_K -> special(blocks.get(HALF, p + 108));
                case Q2_K -> special(blocks.get(HALF, p + 80)) | special(blocks.get(HALF, p + 82));
                case IQ4_XS, Q4_0, Q5_0, IQ4_NL, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S -> special(blocks.get(HALF, p));
                case TQ1_0 -> special(blocks.get(HALF, p + 52));
                case TQ2_0 -> special(blocks.get(HALF, p + 64));
                case IQ1_M -> special(iq1mScale(blocks, p));
                default -> special(blocks.get(HALF, p)) | special(blocks.get(HALF, p + 2));
            };
        }
        return special == 0;
    }

    /** Not zero when the float16 bits are an infinity or a NaN (all five exponent bits set: adding 1 to them carries). */
    private static int special(short bits) {
        return ((bits & 0x7C00) + 0x0400) & 0x8000;
    }

    // ---- The decode kernels, shared by every type ----

    /*
     * Two ways to read a block. Q4_K (and Q5_K for one row of A) decode each weight vector in registers from the block's
     * bytes, with the factors as q4Factors lays them out: 16 floats per block. Every other type, and Q5_K for several
     * rows, first unpacks the block to 256 signed bytes (unpack) and reads those: value i is q[i] times the scale of
     * its group (16 values, 32 for Q5_K), plus that group's min for the types that have one (Q2_K, Q5_K), with the factors as
     * unpackedFactors lays them out: 32 floats per block, the 16 groups' scales then their negated mins. The products
     * are exact in float32 for every type (at most 11 + 7 + 6 significant bits), so a fused multiply-add by the
     * negated min rounds once, where ggml's dequantisation rounds its subtraction: the same floats. The types without
     * a min have kernels of their own (bytesBlock4, bytesBlock2x4, bytesBlock2x2, multiplying) beside those with one
     * (minBlock4, minBlock2x4, minBlock2x2): adding a -0.0 min (x + (-0.0) is x for every x) gives the same floats but
     * cost 15-20 % more for Q6_K and IQ4_XS (measured), the extra factor loaded per vector and the mins filled per block.
     */

    /** Whether the one-row kernel unpacks this type's blocks (all but those {@link #nibbles} and Q4_K, Q5_K, which decode in registers). */
    private static boolean unpacks(DType type) {
        return type != DType.Q4_K && type != DType.Q5_K && !nibbles(type);
    }

    /**
     * The small-block types the one-row kernel decodes in registers ({@link #nibbleBlock4}, {@link #fiveBlock2}, {@link
     * #iq4nlBlock4}): Q4_0 and Q4_1 always; IQ4_NL, Q5_0 and Q5_1 where a vector is 16 floats (AVX-512), where IQ4_NL's
     * table lookup is one byte shuffle and Q5's fifth bits one mask register. With 8 floats (AVX2, or AVX-512 held to
     * 256 bits) the mask takes several operations and Q5_0 ran a quarter slower than unpacking (measured), so those
     * types unpack there.
     */
    private static boolean nibbles(DType type) {
        return type == DType.Q4_0 || type == DType.Q4_1
                || (type == DType.IQ4_NL || type == DType.Q5_0 || type == DType.Q5_1) && B.length() == 16;
    }

    /** Whether the several-row kernels unpack this type's blocks (all but Q4_K). */
    private static boolean unpacksForRows(DType type) {
        return type != DType.Q4_K;
    }

    /** Whether the unpacked type's groups have mins as well as scales. */
    private static boolean hasMins(DType type) {
        return type == DType.Q2_K || type == DType.Q5_K || type == DType.Q4_1 || type == DType.Q5_1;
    }

    /** Values per scale (and min) in the unpacked layout: 32 for Q5_K, Q4_1 and Q5_1, 16 for the others. */
    private static int groupSize(DType type) {
        return type == DType.Q5_K || type == DType.Q4_1 || type == DType.Q5_1 ? 32 : 16;
    }

    /**
     * Floats of factors per block: {@link #unpackedFactors}' 32, or the 16 of {@link #q4Factors} and {@link #nibbleFactors}
     * (Q4_K, Q5_K, Q4_0 and Q4_1 decoded in registers).
     */
    private static int factorWidth(boolean unpacked) {
        return unpacked ? 32 : 16;
    }

    /**
     * One row of A (element offset {@code x0}), four columns at a time: {@link Gemv}'s one-row kernel on the dequantised
     * W. Columns past {@code c1 - 1} repeat it (its sums are computed again, to the same values, and stored over it).
     * W's row j starts at byte {@code first + j * stride}.
     *
     * <p>The work is cut in two so that the JIT compiles every vector operation in place. The blocks' float factors are
     * decoded first, four rows of W at a time, into a small array ({@link #factors}); then each block goes through a
     * method of its own ({@link #q4Block4}, {@link #q5Block2}, {@link #bytesBlock4}) that carries the four columns'
     * accumulators in an array, loading them on entry and storing them on exit (exactly: the sums are those of
     * accumulators kept in registers). Written as one method, with the scalar decoding in the vector loop, the kernel
     * outgrew the JIT's inlining budget, which left vector helpers out of line and boxed their vectors (measured: ten
     * times slower).
     */
    private static void row(DType type, int c0, int c1, int k, MemorySegment a, long x0, MemorySegment w, long first,
                            long stride, MemorySegment c, long y0) {
        boolean unpacked = unpacks(type), five = type == DType.Q5_K, nibble = nibbles(type), mins = hasMins(type);
        int group = groupSize(type);
        // Past the whole 256s (small blocks only): `rest` blocks of 32, which the kernels decoding in registers take
        // as a short last group of blocks, and the others leave to a Tail.
        int blocks = k / BLOCK, rest = k % BLOCK / 32, whole = blocks + (nibble && rest > 0 ? 1 : 0);
        int width = factorWidth(unpacked), per = width * whole, blockBytes = superBytes(type);
        float[] f = new float[4 * per], acc = new float[4 * LANES], lanes = new float[LANES];
        byte[] q = unpacked ? new byte[4 * BLOCK + PAD] : null;
        Tail tail = nibble ? null : Tail.of(type, k, 4);
        long aRow = x0 * Float.BYTES;
        for (int j = c0; j < c1; j += 4) {
            int j1 = Math.min(j + 1, c1 - 1), j2 = Math.min(j + 2, c1 - 1), j3 = Math.min(j + 3, c1 - 1);
            long r0 = first + j * stride, r1 = first + j1 * stride, r2 = first + j2 * stride, r3 = first + j3 * stride;
            factors(type, unpacked, w, first, stride, j, 4, c1 - 1, blocks, whole > blocks ? rest : 0, f);
            java.util.Arrays.fill(acc, 0f);
            for (int b = 0; b < whole; b++) {
                long o = (long) b * blockBytes, x = aRow + (long) b * BLOCK * Float.BYTES;
                int count = b < blocks ? 8 : rest;
                if (unpacked) {
                    unpack(type, w, r0 + o, q, 0);
                    unpack(type, w, r1 + o, q, BLOCK);
                    unpack(type, w, r2 + o, q, 2 * BLOCK);
                    unpack(type, w, r3 + o, q, 3 * BLOCK);
                    if (mins) minBlock4(q, f, width * b, per, group, a, x, acc);
                    else bytesBlock4(q, f, width * b, per, a, x, acc);
                } else if (five) {
                    q5Block2(w, r0 + o, r1 + o, f, width * b, per, a, x, acc, 0);
                    q5Block2(w, r2 + o, r3 + o, f, width * b + 2 * per, per, a, x, acc, 2 * LANES);
                } else if (nibble && (type == DType.Q5_0 || type == DType.Q5_1)) {
                    int bytes = type.blockBytes(), qh = type == DType.Q5_1 ? 4 : 2;
                    fiveBlock2(w, r0 + o, r1 + o, bytes, qh, qh + 4, count, f, width * b, per, a, x, acc, 0);
                    fiveBlock2(w, r2 + o, r3 + o, bytes, qh, qh + 4, count, f, width * b + 2 * per, per, a, x, acc, 2 * LANES);
                } else if (nibble && type == DType.IQ4_NL) {
                    iq4nlBlock4(w, r0 + o, r1 + o, r2 + o, r3 + o, count, f, width * b, per, a, x, acc);
                } else if (nibble) {
                    nibbleBlock4(w, r0 + o, r1 + o, r2 + o, r3 + o, type.blockBytes(), type == DType.Q4_0 ? 2 : 4, count, f,
                            width * b, per, a, x, acc);
                } else {
                    q4Block4(w, r0 + o, r1 + o, r2 + o, r3 + o, f, width * b, per, a, x, acc);
                }
            }
            if (tail != null) {
                long o = (long) blocks * blockBytes, x = aRow + (long) blocks * BLOCK * Float.BYTES;
                tail.decode(w, 0, r0 + o).decode(w, 1, r1 + o).decode(w, 2, r2 + o).decode(w, 3, r3 + o);
                for (int t = 0; t < 4; t++) tail.dot(t, a, x, acc, t);
            }
            c.set(JAVA_FLOAT, (y0 + j) * Float.BYTES, sum(acc, 0, lanes));
            c.set(JAVA_FLOAT, (y0 + j1) * Float.BYTES, sum(acc, 1, lanes));
            c.set(JAVA_FLOAT, (y0 + j2) * Float.BYTES, sum(acc, 2, lanes));
            c.set(JAVA_FLOAT, (y0 + j3) * Float.BYTES, sum(acc, 3, lanes));
        }
    }

    /**
     * Four rows of A (element offsets of A's and C's rows; a repeated row is computed twice), two columns at a time (past
     * {@code c1 - 1} the last repeats), each weight vector decoded once for the four rows; per row and column the
     * one-row kernel's sums, operation for operation. Cut in two as {@link #row} is; the eight accumulators are
     * {@code acc[LANES (2 row + column) ..]}.
     */
    private static void rows4(DType type, int c0, int c1, int k, MemorySegment a, long x0, long x1, long x2, long x3,
                              MemorySegment w, long first, long stride, MemorySegment c, long y0, long y1, long y2, long y3) {
        boolean unpacked = unpacksForRows(type), mins = hasMins(type);
        int group = groupSize(type);
        int blocks = k / BLOCK, width = factorWidth(unpacked), per = width * blocks, blockBytes = superBytes(type);
        float[] f = new float[2 * per], acc = new float[8 * LANES], lanes = new float[LANES];
        byte[] q = unpacked ? new byte[2 * BLOCK + PAD] : null;
        Tail tail = Tail.of(type, k, 2);
        long[] x = {x0 * Float.BYTES, x1 * Float.BYTES, x2 * Float.BYTES, x3 * Float.BYTES};
        long[] y = {y0, y1, y2, y3};
        for (int j = c0; j < c1; j += 2) {
            int j1 = Math.min(j + 1, c1 - 1);
            long r0 = first + j * stride, r1 = first + j1 * stride;
            factors(type, unpacked, w, first, stride, j, 2, c1 - 1, blocks, 0, f);
            java.util.Arrays.fill(acc, 0f);
            for (int b = 0; b < blocks; b++) {
                long o = (long) b * blockBytes, xb = (long) b * BLOCK * Float.BYTES;
                if (unpacked) {
                    unpack(type, w, r0 + o, q, 0);
                    unpack(type, w, r1 + o, q, BLOCK);
                    if (mins) minBlock2x4(q, f, width * b, per, group, a, x[0] + xb, x[1] + xb, x[2] + xb, x[3] + xb, acc);
                    else bytesBlock2x4(q, f, width * b, per, a, x[0] + xb, x[1] + xb, x[2] + xb, x[3] + xb, acc);
                } else {
                    q4Block2x4(w, r0 + o, r1 + o, f, width * b, per, a, x[0] + xb, x[1] + xb, x[2] + xb, x[3] + xb, acc);
                }
            }
            if (tail != null) {
                long o = (long) blocks * blockBytes, xb = (long) blocks * BLOCK * Float.BYTES;
                tail.decode(w, 0, r0 + o).decode(w, 1, r1 + o);
                for (int t = 0; t < 4; t++) {
                    tail.dot(0, a, x[t] + xb, acc, 2 * t);
                    tail.dot(1, a, x[t] + xb, acc, 2 * t + 1);
                }
            }
            for (int t = 0; t < 4; t++) {
                c.set(JAVA_FLOAT, (y[t] + j) * Float.BYTES, sum(acc, 2 * t, lanes));
                c.set(JAVA_FLOAT, (y[t] + j1) * Float.BYTES, sum(acc, 2 * t + 1, lanes));
            }
        }
    }

    /**
     * Two rows of A (element offsets of A's and C's rows), two columns at a time (past {@code c1 - 1} the last repeats):
     * {@link #rows4} with half the rows, so that two rows (a batch of two, two serving slots) do not pay for four.
     */
    private static void rows2(DType type, int c0, int c1, int k, MemorySegment a, long x0, long x1, MemorySegment w,
                              long first, long stride, MemorySegment c, long y0, long y1) {
        boolean unpacked = unpacksForRows(type), mins = hasMins(type);
        int group = groupSize(type);
        int blocks = k / BLOCK, width = factorWidth(unpacked), per = width * blocks, blockBytes = superBytes(type);
        float[] f = new float[2 * per], acc = new float[4 * LANES], lanes = new float[LANES];
        byte[] q = unpacked ? new byte[2 * BLOCK + PAD] : null;
        Tail tail = Tail.of(type, k, 2);
        long xa = x0 * Float.BYTES, xb = x1 * Float.BYTES;
        for (int j = c0; j < c1; j += 2) {
            int j1 = Math.min(j + 1, c1 - 1);
            long r0 = first + j * stride, r1 = first + j1 * stride;
            factors(type, unpacked, w, first, stride, j, 2, c1 - 1, blocks, 0, f);
            java.util.Arrays.fill(acc, 0f);
            for (int b = 0; b < blocks; b++) {
                long o = (long) b * blockBytes, xo = (long) b * BLOCK * Float.BYTES;
                if (unpacked) {
                    unpack(type, w, r0 + o, q, 0);
                    unpack(type, w, r1 + o, q, BLOCK);
                    if (mins) minBlock2x2(q, f, width * b, per, group, a, xa + xo, xb + xo, acc);
                    else bytesBlock2x2(q, f, width * b, per, a, xa + xo, xb + xo, acc);
                } else {
                    q4Block2x2(w, r0 + o, r1 + o, f, width * b, per, a, xa + xo, xb + xo, acc);
                }
            }
            if (tail != null) {
                long o = (long) blocks * blockBytes, xo = (long) blocks * BLOCK * Float.BYTES;
                tail.decode(w, 0, r0 + o).decode(w, 1, r1 + o);
                tail.dot(0, a, xa + xo, acc, 0);
                tail.dot(1, a, xa + xo, acc, 1);
                tail.dot(0, a, xb + xo, acc, 2);
                tail.dot(1, a, xb + xo, acc, 3);
            }
            c.set(JAVA_FLOAT, (y0 + j) * Float.BYTES, sum(acc, 0, lanes));
            c.set(JAVA_FLOAT, (y0 + j1) * Float.BYTES, sum(acc, 1, lanes));
            c.set(JAVA_FLOAT, (y1 + j) * Float.BYTES, sum(acc, 2, lanes));
            c.set(JAVA_FLOAT, (y1 + j1) * Float.BYTES, sum(acc, 3, lanes));
        }
    }

    /**
     * The float factors of the first {@code blocks} blocks of W's rows {@code j .. j + rows - 1} (those past {@code last}
     * repeat it; row i at byte {@code first + i * stride}), and when {@code rest > 0} (a type {@link #nibbles} decodes)
     * of the {@code rest} small blocks after them as one more: with n the blocks per row, row t's block b at {@code
     * out[width (t n + b)]}, as {@link #unpackedFactors} ({@code unpacked}), {@link #nibbleFactors} or {@link
     * #q4Factors} lay them out.
     */
    private static void factors(DType type, boolean unpacked, MemorySegment w, long first, long stride, int j, int rows,
                                int last, int blocks, int rest, float[] out) {
        int blockBytes = superBytes(type), width = factorWidth(unpacked), n = blocks + (rest > 0 ? 1 : 0);
        for (int t = 0; t < rows; t++) {
            long r = first + Math.min(j + t, last) * stride;
            for (int b = 0; b < n; b++) {
                long p = r + (long) b * blockBytes;
                int o = width * (t * n + b);
                if (unpacked) unpackedFactors(type, w, p, out, o);
                else if (nibbles(type)) nibbleFactors(type, w, p, b < blocks ? 8 : rest, out, o);
                else q4Factors(w, p, out, o);
            }
        }
    }

    /**
     * The last {@code k % 256} values of a few rows of W (small blocks only: a multiple of 32), unpacked to signed bytes
     * and multiplied into the accumulators as the blocks before them are, value for value ggml's dequantised values
     * ({@link #smallBlock}), one vector at a time: the sums stay those of {@link Gemv}'s kernel on the dequantised row.
     */
    private static final class Tail {
        private final DType type;
        private final int values, blocks;
        private final boolean mins;
        private final byte[] q;
        /** Per row and block: d, and m (zero where the type has none). */
        private final float[] d, m;

        private Tail(DType type, int values, int rows) {
            this.type = type;
            this.values = values;
            this.blocks = values / 32;
            this.mins = hasMins(type);
            this.q = new byte[rows * values + PAD];
            this.d = new float[rows * blocks];
            this.m = new float[rows * blocks];
        }

        /** For {@code rows} rows of W with k values each, or null where k is a whole number of 256s. */
        static Tail of(DType type, int k, int rows) {
            return k % BLOCK == 0 ? null : new Tail(type, k % BLOCK, rows);
        }

        /** Unpacks the tail of W's row whose tail starts at byte {@code p} as row {@code t}. */
        Tail decode(MemorySegment w, int t, long p) {
            for (int b = 0; b < blocks; b++) {
                long at = p + (long) b * type.blockBytes();
                smallUnpack(type, w, at, q, t * values + 32 * b);
                d[t * blocks + b] = half(w, at);
                if (mins) m[t * blocks + b] = half(w, at + 2);
            }
            return this;
        }

        /** Accumulator {@code i} plus the products of row {@code t}'s tail with the floats of A from byte {@code x}. */
        void dot(int t, MemorySegment a, long x, float[] acc, int i) {
            FloatVector s = FloatVector.fromArray(F, acc, i * LANES);
            for (int b = 0; b < blocks; b++) {
                float db = d[t * blocks + b], mb = m[t * blocks + b];
                int at = t * values + 32 * b;
                long xb = x + 32L * b * Float.BYTES;
                for (int e = 0; e < 32; e += LANES) {
                    FloatVector v = floats(ByteVector.fromArray(B, q, at + e));
                    s = (mins ? v.fma(db, mb) : v.mul(db))
                            .fma(FloatVector.fromMemorySegment(F, a, xb + (long) e * Float.BYTES, NATIVE), s);
                }
            }
            s.intoArray(acc, i * LANES);
        }
    }

    /** Accumulator {@code i} of {@code acc} (LANES floats from {@code i * LANES}) summed as {@link Gemv#sum} sums a vector. */
    private static float sum(float[] acc, int i, float[] lanes) {
        return VectorMath.sumLanes(acc, i * LANES);
    }

    // ---- Unpacked blocks ----

    /** The block at byte p (eight blocks from p for a small-block type) unpacked to 256 signed bytes, into {@code q[at .. at + 256)}. */
    private static void unpack(DType type, MemorySegment w, long p, byte[] q, int at) {
        switch (type) {
            case Q6_K -> q6Unpack(w, p, q, at);
            case Q5_K -> q5Unpack(w, p, q, at);
            case IQ4_XS -> iq4Unpack(w, p, q, at);
            case Q3_K -> q3Unpack(w, p, q, at);
            case Q2_K -> q2Unpack(w, p, q, at);
            case Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL -> {
                int blockBytes = type.blockBytes();
                for (int s = 0; s < 8; s++) smallUnpack(type, w, p + (long) s * blockBytes, q, at + 32 * s);
            }
            case IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M -> latticeUnpack(type, w, p, q, at);
            case TQ1_0 -> tq1Unpack(w, p, q, at);
            case TQ2_0 -> tq2Unpack(w, p, q, at);
            default -> throw new IllegalArgumentException("no unpacking for " + type);
        }
    }

    /**
     * The factors of the block at byte p (eight blocks from p for a small-block type) for the unpacked kernels: group
     * g's scale at {@code out[o + g]} and, for a type with mins ({@link #hasMins}), the value it adds (a negated min; Q4_1's
     * and Q5_1's m as it is) at {@code out[o + 16 + g]}; a group is 16 values, or 32 for Q5_K, Q4_1 and Q5_1
     * ({@link #groupSize}).
     */
    private static void unpackedFactors(DType type, MemorySegment w, long p, float[] out, int o) {
        switch (type) {
            case Q2_K -> {
                q2Factors(w, p, out, o);
                return;
            }
            case Q5_K -> {
                // Q4_K's layout (8 scales, 8 negated mins), one pair per group of 32, the mins moved to their place.
                q4Factors(w, p, out, o);
                System.arraycopy(out, o + 8, out, o + 16, 8);
                return;
            }
            case Q6_K -> q6Factors(w, p, out, o);
            case IQ4_XS -> iq4Factors(w, p, out, o);
            case Q3_K -> q3Factors(w, p, out, o);
            case Q4_0, Q5_0, IQ4_NL -> {
                // One d per 32 values, given to both groups of 16.
                for (int s = 0; s < 8; s++) {
                    float d = half(w, p + (long) s * type.blockBytes());
                    out[o + 2 * s] = d;
                    out[o + 2 * s + 1] = d;
                }
            }
            case Q4_1, Q5_1 -> {
                for (int s = 0; s < 8; s++) {
                    long b = p + (long) s * type.blockBytes();
                    out[o + s] = half(w, b);
                    out[o + 16 + s] = half(w, b + 2);
                }
            }
            case IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M -> latticeFactors(type, w, p, out, o);
            case TQ1_0, TQ2_0 -> java.util.Arrays.fill(out, o, o + 16, half(w, p + (type == DType.TQ1_0 ? 52 : 64)));
            default -> throw new IllegalArgumentException("no unpacked factors for " + type);
        }
    }

    /** A block decoded through its unpacked bytes: value i is {@code q[i] * scale (+ min)} of its group (i / 16). */
    private static void unpackedBlock(DType type, MemorySegment w, long p, MemorySegment dst, long to, float[] f, byte[] q) {
        unpackedFactors(type, w, p, f, 0);
        unpack(type, w, p, q, 0);
        boolean mins = hasMins(type);
        for (int i = 0; i < BLOCK; i += LANES) {
            FloatVector v = floats(ByteVector.fromArray(B, q, i));
            (mins ? v.fma(f[i >> 4], f[16 + (i >> 4)]) : v.mul(f[i >> 4])).intoMemorySegment(dst, to + (long) i * Float.BYTES, NATIVE);
        }
    }

    /**
     * One unpacked block of four rows of W ({@code q[256 t ..]} for row t; factors from {@code f[e]}, {@code per} apart,
     * as {@link #unpackedFactors} lays them out) times the 256 floats of A's row from byte {@code x}, into the four
     * accumulators of {@code acc}.
     */
    private static void bytesBlock4(byte[] q, float[] f, int e, int per, MemorySegment a, long x, float[] acc) {
        FloatVector s0 = FloatVector.fromArray(F, acc, 0), s1 = FloatVector.fromArray(F, acc, LANES);
        FloatVector s2 = FloatVector.fromArray(F, acc, 2 * LANES), s3 = FloatVector.fromArray(F, acc, 3 * LANES);
        for (int i = 0; i < BLOCK; i += LANES) {
            int g = e + (i >> 4);
            FloatVector xv = FloatVector.fromMemorySegment(F, a, x + (long) i * Float.BYTES, NATIVE);
            s0 = floats(ByteVector.fromArray(B, q, i)).mul(f[g]).fma(xv, s0);
            s1 = floats(ByteVector.fromArray(B, q, BLOCK + i)).mul(f[per + g]).fma(xv, s1);
            s2 = floats(ByteVector.fromArray(B, q, 2 * BLOCK + i)).mul(f[2 * per + g]).fma(xv, s2);
            s3 = floats(ByteVector.fromArray(B, q, 3 * BLOCK + i)).mul(f[3 * per + g]).fma(xv, s3);
        }
        s0.intoArray(acc, 0);
        s1.intoArray(acc, LANES);
        s2.intoArray(acc, 2 * LANES);
        s3.intoArray(acc, 3 * LANES);
    }

    /**
     * One unpacked block of two rows of W ({@code q[0 ..]}, {@code q[256 ..]}) times four rows of A (bytes {@code x0 ..
     * x3}), into the eight accumulators of {@code acc} (row t, column u at {@code LANES (2t + u)}).
     */
    private static void bytesBlock2x4(byte[] q, float[] f, int e, int per, MemorySegment a, long x0, long x1, long x2, long x3,
                                      float[] acc) {
        FloatVector s00 = FloatVector.fromArray(F, acc, 0), s01 = FloatVector.fromArray(F, acc, LANES);
        FloatVector s10 = FloatVector.fromArray(F, acc, 2 * LANES), s11 = FloatVector.fromArray(F, acc, 3 * LANES);
        FloatVector s20 = FloatVector.fromArray(F, acc, 4 * LANES), s21 = FloatVector.fromArray(F, acc, 5 * LANES);
        FloatVector s30 = FloatVector.fromArray(F, acc, 6 * LANES), s31 = FloatVector.fromArray(F, acc, 7 * LANES);
        for (int i = 0; i < BLOCK; i += LANES) {
            int g = e + (i >> 4);
            long o = (long) i * Float.BYTES;
            FloatVector v0 = floats(ByteVector.fromArray(B, q, i)).mul(f[g]);
            FloatVector v1 = floats(ByteVector.fromArray(B, q, BLOCK + i)).mul(f[per + g]);
            FloatVector xv = FloatVector.fromMemorySegment(F, a, x0 + o, NATIVE);
            s00 = v0.fma(xv, s00);
            s01 = v1.fma(xv, s01);
            xv = FloatVector.fromMemorySegment(F, a, x1 + o, NATIVE);
            s10 = v0.fma(xv, s10);
            s11 = v1.fma(xv, s11);
            xv = FloatVector.fromMemorySegment(F, a, x2 + o, NATIVE);
            s20 = v0.fma(xv, s20);
            s21 = v1.fma(xv, s21);
            xv = FloatVector.fromMemorySegment(F, a, x3 + o, NATIVE);
            s30 = v0.fma(xv, s30);
            s31 = v1.fma(xv, s31);
        }
        s00.intoArray(acc, 0);
        s01.intoArray(acc, LANES);
        s10.intoArray(acc, 2 * LANES);
        s11.intoArray(acc, 3 * LANES);
        s20.intoArray(acc, 4 * LANES);
        s21.intoArray(acc, 5 * LANES);
        s30.intoArray(acc, 6 * LANES);
        s31.intoArray(acc, 7 * LANES);
    }

    /** {@link #bytesBlock2x4} for two rows of A. */
    private static void bytesBlock2x2(byte[] q, float[] f, int e, int per, MemorySegment a, long x0, long x1, float[] acc) {
        FloatVector s00 = FloatVector.fromArray(F, acc, 0), s01 = FloatVector.fromArray(F, acc, LANES);
        FloatVector s10 = FloatVector.fromArray(F, acc, 2 * LANES), s11 = FloatVector.fromArray(F, acc, 3 * LANES);
        for (int i = 0; i < BLOCK; i += LANES) {
            int g = e + (i >> 4);
            long o = (long) i * Float.BYTES;
            FloatVector v0 = floats(ByteVector.fromArray(B, q, i)).mul(f[g]);
            FloatVector v1 = floats(ByteVector.fromArray(B, q, BLOCK + i)).mul(f[per + g]);
            FloatVector xv = FloatVector.fromMemorySegment(F, a, x0 + o, NATIVE);
            s00 = v0.fma(xv, s00);
            s01 = v1.fma(xv, s01);
            xv = FloatVector.fromMemorySegment(F, a, x1 + o, NATIVE);
            s10 = v0.fma(xv, s10);
            s11 = v1.fma(xv, s11);
        }
        s00.intoArray(acc, 0);
        s01.intoArray(acc, LANES);
        s10.intoArray(acc, 2 * LANES);
        s11.intoArray(acc, 3 * LANES);
    }

    /**
     * {@link #bytesBlock4} for a type with mins: each value {@code q * scale + negated min}, one fused multiply-add, with
     * one scale and min per {@code group} values ({@link #groupSize}: 16 for Q2_K, 32 for Q5_K), loaded once per group.
     */
    private static void minBlock4(byte[] q, float[] f, int e, int per, int group, MemorySegment a, long x, float[] acc) {
        FloatVector s0 = FloatVector.fromArray(F, acc, 0), s1 = FloatVector.fromArray(F, acc, LANES);
        FloatVector s2 = FloatVector.fromArray(F, acc, 2 * LANES), s3 = FloatVector.fromArray(F, acc, 3 * LANES);
        for (int i = 0, g = e; i < BLOCK; g++) {
            float d0 = f[g], m0 = f[g + 16], d1 = f[per + g], m1 = f[per + g + 16];
            float d2 = f[2 * per + g], m2 = f[2 * per + g + 16], d3 = f[3 * per + g], m3 = f[3 * per + g + 16];
            for (int end = i + group; i < end; i += LANES) {
                FloatVector xv = FloatVector.fromMemorySegment(F, a, x + (long) i * Float.BYTES, NATIVE);
                s0 = floats(ByteVector.fromArray(B, q, i)).fma(d0, m0).fma(xv, s0);
                s1 = floats(ByteVector.fromArray(B, q, BLOCK + i)).fma(d1, m1).fma(xv, s1);
                s2 = floats(ByteVector.fromArray(B, q, 2 * BLOCK + i)).fma(d2, m2).fma(xv, s2);
                s3 = floats(ByteVector.fromArray(B, q, 3 * BLOCK + i)).fma(d3, m3).fma(xv, s3);
            }
        }
        s0.intoArray(acc, 0);
        s1.intoArray(acc, LANES);
        s2.intoArray(acc, 2 * LANES);
        s3.intoArray(acc, 3 * LANES);
    }

    /** {@link #bytesBlock2x4} for a type with mins, as {@link #minBlock4}. */
    private static void minBlock2x4(byte[] q, float[] f, int e, int per, int group, MemorySegment a, long x0, long x1, long x2,
                                    long x3, float[] acc) {
        FloatVector s00 = FloatVector.fromArray(F, acc, 0), s01 = FloatVector.fromArray(F, acc, LANES);
        FloatVector s10 = FloatVector.fromArray(F, acc, 2 * LANES), s11 = FloatVector.fromArray(F, acc, 3 * LANES);
        FloatVector s20 = FloatVector.fromArray(F, acc, 4 * LANES), s21 = FloatVector.fromArray(F, acc, 5 * LANES);
        FloatVector s30 = FloatVector.fromArray(F, acc, 6 * LANES), s31 = FloatVector.fromArray(F, acc, 7 * LANES);
        for (int i = 0, g = e; i < BLOCK; g++) {
            float d0 = f[g], m0 = f[g + 16], d1 = f[per + g], m1 = f[per + g + 16];
            for (int end = i + group; i < end; i += LANES) {
                long o = (long) i * Float.BYTES;
                FloatVector v0 = floats(ByteVector.fromArray(B, q, i)).fma(d0, m0);
                FloatVector v1 = floats(ByteVector.fromArray(B, q, BLOCK + i)).fma(d1, m1);
                FloatVector xv = FloatVector.fromMemorySegment(F, a, x0 + o, NATIVE);
                s00 = v0.fma(xv, s00);
                s01 = v1.fma(xv, s01);
                xv = FloatVector.fromMemorySegment(F, a, x1 + o, NATIVE);
                s10 = v0.fma(xv, s10);
                s11 = v1.fma(xv, s11);
                xv = FloatVector.fromMemorySegment(F, a, x2 + o, NATIVE);
                s20 = v0.fma(xv, s20);
                s21 = v1.fma(xv, s21);
                xv = FloatVector.fromMemorySegment(F, a, x3 + o, NATIVE);
                s30 = v0.fma(xv, s30);
                s31 = v1.fma(xv, s31);
            }
        }
        s00.intoArray(acc, 0);
        s01.intoArray(acc, LANES);
        s10.intoArray(acc, 2 * LANES);
        s11.intoArray(acc, 3 * LANES);
        s20.intoArray(acc, 4 * LANES);
        s21.intoArray(acc, 5 * LANES);
        s30.intoArray(acc, 6 * LANES);
        s31.intoArray(acc, 7 * LANES);
    }

    /** {@link #minBlock2x4} for two rows of A. */
    private static void minBlock2x2(byte[] q, float[] f, int e, int per, int group, MemorySegment a, long x0, long x1,
                                    float[] acc) {
        FloatVector s00 = FloatVector.fromArray(F, acc, 0), s01 = FloatVector.fromArray(F, acc, LANES);
        FloatVector s10 = FloatVector.fromArray(F, acc, 2 * LANES), s11 = FloatVector.fromArray(F, acc, 3 * LANES);
        for (int i = 0, g = e; i < BLOCK; g++) {
            float d0 = f[g], m0 = f[g + 16], d1 = f[per + g], m1 = f[per + g + 16];
            for (int end = i + group; i < end; i += LANES) {
                long o = (long) i * Float.BYTES;
                FloatVector v0 = floats(ByteVector.fromArray(B, q, i)).fma(d0, m0);
                FloatVector v1 = floats(ByteVector.fromArray(B, q, BLOCK + i)).fma(d1, m1);
                FloatVector xv = FloatVector.fromMemorySegment(F, a, x0 + o, NATIVE);
                s00 = v0.fma(xv, s00);
                s01 = v1.fma(xv, s01);
                xv = FloatVector.fromMemorySegment(F, a, x1 + o, NATIVE);
                s10 = v0.fma(xv, s10);
                s11 = v1.fma(xv, s11);
            }
        }
        s00.intoArray(acc, 0);
        s01.intoArray(acc, LANES);
        s10.intoArray(acc, 2 * LANES);
        s11.intoArray(acc, 3 * LANES);
    }

    // ---- Q4_K ----

    /*
     * A Q4_K value is (d*sc)*q - dmin*m. d*sc has at most 17 significant bits (11 of a float16, 6 of sc) and q at most 4,
     * so the product is exact in float32: the kernels' fused multiply-add by the negated min rounds once, where the
     * reference's subtraction does, to the same float.
     */

    /**
     * The factors of the Q4_K block at byte p: sub-block s's scale d*sc at {@code out[o + s]}, its negated min
     * -(dmin*m) (the same float as (-dmin)*m) at {@code out[o + 8 + s]}. The 6-bit scales and mins are gathered into two
     * longs, then converted and multiplied as one vector of 16 bytes: one at a time, that took more than a third of the
     * one-row kernel's time (measured).
     */
    private static void q4Factors(MemorySegment w, long p, float[] out, int o) {
        float d = half(w, p), dmin = half(w, p + 2);
        long lo = w.get(LONG, p + 4), hi = w.get(INT, p + 12) & 0xFFFF_FFFFL;
        // Sub-blocks 0-3: the low 6 bits of bytes 0-3 (scales) and 4-7 (mins); 4-7: the low (scales) and high (mins)
        // nibbles of bytes 8-11, topped with the top 2 bits of bytes 0-3 (scales) and 4-7 (mins).
        long sc = lo & 0x3F3F3F3FL | (hi & 0x0F0F0F0FL | lo >>> 2 & 0x30303030L) << 32;
        long m = lo >>> 32 & 0x3F3F3F3FL | (hi >>> 4 & 0x0F0F0F0FL | lo >>> 34 & 0x30303030L) << 32;
        if (NATIVE == ByteOrder.BIG_ENDIAN) {
            // The vector's bytes are the longs' in memory order: scale 0 first.
            sc = Long.reverseBytes(sc);
            m = Long.reverseBytes(m);
        }
        ByteVector bytes = (ByteVector) LongVector.zero(L).withLane(0, sc).withLane(1, m).reinterpretShape(B16, 0);
        for (int i = 0; i < 16; i += LANES) {
            // The lanes of this vector that hold mins (values 8 to 15).
            VectorMask<Float> mins = VectorMask.fromLong(F, (0xFF00L >>> i) & (1L << LANES) - 1);
            ((FloatVector) bytes.convertShape(VectorOperators.B2F, F, i / LANES)).mul(FloatVector.broadcast(F, d).blend(-dmin, mins))
                    .intoArray(out, o + i);
        }
    }

    private static void q4Block(MemorySegment w, long p, MemorySegment dst, long to, float[] f) {
        q4Factors(w, p, f, 0);
        for (int s = 0; s < 8; s++) {
            long q = p + 16 + 32 * (s >> 1);
            int shift = 4 * (s & 1);
            for (int v = 0; v < 32; v += LANES)
                floats(nibbles(w, q + v, shift)).fma(f[s], f[8 + s]).intoMemorySegment(dst, to + (32L * s + v) * Float.BYTES, NATIVE);
        }
    }

    /**
     * One Q4_K block of four rows of W (bytes {@code p0 .. p3}; factors from {@code f[e]}, {@code per} apart) times the
     * 256 floats of A's row from byte {@code x}, into the four accumulators of {@code acc}.
     */
    private static void q4Block4(MemorySegment w, long p0, long p1, long p2, long p3, float[] f, int e, int per,
                                 MemorySegment a, long x, float[] acc) {
        FloatVector s0 = FloatVector.fromArray(F, acc, 0), s1 = FloatVector.fromArray(F, acc, LANES);
        FloatVector s2 = FloatVector.fromArray(F, acc, 2 * LANES), s3 = FloatVector.fromArray(F, acc, 3 * LANES);
        for (int s = 0; s < 8; s++) {
            int i = e + s, q = 16 + 32 * (s >> 1), shift = 4 * (s & 1);
            float d0 = f[i], m0 = f[i + 8], d1 = f[per + i], m1 = f[per + i + 8];
            float d2 = f[2 * per + i], m2 = f[2 * per + i + 8], d3 = f[3 * per + i], m3 = f[3 * per + i + 8];
            for (int v = 0; v < 32; v += LANES) {
                FloatVector xv = FloatVector.fromMemorySegment(F, a, x + (32L * s + v) * Float.BYTES, NATIVE);
                s0 = floats(nibbles(w, p0 + q + v, shift)).fma(d0, m0).fma(xv, s0);
                s1 = floats(nibbles(w, p1 + q + v, shift)).fma(d1, m1).fma(xv, s1);
                s2 = floats(nibbles(w, p2 + q + v, shift)).fma(d2, m2).fma(xv, s2);
                s3 = floats(nibbles(w, p3 + q + v, shift)).fma(d3, m3).fma(xv, s3);
            }
        }
        s0.intoArray(acc, 0);
        s1.intoArray(acc, LANES);
        s2.intoArray(acc, 2 * LANES);
        s3.intoArray(acc, 3 * LANES);
    }

    /**
     * One Q4_K block of two rows of W (bytes {@code p0}, {@code p1}) times four rows of A (bytes {@code x0 .. x3}), into
     * the eight accumulators of {@code acc} (row t, column u at {@code LANES (2t + u)}).
     */
    private static void q4Block2x4(MemorySegment w, long p0, long p1, float[] f, int e, int per, MemorySegment a,
                                 long x0, long x1, long x2, long x3, float[] acc) {
        FloatVector s00 = FloatVector.fromArray(F, acc, 0), s01 = FloatVector.fromArray(F, acc, LANES);
        FloatVector s10 = FloatVector.fromArray(F, acc, 2 * LANES), s11 = FloatVector.fromArray(F, acc, 3 * LANES);
        FloatVector s20 = FloatVector.fromArray(F, acc, 4 * LANES), s21 = FloatVector.fromArray(F, acc, 5 * LANES);
        FloatVector s30 = FloatVector.fromArray(F, acc, 6 * LANES), s31 = FloatVector.fromArray(F, acc, 7 * LANES);
        for (int s = 0; s < 8; s++) {
            int i = e + s, q = 16 + 32 * (s >> 1), shift = 4 * (s & 1);
            float d0 = f[i], m0 = f[i + 8], d1 = f[per + i], m1 = f[per + i + 8];
            for (int v = 0; v < 32; v += LANES) {
                long o = (32L * s + v) * Float.BYTES;
                FloatVector v0 = floats(nibbles(w, p0 + q + v, shift)).fma(d0, m0), v1 = floats(nibbles(w, p1 + q + v, shift)).fma(d1, m1);
                FloatVector xv = FloatVector.fromMemorySegment(F, a, x0 + o, NATIVE);
                s00 = v0.fma(xv, s00);
                s01 = v1.fma(xv, s01);
                xv = FloatVector.fromMemorySegment(F, a, x1 + o, NATIVE);
                s10 = v0.fma(xv, s10);
                s11 = v1.fma(xv, s11);
                xv = FloatVector.fromMemorySegment(F, a, x2 + o, NATIVE);
                s20 = v0.fma(xv, s20);
                s21 = v1.fma(xv, s21);
                xv = FloatVector.fromMemorySegment(F, a, x3 + o, NATIVE);
                s30 = v0.fma(xv, s30);
                s31 = v1.fma(xv, s31);
            }
        }
        s00.intoArray(acc, 0);
        s01.intoArray(acc, LANES);
        s10.intoArray(acc, 2 * LANES);
        s11.intoArray(acc, 3 * LANES);
        s20.intoArray(acc, 4 * LANES);
        s21.intoArray(acc, 5 * LANES);
        s30.intoArray(acc, 6 * LANES);
        s31.intoArray(acc, 7 * LANES);
    }

    /** {@link #q4Block2x4} for two rows of A (bytes {@code x0}, {@code x1}): accumulators row t, column u at {@code LANES (2t + u)}. */
    private static void q4Block2x2(MemorySegment w, long p0, long p1, float[] f, int e, int per, MemorySegment a,
                                   long x0, long x1, float[] acc) {
        FloatVector s00 = FloatVector.fromArray(F, acc, 0), s01 = FloatVector.fromArray(F, acc, LANES);
        FloatVector s10 = FloatVector.fromArray(F, acc, 2 * LANES), s11 = FloatVector.fromArray(F, acc, 3 * LANES);
        for (int s = 0; s < 8; s++) {
            int i = e + s, q = 16 + 32 * (s >> 1), shift = 4 * (s & 1);
            float d0 = f[i], m0 = f[i + 8], d1 = f[per + i], m1 = f[per + i + 8];
            for (int v = 0; v < 32; v += LANES) {
                long o = (32L * s + v) * Float.BYTES;
                FloatVector v0 = floats(nibbles(w, p0 + q + v, shift)).fma(d0, m0), v1 = floats(nibbles(w, p1 + q + v, shift)).fma(d1, m1);
                FloatVector xv = FloatVector.fromMemorySegment(F, a, x0 + o, NATIVE);
                s00 = v0.fma(xv, s00);
                s01 = v1.fma(xv, s01);
                xv = FloatVector.fromMemorySegment(F, a, x1 + o, NATIVE);
                s10 = v0.fma(xv, s10);
                s11 = v1.fma(xv, s11);
            }
        }
        s00.intoArray(acc, 0);
        s01.intoArray(acc, LANES);
        s10.intoArray(acc, 2 * LANES);
        s11.intoArray(acc, 3 * LANES);
    }

    // ---- Q5_K ----

    /*
     * A Q5_K block is a Q4_K block with a fifth bit per value: the same d, dmin and 12 scale bytes (so the same factors,
     * {@link #q4Factors}), then qh[32] @16 and the nibbles qs[128] @48. Value l of sub-block s takes its low 4 bits as
     * Q4_K does and its top bit from bit s of {@code qh[l]}. d*sc (17 significant bits) times q (5) is still exact in
     * float32, so the fused multiply-add by the negated min rounds once, where the reference's subtraction does.
     */

    private static void q5Block(MemorySegment w, long p, MemorySegment dst, long to, float[] f) {
        q4Factors(w, p, f, 0);
        for (int s = 0; s < 8; s++) {
            long q = p + 48 + 32 * (s >> 1);
            int shift = 4 * (s & 1);
            for (int v = 0; v < 32; v += LANES)
                floats(fives(nibbleInts(w, q + v, shift), fifthBits(w, p + 16 + v, s))).fma(f[s], f[8 + s]).intoMemorySegment(dst, to + (32L * s + v) * Float.BYTES, NATIVE);
        }
    }

    /**
     * {@link #q4Block4} for Q5_K, half of it: two rows of W (bytes {@code p0}, {@code p1}; factors from {@code f[e]},
     * {@code per} apart) into the two accumulators of {@code acc} from {@code at}. The one-row kernel calls it twice per
     * block: four rows' decoding in one method outgrew the JIT's node budget for inlining (NodeCountInliningCutoff),
     * which left vector helpers out of line (measured: three times slower).
     */
    private static void q5Block2(MemorySegment w, long p0, long p1, float[] f, int e, int per, MemorySegment a, long x,
                                 float[] acc, int at) {
        FloatVector s0 = FloatVector.fromArray(F, acc, at), s1 = FloatVector.fromArray(F, acc, at + LANES);
        for (int s = 0; s < 8; s++) {
            int i = e + s, q = 48 + 32 * (s >> 1), shift = 4 * (s & 1);
            float d0 = f[i], m0 = f[i + 8], d1 = f[per + i], m1 = f[per + i + 8];
            for (int v = 0; v < 32; v += LANES) {
                FloatVector xv = FloatVector.fromMemorySegment(F, a, x + (32L * s + v) * Float.BYTES, NATIVE);
                s0 = floats(fives(nibbleInts(w, p0 + q + v, shift), fifthBits(w, p0 + 16 + v, s))).fma(d0, m0).fma(xv, s0);
                s1 = floats(fives(nibbleInts(w, p1 + q + v, shift), fifthBits(w, p1 + 16 + v, s))).fma(d1, m1).fma(xv, s1);
            }
        }
        s0.intoArray(acc, at);
        s1.intoArray(acc, at + LANES);
    }

    /**
     * The 256 values of the Q5_K block at byte p (0 to 31) into {@code q[at .. at + 256)}: for products of several rows
     * of A, where decoding each weight vector in registers (five operations more than Q4_K's) for every pair of rows cost
     * more than unpacking the block once (measured: 4 rows 2.5 times the Q4_K kernel's time, against about 1.3 this way).
     */
    private static void q5Unpack(MemorySegment w, long p, byte[] q, int at) {
        for (int s = 0; s < 8; s++) {
            long lo = p + 48 + 32 * (s >> 1), hi = p + 16;
            int shift = 4 * (s & 1);
            for (int v = 0; v < 32; v += U.length()) {
                IntVector low = ((IntVector) ByteVector.fromMemorySegment(U, w, lo + v, NATIVE).reinterpretShape(UI, 0))
                        .lanewise(VectorOperators.LSHR, shift).and(NIBBLE);
                IntVector high = ((IntVector) ByteVector.fromMemorySegment(U, w, hi + v, NATIVE).reinterpretShape(UI, 0))
                        .lanewise(VectorOperators.LSHR, s).and(ONES).lanewise(VectorOperators.LSHL, 4);
                ((ByteVector) low.or(high).reinterpretShape(U, 0)).intoArray(q, at + 32 * s + v);
            }
        }
    }

    // ---- Q6_K ----

    /*
     * A Q6_K block, as 8 quarters u of 32 values (u = 4h + t: half h, quarter t within it): quarter u takes its low 4 bits
     * from the 32 ql bytes at 64h + 32(t & 1), shifted by 4(t >> 1), and its top 2 from the 32 qh bytes at 128 + 32h,
     * shifted by 2t; its values 16g .. 16g+15 (g = 2u and 2u + 1) have scale scales[g]. A value, d*scale*(q - 32), is
     * exact in float32 (at most 11 + 7 + 5 significant bits), so the order of the products does not matter. (Adding the
     * offset in a fused multiply-add instead, q*(d*scale) - 32*(d*scale), is exact too but gives +0 where the reference
     * gives -0: a negative scale times q - 32 = 0.)
     *
     * The kernels first unpack a block's 6-bit values into 256 signed bytes, q - 32 (32 at a time), then read those
     * ({@link #bytesBlock4}): decoding each vector of weights in place took twice the operations of a Q4_K one, and a
     * kernel with four columns of it outgrew the JIT's inlining budget (measured: five times slower than this; in
     * two-column halves, as Q5_K's one-row kernel is cut, 1.5 times slower).
     */

    /** The factors of the Q6_K block at byte p: group g's d*scales[g] at {@code out[o + g]}. */
    private static void q6Factors(MemorySegment w, long p, float[] out, int o) {
        float d = half(w, p + 208);
        for (int i = 0; i < 16; i += LANES) floats(bytes(w, p + 192 + i)).mul(d).intoArray(out, o + i);
    }

    /** The 256 values of the Q6_K block at byte p, less 32 (-32 to 31), into {@code q[at .. at + 256)}. */
    private static void q6Unpack(MemorySegment w, long p, byte[] q, int at) {
        for (int u = 0; u < 8; u++) {
            long lo = p + 64 * (u >> 2) + 32 * (u & 1), hi = p + 128 + 32 * (u >> 2);
            int lowShift = 4 * ((u >> 1) & 1), highShift = 2 * (u & 3);
            for (int v = 0; v < 32; v += U.length()) {
                ByteVector low = (ByteVector) ((IntVector) ByteVector.fromMemorySegment(U, w, lo + v, NATIVE).reinterpretShape(UI, 0))
                        .lanewise(VectorOperators.LSHR, lowShift).and(NIBBLE).reinterpretShape(U, 0);
                ByteVector high = (ByteVector) ((IntVector) ByteVector.fromMemorySegment(U, w, hi + v, NATIVE).reinterpretShape(UI, 0))
                        .lanewise(VectorOperators.LSHR, highShift).and(PAIR).lanewise(VectorOperators.LSHL, 4).reinterpretShape(U, 0);
                low.or(high).sub((byte) 32).intoArray(q, at + 32 * u + v);
            }
        }
    }

    // ---- IQ4_XS ----

    /*
     * An IQ4_XS block, 136 bytes: d (float16) @0, scales_h (16 bits) @2, scales_l[4] @4, qs[128] @8. Sub-block ib (32
     * values) has the 6-bit scale ls = (nibble ib of scales_l) | (bits 2ib, 2ib+1 of scales_h) << 4 and the factor
     * dl = d*(ls - 32); its values are the 16 bytes at 8 + 16 ib, low nibbles first (values 0 to 15), then the high ones,
     * each an index into a fixed table of 16 integers (-127 to 113), and a value is dl times its table entry. dl has at most
     * 17 significant bits and the entry 7, so every value is exact in float32. The kernels run it as Q6_K: the block
     * unpacked to its table entries as signed bytes (a byte shuffle), then each group of 16 times its factor (the factor
     * of sub-block ib repeated for groups 2ib and 2ib+1).
     */

    /** The table IQ4_NL and IQ4_XS index (ggml's kvalues_iq4nl). */
    private static final byte[] IQ4_TABLE = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    private static final ByteVector IQ4_VALUES = ByteVector.fromArray(B16, IQ4_TABLE, 0);

    /** The factors of the IQ4_XS block at byte p: sub-block ib's d*(ls - 32) at {@code out[o + 2ib]} and {@code out[o + 2ib + 1]}. */
    private static void iq4Factors(MemorySegment w, long p, float[] out, int o) {
        float d = half(w, p);
        int high = w.get(HALF, p + 2) & 0xFFFF, low = w.get(INT, p + 4);
        for (int ib = 0; ib < 8; ib++) {
            int ls = (low >>> 4 * ib) & 0xF | ((high >>> 2 * ib) & 3) << 4;
            float dl = d * (ls - 32);
            out[o + 2 * ib] = dl;
            out[o + 2 * ib + 1] = dl;
        }
    }

    /** The 256 table entries of the IQ4_XS block at byte p, as signed bytes, into {@code q[at .. at + 256)}. */
    private static void iq4Unpack(MemorySegment w, long p, byte[] q, int at) {
        for (int ib = 0; ib < 8; ib++) {
            IntVector bytes = (IntVector) ByteVector.fromMemorySegment(B16, w, p + 8 + 16 * ib, NATIVE).reinterpretShape(I4, 0);
            ((ByteVector) bytes.and(NIBBLE).reinterpretShape(B16, 0)).selectFrom(IQ4_VALUES).intoArray(q, at + 32 * ib);
            ((ByteVector) bytes.lanewise(VectorOperators.LSHR, 4).and(NIBBLE).reinterpretShape(B16, 0)).selectFrom(IQ4_VALUES)
                    .intoArray(q, at + 32 * ib + 16);
        }
    }

    // ---- Q3_K ----

    /*
     * A Q3_K block, 110 bytes: hmask[32] @0, qs[64] @32, scales[12] @96, d (float16) @108. Half h (128 values) and
     * quarter j (32 values, j = 0..3) take their low 2 bits from bits 2j, 2j+1 of qs[32h + l] (l = 0..31) and their
     * third from bit 4h + j of hmask[l]; the value is (low - (that bit ? 0 : 4)) = (low | bit << 2) - 4, from -4 to 3.
     * Value i's group of 16, g = i / 16, has the 6-bit scale sc[g] (the 12 bytes' low nibbles for groups 0-7, high
     * nibbles for 8-15, topped with 2 bits each from bytes 8-11) and the factor d*(sc[g] - 32); a value (at most
     * 11 + 6 + 3 significant bits) is exact in float32.
     */

    /** The factors of the Q3_K block at byte p: group g's d*(sc[g] - 32) at {@code out[o + g]}. */
    private static void q3Factors(MemorySegment w, long p, float[] out, int o) {
        float d = half(w, p + 108);
        int a0 = w.get(INT, p + 96), a1 = w.get(INT, p + 100), top = w.get(INT, p + 104);
        for (int g = 0; g < 16; g++) {
            // Groups 0-3 and 4-7: the low nibbles of bytes 0-3 and 4-7; 8-11 and 12-15 their high nibbles; each topped
            // with 2 bits of byte g & 3 of bytes 8-11 (bits 2(g / 4), 2(g / 4) + 1).
            int low = ((g & 4) == 0 ? a0 : a1) >>> 4 * (g >> 3), at = 8 * (g & 3);
            int sc = low >>> at & 0xF | (top >>> at + 2 * (g >> 2) & 3) << 4;
            out[o + g] = d * (sc - 32);
        }
    }

    /** The 256 values of the Q3_K block at byte p (-4 to 3) into {@code q[at .. at + 256)}. */
    private static void q3Unpack(MemorySegment w, long p, byte[] q, int at) {
        for (int h = 0; h < 2; h++)
            for (int j = 0; j < 4; j++)
                for (int v = 0; v < 32; v += U.length()) {
                    IntVector low = ((IntVector) ByteVector.fromMemorySegment(U, w, p + 32 + 32 * h + v, NATIVE).reinterpretShape(UI, 0))
                            .lanewise(VectorOperators.LSHR, 2 * j).and(PAIR);
                    IntVector high = ((IntVector) ByteVector.fromMemorySegment(U, w, p + v, NATIVE).reinterpretShape(UI, 0))
                            .lanewise(VectorOperators.LSHR, 4 * h + j).and(ONES).lanewise(VectorOperators.LSHL, 2);
                    ((ByteVector) low.or(high).reinterpretShape(U, 0)).sub((byte) 4).intoArray(q, at + 128 * h + 32 * j + v);
                }
    }

    // ---- Q2_K ----

    /*
     * A Q2_K block, 84 bytes: scales[16] @0, qs[64] @16, d @80 and dmin @82 (float16). Values are laid out as Q3_K's low
     * 2 bits (bits 2j, 2j+1 of qs[32h + l] for quarter j of half h), from 0 to 3; group g = i / 16 has the scale
     * d*(scales[g] & 15) and the min dmin*(scales[g] >> 4), and a value is scale*q - min. The product is exact (at most
     * 11 + 4 + 2 significant bits), so the fused multiply-add by the negated min rounds once, where the reference's
     * subtraction does.
     */

    /** The factors of the Q2_K block at byte p: group g's scale at {@code out[o + g]}, its negated min at {@code out[o + 16 + g]}. */
    private static void q2Factors(MemorySegment w, long p, float[] out, int o) {
        float d = half(w, p + 80), negatedMin = -half(w, p + 82);
        for (int g = 0; g < 16; g++) {
            int sc = w.get(ValueLayout.JAVA_BYTE, p + g) & 0xFF;
            out[o + g] = d * (sc & 15);
            out[o + 16 + g] = negatedMin * (sc >> 4);
        }
    }

    /** The 256 values of the Q2_K block at byte p (0 to 3) into {@code q[at .. at + 256)}. */
    private static void q2Unpack(MemorySegment w, long p, byte[] q, int at) {
        for (int h = 0; h < 2; h++)
            for (int j = 0; j < 4; j++)
                for (int v = 0; v < 32; v += U.length())
                    ((ByteVector) ((IntVector) ByteVector.fromMemorySegment(U, w, p + 16 + 32 * h + v, NATIVE).reinterpretShape(UI, 0))
                            .lanewise(VectorOperators.LSHR, 2 * j).and(PAIR).reinterpretShape(U, 0)).intoArray(q, at + 128 * h + 32 * j + v);
    }

    // ---- Lattice (IQ1, IQ2, IQ3) and ternary (TQ1_0, TQ2_0) types ----

    /*
     * These unpack to signed bytes as the k-quants do, each group of 16 with one factor (ggml's layouts are described in
     * GgmlDequant). IQ2 and IQ3: a value is (scale) * (table magnitude) * (sign), the magnitude at most 62, so the bytes
     * are the signed magnitudes and the factor the scale (d (1/2 + s) / 4, d (1/2 + s) / 2 or d (1 + 2 s)). IQ1: a value
     * is dl * (t + delta) with t in {-1, 0, 1} and delta = +-1/8, so the bytes are 8 t +- 1 and the factor dl / 8. TQ: the
     * bytes are -1, 0 or 1 and the factor d. Every product of a factor (at most 11 + 5 significant bits) and a byte is
     * exact in float32, as ggml's own products are, so the values are ggml's bit for bit.
     */

    private static final long LOW_BITS = 0x0101_0101_0101_0101L;
    private static final java.lang.invoke.VarHandle LONG_IN_BYTES =
            java.lang.invoke.MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);

    /** The lattice types' derived tables, built (and {@link IqGrids} read) only when such a matrix is first used. */
    private static final class Lattice {
        /** Byte j is 0xFF where bit j of the index is set. */
        static final long[] SIGN_MASKS = new long[256];
        /** {@link #SIGN_MASKS} of the 7 stored signs, the eighth added ({@link IqGrids#signs7}). */
        static final long[] SIGN7_MASKS = new long[128];
        /** IQ1_S's table entries as 8 bytes 8t + 1 and 8t - 1 (the group's delta +1/8 or -1/8, times 8). */
        static final long[] IQ1_PLUS = new long[2048], IQ1_MINUS = new long[2048];

        static {
            for (int b = 0; b < 256; b++)
                for (int j = 0; j < 8; j++) if ((b >> j & 1) != 0) SIGN_MASKS[b] |= 0xFFL << 8 * j;
            for (int b = 0; b < 128; b++) SIGN7_MASKS[b] = SIGN_MASKS[IqGrids.signs7(b)];
            for (int e = 0; e < 2048; e++)
                for (int j = 0; j < 8; j++) {
                    int t = (byte) (IqGrids.IQ1_S[e] >>> 8 * j);
                    IQ1_PLUS[e] |= (long) ((8 * t + 1) & 0xFF) << 8 * j;
                    IQ1_MINUS[e] |= (long) ((8 * t - 1) & 0xFF) << 8 * j;
                }
        }
    }

    /** 8 magnitudes (1 to 127) negated where {@code signs} has a bit: per byte, (m ^ 0xFF) + 1 never carries. */
    private static long signed(long magnitudes, int signs) {
        return negated(magnitudes, Lattice.SIGN_MASKS[signs]);
    }

    /** {@link #signed} with IQ2's and IQ3's 7 stored signs ({@link IqGrids#signs7}). */
    private static long signed7(long magnitudes, int signs) {
        return negated(magnitudes, Lattice.SIGN7_MASKS[signs]);
    }

    private static long negated(long magnitudes, long mask) {
        return (magnitudes ^ mask) + (mask & LOW_BITS);
    }

    private static void put8(byte[] q, int at, long bytes) {
        LONG_IN_BYTES.set(q, at, bytes);
    }

    private static int u8(MemorySegment w, long p) {
        return w.get(ValueLayout.JAVA_BYTE, p) & 0xFF;
    }

    /** IQ1_M's d, spread over the top nibbles of its four 16-bit scale words. */
    private static short iq1mScale(MemorySegment w, long p) {
        int s0 = w.get(HALF, p + 48) & 0xFFFF, s1 = w.get(HALF, p + 50) & 0xFFFF, s2 = w.get(HALF, p + 52) & 0xFFFF,
                s3 = w.get(HALF, p + 54) & 0xFFFF;
        return (short) ((s0 >> 12) | ((s1 >> 8) & 0x00F0) | ((s2 >> 4) & 0x0F00) | (s3 & 0xF000));
    }

    /**
     * The 256 values of the lattice block at byte p as signed bytes (see above) into {@code q[at .. at + 256)}: the
     * block's bytes are first copied to the end of {@code q} ({@link #PAD}), then read from there.
     */
    private static void latticeUnpack(DType type, MemorySegment w, long p, byte[] q, int at) {
        int b = q.length - STAGE;
        MemorySegment.copy(w, ValueLayout.JAVA_BYTE, p, q, b, type.blockBytes());
        switch (type) {
            case IQ2_XXS -> iq2xxsUnpack(q, b, at);
            case IQ2_XS -> iq2xsUnpack(q, b, at);
            case IQ2_S -> iq2sUnpack(q, b, at);
            case IQ3_XXS -> iq3xxsUnpack(q, b, at);
            case IQ3_S -> iq3sUnpack(q, b, at);
            case IQ1_S -> iq1sUnpack(q, b, at);
            case IQ1_M -> iq1mUnpack(q, b, at);
            default -> throw new IllegalArgumentException("not a lattice type: " + type);
        }
    }

    private static final java.lang.invoke.VarHandle INT_IN_BYTES =
            java.lang.invoke.MethodHandles.byteArrayViewVarHandle(int[].class, ByteOrder.LITTLE_ENDIAN);

    private static int int32(byte[] q, int i) {
        return (int) INT_IN_BYTES.get(q, i);
    }

    private static int b8(byte[] q, int i) {
        return q[i] & 0xFF;
    }

    private static int u16(byte[] q, int i) {
        return b8(q, i) | b8(q, i + 1) << 8;
    }

    private static void iq2xxsUnpack(byte[] q, int b, int at) {
        for (int ib = 0; ib < 8; ib++) {
            int g = b + 2 + 8 * ib, aux = int32(q, g + 4), o = at + 32 * ib;
            for (int l = 0; l < 4; l++) put8(q, o + 8 * l, signed7(IqGrids.IQ2_XXS[b8(q, g + l)], aux >>> 7 * l & 127));
        }
    }

    private static void iq2xsUnpack(byte[] q, int b, int at) {
        for (int i = 0; i < 32; i++) {
            int v = u16(q, b + 2 + 2 * i);
            put8(q, at + 8 * i, signed7(IqGrids.IQ2_XS[v & 511], v >>> 9));
        }
    }

    private static void iq2sUnpack(byte[] q, int b, int at) {
        for (int ib = 0; ib < 8; ib++) {
            int qh = b8(q, b + 66 + ib), o = at + 32 * ib;
            for (int l = 0; l < 4; l++)
                put8(q, o + 8 * l, signed(IqGrids.IQ2_S[b8(q, b + 2 + 4 * ib + l) | (qh << 8 - 2 * l & 0x300)], b8(q, b + 34 + 4 * ib + l)));
        }
    }

    private static void iq3xxsUnpack(byte[] q, int b, int at) {
        for (int ib = 0; ib < 8; ib++) {
            int g = b + 2 + 8 * ib, aux = int32(q, b + 66 + 4 * ib), o = at + 32 * ib;
            for (int l = 0; l < 4; l++) {
                long pair = IqGrids.IQ3_XXS[b8(q, g + 2 * l)] & 0xFFFF_FFFFL | (long) IqGrids.IQ3_XXS[b8(q, g + 2 * l + 1)] << 32;
                put8(q, o + 8 * l, signed7(pair, aux >>> 7 * l & 127));
            }
        }
    }

    private static void iq3sUnpack(byte[] q, int b, int at) {
        for (int ib = 0; ib < 8; ib++) {
            int g = b + 2 + 8 * ib, qh = b8(q, b + 66 + ib), o = at + 32 * ib;
            for (int l = 0; l < 4; l++) {
                int e1 = b8(q, g + 2 * l) | (qh << 8 - 2 * l & 256), e2 = b8(q, g + 2 * l + 1) | (qh << 7 - 2 * l & 256);
                long pair = IqGrids.IQ3_S[e1] & 0xFFFF_FFFFL | (long) IqGrids.IQ3_S[e2] << 32;
                put8(q, o + 8 * l, signed(pair, b8(q, b + 74 + 4 * ib + l)));
            }
        }
    }

    private static void iq1sUnpack(byte[] q, int b, int at) {
        for (int ib = 0; ib < 8; ib++) {
            int qh = u16(q, b + 34 + 2 * ib), o = at + 32 * ib;
            long[] table = (qh & 0x8000) != 0 ? Lattice.IQ1_MINUS : Lattice.IQ1_PLUS;
            for (int l = 0; l < 4; l++) put8(q, o + 8 * l, table[b8(q, b + 2 + 4 * ib + l) | (qh >> 3 * l & 7) << 8]);
        }
    }

    private static void iq1mUnpack(byte[] q, int b, int at) {
        for (int ib = 0; ib < 8; ib++) {
            int h0 = b8(q, b + 32 + 2 * ib), h1 = b8(q, b + 33 + 2 * ib), qs = b + 4 * ib, o = at + 32 * ib;
            put8(q, o, ((h0 & 0x08) != 0 ? Lattice.IQ1_MINUS : Lattice.IQ1_PLUS)[b8(q, qs) | (h0 << 8 & 0x700)]);
            put8(q, o + 8, ((h0 & 0x80) != 0 ? Lattice.IQ1_MINUS : Lattice.IQ1_PLUS)[b8(q, qs + 1) | (h0 << 4 & 0x700)]);
            put8(q, o + 16, ((h1 & 0x08) != 0 ? Lattice.IQ1_MINUS : Lattice.IQ1_PLUS)[b8(q, qs + 2) | (h1 << 8 & 0x700)]);
            put8(q, o + 24, ((h1 & 0x80) != 0 ? Lattice.IQ1_MINUS : Lattice.IQ1_PLUS)[b8(q, qs + 3) | (h1 << 4 & 0x700)]);
        }
    }

    /**
     * The factors of the lattice block at byte p: group g's (16 values) at {@code out[o + g]}; the two groups of a
     * 32-value sub-block share one, except in IQ2_XS, IQ2_S and IQ1_M, which scale each half on its own.
     */
    private static void latticeFactors(DType type, MemorySegment w, long p, float[] out, int o) {
        float d = type == DType.IQ1_M ? Float.float16ToFloat(iq1mScale(w, p)) : half(w, p);
        for (int ib = 0; ib < 8; ib++) {
            float f0, f1;
            switch (type) {
                case IQ2_XXS -> f0 = f1 = d * (0.5f + (w.get(INT, p + 2 + 8 * ib + 4) >>> 28)) * 0.25f;
                case IQ2_XS, IQ2_S -> {
                    int sc = u8(w, p + (type == DType.IQ2_XS ? 66 : 74) + ib);
                    f0 = d * (0.5f + (sc & 0xF)) * 0.25f;
                    f1 = d * (0.5f + (sc >> 4)) * 0.25f;
                }
                case IQ3_XXS -> f0 = f1 = d * (0.5f + (w.get(INT, p + 66 + 4 * ib) >>> 28)) * 0.5f;
                case IQ3_S -> {
                    int sc = u8(w, p + 106 + ib / 2);
                    f0 = f1 = d * (1 + 2 * ((ib & 1) == 0 ? sc & 0xF : sc >> 4));
                }
                case IQ1_S -> f0 = f1 = d * (2 * ((w.get(HALF, p + 34 + 2 * ib) & 0xFFFF) >> 12 & 7) + 1) * 0.125f;
                case IQ1_M -> {
                    int sc = (w.get(HALF, p + 48 + 2 * (ib / 2)) & 0xFFFF) >> 6 * (ib % 2);
                    f0 = d * (2 * (sc & 7) + 1) * 0.125f;
                    f1 = d * (2 * (sc >> 3 & 7) + 1) * 0.125f;
                }
                default -> throw new IllegalArgumentException("not a lattice type: " + type);
            }
            out[o + 2 * ib] = f0;
            out[o + 2 * ib + 1] = f1;
        }
    }

    /** A base-3 digit of a TQ1_0 byte times a power of 3 (mod 256): the top digit of {@code v / 256}, less 1. */
    private static byte trit(int v) {
        return (byte) (((v & 0xFF) * 3 >> 8) - 1);
    }

    private static final int[] POW3 = {1, 3, 9, 27, 81};

    /** LANES 32-bit lanes, for TQ1_0's base-3 digits. */
    private static final VectorSpecies<Integer> IL = VectorSpecies.of(int.class, F.vectorShape());

    /** TQ1_0 (qs[48] @0, qh[4] @48, d @52): 5 digits per qs byte, 4 per qh byte, in ggml's order. */
    private static void tq1Unpack(MemorySegment w, long p, byte[] q, int at) {
        // Each vector store may write past its range into one that is written after it, never into one before.
        for (int n = 0; n < 5; n++) tq1Digits(w, p, 32, POW3[n], q, at + 32 * n);
        for (int n = 0; n < 5; n++) tq1Digits(w, p + 32, 16, POW3[n], q, at + 160 + 16 * n);
        for (int n = 0; n < 4; n++)
            for (int j = 0; j < 4; j++) q[at + 240 + 4 * n + j] = trit(u8(w, p + 48 + j) * POW3[n]);
    }

    /** {@code count} bytes from {@code src} times {@code pow} (mod 256), each as its top base-3 digit less 1, to {@code q[to ..]}. */
    private static void tq1Digits(MemorySegment w, long src, int count, int pow, byte[] q, int to) {
        for (int m = 0; m < count; m += LANES) {
            IntVector v = (IntVector) ByteVector.fromMemorySegment(B, w, src + m, NATIVE).convertShape(VectorOperators.B2I, IL, 0);
            v = v.and(0xFF).mul(pow).and(0xFF).mul(3).lanewise(VectorOperators.ASHR, 8).sub(1);
            ((ByteVector) v.convertShape(VectorOperators.I2B, B, 0)).intoArray(q, to + m);
        }
    }

    /** TQ2_0 (qs[64] @0, d @64): Q2_K's 2-bit layout from byte 0, less 1. */
    private static void tq2Unpack(MemorySegment w, long p, byte[] q, int at) {
        for (int h = 0; h < 2; h++)
            for (int j = 0; j < 4; j++)
                for (int v = 0; v < 32; v += U.length())
                    ((ByteVector) ((IntVector) ByteVector.fromMemorySegment(U, w, p + 32 * h + v, NATIVE).reinterpretShape(UI, 0))
                            .lanewise(VectorOperators.LSHR, 2 * j).and(PAIR).reinterpretShape(U, 0)).sub((byte) 1)
                            .intoArray(q, at + 128 * h + 32 * j + v);
    }

    // ---- Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL ----

    /*
     * ggml's small blocks, 32 values each: d (float16) @0, then for Q4_1 and Q5_1 m (float16) @2; then for Q5_0 and Q5_1
     * qh (32 bits, little-endian); then qs[16]. Value j (0 to 15) takes its low 4 bits from the low nibble of qs[j], value
     * j + 16 from the high nibble; in Q5_0 and Q5_1, bit j of qh is value j's fifth bit. A value is d*(q - 8) (Q4_0),
     * d*(q - 16) (Q5_0), d*q + m (Q4_1, Q5_1) or d times entry q of the IQ4 table (IQ4_NL). Each product of d (11
     * significant bits) and its integer (at most 7) is exact in float32, so the fused multiply-add by m rounds once, where
     * the reference's addition does. A matrix of them is read as 256-value blocks of eight: the kernels unpack those to
     * signed bytes (Q4_1 and Q5_1 with a scale and min per group of 32, the others with each d given to both groups of
     * 16), as the k-quant types' unpacked blocks.
     */

    /** For the 16 values of one nibble half of a Q5_0 or Q5_1 block: lane j reads byte j / 8 of qh (its low half, or its high one). */
    private static final VectorShuffle<Byte> QH_LOW = VectorShuffle.fromValues(B16, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    private static final VectorShuffle<Byte> QH_HIGH = VectorShuffle.fromValues(B16, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    /** Lane j: bit j % 8. */
    private static final ByteVector BIT_OF_LANE = ByteVector.fromArray(B16,
            new byte[] {1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128}, 0);

    /** The 32 values of the small block at byte p (as signed bytes: less 8 or 16, or IQ4 table entries) into {@code q[at .. at + 32)}. */
    private static void smallUnpack(DType type, MemorySegment w, long p, byte[] q, int at) {
        switch (type) {
            case Q4_0 -> nibbleHalves(w, p + 2, q, at, false, 8);
            case Q4_1 -> nibbleHalves(w, p + 4, q, at, false, 0);
            case Q5_0 -> {
                fifths(w, p + 2, q, at);
                nibbleHalves(w, p + 6, q, at, true, 16);
            }
            case Q5_1 -> {
                fifths(w, p + 4, q, at);
                nibbleHalves(w, p + 8, q, at, true, 0);
            }
            case IQ4_NL -> {
                IntVector bytes = (IntVector) ByteVector.fromMemorySegment(B16, w, p + 2, NATIVE).reinterpretShape(I4, 0);
                ((ByteVector) bytes.and(NIBBLE).reinterpretShape(B16, 0)).selectFrom(IQ4_VALUES).intoArray(q, at);
                ((ByteVector) bytes.lanewise(VectorOperators.LSHR, 4).and(NIBBLE).reinterpretShape(B16, 0)).selectFrom(IQ4_VALUES)
                        .intoArray(q, at + 16);
            }
            default -> throw new IllegalArgumentException("not a small-block type: " + type);
        }
    }

    /**
     * The low nibbles of the 16 bytes at {@code qs} into {@code q[at .. at + 16)}, their high nibbles into {@code q[at + 16
     * .. at + 32)}, each or-ed with the byte already there when {@code or} (the fifth bits), less {@code offset}.
     */
    private static void nibbleHalves(MemorySegment w, long qs, byte[] q, int at, boolean or, int offset) {
        IntVector bytes = (IntVector) ByteVector.fromMemorySegment(B16, w, qs, NATIVE).reinterpretShape(I4, 0);
        ByteVector low = (ByteVector) bytes.and(NIBBLE).reinterpretShape(B16, 0);
        ByteVector high = (ByteVector) bytes.lanewise(VectorOperators.LSHR, 4).and(NIBBLE).reinterpretShape(B16, 0);
        if (or) {
            low = low.or(ByteVector.fromArray(B16, q, at));
            high = high.or(ByteVector.fromArray(B16, q, at + 16));
        }
        low.sub((byte) offset).intoArray(q, at);
        high.sub((byte) offset).intoArray(q, at + 16);
    }

    /**
     * The factors of the {@code count} (eight, or fewer at the end of a row) small blocks from byte p for {@link
     * #nibbleBlock4} and its kin, laid out as {@link #q4Factors} lays out a Q4_K block's: block s's scale at {@code
     * out[o + s]} and the value it adds at {@code out[o + 8 + s]}: d and m (Q4_1, Q5_1), d and -8d or -16d (Q4_0, Q5_0:
     * the fused q*d - 8d is (q - 8)*d exactly, but +0 where the reference's product gives -0 for q = 8 and a negative d;
     * a sum of products that starts at +0 never becomes -0, so the products' sums are the same, and the values the
     * decoder writes are the reference's own), d alone for IQ4_NL.
     */
    private static void nibbleFactors(DType type, MemorySegment w, long p, int count, float[] out, int o) {
        int blockBytes = type.blockBytes();
        if (type == DType.Q4_1 || type == DType.Q5_1) {
            for (int s = 0; s < count; s++) {
                long b = p + (long) s * blockBytes;
                out[o + s] = half(w, b);
                out[o + 8 + s] = half(w, b + 2);
            }
        } else {
            // Q4_0's -8d, Q5_0's -16d; IQ4_NL's (a table entry times d) has no second factor and leaves it unused.
            float offset = type == DType.Q5_0 ? -16 : -8;
            for (int s = 0; s < count; s++) {
                float d = half(w, p + (long) s * blockBytes);
                out[o + s] = d;
                out[o + 8 + s] = offset * d;
            }
        }
    }

    /** IQ4_NL's table as LANES bytes, for the one-row kernel where a byte vector is 16 lanes ({@link #nibbles}). */
    private static final ByteVector IQ4_LANES = ByteVector.fromArray(B, java.util.Arrays.copyOf(IQ4_TABLE, Math.max(16, B.length())), 0);

    /** The table entries of the 16 nibbles at bit {@code shift} of the bytes from {@code at}. */
    private static ByteVector iq4Entries(MemorySegment w, long at, int shift) {
        return nibbles(w, at, shift).selectFrom(IQ4_LANES);
    }

    /**
     * {@link #nibbleBlock4} for IQ4_NL (blocks of 18 bytes, nibbles from byte 2): each nibble looked up in the table
     * (a byte shuffle), then times d, ggml's product.
     */
    private static void iq4nlBlock4(MemorySegment w, long p0, long p1, long p2, long p3, int count, float[] f, int e,
                                    int per, MemorySegment a, long x, float[] acc) {
        FloatVector s0 = FloatVector.fromArray(F, acc, 0), s1 = FloatVector.fromArray(F, acc, LANES);
        FloatVector s2 = FloatVector.fromArray(F, acc, 2 * LANES), s3 = FloatVector.fromArray(F, acc, 3 * LANES);
        for (int s = 0; s < count; s++) {
            int i = e + s;
            long q = 18L * s + 2;
            float d0 = f[i], d1 = f[per + i], d2 = f[2 * per + i], d3 = f[3 * per + i];
            for (int v = 0; v < 32; v += LANES) {
                int shift = (v & 16) >> 2, at = v & 15;
                FloatVector xv = FloatVector.fromMemorySegment(F, a, x + (32L * s + v) * Float.BYTES, NATIVE);
                s0 = floats(iq4Entries(w, p0 + q + at, shift)).mul(d0).fma(xv, s0);
                s1 = floats(iq4Entries(w, p1 + q + at, shift)).mul(d1).fma(xv, s1);
                s2 = floats(iq4Entries(w, p2 + q + at, shift)).mul(d2).fma(xv, s2);
                s3 = floats(iq4Entries(w, p3 + q + at, shift)).mul(d3).fma(xv, s3);
            }
        }
        s0.intoArray(acc, 0);
        s1.intoArray(acc, LANES);
        s2.intoArray(acc, 2 * LANES);
        s3.intoArray(acc, 3 * LANES);
    }

    /**
     * {@code count} (eight, or fewer at the end of a row) Q4_0 or Q4_1 blocks of four rows of W (bytes {@code p0 .. p3}:
     * blocks of {@code blockBytes}, their 16 nibble bytes at {@code qs} within; factors from {@code f[e]}, {@code per}
     * apart, as {@link #nibbleFactors} lays them out) times the floats of A's row from byte {@code x}, into the four
     * accumulators of {@code acc}: {@link #q4Block4} with the small blocks' layout, each vector of weights decoded in
     * registers.
     */
    private static void nibbleBlock4(MemorySegment w, long p0, long p1, long p2, long p3, int blockBytes, int qs, int count,
                                     float[] f, int e, int per, MemorySegment a, long x, float[] acc) {
        FloatVector s0 = FloatVector.fromArray(F, acc, 0), s1 = FloatVector.fromArray(F, acc, LANES);
        FloatVector s2 = FloatVector.fromArray(F, acc, 2 * LANES), s3 = FloatVector.fromArray(F, acc, 3 * LANES);
        for (int s = 0; s < count; s++) {
            int i = e + s;
            long q = (long) s * blockBytes + qs;
            float d0 = f[i], m0 = f[i + 8], d1 = f[per + i], m1 = f[per + i + 8];
            float d2 = f[2 * per + i], m2 = f[2 * per + i + 8], d3 = f[3 * per + i], m3 = f[3 * per + i + 8];
            // Values 0 to 15 of the block (low nibbles) then 16 to 31 (high nibbles): v from 0 to 31, the bytes v % 16.
            for (int v = 0; v < 32; v += LANES) {
                int shift = (v & 16) >> 2, at = v & 15;
                FloatVector xv = FloatVector.fromMemorySegment(F, a, x + (32L * s + v) * Float.BYTES, NATIVE);
                s0 = floats(nibbles(w, p0 + q + at, shift)).fma(d0, m0).fma(xv, s0);
                s1 = floats(nibbles(w, p1 + q + at, shift)).fma(d1, m1).fma(xv, s1);
                s2 = floats(nibbles(w, p2 + q + at, shift)).fma(d2, m2).fma(xv, s2);
                s3 = floats(nibbles(w, p3 + q + at, shift)).fma(d3, m3).fma(xv, s3);
            }
        }
        s0.intoArray(acc, 0);
        s1.intoArray(acc, LANES);
        s2.intoArray(acc, 2 * LANES);
        s3.intoArray(acc, 3 * LANES);
    }

    /**
     * {@link #nibbleBlock4} for Q5_0 and Q5_1, two rows of W at a time (into accumulators {@code at} and {@code at +
     * LANES}; four in one method outgrew the JIT's node budget, which left the last row's helpers out of line): blocks
     * of {@code blockBytes}, the 32 fifth bits at {@code qh}, the nibble bytes at {@code qs}. Value j's nibble as
     * float32, plus 16 in the lanes whose bit j of qh is set (a mask made from those bits), then {@code q*d + m} (m =
     * -16d for Q5_0: (q - 16)*d exactly, but for the sign of a zero, as for Q4_0).
     */
    private static void fiveBlock2(MemorySegment w, long p0, long p1, int blockBytes, int qh, int qs, int count, float[] f,
                                   int e, int per, MemorySegment a, long x, float[] acc, int at) {
        FloatVector s0 = FloatVector.fromArray(F, acc, at), s1 = FloatVector.fromArray(F, acc, at + LANES);
        for (int s = 0; s < count; s++) {
            int i = e + s;
            long b = (long) s * blockBytes, q = b + qs;
            float d0 = f[i], m0 = f[i + 8], d1 = f[per + i], m1 = f[per + i + 8];
            long h0 = bits32(w, p0 + b + qh), h1 = bits32(w, p1 + b + qh);
            for (int v = 0; v < 32; v += LANES) {
                int shift = (v & 16) >> 2, o = v & 15;
                FloatVector xv = FloatVector.fromMemorySegment(F, a, x + (32L * s + v) * Float.BYTES, NATIVE);
                s0 = floats(nibbles(w, p0 + q + o, shift)).add(16f, VectorMask.fromLong(F, h0 >>> v)).fma(d0, m0).fma(xv, s0);
                s1 = floats(nibbles(w, p1 + q + o, shift)).add(16f, VectorMask.fromLong(F, h1 >>> v)).fma(d1, m1).fma(xv, s1);
            }
        }
        s0.intoArray(acc, at);
        s1.intoArray(acc, at + LANES);
    }

    /** The unsigned 32 bits at byte p. */
    private static long bits32(MemorySegment w, long p) {
        return w.get(INT, p) & 0xFFFF_FFFFL;
    }

    /** The 32 bits at {@code qh}, bit j as bit 4 of {@code q[at + j]}. */
    private static void fifths(MemorySegment w, long qh, byte[] q, int at) {
        ByteVector bits = (ByteVector) IntVector.broadcast(I4, w.get(INT, qh)).reinterpretShape(B16, 0);
        fifth(bits.rearrange(QH_LOW)).intoArray(q, at);
        fifth(bits.rearrange(QH_HIGH)).intoArray(q, at + 16);
    }

    /** 16 (the fifth bit) in the lanes whose byte has bit {@code lane % 8} set, else 0. */
    private static ByteVector fifth(ByteVector bytes) {
        return ByteVector.zero(B16).blend((byte) 16, bytes.and(BIT_OF_LANE).compare(VectorOperators.NE, 0));
    }

    /** The small block at byte p decoded: value i is {@code q[i] * d}, or {@code q[i] * d + m}. */
    private static void smallBlock(DType type, MemorySegment w, long p, MemorySegment dst, long to, byte[] q) {
        smallUnpack(type, w, p, q, 0);
        float d = half(w, p);
        boolean mins = hasMins(type);
        float m = mins ? half(w, p + 2) : 0f;
        for (int i = 0; i < 32; i += LANES) {
            FloatVector v = floats(ByteVector.fromArray(B, q, i));
            (mins ? v.fma(d, m) : v.mul(d)).intoMemorySegment(dst, to + (long) i * Float.BYTES, NATIVE);
        }
    }

    // ---- Shared ----

    /** LANES bytes from byte {@code at}. */
    private static ByteVector bytes(MemorySegment w, long at) {
        return ByteVector.fromMemorySegment(B, w, at, NATIVE);
    }

    /**
     * The nibbles at bit {@code shift} (0 or 4) of the LANES bytes from {@code at}: shifted as 32-bit lanes (x86 has no
     * byte shifts), so a byte also receives its neighbour's low bits at its top, which the mask clears.
     */
    private static ByteVector nibbles(MemorySegment w, long at, int shift) {
        return (ByteVector) ints(bytes(w, at)).lanewise(VectorOperators.LSHR, shift).and(NIBBLE).reinterpretShape(B, 0);
    }

    /**
     * Q5_K values as bytes: the low 4 bits ({@link #nibbleInts}) or-ed with the fifth ({@link #fifthBits}). (Taking the
     * addresses and shifts of both instead, five arguments wide, the JIT refused to inline it: "callee uses too much
     * stack", which boxes the vectors.)
     */
    private static ByteVector fives(IntVector low, IntVector high) {
        return (ByteVector) low.or(high).reinterpretShape(B, 0);
    }

    /** {@link #nibbles} as 32-bit lanes. */
    private static IntVector nibbleInts(MemorySegment w, long at, int shift) {
        return ints(bytes(w, at)).lanewise(VectorOperators.LSHR, shift).and(NIBBLE);
    }

    /** Bit {@code bit} of each of the LANES bytes from {@code at}, moved to bit 4 of its byte (as 32-bit lanes). */
    private static IntVector fifthBits(MemorySegment w, long at, int bit) {
        return ints(bytes(w, at)).lanewise(VectorOperators.LSHR, bit).and(ONES).lanewise(VectorOperators.LSHL, 4);
    }

    /** The bytes as 32-bit lanes (the same bits). */
    private static IntVector ints(ByteVector v) {
        return (IntVector) v.reinterpretShape(BI, 0);
    }

    /** The first LANES bytes, as signed integers, converted to float32 (exactly). */
    private static FloatVector floats(ByteVector v) {
        return (FloatVector) v.convertShape(VectorOperators.B2F, F, 0);
    }

    /** The float16 at byte {@code p}. */
    private static float half(MemorySegment w, long p) {
        return Float.float16ToFloat(w.get(HALF, p));
    }

}
