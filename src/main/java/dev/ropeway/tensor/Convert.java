package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;

/**
 * Converts little-endian F32 / F16 / BF16 / F64 data (often a memory-mapped checkpoint) to float32.
 *
 * <p>Each thread converts its range in blocks staged through small heap arrays: a bulk copy in, a plain loop the
 * JIT vectorises, a bulk copy out. Loading a model converts gigabytes, so this runs on all threads.
 */
final class Convert {
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
            default -> throw new IllegalArgumentException("upload: cannot convert " + type + " to float32");
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

    /** {@code n} values of {@code type} from element {@code from} of {@code src}, as float32, into {@code out[0, n)}. */
    static void toFloats(MemorySegment src, DType type, long from, float[] out, int n) {
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
            default -> throw new IllegalArgumentException("cannot convert " + type + " to float32");
        }
    }
}
