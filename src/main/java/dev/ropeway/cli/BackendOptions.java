package dev.ropeway.cli;

import dev.ropeway.RopewayException;
import dev.ropeway.cuda.CudaBackend;
import dev.ropeway.cuda.MatmulPrecision;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.CpuBackend;
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
            description = "GPU matrix products: tf32 (default; tensor cores, about 1e-3 relative error), bf16 (cuBLAS bf16 path, "
                    + "about 1e-2) or fp32 (exact). Storage stays float32.")
    String gpuMatmul;

    Backend open() {
        if (threads != null && threads < 1) throw new RopewayException("--threads must be at least 1, got " + threads);
        MatmulPrecision precision = MatmulPrecision.parse(gpuMatmul);
        if (device.equals("cpu")) return cpu();
        if (device.equals("auto")) {
            if (!CudaBackend.isAvailable()) return cpu();
            try {
                return gpu(0, precision);
            } catch (RopewayException e) {
                // A GPU without the CUDA libraries (or one they cannot drive): the CPU still does the job.
                System.err.println("warning: not using the GPU: " + e.getMessage() + " Computing on the CPU "
                        + "(--device cpu says so and skips this check).");
                return cpu();
            }
        }
        if (device.equals("cuda")) return gpu(0, precision);
        if (device.startsWith("cuda:")) {
            int n;
            try {
                n = Integer.parseInt(device.substring(5));
            } catch (NumberFormatException e) {
                throw new RopewayException("--device " + device + ": expected cuda:<gpu number>, e.g. cuda:0");
            }
            return gpu(n, precision);
        }
        throw new RopewayException("unknown --device '" + device + "' (available: auto, cpu, cuda, cuda:<n>)");
    }

    /** A GPU backend, named on stderr so a run says where it computes (stdout may be JSON). */
    private static Backend gpu(int ordinal, MatmulPrecision precision) {
        CudaBackend b = new CudaBackend(ordinal, precision);
        System.err.println("device: cuda:" + ordinal + ", " + b.description());
        return b;
    }

    private Backend cpu() {
        return threads == null ? new CpuBackend() : new CpuBackend(threads);
    }
}
