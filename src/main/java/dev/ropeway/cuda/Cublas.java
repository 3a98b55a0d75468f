package dev.ropeway.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.Optional;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * cuBLAS, bound through FFM: one handle on the backend's stream and the matrix product. Row-major products are
 * issued as the column-major product of the transposes ({@code C^T = op(B)^T op(A)^T}), which needs no copies.
 */
final class Cublas implements AutoCloseable {
    private static final int CUDA_R_32F = 0;
    private static final int CUDA_R_16BF = 14;
    private static final int CUBLAS_COMPUTE_32F = 68;
    private static final int CUBLAS_GEMM_DEFAULT = -1;

    private final NativeLibrary lib;
    private final MethodHandle gemmEx, destroy;
    private final Optional<MethodHandle> statusString;
    private final MemorySegment handle;
    private final MemorySegment scalars = Arena.global().allocate(JAVA_FLOAT, 2);
    private final int computeType;

    /**
     * A handle whose products run on {@code stream} with {@code workspaceBytes} of device memory at {@code workspace}
     * as their workspace (given, not left to cuBLAS, so that a product captured into a graph allocates nothing).
     */
    Cublas(MatmulPrecision precision, MemorySegment stream, long workspace, long workspaceBytes) {
        // libcublas needs libcublasLt; loading it first from the same search lets the loader find it by name.
        NativeLibrary.find("cublasLt");
        lib = NativeLibrary.load("cublas", "NVIDIA's matrix-product library");
        MethodHandle create = lib.function("cublasCreate_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        destroy = lib.function("cublasDestroy_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        gemmEx = lib.function("cublasGemmEx", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT, JAVA_INT,
                JAVA_INT, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_INT, ADDRESS,
                JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT));
        statusString = lib.optionalFunction("cublasGetStatusString", FunctionDescriptor.of(ADDRESS, JAVA_INT));
        computeType = precision.cublasComputeType;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment h = a.allocate(ADDRESS);
            check("cublasCreate", (int) create.invokeExact(h));
            handle = h.get(ADDRESS, 0);
            MethodHandle setStream = lib.function("cublasSetStream_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
            check("cublasSetStream", (int) setStream.invokeExact(handle, stream));
            MethodHandle setWorkspace = lib.function("cublasSetWorkspace_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG));
            check("cublasSetWorkspace", (int) setWorkspace.invokeExact(handle, workspace, workspaceBytes));
        } catch (Throwable t) {
            throw Driver.wrap(t);
        }
    }

    String location() {
        return lib.location;
    }

    /**
     * Row-major {@code C[m,n] = alpha op(A)[m,k] op(B)[k,n] + beta C}; pointers are device addresses of the first
     * element, leading dimensions are row strides. Callers serialise calls (the scalars are shared).
     */
    void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha, long a, int lda, long b, int ldb,
              float beta, long c, int ldc) {
        gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, false);
    }

    /**
     * As above; with {@code bf16} A and B hold bfloat16 (C stays float32, sums in float32): the tensor cores' bfloat16
     * rate from half the bytes.
     */
    void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha, long a, int lda, long b, int ldb,
              float beta, long c, int ldc, boolean bf16) {
        gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bf16, false);
    }

    /** As above; with {@code bf16Out} C holds bfloat16 too (sums in float32, rounded once as they are stored). */
    void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha, long a, int lda, long b, int ldb,
              float beta, long c, int ldc, boolean bf16, boolean bf16Out) {
        int abType = bf16 ? CUDA_R_16BF : CUDA_R_32F, compute = bf16 ? CUBLAS_COMPUTE_32F : computeType;
        int cType = bf16Out ? CUDA_R_16BF : CUDA_R_32F;
        scalars.setAtIndex(JAVA_FLOAT, 0, alpha);
        scalars.setAtIndex(JAVA_FLOAT, 1, beta);
        try {
            int status = (int) gemmEx.invokeExact(handle, transB ? 1 : 0, transA ? 1 : 0, n, m, k,
                    scalars, b, abType, ldb, a, abType, lda, scalars.asSlice(4), c, cType, ldc,
                    compute, CUBLAS_GEMM_DEFAULT);
            check("cublasGemmEx(" + m + "x" + n + "x" + k + ")", status);
        } catch (Throwable t) {
            throw Driver.wrap(t);
        }
    }

    private void check(String call, int status) {
        if (status == 0) return;
        String name = "status " + status;
        if (statusString.isPresent()) {
            try {
                name = ((MemorySegment) statusString.get().invokeExact(status)).reinterpret(256).getString(0) + " (" + status + ")";
            } catch (Throwable ignored) {
                // keep the number
            }
        }
        throw new CudaException(call + " failed: " + name);
    }

    @Override
    public void close() {
        try {
            int ignored = (int) destroy.invokeExact(handle);
        } catch (Throwable ignored) {
            // closing at exit
        }
    }
}
