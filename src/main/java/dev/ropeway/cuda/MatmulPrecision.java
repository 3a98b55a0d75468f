package dev.ropeway.cuda;

/**
 * How the GPU backend's matrix products (and its tensor-core attention) treat their float32 inputs: exact float32,
 * TF32 (10-bit mantissa, about 1e-3 relative error) or bfloat16 (8-bit mantissa, about 1e-2), each accumulating in
 * float32. Tensors stay float32 in every mode, except that with BF16 training keeps the operands of its products in
 * bfloat16 ({@link CudaBackend#trainingOperandType}); the tensor-core attention (every mode but FP32) rounds its
 * inputs to float16.
 */
public enum MatmulPrecision {
    FP32(68), TF32(77), BF16(75);

    /** The cuBLAS compute type: CUBLAS_COMPUTE_32F, _32F_FAST_TF32, _32F_FAST_16BF. */
    final int cublasComputeType;

    MatmulPrecision(int cublasComputeType) {
        this.cublasComputeType = cublasComputeType;
    }

    public static MatmulPrecision parse(String name) {
        for (MatmulPrecision p : values()) if (p.name().equalsIgnoreCase(name)) return p;
        throw new CudaException("unknown GPU matmul precision '" + name + "' (available: fp32, tf32, bf16)");
    }
}
