package dev.ropeway.io;

import dev.ropeway.tensor.DType;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/** Widens the stored floating types of a checkpoint (and ggml-quantised matrices) to the float32 that all compute uses. */
final class FloatConversion {
    // Unaligned: safetensors does not promise that a tensor starts at a multiple of its element size.
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfDouble F64 = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort HALF = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** The largest Java array the JVM reliably allocates. */
    static final long MAX_ARRAY = Integer.MAX_VALUE - 8;

    private FloatConversion() {}

    /**
     * Converts {@code count} elements of {@code dtype} stored in {@code bytes}. {@code what} names the tensor and
     * file in error messages.
     */
    static float[] toFloats(MemorySegment bytes, DType dtype, long count, String what) {
        if (!dtype.isFloatWeight() && !dtype.isQuantised()) {
            throw new CheckpointException(what + " has dtype " + dtype
                    + "; only F32, F16, BF16, F64 and ggml-quantised tensors can be read as floats");
        }
        if (count > MAX_ARRAY) {
            throw new CheckpointException(what + " has " + count
                    + " elements, more than a Java array holds; read it in slices with data() instead");
        }
        int n = (int) count;
        float[] out = new float[n];
        if (dtype.isQuantised()) {
            GgmlDequant.toFloats(GgmlType.valueOf(dtype.name()), bytes, count, out, 0);
            return out;
        }
        switch (dtype) {
            case F32 -> MemorySegment.copy(bytes, F32, 0, out, 0, n);
            case F64 -> {
                for (int i = 0; i < n; i++) out[i] = (float) bytes.get(F64, 8L * i);
            }
            // bfloat16 is the top half of a float32: widening is a shift.
            case BF16 -> {
                for (int i = 0; i < n; i++) out[i] = Float.intBitsToFloat((bytes.get(HALF, 2L * i) & 0xFFFF) << 16);
            }
            case F16 -> {
                for (int i = 0; i < n; i++) out[i] = Float.float16ToFloat(bytes.get(HALF, 2L * i));
            }
            default -> throw new AssertionError(dtype);
        }
        return out;
    }
}
