package dev.ropeway.cuda;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * What this machine offers the GPU backend, without opening it: the driver, each GPU, and where NVRTC, cuBLAS and
 * cuDNN (optional: {@code --gpu-attention cudnn}) were found; or, when something is missing, why the backend cannot run (the message the backend itself would give).
 */
public record CudaDevices(String problem, int driverVersion, String driverLibrary, List<Gpu> gpus, String nvrtcLibrary,
                          String cublasLibrary, String cudnn) {

    /** One GPU: its ordinal for {@code --device cuda:<n>}, name, compute capability, SM count and memory in bytes. */
    public record Gpu(int ordinal, String name, int computeCapability, int multiprocessors, long memoryBytes) {}

    public boolean usable() {
        return problem == null;
    }

    /** Never throws: a missing driver, GPU or library is reported in {@link #problem()}. */
    public static CudaDevices probe() {
        Driver driver;
        try {
            driver = Driver.get();
        } catch (RuntimeException | LinkageError e) {
            return new CudaDevices(e.getMessage(), 0, null, List.of(), null, null, null);
        }
        List<Gpu> gpus = new ArrayList<>();
        int version;
        try {
            version = driver.driverVersion();
            for (int i = 0; i < driver.deviceCount(); i++) {
                int d = driver.device(i);
                int cc = driver.attribute(d, Driver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) * 10
                        + driver.attribute(d, Driver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
                gpus.add(new Gpu(i, driver.deviceName(d), cc,
                        driver.attribute(d, Driver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT), driver.totalMemory(d)));
            }
        } catch (RuntimeException e) {
            return new CudaDevices(e.getMessage(), 0, driver.lib.location, List.of(), null, null, null);
        }
        String nvrtc = NativeLibrary.find("nvrtc").map(l -> l.location).orElse(null);
        NativeLibrary.find("cublasLt");
        String cublas = NativeLibrary.find("cublas").map(l -> l.location).orElse(null);
        String problem = gpus.isEmpty() ? "the CUDA driver sees no GPU"
                : nvrtc == null ? "libnvrtc.so (the CUDA runtime compiler) was not found"
                : cublas == null ? "libcublas.so was not found" : null;
        String cudnn;
        try {
            Cudnn.Library l = Cudnn.library();
            cudnn = Cudnn.versionString(l.version()) + " (" + l.lib().location + ")";
        } catch (RuntimeException | LinkageError e) {
            cudnn = null;
        }
        return new CudaDevices(problem, version, driver.lib.location, gpus, nvrtc, cublas, cudnn);
    }

    /** The driver version as CUDA prints it, e.g. 13000 as "13.0". */
    public Optional<String> driverVersionText() {
        return driverVersion == 0 ? Optional.empty()
                : Optional.of(driverVersion / 1000 + "." + driverVersion % 1000 / 10);
    }
}
