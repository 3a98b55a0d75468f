package dev.ropeway.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;

/** One compiled {@code .cu} source loaded into the context, with its kernels looked up once by name. */
final class CudaModule {
    private final Driver driver;
    private final MemorySegment stream;
    private final MemorySegment module;
    private final Map<String, MemorySegment> functions = new ConcurrentHashMap<>();
    private final Map<String, Integer> sharedLimit = new ConcurrentHashMap<>();

    /** The module's kernels launch on {@code stream}. */
    CudaModule(Driver driver, MemorySegment stream, byte[] cubin) {
        this.driver = driver;
        this.stream = stream;
        MemorySegment image = Arena.global().allocate(cubin.length + 1L, 16);
        MemorySegment.copy(cubin, 0, image, JAVA_BYTE, 0, cubin.length);
        this.module = driver.loadModule(image);
    }

    MemorySegment function(String name) {
        return functions.computeIfAbsent(name, n -> driver.function(module, n));
    }

    /** Launches kernel {@code name}; dynamic shared memory above 48 KiB is opted into once per kernel. */
    void launch(String name, int gx, int gy, int gz, int block, int sharedBytes, KernelArgs args) {
        MemorySegment f = function(name);
        if (sharedBytes > 48 * 1024 && sharedLimit.getOrDefault(name, 0) < sharedBytes) {
            driver.setFunctionAttribute(f, Driver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, sharedBytes, name);
            sharedLimit.put(name, sharedBytes);
        }
        driver.launch(f, name, gx, gy, gz, block, 1, 1, sharedBytes, args.pointers(), stream);
    }
}
