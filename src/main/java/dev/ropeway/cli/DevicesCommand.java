package dev.ropeway.cli;

import dev.ropeway.cuda.CudaDevices;
import dev.ropeway.tensor.OpenBlas;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/** Where Ropeway can compute here: the CPU backend's threads and BLAS, and each NVIDIA GPU (or why there is none). */
@Command(name = "devices", mixinStandardHelpOptions = true,
        description = "Where Ropeway can compute on this machine: the CPU, and NVIDIA GPUs with the libraries found for them.")
final class DevicesCommand implements Callable<Integer> {
    @Option(names = "--json", description = "Print one JSON object.")
    boolean json;

    @Override
    public Integer call() {
        CudaDevices cuda = CudaDevices.probe();
        int cores = Runtime.getRuntime().availableProcessors();
        if (json) {
            Map<String, Object> out = new LinkedHashMap<>();
            Map<String, Object> cpu = new LinkedHashMap<>();
            cpu.put("threads", cores);
            cpu.put("openblas", OpenBlas.source());
            out.put("cpu", cpu);
            Map<String, Object> gpu = new LinkedHashMap<>();
            gpu.put("usable", cuda.usable());
            if (!cuda.usable()) gpu.put("problem", cuda.problem());
            cuda.driverVersionText().ifPresent(v -> gpu.put("driver_cuda_version", v));
            gpu.put("driver_library", cuda.driverLibrary());
            gpu.put("nvrtc_library", cuda.nvrtcLibrary());
            gpu.put("cublas_library", cuda.cublasLibrary());
            gpu.put("cudnn", cuda.cudnn());
            List<Map<String, Object>> gpus = new ArrayList<>();
            for (CudaDevices.Gpu g : cuda.gpus()) {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("device", "cuda:" + g.ordinal());
                m.put("name", g.name());
                m.put("compute_capability", g.computeCapability() / 10 + "." + g.computeCapability() % 10);
                m.put("multiprocessors", g.multiprocessors());
                m.put("memory_bytes", g.memoryBytes());
                gpus.add(m);
            }
            gpu.put("gpus", gpus);
            out.put("cuda", gpu);
            System.out.println(Output.json(out));
            return 0;
        }
        System.out.printf("cpu      %d threads, %s%n", cores, OpenBlas.source());
        if (!cuda.usable()) {
            System.out.println("cuda     not usable: " + cuda.problem());
        } else {
            System.out.println("cuda     driver " + cuda.driverVersionText().orElse("?") + " (" + cuda.driverLibrary() + ")");
            System.out.println("         nvrtc  " + cuda.nvrtcLibrary());
            System.out.println("         cublas " + cuda.cublasLibrary());
            System.out.println("         cudnn  " + (cuda.cudnn() == null ? "not found (optional: --gpu-attention cudnn)" : cuda.cudnn()));
        }
        for (CudaDevices.Gpu g : cuda.gpus())
            System.out.printf("cuda:%d   %s, sm_%d, %d SMs, %.1f GiB%n", g.ordinal(), g.name(), g.computeCapability(),
                    g.multiprocessors(), g.memoryBytes() / (double) (1L << 30));
        System.out.println("default  --device auto picks " + (cuda.usable() ? "cuda:0" : "the CPU"));
        return 0;
    }
}
