package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;

/**
 * Converts little-endian F32 / F16 / BF16 / F64 data, or ggml's blocks (Q8_0, Q2_K to Q6_K, IQ4_XS, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL; often a memory-mapped
 * checkpoint), to float32. Blocks are dequantised bit for bit as ggml's reference does.
 *
 * <p>Each thread converts its range in blocks staged through small heap arrays: a bulk copy in, a plain loop the
 * JIT vectorises (or the block decoder), a bulk copy out. Loading a model converts gigabytes, so this runs on all threads.
 */
public final class Convert {
    private static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort U16_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfDouble F64_LE = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final int BLOCK = 8192;
    private static final long MIN_CHUNK = 1 << 16;

    private Convert() {}

    /** Runs on the calling thread alone when {@code src} belongs to a confined arena the workers may not read. */
    static void toFloat32(WorkerPool workers, MemorySegment src, DType type, long count, MemorySegment dst) {
        WorkerPool pool = workers.workersCanAccess(src) ? workers : WorkerPool.SERIAL;
        switch (type) {
            case F32 -> pool.forRange(count, MIN_CHUNK, (from, to) ->
                    MemorySegment.copy(src, F32_LE, from * 4, dst, JAVA_FLOAT, from * 4, to - from));
            case F16 -> pool.forRange(count, MIN_CHUNK, (from, to) -> f16(src, dst, from, to));
            case BF16 -> pool.forRange(count, MIN_CHUNK, (from, to) -> bf16(src, dst, from, to));
            case F64 -> pool.forRange(count, MIN_CHUNK, (from, to) -> f64(src, dst, from, to));
            case Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S,
                 IQ1_S, IQ1_M, TQ1_0, TQ2_0 -> {
                wholeBlocks("upload", type, 0, count);
                pool.forRange(count / type.blockSize(), MIN_CHUNK / type.blockSize(),
                        (from, to) -> blocks(src, type, from, to - from, dst, from * type.blockSize() * Float.BYTES));
            }
            default -> throw new IllegalArgumentException("upload: cannot convert " + type + " to float32");
        }
    }

    /** {@code [from, from + count)} must be whole blocks of a quantised type. */
    private static void wholeBlocks(String op, DType type, long from, long count) {
        if (from % type.blockSize() != 0 || count % type.blockSize() != 0)
            throw new IllegalArgumentException(op + ": " + type + " values come in blocks of " + type.blockSize()
                    + "; elements [" + from + ", " + (from + count) + ") are not whole blocks");
    }

    /**
     * {@code count} blocks of a quantised type from block {@code first} of {@code src}, as float32 from byte {@code to} of
     * {@code dst} (native, or over a {@code byte[]}). The blocks are staged through a heap array (padded: the decoder
     * may read a few bytes past the last block), so {@code src} may be any segment.
     */
    private static void blocks(MemorySegment src, DType type, long first, long count, MemorySegment dst, long to) {
        int bytes = type.blockBytes(), perStage = BLOCK / type.blockSize();
        byte[] stage = new byte[perStage * bytes + 64];
        MemorySegment staged = MemorySegment.ofArray(stage);
        for (long b = 0; b < count; b += perStage) {
            int n = (int) Math.min(perStage, count - b);
            MemorySegment.copy(src, JAVA_BYTE, (first + b) * bytes, stage, 0, n * bytes);
            long out = to + b * type.blockSize() * Float.BYTES;
            if (type == DType.Q8_0) q8(stage, n, dst, out);
            else KQuantGemm.decode(type, staged, 0, n, dst, out);
        }
    }

    /** {@code n} Q8_0 blocks (a float16 scale d, 32 int8 values q: each value d q) as float32 from byte {@code to} of dst. */
    private static void q8(byte[] blocks, int n, MemorySegment dst, long to) {
        float[] out = new float[Q8Blocks.BLOCK];
        for (int b = 0; b < n; b++) {
            int at = b * (Q8Blocks.BLOCK + 2);
            float d = Float.float16ToFloat((short) (blocks[at] & 0xFF | blocks[at + 1] << 8));
            for (int j = 0; j < Q8Blocks.BLOCK; j++) out[j] = blocks[at + 2 + j] * d;
            MemorySegment.copy(out, 0, dst, F32_LE, to + (long) b * Q8Blocks.BLOCK * Float.BYTES, Q8Blocks.BLOCK);
        }
    }

    private static void f16(MemorySegment src, MemorySegment dst, long from, long to) {
        short[] in = new short[BLOCK];
        float[] out = new float[BLOCK];
        for (long i = from; i < to; i += BLOCK) {
            int n = (int) Math.min(BLOCK, to - i);
            MemorySegment.copy(src, U16_LE, i * 2, in, 0, n);
            for (int j = 0; j < n; j++) out[j] = Float.float16ToFloat(in[j]);
            MemorySegment.copy(out, 0, dst, JAVA_FLOAT, i * 4, n);
        }
    }

    /** bfloat16 is the top half of a float32: shifting the bits up is the whole conversion. */
    private static void bf16(MemorySegment src, MemorySegment dst, long from, long to) {
        short[] in = new short[BLOCK];
        int[] out = new int[BLOCK];
        for (long i = from; i < to; i += BLOCK) {
            int n = (int) Math.min(BLOCK, to - i);
            MemorySegment.copy(src, U16_LE, i * 2, in, 0, n);
            for (int j = 0; j < n; j++) out[j] = in[j] << 16;
            MemorySegment.copy(out, 0, dst, JAVA_INT, i * 4, n);
        }
    }

    private static void f64(MemorySegment src, MemorySegment dst, long from, long to) {
        double[] in = new double[BLOCK];
        float[] out = new float[BLOCK];
        for (long i = from; i < to; i += BLOCK) {
            int n = (int) Math.min(BLOCK, to - i);
            MemorySegment.copy(src, F64_LE, i * 8, in, 0, n);
            for (int j = 0; j < n; j++) out[j] = (float) in[j];
            MemorySegment.copy(out, 0, dst, JAVA_FLOAT, i * 4, n);
        }
    }

    /**
     * {@code n} values of {@code type} from element {@code from} of {@code src} (little-endian, as a checkpoint stores
     * them), as float32, into {@code out[0, n)}: F32, F16, BF16 and F64 exactly, ggml's blocks dequantised
     * bit for bit as ggml's reference does (then {@code from} and {@code n} must be whole blocks). Runs on the calling
     * thread; {@code src} may be any segment.
     *
     * @throws IllegalArgumentException for another type, or a range that is not whole blocks
     */
    public static void toFloats(MemorySegment src, DType type, long from, float[] out, int n) {
        switch (type) {
            case F32 -> MemorySegment.copy(src, F32_LE, from * 4, out, 0, n);
            case F16, BF16 -> {
                short[] in = new short[n];
                MemorySegment.copy(src, U16_LE, from * 2, in, 0, n);
                if (type == DType.F16) for (int j = 0; j < n; j++) out[j] = Float.float16ToFloat(in[j]);
                else for (int j = 0; j < n; j++) out[j] = Float.intBitsToFloat(in[j] << 16);
            }
            case F64 -> {
                double[] in = new double[n];
                MemorySegment.copy(src, F64_LE, from * 8, in, 0, n);
                for (int j = 0; j < n; j++) out[j] = (float) in[j];
            }
            case Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S,
                 IQ1_S, IQ1_M, TQ1_0, TQ2_0 -> {
                wholeBlocks("toFloats", type, from, n);
                MemorySegment wide = MemorySegment.ofArray(new byte[n * Float.BYTES]);
                blocks(src, type, from / type.blockSize(), n / type.blockSize(), wide, 0);
                MemorySegment.copy(wide, F32_LE, 0, out, 0, n);
            }
            default -> throw new IllegalArgumentException("cannot convert " + type + " to float32");
        }
    }
}
