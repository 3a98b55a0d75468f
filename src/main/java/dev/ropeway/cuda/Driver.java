package dev.ropeway.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The CUDA driver API (libcuda), bound through FFM: devices, the primary context, stream-ordered memory, modules and
 * kernel launches. Every call's status is checked; a failure throws {@link CudaException} naming the call and the
 * driver's own name for the error. A backend's work goes to its own stream (see {@link #createStream}), so it runs in
 * issue order and can be captured into a graph; the synchronous copies go through the legacy default stream, which
 * waits for that stream's work and makes it wait for theirs.
 */
final class Driver {
    static final int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
    static final int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
    static final int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
    static final int CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
    static final int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
    private static final int CU_MEMPOOL_ATTR_RELEASE_THRESHOLD = 4;

    private static volatile Driver instance;
    private static volatile Throwable failure;

    final NativeLibrary lib;
    private final MethodHandle cuInit, cuDriverGetVersion, cuDeviceGetCount, cuDeviceGet, cuDeviceGetName,
            cuDeviceGetAttribute, cuDeviceTotalMem, cuDevicePrimaryCtxRetain, cuCtxSetCurrent, cuCtxSynchronize,
            cuMemAllocAsync, cuMemFreeAsync, cuMemcpyHtoD, cuMemcpyDtoH, cuMemcpyDtoDAsync, cuMemsetD32Async,
            cuMemGetInfo, cuModuleLoadData, cuModuleGetFunction, cuFuncSetAttribute, cuLaunchKernel, cuGetErrorName,
            cuDeviceGetDefaultMemPool, cuMemPoolSetAttribute, cuStreamCreate, cuStreamDestroy, cuStreamSynchronize,
            cuStreamBeginCapture, cuStreamEndCapture, cuGraphInstantiate, cuGraphLaunch, cuGraphExecDestroy,
            cuGraphDestroy, cuMemAlloc, cuMemFree, cuMemPoolTrimTo;

    private Driver(NativeLibrary lib) {
        this.lib = lib;
        FunctionDescriptor intPtr = FunctionDescriptor.of(JAVA_INT, ADDRESS);
        cuInit = lib.function("cuInit", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
        cuDriverGetVersion = lib.function("cuDriverGetVersion", intPtr);
        cuDeviceGetCount = lib.function("cuDeviceGetCount", intPtr);
        cuDeviceGet = lib.function("cuDeviceGet", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuDeviceGetName = lib.function("cuDeviceGetName", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
        cuDeviceGetAttribute = lib.function("cuDeviceGetAttribute", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
        cuDeviceTotalMem = lib.function("cuDeviceTotalMem_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuDevicePrimaryCtxRetain = lib.function("cuDevicePrimaryCtxRetain", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuCtxSetCurrent = lib.function("cuCtxSetCurrent", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuCtxSynchronize = lib.function("cuCtxSynchronize", FunctionDescriptor.of(JAVA_INT));
        cuMemAllocAsync = lib.function("cuMemAllocAsync", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, ADDRESS));
        cuMemFreeAsync = lib.function("cuMemFreeAsync", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, ADDRESS));
        cuMemcpyHtoD = lib.function("cuMemcpyHtoD_v2", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, ADDRESS, JAVA_LONG));
        cuMemcpyDtoH = lib.function("cuMemcpyDtoH_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG));
        cuMemcpyDtoDAsync = lib.function("cuMemcpyDtoDAsync_v2", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, ADDRESS));
        cuMemsetD32Async = lib.function("cuMemsetD32Async", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_LONG, ADDRESS));
        cuMemGetInfo = lib.function("cuMemGetInfo_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cuModuleLoadData = lib.function("cuModuleLoadData", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cuModuleGetFunction = lib.function("cuModuleGetFunction", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS));
        cuFuncSetAttribute = lib.function("cuFuncSetAttribute", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
        cuLaunchKernel = lib.function("cuLaunchKernel", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT,
                JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, ADDRESS, ADDRESS));
        cuGetErrorName = lib.function("cuGetErrorName", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS));
        cuDeviceGetDefaultMemPool = lib.function("cuDeviceGetDefaultMemPool", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuMemPoolSetAttribute = lib.function("cuMemPoolSetAttribute", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, ADDRESS));
        cuMemPoolTrimTo = lib.function("cuMemPoolTrimTo", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
        cuStreamCreate = lib.function("cuStreamCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuStreamDestroy = lib.function("cuStreamDestroy_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuStreamSynchronize = lib.function("cuStreamSynchronize", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuStreamBeginCapture = lib.function("cuStreamBeginCapture_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuStreamEndCapture = lib.function("cuStreamEndCapture", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cuGraphInstantiate = lib.function("cuGraphInstantiateWithFlags", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, JAVA_LONG));
        cuGraphLaunch = lib.function("cuGraphLaunch", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cuGraphExecDestroy = lib.function("cuGraphExecDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuGraphDestroy = lib.function("cuGraphDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuMemAlloc = lib.function("cuMemAlloc_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
        cuMemFree = lib.function("cuMemFree_v2", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
    }

    /** The driver, initialised once per process; throws {@link CudaException} when there is none. */
    static Driver get() {
        Driver d = instance;
        if (d != null) return d;
        synchronized (Driver.class) {
            if (instance != null) return instance;
            if (failure != null) throw rethrow(failure);
            try {
                NativeLibrary lib = NativeLibrary.load("cuda", "the NVIDIA driver");
                Driver driver = new Driver(lib);
                driver.check("cuInit", (int) driver.cuInit.invokeExact(0));
                instance = driver;
                return driver;
            } catch (Throwable t) {
                failure = t;
                throw rethrow(t);
            }
        }
    }

    private static RuntimeException rethrow(Throwable t) {
        if (t instanceof CudaException c) return new CudaException(c.getMessage());
        return new CudaException("the CUDA driver could not be initialised: " + t);
    }

    /** A driver call that writes its result through the pointer it is given and returns a status. */
    @FunctionalInterface
    private interface Out {
        int call(MemorySegment out) throws Throwable;
    }

    /** The int a driver call writes, its status checked. */
    private int queryInt(String call, Out f) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment n = a.allocate(JAVA_INT);
            check(call, f.call(n));
            return n.get(JAVA_INT, 0);
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    int deviceCount() {
        return queryInt("cuDeviceGetCount", n -> (int) cuDeviceGetCount.invokeExact(n));
    }

    int driverVersion() {
        return queryInt("cuDriverGetVersion", n -> (int) cuDriverGetVersion.invokeExact(n));
    }

    int device(int ordinal) {
        return queryInt("cuDeviceGet(" + ordinal + ")", n -> (int) cuDeviceGet.invokeExact(n, ordinal));
    }

    String deviceName(int device) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(256);
            check("cuDeviceGetName", (int) cuDeviceGetName.invokeExact(s, 256, device));
            return s.getString(0);
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    int attribute(int device, int attribute) {
        return queryInt("cuDeviceGetAttribute(" + attribute + ")", n -> (int) cuDeviceGetAttribute.invokeExact(n, attribute, device));
    }

    long totalMemory(int device) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment n = a.allocate(JAVA_LONG);
            check("cuDeviceTotalMem", (int) cuDeviceTotalMem.invokeExact(n, device));
            return n.get(JAVA_LONG, 0);
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    /** Free and total device memory of the current context, in bytes. */
    long[] memoryInfo() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment free = a.allocate(JAVA_LONG), total = a.allocate(JAVA_LONG);
            check("cuMemGetInfo", (int) cuMemGetInfo.invokeExact(free, total));
            return new long[] {free.get(JAVA_LONG, 0), total.get(JAVA_LONG, 0)};
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    /**
     * Retains the device's primary context (the one every library in the process shares) and makes the default
     * memory pool keep freed blocks, so stream-ordered allocations are reused rather than returned at each sync.
     */
    MemorySegment primaryContext(int device) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ctx = a.allocate(ADDRESS);
            check("cuDevicePrimaryCtxRetain", (int) cuDevicePrimaryCtxRetain.invokeExact(ctx, device));
            MemorySegment context = ctx.get(ADDRESS, 0);
            setCurrent(context);
            MemorySegment pool = a.allocate(ADDRESS);
            check("cuDeviceGetDefaultMemPool", (int) cuDeviceGetDefaultMemPool.invokeExact(pool, device));
            MemorySegment threshold = a.allocate(JAVA_LONG);
            threshold.set(JAVA_LONG, 0, Long.MAX_VALUE);
            check("cuMemPoolSetAttribute(RELEASE_THRESHOLD)",
                    (int) cuMemPoolSetAttribute.invokeExact(pool.get(ADDRESS, 0), CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, threshold));
            return context;
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    /**
     * Returns the memory the device's default pool keeps for reuse (freed stream-ordered allocations) to the device,
     * so that {@link #memoryInfo} counts it as free. Call with the stream idle.
     */
    void trimPool(int device) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment pool = a.allocate(ADDRESS);
            check("cuDeviceGetDefaultMemPool", (int) cuDeviceGetDefaultMemPool.invokeExact(pool, device));
            check("cuMemPoolTrimTo", (int) cuMemPoolTrimTo.invokeExact(pool.get(ADDRESS, 0), 0L));
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    void setCurrent(MemorySegment context) {
        try {
            check("cuCtxSetCurrent", (int) cuCtxSetCurrent.invokeExact(context));
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    void synchronize() {
        try {
            check("cuCtxSynchronize", (int) cuCtxSynchronize.invokeExact());
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    /** Where cuMemAllocAsync writes its pointer: one slot per thread, allocation being on every op's path. */
    private static final ThreadLocal<MemorySegment> POINTER_OUT = ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(JAVA_LONG));

    /** {@code bytes} of device memory, stream-ordered; throws a clear out-of-memory error with the free amount. */
    long allocate(long bytes, MemorySegment stream) {
        try {
            MemorySegment p = POINTER_OUT.get();
            return allocated("cuMemAllocAsync", (int) cuMemAllocAsync.invokeExact(p, Math.max(bytes, 4L), stream), bytes, p);
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    /** The pointer an allocation call wrote, or a clear out-of-memory error with the free amount, or its failure. */
    private long allocated(String call, int status, long bytes, MemorySegment pointer) {
        if (status == 2) { // CUDA_ERROR_OUT_OF_MEMORY
            long[] info = memoryInfo();
            throw new CudaException(String.format("out of GPU memory: asked for %.1f MiB with %.1f MiB free of %.1f MiB",
                    bytes / 1048576.0, info[0] / 1048576.0, info[1] / 1048576.0));
        }
        if (status != 0) check(call + "(" + bytes + " bytes)", status);
        return pointer.get(JAVA_LONG, 0);
    }

    void free(long pointer, MemorySegment stream) {
        try {
            check("cuMemFreeAsync", (int) cuMemFreeAsync.invokeExact(pointer, stream));
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    void copyToDevice(long dst, MemorySegment src, long bytes) {
        try {
            int status = (int) cuMemcpyHtoD.invokeExact(dst, src, bytes);
            if (status != 0) check("cuMemcpyHtoD(" + bytes + " bytes)", status);
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    void copyToHost(MemorySegment dst, long src, long bytes) {
        try {
            int status = (int) cuMemcpyDtoH.invokeExact(dst, src, bytes);
            if (status != 0) check("cuMemcpyDtoH(" + bytes + " bytes)", status);
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    void copyOnDevice(long dst, long src, long bytes, MemorySegment stream) {
        try {
            int status = (int) cuMemcpyDtoDAsync.invokeExact(dst, src, bytes, stream);
            if (status != 0) check("cuMemcpyDtoDAsync(" + bytes + " bytes)", status);
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    void fill32(long dst, int value, long count, MemorySegment stream) {
        try {
            check("cuMemsetD32Async", (int) cuMemsetD32Async.invokeExact(dst, value, count, stream));
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    MemorySegment loadModule(MemorySegment image) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = a.allocate(ADDRESS);
            check("cuModuleLoadData", (int) cuModuleLoadData.invokeExact(m, image));
            return m.get(ADDRESS, 0);
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    MemorySegment function(MemorySegment module, String name) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment f = a.allocate(ADDRESS);
            check("cuModuleGetFunction(" + name + ")", (int) cuModuleGetFunction.invokeExact(f, module, a.allocateFrom(name)));
            return f.get(ADDRESS, 0);
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    void setFunctionAttribute(MemorySegment function, int attribute, int value, String name) {
        try {
            check("cuFuncSetAttribute(" + name + ", " + attribute + ", " + value + ")",
                    (int) cuFuncSetAttribute.invokeExact(function, attribute, value));
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    void launch(MemorySegment function, String name, int gx, int gy, int gz, int bx, int by, int bz, int sharedBytes,
                MemorySegment params, MemorySegment stream) {
        try {
            // The message is built only on failure: a decode step launches a couple of hundred kernels.
            int status = (int) cuLaunchKernel.invokeExact(function, gx, gy, gz, bx, by, bz, sharedBytes, stream,
                    params, MemorySegment.NULL);
            if (status != 0)
                check("cuLaunchKernel(" + name + ", grid " + gx + "x" + gy + "x" + gz + ", block " + bx + ", shared "
                        + sharedBytes + ")", status);
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    /** A stream that the legacy default stream synchronises with (so synchronous copies wait for its work). */
    MemorySegment createStream() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(ADDRESS);
            check("cuStreamCreate", (int) cuStreamCreate.invokeExact(s, 0));
            return s.get(ADDRESS, 0);
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    void destroyStream(MemorySegment stream) {
        try {
            check("cuStreamDestroy", (int) cuStreamDestroy.invokeExact(stream));
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    void synchronize(MemorySegment stream) {
        try {
            check("cuStreamSynchronize", (int) cuStreamSynchronize.invokeExact(stream));
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    /**
     * Device memory outside the stream-ordered pool: what a graph's kernels use lives as long as the graph, and this
     * call (unlike cuMemAllocAsync) may be made while a stream is being captured.
     */
    long allocateFixed(long bytes) {
        try {
            MemorySegment p = POINTER_OUT.get();
            return allocated("cuMemAlloc", (int) cuMemAlloc.invokeExact(p, Math.max(bytes, 4L)), bytes, p);
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    void freeFixed(long pointer) {
        try {
            check("cuMemFree", (int) cuMemFree.invokeExact(pointer));
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    /** CU_STREAM_CAPTURE_MODE_RELAXED: this thread may still allocate (cuMemAlloc) while it captures. */
    private static final int CAPTURE_RELAXED = 2;

    /** From here on the stream's work is recorded into a graph instead of run. */
    void beginCapture(MemorySegment stream) {
        try {
            check("cuStreamBeginCapture", (int) cuStreamBeginCapture.invokeExact(stream, CAPTURE_RELAXED));
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    /** Ends a capture; returns the graph, or throws when the capture failed (the stream is usable again either way). */
    MemorySegment endCapture(MemorySegment stream) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment g = a.allocate(ADDRESS);
            check("cuStreamEndCapture", (int) cuStreamEndCapture.invokeExact(stream, g));
            return g.get(ADDRESS, 0);
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    MemorySegment instantiate(MemorySegment graph) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment e = a.allocate(ADDRESS);
            check("cuGraphInstantiateWithFlags", (int) cuGraphInstantiate.invokeExact(e, graph, 0L));
            return e.get(ADDRESS, 0);
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    void launchGraph(MemorySegment exec, MemorySegment stream) {
        try {
            check("cuGraphLaunch", (int) cuGraphLaunch.invokeExact(exec, stream));
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    void destroyGraph(MemorySegment graph, MemorySegment exec) {
        try {
            if (exec != null && !exec.equals(MemorySegment.NULL)) check("cuGraphExecDestroy", (int) cuGraphExecDestroy.invokeExact(exec));
            if (graph != null && !graph.equals(MemorySegment.NULL)) check("cuGraphDestroy", (int) cuGraphDestroy.invokeExact(graph));
        } catch (Throwable t) {
            throw wrap(t);
        }
    }

    void check(String call, int status) {
        if (status == 0) return;
        String name = "CUDA error " + status;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(ADDRESS);
            if ((int) cuGetErrorName.invokeExact(status, s) == 0)
                name = s.get(ADDRESS, 0).reinterpret(256).getString(0) + " (" + status + ")";
        } catch (Throwable ignored) {
            // keep the number
        }
        throw new CudaException(call + " failed: " + name
                + (status == 700 || status == 719 ? "; a kernel faulted, the GPU context is unusable now" : ""));
    }

    static RuntimeException wrap(Throwable t) {
        if (t instanceof RuntimeException r) return r;
        if (t instanceof Error e) throw e;
        return new CudaException("CUDA call failed: " + t);
    }
}
