package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;

/**
 * A bfloat16 buffer in native memory: a weight matrix kept as its checkpoint stores it (half the memory of float32,
 * half the bytes a decode step streams), in mixed-precision training a matrix-product operand
 * ({@link Backend#allocate(long, DType)}), or a bfloat16 KV cache ({@link CpuBackend#allocateKv}). Widening a bfloat16
 * to float32 is exact, so every op that reads one computes exactly what it computes on the widened float32 copy. Only
 * {@code linear}, {@code gemm}, {@code embedding}, {@code attention} (as keys and values), {@code copy} and
 * {@code download} read these, {@code copy}, {@code rmsNorm} and {@code swiglu} write them, and {@code view} shares
 * them; other ops refuse them by name.
 */
public final class CpuBf16Tensor extends HalfTensor {
    /** {@code count} zeros. */
    CpuBf16Tensor(long count) {
        super(null, count);
    }

    /** A copy of {@code count} little-endian bfloat16 values from {@code src} (zeros when {@code src} is null). */
    CpuBf16Tensor(MemorySegment src, long count) {
        super(src, count);
    }

    /** A view of {@code size} values of {@code base} from element {@code offset}; closing it frees nothing. */
    CpuBf16Tensor(CpuBf16Tensor base, long offset, long size) {
        super(base, offset, size);
    }

    @Override
    String typeName() {
        return "bfloat16";
    }
}
