package dev.ropeway.cli;

import dev.ropeway.RopewayException;
import dev.ropeway.cuda.CudaBackend;
import dev.ropeway.cuda.MatmulPrecision;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.tensor.DType;
import picocli.CommandLine.Option;

/** Options that choose where compute runs, shared by every command that runs a model. */
final class BackendOptions {
    @Option(names = "--device", defaultValue = "${env:ROPEWAY_DEVICE:-auto}", paramLabel = "<device>",
            description = "Where to compute: auto (default, or $ROPEWAY_DEVICE: an NVIDIA GPU when one is present, else "
                    + "the CPU), cpu, cuda, or cuda:<n> for GPU n.")
    String device;

    @Option(names = "--threads", description = "Worker threads for the CPU backend (default: all cores).")
    Integer threads;

    @Option(names = "--gpu-matmul", defaultValue = "tf32", paramLabel = "<mode>",
            description = "GPU matrix products: tf32 (default; tensor cores, about 1e-3 relative error), bf16 (about 1e-2; "
                    + "training then keeps bfloat16 copies of the matrices and of the activations products read, with "
                    + "float32 master weights, gradients and optimiser state) or fp32 (exact).")
    String gpuMatmul;

    @Option(names = "--kv-cache", defaultValue = "auto", paramLabel = "<type>",
            description = "KV cache storage: auto (f16 on the GPU, f32 on the CPU), f16 (GPU: half the memory and half "
                    + "the bytes a long-context decode step reads), bf16 (CPU: the same halving; decode steps 1.4-2x "
                    + "as fast at 16k-64k tokens) or f32 (cached decoding computes exactly what whole-sequence "
                    + "forwards compute).")
    String kvCache;

    @Option(names = "--cpu-weights", defaultValue = "auto", paramLabel = "<type>",
            description = "CPU inference (training keeps float32 weights): how weight matrices are held in memory: auto "
                    + "(default: bf16 and f16 checkpoints stay 16-bit, f32 ones stay f32; all exact), f32 (every matrix "
                    + "widened to f32, exactly: twice the memory of a 16-bit checkpoint, slower decode steps, long prompts "
                    + "up to a quarter faster), bf16 (f32 and f16 matrices rounded to bfloat16 as they load: half the "
                    + "memory of f32, and decode steps, which stream every matrix, up to twice as fast; each weight moves by "
                    + "at most 2^-9 of itself) or q8_0 (llama.cpp's Q8_0: an int8 per weight and a scale per 32, a quarter "
                    + "of f32's memory, faster decode still; each weight moves by at most about 1/225 of its block's "
                    + "largest).")
    String cpuWeights;

    @Option(names = "--gpu-attention", defaultValue = "${env:ROPEWAY_CUDA_ATTENTION:-kernels}", paramLabel = "<impl>",
            description = "GPU attention for whole sequences (training, prefill): kernels (default, or "
                    + "$ROPEWAY_CUDA_ATTENTION; Ropeway's own) or cudnn (cuDNN 9's fused flash attention, which must be "
                    + "installed; shapes it cannot plan, windows and decode steps stay on the kernels).")
    String gpuAttention;

    @Option(names = "--deterministic", description = "GPU: the same bits from every run of the same work. The attention "
            + "backward then computes dQ in a pass of its own instead of adding it up with atomics (slower training), and "
            + "cuDNN's attention backward, which also adds with atomics, is not used. (The CPU always is.)")
    boolean deterministic;

    Backend open() {
        cudnnAttention();   // a misspelt value fails before a backend is opened
        Backend b = openBackend();
        if (b instanceof CudaBackend gpu && gpu.cudnnAttention(cudnnAttention()))
            System.err.println("attention: cuDNN " + gpu.cudnnDescription());
        return b;
    }

    private boolean cudnnAttention() {
        return switch (gpuAttention.strip().toLowerCase(java.util.Locale.ROOT)) {
            case "kernels" -> false;
            case "cudnn" -> true;
            default -> throw new RopewayException("unknown --gpu-attention '" + gpuAttention + "' (kernels, cudnn)");
        };
    }

    private Backend openBackend() {
        if (threads != null && threads < 1) throw new RopewayException("--threads must be at least 1, got " + threads);
        cpuWeights();   // a misspelt value fails whichever device is chosen
        MatmulPrecision precision = MatmulPrecision.parse(gpuMatmul);
        boolean half = !kvCacheType().equals("f32");
        if (device.equals("cpu")) return cpu();
        if (device.equals("auto")) {
            if (!CudaBackend.isAvailable()) return cpu();
            try {
                return gpu(0, precision, half);
            } catch (RopewayException e) {
                // A GPU without the CUDA libraries (or one they cannot drive): the CPU still does the job.
                System.err.println("warning: not using the GPU: " + e.getMessage() + " Computing on the CPU "
                        + "(--device cpu says so and skips this check).");
                return cpu();
            }
        }
        if (device.equals("cuda")) return gpu(0, precision, half);
        if (device.startsWith("cuda:")) {
            int n;
            try {
                n = Integer.parseInt(device.substring(5));
            } catch (NumberFormatException e) {
                throw new RopewayException("--device " + device + ": expected cuda:<gpu number>, e.g. cuda:0");
            }
            return gpu(n, precision, half);
        }
        throw new RopewayException("unknown --device '" + device + "' (available: auto, cpu, cuda, cuda:<n>)");
    }

    /** A GPU backend, named on stderr so a run says where it computes (stdout may be JSON). */
    private Backend gpu(int ordinal, MatmulPrecision precision, boolean halfKvCache) {
        if (kvCacheType().equals("bf16"))
            throw new RopewayException("--kv-cache bf16 is for the CPU backend; the GPU keeps its KV cache in f16 (the default) or f32");
        if (cpuWeights() != CpuBackend.Weights.AUTO)
            throw new RopewayException("--cpu-weights " + cpuWeights.strip() + " is for the CPU backend; on the GPU, "
                    + "--gpu-matmul bf16 computes products in bfloat16 (add --device cpu to compute on the CPU)");
        CudaBackend b = new CudaBackend(ordinal, precision, halfKvCache);
        b.deterministic(deterministic);
        System.err.println("device: cuda:" + ordinal + ", " + b.description());
        return b;
    }

    /** {@code --kv-cache}, checked and in lower case: auto, f16, bf16 or f32. */
    private String kvCacheType() {
        String kv = kvCache.strip().toLowerCase(java.util.Locale.ROOT);
        if (!java.util.List.of("auto", "f16", "bf16", "f32").contains(kv))
            throw new RopewayException("unknown --kv-cache '" + kvCache + "' (auto, f16, bf16, f32)");
        return kv;
    }

    /** {@code --cpu-weights} as the CPU backend's policy for weight matrices. */
    private CpuBackend.Weights cpuWeights() {
        return switch (cpuWeights.strip().toLowerCase(java.util.Locale.ROOT)) {
            case "auto" -> CpuBackend.Weights.AUTO;
            case "f32" -> CpuBackend.Weights.F32;
            case "bf16" -> CpuBackend.Weights.BF16;
            case "q8_0", "q8" -> CpuBackend.Weights.Q8_0;
            default -> throw new RopewayException("unknown --cpu-weights '" + cpuWeights + "' (auto, f32, bf16, q8_0)");
        };
    }

    private Backend cpu() {
        String kv = kvCacheType();
        if (kv.equals("f16"))
            throw new RopewayException("--kv-cache f16 is for the GPU backend; the CPU keeps its KV cache in f32 (the default) or bf16");
        return new CpuBackend(threads == null ? Runtime.getRuntime().availableProcessors() : threads,
                kv.equals("bf16") ? DType.BF16 : DType.F32, cpuWeights());
    }
}
