package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;

/**
 * A float16 weight matrix in native memory, kept as its checkpoint stores it (half the memory of float32, half the
 * bytes a decode step streams): {@link CpuBackend#uploadWeights} makes these from F16 matrices whose values are all
 * finite. Widening such a value to float32 is exact, so every op that reads one computes exactly what it computes on
 * the widened float32 copy. Only {@code linear}, {@code gemm}, {@code embedding}, {@code copy} (as the source) and
 * {@code download} read these and {@code view} shares them; nothing writes them, and other ops refuse them by name.
 */
public final class CpuF16Tensor extends HalfTensor {
    /** A copy of {@code count} little-endian float16 values from {@code src}, every one finite. */
    CpuF16Tensor(MemorySegment src, long count) {
        super(src, count);
    }

    /** A view of {@code size} values of {@code base} from element {@code offset}; closing it frees nothing. */
    CpuF16Tensor(CpuF16Tensor base, long offset, long size) {
        super(base, offset, size);
    }

    @Override
    String typeName() {
        return "float16";
    }
}
