package dev.ropeway.cuda;

import dev.ropeway.tensor.AttentionShape;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.Bfloat16;
import dev.ropeway.tensor.Convert;
import dev.ropeway.tensor.DType;
import dev.ropeway.tensor.OpChecks;
import dev.ropeway.tensor.RotaryTable;
import dev.ropeway.tensor.Tensor;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.ReentrantLock;

import static java.lang.foreign.ValueLayout.JAVA_DOUBLE;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The NVIDIA GPU backend: float32 tensors in GPU memory, products through cuBLAS, every other op a CUDA kernel
 * compiled at first use by NVRTC ({@code ops.cu}, {@code attention.cu}), all bound through FFM. Work is queued on the
 * default stream and runs asynchronously; results that come back to the host (downloads, losses, norms) wait for it.
 *
 * <p>Ops may be called from several threads: one op at a time holds the backend (the GPU runs them in order anyway).
 * Sums that come back to the host are reduced in a fixed order, so runs are repeatable.
 */
public final class CudaBackend implements Backend {
    private static final int THREADS = 256;
    /** Column-sum partials: at most this many row chunks. */
    private static final int MAX_CHUNKS = 1024;

    private final Driver driver;
    private final MemorySegment context;
    private final int device;
    private final String deviceName;
    private final int arch;
    private final int multiprocessors;
    private final int sharedOptIn;
    /** The shared memory per block that kernels are planned for: the GPU's opt-in limit, or less (see limitSharedMemory). */
    private volatile int sharedLimit;
    private final Nvrtc nvrtc;
    /** Where every op of this backend runs, in issue order (a stream of its own, so that it can be captured). */
    private final MemorySegment stream;
    private static final long CUBLAS_WORKSPACE = 32L << 20;
    private final long cublasWorkspace;
    private final Cublas cublas;
    private final MatmulPrecision precision;
    private final CudaModule ops;
    private final boolean halfKvCache;
    /** cuDNN and its fused attention, while that is switched on (see {@link #cudnnAttention(boolean)}). */
    private Cudnn cudnn;
    private volatile CudnnAttention cudnnAttention;
    private boolean cudnnWarned;
    private volatile boolean deterministic;
    private final java.util.concurrent.atomic.AtomicLong cudnnForwards = new java.util.concurrent.atomic.AtomicLong(),
            cudnnBackwards = new java.util.concurrent.atomic.AtomicLong();
    /** Attention modules by head size and tile (d + 1000 t), float32 caches at that key and float16 ones at minus it. */
    private final Map<Integer, CudaModule> attentionModules = new ConcurrentHashMap<>();
    /** Tensor-core attention modules by head size, keys and values' type and the variant that fits shared memory. */
    private final Map<MmaVariant, CudaModule> tensorCoreAttentionModules = new ConcurrentHashMap<>();

    /**
     * A build of attention_mma.cu: float16 keys and values ({@code KV_HALF}) and queries ({@code Q_HALF}), the forward's
     * output rounded to bfloat16 ({@code OUT_BF16}), query rows
     * per forward block ({@code FR}, 128 or 64) and streamed tiles per backward block ({@code STAGES}, 2 or 1); the
     * smaller ones for GPUs that allow less shared memory per block.
     */
    private record MmaVariant(int headDim, boolean halfKv, boolean halfQ, boolean outBf16, int forwardRows, int stages) {}
    private final ReentrantLock lock = new ReentrantLock();
    private final ThreadLocal<Boolean> contextSet = ThreadLocal.withInitial(() -> false);
    private volatile boolean closed;
    /** With ROPEWAY_CUDA_PROFILE set, every op waits for the GPU and its time is added up per op (printed at close). */
    private final boolean profile = System.getenv("ROPEWAY_CUDA_PROFILE") != null;
    private final Map<String, double[]> profileTimes = new java.util.TreeMap<>();
    private String profileOp;
    private long profileStart;

    /** Whether a CUDA driver and at least one GPU are present (never throws). */
    public static boolean isAvailable() {
        try {
            return Driver.get().deviceCount() > 0;
        } catch (RuntimeException | LinkageError e) {
            return false;
        }
    }

    /** Device 0, with TF32 tensor-core products. */
    public CudaBackend() {
        this(0, MatmulPrecision.TF32);
    }

    /** A backend on GPU {@code ordinal} whose matrix products run at {@code precision}, with a float16 KV cache. */
    public CudaBackend(int ordinal, MatmulPrecision precision) {
        this(ordinal, precision, true);
    }

    /**
     * A backend on GPU {@code ordinal} whose matrix products run at {@code precision}; its KV caches hold float16
     * ({@code halfKvCache}: half the memory and half the bytes a long-context decode step reads, keys and values
     * rounded to 11 significant bits) or float32.
     */
    public CudaBackend(int ordinal, MatmulPrecision precision, boolean halfKvCache) {
        this.driver = Driver.get();
        int count = driver.deviceCount();
        if (count == 0) throw new CudaException("the CUDA driver sees no GPU");
        if (ordinal < 0 || ordinal >= count)
            throw new CudaException("there is no GPU " + ordinal + ": the driver sees " + count);
        this.device = driver.device(ordinal);
        this.context = driver.primaryContext(device);
        contextSet.set(true);
        this.deviceName = driver.deviceName(device);
        int major = driver.attribute(device, Driver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
        int minor = driver.attribute(device, Driver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
        this.arch = major * 10 + minor;
        this.multiprocessors = driver.attribute(device, Driver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
        this.sharedOptIn = driver.attribute(device, Driver.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
        this.sharedLimit = sharedOptIn;
        this.nvrtc = new Nvrtc();
        this.precision = precision;
        this.halfKvCache = halfKvCache;
        this.stream = driver.createStream();
        this.cublasWorkspace = driver.allocateFixed(CUBLAS_WORKSPACE);
        this.cublas = new Cublas(precision, stream, cublasWorkspace, CUBLAS_WORKSPACE);
        this.ops = new CudaModule(driver, stream, nvrtc.compile("ops.cu", source("ops.cu"), arch, List.of()));
        String attention = System.getenv("ROPEWAY_CUDA_ATTENTION");
        if (attention != null && !attention.isBlank()) {
            try {
                switch (attention.strip().toLowerCase(java.util.Locale.ROOT)) {
                    case "cudnn" -> cudnnAttention(true);
                    case "kernels" -> cudnnAttention(false);
                    default -> throw new IllegalArgumentException("ROPEWAY_CUDA_ATTENTION must be cudnn or kernels, got '"
                            + attention + "'");
                }
            } catch (RuntimeException e) {
                close();
                throw e;
            }
        }
    }

    /**
     * Switches cuDNN's fused attention on or off for whole causal sequences (training steps and prefills from an empty
     * cache; everything else, decode steps included, stays on this backend's kernels). On loads cuDNN, and throws
     * naming what is missing when it cannot. Products that must stay exact ({@code fp32}) never use it. A shape cuDNN
     * refuses to plan runs on the kernels, with one warning. {@code ROPEWAY_CUDA_ATTENTION=cudnn} (or {@code kernels})
     * sets it for every backend. Returns whether it is on.
     */
    public boolean cudnnAttention(boolean on) {
        enter();
        try {
            if (on && cudnnAttention == null) {
                cudnn = new Cudnn(stream);
                cudnnAttention = new CudnnAttention(cudnn);
            } else if (!on && cudnnAttention != null) {
                closeCudnn();
            }
            return cudnnAttention != null;
        } finally {
            exit();
        }
    }

    /**
     * Makes every run of the same work give the same bits (on), or lets the attention backward add dQ up with atomics
     * (off, the default): one kernel then computes dK, dV and dQ from each tile of scores (five products per tile
     * instead of seven), and the order of dQ's additions varies from run to run. On, dQ has a pass of its own and
     * cuDNN's attention backward (which also adds with atomics) is not used. Returns whether it is on.
     */
    public boolean deterministic(boolean on) {
        deterministic = on;
        return on;
    }

    /** Whether runs of the same work give the same bits (see {@link #deterministic(boolean)}). */
    public boolean isDeterministic() {
        return deterministic;
    }

    /** How many attention forwards and backwards cuDNN has run on this backend. */
    public long[] cudnnAttentionCounts() {
        return new long[] {cudnnForwards.get(), cudnnBackwards.get()};
    }

    /** The cuDNN library in use ("9.10.2 at /usr/lib/..."), or null while its attention is off. */
    public String cudnnDescription() {
        Cudnn c = cudnn;
        return c == null ? null : c.version() + " at " + c.location();
    }

    /**
     * Whether {@link #attentionBackward} of {@code shape} (whole causal sequences) runs on cuDNN: its attention on, not
     * {@link #deterministic}, products not {@code fp32}, and a shape its graphs serve on the cuDNN loaded (up to 9.15,
     * only lengths that are multiples of 128).
     */
    public boolean cudnnRunsBackward(AttentionShape shape) {
        CudnnAttention c = cudnnAttention;
        return c != null && !deterministic && precision != MatmulPrecision.FP32 && c.backwardSupports(shape)
                && shape.kvRowsPerBatch() == shape.seqKv();
    }

    /** The loaded cuDNN's version number (major * 10000 + minor * 100 + patch), or 0 while cuDNN is off. */
    long cudnnVersion() {
        Cudnn c = cudnn;
        return c == null ? 0 : c.versionNumber();
    }

    private void closeCudnn() {
        driver.synchronize();
        cudnnAttention.close();
        cudnn.close();
        cudnnAttention = null;
        cudnn = null;
    }

    /**
     * The cuDNN plan for this call, or null where the kernels take it (not switched on, products kept exact, refused);
     * the callers have checked that cuDNN supports the call's shape.
     */
    private CudnnAttention.Plan cudnnPlan(AttentionShape shape, java.util.function.Function<CudnnAttention, CudnnAttention.Plan> plan) {
        if (cudnnAttention == null || precision == MatmulPrecision.FP32) return null;
        try {
            return plan.apply(cudnnAttention);
        } catch (CudaException e) {
            if (!cudnnWarned) {
                cudnnWarned = true;
                System.err.println("warning: cuDNN's fused attention is not used for " + shape + ": " + e.getMessage()
                        + " (Ropeway's attention kernels run it instead)");
            }
            return null;
        }
    }

    /**
     * Offsets of sub-buffers of {@code bytes} each, 256-byte aligned, in one scratch allocation; the last element is the
     * allocation's size.
     */
    private static long[] offsets(long... bytes) {
        long[] at = new long[bytes.length + 1];
        for (int i = 0; i < bytes.length; i++) at[i + 1] = at[i] + (bytes[i] + 255) / 256 * 256;
        return at;
    }

    /**
     * The forward through cuDNN: q (and float32 k, v) rounded to float16, or to bfloat16 when the call keeps its
     * statistic for a backward (training); queries kept as float16 or bfloat16 (a training pass's) set the type
     * instead, and are read in place, as are keys and values of that type; the output widened back; cuDNN's statistic
     * ([batch, heads, seq]) transposed into lse ([batch * seq, heads]).
     *
     * <p>cuDNN builds a plan per shape (tens to hundreds of milliseconds each), so an inference call on one sequence
     * (a prompt, whose length changes from call to call) runs at its length rounded up to a power of two, at least 256:
     * its copies are padded with zeros, which the causal mask hides from every real query, and only the real rows are
     * read back. A handful of plans then serve every prompt. Training keeps its exact shape (one plan, run every step).
     */
    private boolean cudnnForward(CudaTensor os, CudaTensor ls, CudaTensor qs, CudaTensor ks, CudaTensor vs,
                                 AttentionShape shape, AttentionBuffers sz) {
        if (!CudnnAttention.supports(shape)) return false;
        int io = switch (qs.storage()) {
            case F16 -> Cudnn.HALF;
            case BF16 -> Cudnn.BFLOAT16;
            case F32 -> ks.isHalf() || ls == null ? Cudnn.HALF : Cudnn.BFLOAT16;
        };
        CudaTensor.Storage ioType = io == Cudnn.HALF ? CudaTensor.Storage.F16 : CudaTensor.Storage.BF16;
        boolean padded = ls == null && shape.batch() == 1 && bucket(shape.seqQ()) != shape.seqQ();
        AttentionShape planned = padded ? paddedShape(shape) : shape;
        AttentionBuffers psz = padded ? attentionSizes("attention", planned) : sz;
        enter();
        long base = 0;
        try {
            CudnnAttention.Plan plan = cudnnPlan(planned, c -> c.forward(planned, io));
            if (plan == null) return false;
            // Inputs of another type are converted, those of the plan's read in place (copied when padded: rows past the
            // real ones must be 0).
            boolean copyQ = qs.storage() != ioType || padded, copyKv = ks.storage() != ioType || padded;
            // The output straight into out where that is of the plan's type (a bfloat16 output in training).
            boolean direct = os.storage() == ioType && !padded;
            long qb = psz.qFloats * 2, kvb = copyKv ? psz.kvFloats * 2 : 0, rows = psz.qRows * shape.heads() * 4;
            long[] b = {copyQ ? qb : 0, direct ? 0 : qb, kvb, kvb, rows, plan.workspaceBytes};
            long[] at = offsets(b);
            base = scratch(at[b.length]);
            for (int i = 0; i < b.length; i++) at[i] += base;
            long q = qs.address(), k = ks.address(), v = vs.address(), o = direct ? os.address() : at[1];
            if (copyQ) {
                place(at[0], qs, sz.qFloats, ioType);
                q = at[0];
            }
            if (copyKv) {
                place(at[2], ks, sz.kvFloats, ioType);
                place(at[3], vs, sz.kvFloats, ioType);
                k = at[2];
                v = at[3];
            }
            if (padded) {
                // Rows of one sequence follow each other: the padding is each copy's tail (an even number of halves).
                driver.fill32(at[0] + sz.qFloats * 2, 0, (psz.qFloats - sz.qFloats) / 2, stream);
                driver.fill32(at[2] + sz.kvFloats * 2, 0, (psz.kvFloats - sz.kvFloats) / 2, stream);
                driver.fill32(at[3] + sz.kvFloats * 2, 0, (psz.kvFloats - sz.kvFloats) / 2, stream);
            }
            plan.run(new long[] {q, k, v, o, at[4]}, shape.scale(), at[5]);
            if (!direct) place(os.address(), o, ioType, sz.qFloats, os.storage());
            if (ls != null) transposeRows(ls.address(), at[4], shape.batch(), shape.heads(), shape.seqQ());
            cudnnForwards.incrementAndGet();
            return true;
        } finally {
            if (base != 0) release(base);
            exit();
        }
    }

    /**
     * The power of two at or above {@code n} (at least 256): the length an inference call on one sequence runs at in
     * cuDNN, and the range of key counts one recorded decode step serves.
     */
    static long bucket(long n) {
        return Math.max(256, Long.highestOneBit(Math.max(1, n - 1)) << 1);
    }

    /** {@code shape} (one sequence, no cached keys before it) at its bucketed length. */
    private static AttentionShape paddedShape(AttentionShape shape) {
        long n = bucket(shape.seqQ());
        return new AttentionShape(1, n, n, n, 0, shape.heads(), shape.kvHeads(), shape.headDim(), shape.scale(),
                shape.window());
    }

    /** The shapes of cuDNN's cached attention plans, least recently used first (empty while cuDNN is off). */
    List<String> cudnnPlanShapes() {
        CudnnAttention c = cudnnAttention;
        return c == null ? List.of() : c.planKeys();
    }

    /** out[b][j][i] = in[b][i][j] for {@code batch} float matrices of rows x cols. */
    private void transposeRows(long out, long in, long batch, long rows, long cols) {
        long n = batch * rows * cols;
        try (HostScratch a = HostScratch.begin()) {
            ops.launch("transpose_batched", gridFor(n), 1, 1, THREADS, 0,
                    new KernelArgs(a).ptr(out).ptr(in).i64(batch).i64(rows).i64(cols));
        }
    }

    /**
     * The backward through cuDNN, in bfloat16 (a gradient's magnitudes need its range): q, k, v (read in place when they
     * are kept as bfloat16), out and dOut rounded, lse transposed into cuDNN's layout, the gradients widened back into
     * dq, dk and dv.
     */
    private boolean cudnnBackward(CudaTensor dqs, CudaTensor dks, CudaTensor dvs, CudaTensor dos, CudaTensor qs,
                                  CudaTensor ks, CudaTensor vs, CudaTensor os, CudaTensor ls, AttentionShape shape,
                                  AttentionBuffers sz) {
        CudnnAttention attention = cudnnAttention;
        if (attention == null || !attention.backwardSupports(shape) || shape.kvRowsPerBatch() != shape.seqKv()) return false;
        enter();
        long base = 0;
        try {
            CudnnAttention.Plan plan = cudnnPlan(shape, c -> c.backward(shape));
            if (plan == null) return false;
            CudaTensor.Storage bf16 = CudaTensor.Storage.BF16;
            boolean copyQ = qs.storage() != bf16, copyKv = ks.storage() != bf16, copyO = os.storage() != bf16;
            long qb = sz.qFloats * 2, kvb = sz.kvFloats * 2, rows = sz.qRows * shape.heads() * 4;
            long[] b = {copyQ ? qb : 0, copyKv ? kvb : 0, copyKv ? kvb : 0, copyO ? qb : 0, qb, rows, qb, kvb, kvb, rows,
                    sz.qFloats * 4, plan.workspaceBytes};
            long[] at = offsets(b);
            base = scratch(at[b.length]);
            for (int i = 0; i < b.length; i++) at[i] += base;
            long q = qs.address(), k = ks.address(), v = vs.address(), o = os.address();
            if (copyQ) place(q = at[0], qs, sz.qFloats, bf16);
            if (copyKv) {
                place(k = at[1], ks, sz.kvFloats, bf16);
                place(v = at[2], vs, sz.kvFloats, bf16);
            }
            if (copyO) place(o = at[3], os, sz.qFloats, bf16);
            convert("to_bf16", at[4], dos.address(), sz.qFloats);
            transposeRows(at[5], ls.address(), shape.batch(), shape.seqQ(), shape.heads());
            driver.fill32(at[10], 0, sz.qFloats, stream);
            plan.run(new long[] {q, k, v, o, at[4], at[5], at[6], at[7], at[8], at[9], at[10]}, shape.scale(), at[11]);
            convert("convert_bf16", dqs.address(), at[6], sz.qFloats);
            convert("convert_bf16", dks.address(), at[7], sz.kvFloats);
            convert("convert_bf16", dvs.address(), at[8], sz.kvFloats);
            cudnnBackwards.incrementAndGet();
            return true;
        } finally {
            if (base != 0) release(base);
            exit();
        }
    }

    /** A kernel file as NVRTC compiles it: {@code common.cuh} (what the files share) in front of it. */
    static String source(String name) {
        return resource("common.cuh") + "\n" + resource(name);
    }

    private static String resource(String name) {
        try (InputStream in = CudaBackend.class.getResourceAsStream(name)) {
            if (in == null) throw new IllegalStateException("kernel source " + name + " is missing from the jar");
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Override
    public String name() {
        return "cuda";
    }

    /** What this backend runs on, e.g. "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, NVRTC 13.0, tf32 products, f16 KV cache)". */
    public String description() {
        return deviceName + " (sm_" + arch + ", " + multiprocessors + " SMs, NVRTC " + nvrtc.version()
                + ", " + precision.name().toLowerCase(java.util.Locale.ROOT) + " products, "
                + (halfKvCache ? "f16" : "f32") + " KV cache" + (deterministic ? ", deterministic" : "") + ")";
    }

    @Override
    public int threads() {
        return Runtime.getRuntime().availableProcessors();
    }

    @Override
    public String toString() {
        return "CudaBackend[" + description() + "]";
    }

    // ---- memory ----

    /** Takes the backend for one op and makes the context current on this thread. */
    private void enter() {
        lock.lock();
        if (closed) {
            lock.unlock();
            throw new IllegalStateException("CudaBackend is closed");
        }
        if (!contextSet.get()) {
            driver.setCurrent(context);
            contextSet.set(true);
        }
        if (profile && lock.getHoldCount() == 1) {
            profileOp = StackWalker.getInstance().walk(f -> f.skip(1).filter(x -> !x.getMethodName().equals("launchElementwise")).findFirst().map(StackWalker.StackFrame::getMethodName).orElse("?"));
            driver.synchronize();
            profileStart = System.nanoTime();
        }
    }

    private void exit() {
        if (profile && lock.getHoldCount() == 1) {
            driver.synchronize();
            double[] t = profileTimes.computeIfAbsent(profileOp, k -> new double[2]);
            t[0] += (System.nanoTime() - profileStart) / 1e9;
            t[1]++;
        }
        lock.unlock();
    }

    /** The per-op times gathered with ROPEWAY_CUDA_PROFILE, longest first. */
    public String profileReport() {
        StringBuilder sb = new StringBuilder("op                      calls    seconds\n");
        double total = profileTimes.values().stream().mapToDouble(t -> t[0]).sum();
        profileTimes.entrySet().stream().sorted((a, b) -> Double.compare(b.getValue()[0], a.getValue()[0]))
                .forEach(e -> sb.append(String.format("%-22s %7d %10.4f  %5.1f%%%n", e.getKey(), (long) e.getValue()[1],
                        e.getValue()[0], 100 * e.getValue()[0] / total)));
        return sb.toString();
    }

    private final java.util.concurrent.atomic.AtomicLong liveTensorBytes = new java.util.concurrent.atomic.AtomicLong();
    private final java.util.concurrent.atomic.AtomicLong peakTensorBytes = new java.util.concurrent.atomic.AtomicLong();

    long allocateBytes(long bytes) {
        enter();
        try {
            long p = scratch(bytes);
            driver.fill32(p, 0, Math.max(1, bytes / 4), stream);
            long live = liveTensorBytes.addAndGet(bytes);
            peakTensorBytes.accumulateAndGet(live, Math::max);
            return p;
        } finally {
            exit();
        }
    }

    /** The most GPU memory tensors held at once since the last reset (an op's short-lived scratch not counted). */
    public long peakTensorBytes() {
        return peakTensorBytes.get();
    }

    /** Starts a new peak from the tensors held now. */
    public void resetPeakTensorBytes() {
        peakTensorBytes.set(liveTensorBytes.get());
    }

    /**
     * Device memory for an op or a tensor: from the stream-ordered pool, or, while a step is being recorded, memory the
     * recording owns until it is closed (a graph's kernels keep using the addresses they were recorded with).
     */
    private long scratch(long bytes) {
        GraphStep r = capturingHere();
        return r != null ? r.own(driver.allocateFixed(bytes)) : driver.allocate(bytes, stream);
    }

    /** The recording this thread is capturing now (it holds the lock throughout), or null. */
    private GraphStep capturingHere() {
        GraphStep r = capturing;
        return r != null && lock.isHeldByCurrentThread() ? r : null;
    }

    /** Gives back what {@link #scratch} gave (nothing to do for a recording's memory: it goes with the recording). */
    private void release(long address) {
        GraphStep r = capturing;
        if (r != null && r.owns(address)) return;
        driver.free(address, stream);
    }

    /** Frees an allocation of {@code bytes} later, from any thread (the cleaner's included). */
    Runnable releaser(long address, long bytes) {
        GraphStep r = capturingHere();
        if (r != null && r.owns(address))
            return () -> liveTensorBytes.addAndGet(-bytes);   // the recording frees it when it is closed
        return () -> {
            liveTensorBytes.addAndGet(-bytes);
            if (closed) return;
            lock.lock();
            try {
                if (closed) return;
                driver.setCurrent(context);
                release(address);
            } finally {
                lock.unlock();
            }
        };
    }

    @Override
    public CudaTensor allocate(long size) {
        return new CudaTensor(this, size);
    }

    /**
     * Float32, bfloat16 (a matrix-product operand in mixed-precision training) or float16 (attention's operands as a
     * training pass keeps them: {@link #attentionOperandType}).
     */
    @Override
    public CudaTensor allocate(long size, DType dtype) {
        return switch (dtype) {
            case F32 -> allocate(size);
            case BF16 -> new CudaTensor(this, size, CudaTensor.Storage.BF16);
            case F16 -> new CudaTensor(this, size, CudaTensor.Storage.F16);
            default -> throw new IllegalArgumentException("allocate: the CUDA backend does not store " + dtype + " tensors");
        };
    }

    /** Bfloat16 where products run in bfloat16 anyway ({@code --gpu-matmul bf16}): half the bytes, no conversions. */
    @Override
    public DType trainingOperandType() {
        return precision == MatmulPrecision.BF16 ? DType.BF16 : DType.F32;
    }

    /**
     * What attention rounds its queries, keys and values to anyway, so that a training pass keeps them that way: float16
     * for the tensor-core kernels, bfloat16 where cuDNN's attention runs forward and backward (its training graphs take
     * bfloat16); float32 for the exact kernels ({@code --gpu-matmul fp32}) and head sizes the tensor-core kernels do
     * not take. Decided when asked: a pass planned before cuDNN is switched on or off still runs, its operands then
     * converted per call.
     */
    @Override
    public DType attentionOperandType(int headDim) {
        if (!usesTensorCoreAttention(headDim)) return DType.F32;
        boolean cudnnBoth = cudnnAttention != null && !deterministic && headDim % 8 == 0 && headDim <= 128;
        return cudnnBoth ? DType.BF16 : DType.F16;
    }

    @Override
    public CudaTensor allocateKv(long size) {
        return new CudaTensor(this, size, halfKvCache ? CudaTensor.Storage.F16 : CudaTensor.Storage.F32);
    }

    @Override
    public int kvBytesPerElement() {
        return halfKvCache ? 2 : Float.BYTES;
    }

    @Override
    public CudaTensor view(Tensor base, long offset, long size) {
        return new CudaTensor(anyTensor("view", "base", base), offset, size);
    }

    @Override
    public CudaTensor upload(float[] data) {
        if (data == null) throw new IllegalArgumentException("upload: data is null");
        CudaTensor t = allocate(data.length);
        if (data.length == 0) return t;
        enter();
        try (HostScratch a = HostScratch.begin()) {
            driver.copyToDevice(t.address(), a.allocateFrom(JAVA_FLOAT, data), (long) data.length * Float.BYTES);
        } finally {
            exit();
        }
        return t;
    }

    @Override
    public CudaTensor upload(MemorySegment src, DType dtype, long count) {
        if (src == null || dtype == null) throw new IllegalArgumentException("upload: src and dtype must not be null");
        if (dtype.isQuantised()) return dequantised("upload", src, dtype, count, CudaTensor.Storage.F32);
        if (!dtype.isFloatWeight()) throw new IllegalArgumentException("upload: cannot convert " + dtype + " to float32");
        if (count < 0) throw new IllegalArgumentException("upload: count must be >= 0, got " + count);
        long bytes = OpChecks.product("upload", count, dtype.bytes());
        if (src.byteSize() < bytes)
            throw new IllegalArgumentException("upload: src has " + src.byteSize() + " bytes, needs count*" + dtype.bytes() + " = " + bytes);
        CudaTensor t = allocate(count);
        if (count == 0) return t;
        enter();
        try (HostScratch a = HostScratch.begin()) {
            MemorySegment host = src.isNative() ? src : a.allocate(bytes).copyFrom(src.asSlice(0, bytes));
            if (dtype == DType.F32) {
                driver.copyToDevice(t.address(), host, bytes);
                return t;
            }
            long raw = scratch(bytes);
            try {
                driver.copyToDevice(raw, host, bytes);
                String kernel = switch (dtype) {
                    case BF16 -> "convert_bf16";
                    case F16 -> "convert_f16";
                    case F64 -> "convert_f64";
                    default -> throw new IllegalArgumentException("upload: cannot convert " + dtype);
                };
                ops.launch(kernel, gridFor(count), 1, 1, THREADS, 0, new KernelArgs(a).ptr(t.address()).ptr(raw).i64(count));
            } finally {
                release(raw);
            }
        } finally {
            exit();
        }
        return t;
    }

    /**
     * A bfloat16 or float16 checkpoint's matrices stay so on the GPU (half the memory, half the bytes a decode step
     * reads): {@link #linear}, {@link #gemm} and {@link #embedding} read them widened, which is exact, so they compute
     * what they would on a float32 copy. A matrix of ggml blocks (Q8_0, the k-quants, Q4_0 ...: a GGUF import's) is dequantised on
     * the host and rounded to bfloat16, which holds each value to 2^-9 of itself, well inside the quantisation's step.
     * Other types become float32 as {@link #upload} makes them.
     */
    @Override
    public CudaTensor uploadWeights(MemorySegment src, DType dtype, long count) {
        if (dtype != null && dtype.isQuantised()) return dequantised("uploadWeights", src, dtype, count, CudaTensor.Storage.BF16);
        if (dtype != DType.BF16 && dtype != DType.F16) return upload(src, dtype, count);
        OpChecks.nonNegative("uploadWeights", "count", count);
        long bytes = OpChecks.product("uploadWeights", count, 2);
        if (src == null || src.byteSize() < bytes)
            throw new IllegalArgumentException("uploadWeights: src has " + (src == null ? "no" : src.byteSize())
                    + " bytes, needs count*2 = " + bytes);
        CudaTensor t = new CudaTensor(this, count, dtype == DType.BF16 ? CudaTensor.Storage.BF16 : CudaTensor.Storage.F16);
        if (count == 0) return t;
        enter();
        try (HostScratch a = HostScratch.begin()) {
            MemorySegment host = src.isNative() ? src : a.allocate(bytes).copyFrom(src.asSlice(0, bytes));
            driver.copyToDevice(t.address(), host, bytes);
        } finally {
            exit();
        }
        return t;
    }

    /**
     * {@code count} values of ggml blocks dequantised on the host (as ggml's reference does) into a new float32 or
     * bfloat16 tensor, a slice of about a million values at a time.
     */
    private CudaTensor dequantised(String op, MemorySegment src, DType dtype, long count, CudaTensor.Storage storage) {
        OpChecks.nonNegative(op, "count", count);
        long bytes;
        try {
            bytes = dtype.byteSize(count);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(op + ": " + e.getMessage(), e);
        }
        if (src == null || src.byteSize() < bytes)
            throw new IllegalArgumentException(op + ": src has " + (src == null ? "no" : src.byteSize()) + " bytes, needs "
                    + bytes + " for " + count + " " + dtype + " values");
        boolean narrow = storage == CudaTensor.Storage.BF16;
        CudaTensor t = new CudaTensor(this, count, storage);
        long slice = (1L << 20) / dtype.blockSize() * dtype.blockSize();
        float[] values = new float[(int) Math.min(slice, count)];
        enter();
        try (Arena a = Arena.ofConfined()) {
            int width = narrow ? 2 : Float.BYTES;
            MemorySegment host = a.allocate((long) values.length * width, 64);
            for (long at = 0; at < count; at += slice) {
                int n = (int) Math.min(slice, count - at);
                Convert.toFloats(src, dtype, at, values, n);
                if (narrow) for (int i = 0; i < n; i++) host.setAtIndex(JAVA_SHORT, i, Bfloat16.round(values[i]));
                else MemorySegment.copy(values, 0, host, JAVA_FLOAT, 0, n);
                driver.copyToDevice(t.address() + at * width, host, (long) n * width);
            }
        } catch (RuntimeException e) {
            t.close();
            throw e;
        } finally {
            exit();
        }
        return t;
    }

    @Override
    public void download(Tensor src, long offset, float[] dst, int dstOffset, int length) {
        CudaTensor s = anyTensor("download", "src", src);
        checkRange("download", "src", s, offset, length);
        if (dst == null || dstOffset < 0 || dstOffset > dst.length - length)
            throw new IllegalArgumentException("download: dst range [" + dstOffset + ", " + ((long) dstOffset + length)
                    + ") is outside its " + (dst == null ? "null" : dst.length + " floats"));
        if (length == 0) return;
        enter();
        try (HostScratch a = HostScratch.begin()) {
            MemorySegment host = a.allocate(JAVA_FLOAT, length);
            long bytes = (long) length * Float.BYTES;
            if (s.storage() != CudaTensor.Storage.F32) {
                long wide = scratch(bytes);
                try {
                    convert(s.isHalf() ? "from_half" : "convert_bf16", wide, s.address() + offset * 2, length);
                    driver.copyToHost(host, wide, bytes);
                } finally {
                    release(wide);
                }
            } else {
                driver.copyToHost(host, s.address() + offset * Float.BYTES, bytes);
            }
            MemorySegment.copy(host, JAVA_FLOAT, 0, dst, dstOffset, length);
        } finally {
            exit();
        }
    }

    /** A conversion kernel (to_half, from_half, to_bf16, convert_bf16...) over n elements (called holding the lock). */
    private void convert(String kernel, long dst, long src, long n) {
        try (HostScratch a = HostScratch.begin()) {
            ops.launch(kernel, gridFor(n), 1, 1, THREADS, 0, new KernelArgs(a).ptr(dst).ptr(src).i64(n));
        }
    }

    /** The ops.cu kernel that converts elements of one type into another (rounding to nearest even). */
    private static String conversion(CudaTensor.Storage from, CudaTensor.Storage to) {
        if (from == to) throw new IllegalArgumentException("no conversion from " + from + " to itself");
        return switch (to) {
            case F32 -> from == CudaTensor.Storage.F16 ? "from_half" : "convert_bf16";
            case F16 -> from == CudaTensor.Storage.F32 ? "to_half" : "bf16_to_half";
            case BF16 -> from == CudaTensor.Storage.F32 ? "to_bf16" : "half_to_bf16";
        };
    }

    /** n elements of {@code src} into {@code dst} as {@code want}: copied, or converted (called holding the lock). */
    private void place(long dst, CudaTensor src, long n, CudaTensor.Storage want) {
        place(dst, src.address(), src.storage(), n, want);
    }

    /** n elements of type {@code from} at {@code src} into {@code dst} as {@code want}: copied, or converted. */
    private void place(long dst, long src, CudaTensor.Storage from, long n, CudaTensor.Storage want) {
        if (from == want) driver.copyOnDevice(dst, src, n * want.bytes, stream);
        else convert(conversion(from, want), dst, src, n);
    }

    /**
     * The first n elements of {@code t} as {@code want}: t itself where it is stored so, else a converted copy, added to
     * {@code temps} for the caller to close once its kernels are queued (called holding the lock).
     */
    private CudaTensor as(CudaTensor t, long n, CudaTensor.Storage want, List<CudaTensor> temps) {
        if (t.storage() == want) return t;
        CudaTensor c = new CudaTensor(this, n, want);
        temps.add(c);
        place(c.address(), t, n, want);
        return c;
    }

    @Override
    public void copy(Tensor dst, long dstOffset, Tensor src, long srcOffset, long length) {
        CudaTensor d = anyTensor("copy", "dst", dst), s = anyTensor("copy", "src", src);
        checkRange("copy", "dst", d, dstOffset, length);
        checkRange("copy", "src", s, srcOffset, length);
        if (length == 0) return;
        enter();
        try {
            long to = d.address() + dstOffset * d.elementBytes(), from = s.address() + srcOffset * s.elementBytes();
            if (d.storage() != s.storage()) {
                // Between float32, float16 and bfloat16 (rounded to nearest even); two types never share memory.
                convert(conversion(s.storage(), d.storage()), to, from, length);
                return;
            }
            long bytes = length * d.elementBytes();
            if (Math.abs(to - from) < bytes && to != from) {
                // Overlapping ranges: through a scratch buffer, as memmove would.
                long tmp = scratch(bytes);
                driver.copyOnDevice(tmp, from, bytes, stream);
                driver.copyOnDevice(to, tmp, bytes, stream);
                release(tmp);
            } else if (to != from) {
                driver.copyOnDevice(to, from, bytes, stream);
            }
        } finally {
            exit();
        }
    }

    /** 8192 tokens: products large enough for the tensor cores, and a 64k-token prompt in 8 forwards, not 128. */
    @Override
    public int prefillChunk() {
        return 8192;
    }

    /** 256 MiB blocks: a few large products and one host round trip each, instead of hundreds. */
    @Override
    public long blockFloats() {
        return 1L << 26;
    }

    @Override
    public void synchronize() {
        enter();
        try {
            driver.synchronize();
        } finally {
            exit();
        }
    }

    /**
     * The device memory free once the pool has given back what it kept for reuse (every op issued so far is waited
     * for first).
     */
    @Override
    public java.util.OptionalLong memoryAvailable() {
        enter();
        try {
            driver.synchronize();
            driver.trimPool(device);
            return java.util.OptionalLong.of(driver.memoryInfo()[0]);
        } finally {
            exit();
        }
    }

    // ---- products ----

    @Override
    public void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha, Tensor a, long aOffset, int lda,
                     Tensor b, long bOffset, int ldb, float beta, Tensor c, long cOffset, int ldc) {
        String op = "gemm";
        OpChecks.nonNegative(op, "m", m);
        OpChecks.nonNegative(op, "n", n);
        OpChecks.nonNegative(op, "k", k);
        int aRows = transA ? k : m, aCols = transA ? m : k;
        int bRows = transB ? n : k, bCols = transB ? k : n;
        boolean reads = m > 0 && n > 0 && k > 0;
        CudaTensor ta = matrix(op, "a", operand(op, "a", a), aOffset, aRows, aCols, lda, reads);
        CudaTensor tb = matrix(op, "b", operand(op, "b", b), bOffset, bRows, bCols, ldb, reads);
        CudaTensor tc = matrix(op, "c", tensor(op, "c", c), cOffset, m, n, ldc, true);
        if (ta.storage() == CudaTensor.Storage.F32 && tb.storage() != CudaTensor.Storage.F32) {
            // Activations times a narrow checkpoint's weights (its logits head).
            if (m == 0 || n == 0) return;
            boolean half = tb.isHalf();
            enter();
            try {
                long aAt = ta.address() + aOffset * 4, bAt = tb.address() + bOffset * 2, cAt = tc.address() + cOffset * 4;
                if (!transA && transB) narrowWeightProduct(m, n, k, alpha, aAt, lda, bAt, ldb, half, beta, cAt, ldc, 0);
                else widenedProduct(transA, transB, m, n, k, alpha, aAt, lda, bAt, ldb, transB ? n : k, transB ? k : n,
                        beta, cAt, ldc, false, half);
            } finally {
                exit();
            }
            return;
        }
        if (ta.storage() != CudaTensor.Storage.F32 && tb.storage() == CudaTensor.Storage.F32) {
            if (m == 0 || n == 0) return;
            enter();
            try {
                widenedProduct(transA, transB, m, n, k, alpha, ta.address() + aOffset * 2, lda, tb.address() + bOffset * 4,
                        ldb, transA ? k : m, transA ? m : k, beta, tc.address() + cOffset * 4, ldc, true, ta.isHalf());
            } finally {
                exit();
            }
            return;
        }
        boolean bf16 = sameOperandTypes(op, "a", ta, "b", tb);
        if (m == 0 || n == 0) return;
        enter();
        try {
            int e = ta.elementBytes();
            cublas.gemm(transA, transB, m, n, k, alpha, ta.address() + aOffset * e, lda, tb.address() + bOffset * e, ldb,
                    beta, tc.address() + cOffset * 4, ldc, bf16);
        } finally {
            exit();
        }
    }

    /** Rows a product on narrow weights takes on its own kernel per pass (LINEAR_ROWS in ops.cu); more go to cuBLAS. */
    private static final int NARROW_WEIGHT_ROWS = 8;
    /** Weight rows per block of the kernel (LINEAR_WARPS x LINEAR_OUTS), and its threads. */
    private static final int NARROW_WEIGHT_OUTS_PER_BLOCK = 8, NARROW_WEIGHT_THREADS = 128;
    /** Floats of scratch a product widens bfloat16 weights into at a time: 64 MB (smaller in tests, to see blocks). */
    static long widenFloats = 1L << 24;

    /**
     * {@code C[m,n] = alpha A[m,k] W[n,k]^T + beta C (+ bias[n])} with float32 A and C and bfloat16 weights W (float16
     * when {@code half}; device addresses, row strides), the result of the float32 product on W widened: a few rows on
     * the narrow-weight kernel (reads each weight once per 8 rows: a decode step, a short prompt, a few server slots);
     * more on cuBLAS, from A rounded to bfloat16 where products run in bfloat16 anyway and W is bfloat16, else from W
     * widened into float32 scratch a block of its rows at a time. {@code bias} is a device address or 0. Called
     * holding the lock.
     */
    private void narrowWeightProduct(int m, int n, int k, float alpha, long a, int lda, long w, int ldw, boolean half,
                                     float beta, long c, int ldc, long bias) {
        try (HostScratch h = HostScratch.begin()) {
            // Up to 4 passes of the kernel (each reading the weights once, 2 bytes apiece) move fewer bytes than
            // widening them for cuBLAS (6, then 4 more read by the product); a bfloat16 product reads them once.
            boolean bf16Product = precision == MatmulPrecision.BF16 && !half;
            int passes = (m + NARROW_WEIGHT_ROWS - 1) / NARROW_WEIGHT_ROWS;
            if (passes == 1 || passes <= 4 && !bf16Product) {
                boolean vec = k % 8 == 0 && ldw % 8 == 0 && lda % 4 == 0 && w % 16 == 0 && a % 16 == 0;
                String kernel = half ? "linear_f16_weights" : "linear_bf16_weights";
                for (int r0 = 0; r0 < m; r0 += NARROW_WEIGHT_ROWS)
                    ops.launch(kernel, blocks(n, NARROW_WEIGHT_OUTS_PER_BLOCK), 1, 1, NARROW_WEIGHT_THREADS, 0,
                            new KernelArgs(h).ptr(c + (long) r0 * ldc * 4).ptr(a + (long) r0 * lda * 4).ptr(w).ptr(bias)
                                    .i32(Math.min(NARROW_WEIGHT_ROWS, m - r0)).i32(k).i32(n).i64(lda).i64(ldw).i64(ldc)
                                    .f32(alpha).f32(beta).i32(vec ? 1 : 0));
                return;
            }
            if (bf16Product) {
                // cuBLAS's bfloat16 mode rounds float32 inputs to bfloat16 anyway: round A once, read W as it is.
                long a16 = scratch((long) m * k * 2);
                try {
                    ops.launch("round_bf16_rows", gridFor((long) m * k), 1, 1, THREADS, 0,
                            new KernelArgs(h).ptr(a16).ptr(a).i64(m).i32(k).i64(k).i64(lda));
                    cublas.gemm(false, true, m, n, k, alpha, a16, k, w, ldw, beta, c, ldc, true);
                } finally {
                    release(a16);
                }
            } else {
                int per = (int) Math.max(1, Math.min(n, widenFloats / Math.max(k, 1)));
                long wide = scratch((long) per * k * 4);
                try {
                    for (int o0 = 0; o0 < n; o0 += per) {
                        int nc = Math.min(per, n - o0);
                        ops.launch(half ? "widen_f16_rows" : "widen_bf16_rows", gridFor((long) nc * k), 1, 1, THREADS, 0,
                                new KernelArgs(h).ptr(wide).ptr(w + (long) o0 * ldw * 2).i64(nc).i32(k).i64(k).i64(ldw));
                        cublas.gemm(false, true, m, nc, k, alpha, a, lda, wide, k, beta, c + (long) o0 * 4, ldc);
                    }
                } finally {
                    release(wide);
                }
            }
            if (bias != 0) {
                if (ldc != n) throw new IllegalStateException("a bias needs ldc == n");
                ops.launch("add_bias", gridFor((long) m * n), 1, 1, THREADS, 0,
                        new KernelArgs(h).ptr(c).ptr(bias).i64(m).i32(n));
            }
        }
    }

    /**
     * A product with one narrow operand (bfloat16, or float16 when {@code f16}; {@code rows x cols} with its row stride;
     * A when {@code narrowIsA}, else B) and one float32: the narrow one widened into float32 scratch, then the float32
     * product. Called holding the lock.
     */
    private void widenedProduct(boolean transA, boolean transB, int m, int n, int k, float alpha, long a, int lda, long b,
                                int ldb, int rows, int cols, float beta, long c, int ldc, boolean narrowIsA, boolean f16) {
        long narrow = narrowIsA ? a : b;
        int ld = narrowIsA ? lda : ldb;
        long wide = scratch(Math.max(1, (long) rows * cols) * 4);
        try (HostScratch h = HostScratch.begin()) {
            if (rows > 0 && cols > 0)
                ops.launch(f16 ? "widen_f16_rows" : "widen_bf16_rows", gridFor((long) rows * cols), 1, 1, THREADS, 0,
                        new KernelArgs(h).ptr(wide).ptr(narrow).i64(rows).i32(cols).i64(cols).i64(ld));
            if (narrowIsA) cublas.gemm(transA, transB, m, n, k, alpha, wide, Math.max(1, cols), b, ldb, beta, c, ldc);
            else cublas.gemm(transA, transB, m, n, k, alpha, a, lda, wide, Math.max(1, cols), beta, c, ldc);
        } finally {
            release(wide);
        }
    }

    /** A product's operand: float32, bfloat16, or float16 (a float16 checkpoint's weights, beside float32 activations). */
    private static CudaTensor operand(String op, String name, Tensor t) {
        return anyTensor(op, name, t);
    }

    /** Whether both operands are bfloat16 (true) or both float32 (false); cuBLAS takes no mixed pair. */
    private static boolean sameOperandTypes(String op, String an, CudaTensor a, String bn, CudaTensor b) {
        if (a.isHalf() || b.isHalf())
            throw new IllegalArgumentException(op + ": float16 tensors are products' operands only as weights beside "
                    + "float32 activations (a float16 checkpoint's), got " + a + " and " + b);
        if (a.storage() != b.storage())
            throw new IllegalArgumentException(op + ": " + an + " and " + bn + " must be both float32 or both bfloat16 "
                    + "(or float32 " + an + " and bfloat16 or float16 weights " + bn + "), got " + a + " and " + b);
        return a.storage() == CudaTensor.Storage.BF16;
    }

    private static CudaTensor matrix(String op, String name, CudaTensor ct, long offset, int rows, int cols, int ld, boolean read) {
        Tensor t = ct;
        if (ld < Math.max(1, cols))
            throw new IllegalArgumentException(op + ": ld" + name + " = " + ld + " is less than its " + cols + " columns");
        OpChecks.nonNegative(op, name + "Offset", offset);
        if (!read || rows == 0 || cols == 0) return ct;
        long end = offset + (long) (rows - 1) * ld + cols;
        if (end > t.size())
            throw new IllegalArgumentException(op + ": " + name + " has " + t.size() + " " + ct.storage().plural
                    + ", needs offset + (rows-1)*ld + cols = "
                    + offset + " + " + (rows - 1) + "*" + ld + " + " + cols + " = " + end);
        return ct;
    }

    @Override
    public void linear(Tensor y, Tensor x, Tensor w, Tensor bias, long rows, int in, int out) {
        String op = "linear";
        OpChecks.nonNegative(op, "rows", rows);
        OpChecks.positive(op, "in", in);
        OpChecks.positive(op, "out", out);
        CudaTensor xs = atLeast(op, "x", operand(op, "x", x), OpChecks.product(op, rows, in), "rows*in");
        CudaTensor ws = atLeast(op, "w", operand(op, "w", w), (long) out * in, "out*in");
        CudaTensor ys = atLeast(op, "y", operand(op, "y", y), OpChecks.product(op, rows, out), "rows*out");
        CudaTensor bs = bias == null ? null : atLeast(op, "bias", bias, out, "out");
        if (ys.isHalf()) throw new IllegalArgumentException(op + ": y must be float32 or bfloat16, got " + ys);
        if (xs.storage() == CudaTensor.Storage.F32 && ws.storage() != CudaTensor.Storage.F32) {
            // Float32 activations, a narrow checkpoint's weights.
            if (ys.storage() != CudaTensor.Storage.F32)
                throw new IllegalArgumentException(op + ": a bfloat16 y needs bfloat16 x and w, got " + xs + " and " + ws);
            if (rows == 0) return;
            enter();
            try {
                for (long r0 = 0; r0 < rows; r0 += 1L << 30) {
                    int m = (int) Math.min(1L << 30, rows - r0);
                    narrowWeightProduct(m, out, in, 1f, xs.address() + r0 * in * 4, in, ws.address(), in, ws.isHalf(), 0f,
                            ys.address() + r0 * out * 4, out, bs == null ? 0 : bs.address());
                }
            } finally {
                exit();
            }
            return;
        }
        boolean bf16 = sameOperandTypes(op, "x", xs, "w", ws);
        boolean bf16Out = ys.storage() == CudaTensor.Storage.BF16;
        if (bf16Out && !bf16)
            throw new IllegalArgumentException(op + ": a bfloat16 y needs bfloat16 x and w, got " + xs + " and " + ws);
        if (rows == 0) return;
        int e = xs.elementBytes();
        long chunk = 1L << 30;
        enter();
        long wide = 0;
        try (HostScratch a = HostScratch.begin()) {
            // A bias goes on in float32: into bfloat16 with one, the product and the bias meet in scratch first.
            if (bf16Out && bs != null) wide = scratch(rows * out * 4);
            long dst = wide != 0 ? wide : ys.address();
            boolean narrow = bf16Out && wide == 0;
            for (long r0 = 0; r0 < rows; r0 += chunk) {
                int m = (int) Math.min(chunk, rows - r0);
                cublas.gemm(false, true, m, out, in, 1f, xs.address() + r0 * in * e, in, ws.address(), in, 0f,
                        dst + r0 * out * (narrow ? 2 : 4), out, bf16, narrow);
            }
            if (bs != null)
                ops.launch("add_bias", gridFor(rows * out), 1, 1, THREADS, 0,
                        new KernelArgs(a).ptr(dst).ptr(bs.address()).i64(rows).i32(out));
            if (wide != 0) convert("to_bf16", ys.address(), wide, rows * out);
        } finally {
            if (wide != 0) release(wide);
            exit();
        }
    }

    // ---- row ops ----

    @Override
    public void embedding(Tensor out, Tensor table, int[] ids, int dim) {
        String op = "embedding";
        CudaTensor t = embeddingTable(op, "table", table, ids, dim, true);
        CudaTensor o = atLeast(op, "out", out, (long) ids.length * dim, "ids.length*dim");
        if (ids.length == 0) return;
        enter();
        try (HostScratch a = HostScratch.begin()) {
            long dIds = uploadInts(a, ids);
            ops.launch(embeddingKernel(t), ids.length, 1, 1, THREADS, 0,
                    new KernelArgs(a).ptr(o.address()).ptr(t.address()).ptr(dIds).i64(ids.length).i32(dim));
            release(dIds);
        } finally {
            exit();
        }
    }

    @Override
    public void rmsNorm(Tensor out, Tensor x, Tensor weight, long rows, int dim, float eps) {
        String op = "rmsNorm";
        OpChecks.nonNegative(op, "rows", rows);
        OpChecks.positive(op, "dim", dim);
        long n = OpChecks.product(op, rows, dim);
        CudaTensor xs = atLeast(op, "x", x, n, "rows*dim");
        CudaTensor os = atLeast(op, "out", operand(op, "out", out), n, "rows*dim");
        CudaTensor ws = atLeast(op, "weight", weight, dim, "dim");
        if (rows == 0) return;
        boolean bf16 = os.storage() == CudaTensor.Storage.BF16;
        enter();
        try (HostScratch a = HostScratch.begin()) {
            forRowBlocks(rows, (r0, count) -> ops.launch(bf16 ? "rmsnorm_forward_bf16" : "rmsnorm_forward", count, 1, 1,
                    THREADS, 0, new KernelArgs(a).ptr(os.address() + r0 * dim * os.elementBytes()).ptr(xs.address() + r0 * dim * 4)
                            .ptr(ws.address()).i64(count).i32(dim).f32(eps)));
        } finally {
            exit();
        }
    }

    @Override
    public RotaryTable rotaryTable(float[] positions, float[] invFreq, float attentionScale) {
        if (positions == null || invFreq == null)
            throw new IllegalArgumentException("rotaryTable: positions and invFreq must not be null");
        long size = (long) positions.length * invFreq.length;
        CudaTensor cos = allocate(size), sin = allocate(size);
        if (size > 0) {
            enter();
            try (HostScratch a = HostScratch.begin()) {
                long dPos = uploadFloats(a, positions), dFreq = uploadFloats(a, invFreq);
                ops.launch("rotary_table", gridFor(size), 1, 1, THREADS, 0, new KernelArgs(a).ptr(cos.address())
                        .ptr(sin.address()).ptr(dPos).ptr(dFreq).i64(positions.length).i32(invFreq.length).f32(attentionScale));
                release(dPos);
                release(dFreq);
            } finally {
                exit();
            }
        }
        return new RotaryTable(cos, sin, positions.length, invFreq.length);
    }

    @Override
    public void rotary(Tensor x, RotaryTable table, long rows, int heads, int headDim) {
        String op = "rotary";
        RotaryTable.check(op, table, rows, heads, headDim);
        int half = table.half();
        CudaTensor xs = atLeast(op, "x", x, OpChecks.product(op, rows, (long) heads * headDim), "rows*heads*headDim");
        CudaTensor c = atLeast(op, "table.cos", table.cos(), rows * half, "rows*half");
        CudaTensor s = atLeast(op, "table.sin", table.sin(), rows * half, "rows*half");
        if (half == 0 || rows == 0) return;
        enter();
        try (HostScratch a = HostScratch.begin()) {
            ops.launch("rotary_forward", gridFor(rows * half), 1, 1, THREADS, 0, new KernelArgs(a).ptr(xs.address())
                    .ptr(c.address()).ptr(s.address()).i64(rows).i32(heads).i32(headDim).i32(half));
        } finally {
            exit();
        }
    }

    /** Element types as ops.cu's any-type kernels number them (T_F32, T_F16, T_BF16). */
    private static int typeCode(CudaTensor t) {
        return switch (t.storage()) {
            case F32 -> 0;
            case F16 -> 1;
            case BF16 -> 2;
        };
    }

    /** Out of place, one pass: x (float32) read, out written in its own type (rounded once when narrower). */
    @Override
    public void rotary(Tensor out, Tensor x, RotaryTable table, long rows, int heads, int headDim) {
        String op = "rotary";
        if (out == x) {
            rotary(x, table, rows, heads, headDim);
            return;
        }
        RotaryTable.check(op, table, rows, heads, headDim);
        int half = table.half();
        long n = OpChecks.product(op, rows, (long) heads * headDim);
        CudaTensor xs = atLeast(op, "x", x, n, "rows*heads*headDim");
        CudaTensor os = atLeast(op, "out", anyTensor(op, "out", out), n, "rows*heads*headDim");
        CudaTensor c = atLeast(op, "table.cos", table.cos(), rows * half, "rows*half");
        CudaTensor s = atLeast(op, "table.sin", table.sin(), rows * half, "rows*half");
        if (n == 0) return;
        enter();
        try (HostScratch a = HostScratch.begin()) {
            ops.launch("rotary_into", gridFor(n), 1, 1, THREADS, 0, new KernelArgs(a).ptr(os.address()).i32(typeCode(os))
                    .ptr(xs.address()).ptr(c.address()).ptr(s.address()).i64(rows).i32(heads).i32(headDim).i32(half));
        } finally {
            exit();
        }
    }

    // ---- attention ----

    /**
     * Tile sizes of the exact kernels for a head size: 64 x 64 tiles up to 128 features where the GPU's shared memory
     * holds the largest of them (the dK/dV backward's: 162 KB at 128 features, more than the 99 KB of sm_86 and sm_89),
     * 32 x 32 otherwise.
     */
    private int tile(int headDim) {
        return headDim <= 128 && exactBackwardKvShared(headDim, 64) <= sharedLimit ? 64 : 32;
    }

    /**
     * Shared memory of the exact dK/dV backward kernel (the largest of the exact kernels) with t x t tiles: keys,
     * values, queries and dOut rows, P and dS, the rows' statistics.
     */
    private static int exactBackwardKvShared(int headDim, int t) {
        return (4 * t * paddedLd(headDim) + 2 * t * (t + 1) + 2 * t) * 4;
    }

    private CudaModule attentionModule(int headDim, boolean halfKv) {
        if (headDim > 256)
            throw new IllegalArgumentException("attention: the CUDA backend supports head sizes up to 256, got " + headDim);
        int t = tile(headDim);
        int key = (halfKv ? -1 : 1) * (headDim + 1000 * t);
        CudaModule m = attentionModules.get(key);
        if (m != null) return m;
        // Loading a module needs the context current on this thread (a server's slot threads come here first).
        enter();
        try {
            return attentionModules.computeIfAbsent(key, x -> {
                List<String> options = new java.util.ArrayList<>(defines(headDim, halfKv));
                options.add("-DBR=" + t);
                options.add("-DBC=" + t);
                return new CudaModule(driver, stream, nvrtc.compile("attention.cu", source("attention.cu"), arch, options));
            });
        } finally {
            exit();
        }
    }

    /** An attention module's head size, and whether the keys and values it reads are a float16 cache. */
    private static List<String> defines(int headDim, boolean halfKv) {
        return halfKv ? List.of("-DHEAD_DIM=" + headDim, "-DKV_HALF") : List.of("-DHEAD_DIM=" + headDim);
    }

    private static int paddedLd(int headDim) {
        return (headDim + 15) / 16 * 16 + 1;
    }

    /** The kernel's {@code Shape} struct: five long longs, two ints, a float (56 bytes with padding). */
    private static MemorySegment shapeStruct(java.lang.foreign.SegmentAllocator a, AttentionShape s) {
        MemorySegment m = a.allocate(56, 8);
        m.set(JAVA_LONG, 0, s.seqQ());
        m.set(JAVA_LONG, 8, s.seqKv());
        m.set(JAVA_LONG, 16, s.kvRowsPerBatch());
        m.set(JAVA_LONG, 24, s.qStart());
        m.set(JAVA_LONG, 32, s.window());
        m.set(JAVA_INT, 40, s.heads());
        m.set(JAVA_INT, 44, s.kvHeads());
        m.set(JAVA_FLOAT, 48, s.scale());
        return m;
    }

    private record AttentionBuffers(long qFloats, long kvFloats, long qRows) {}

    private static AttentionBuffers attentionSizes(String op, AttentionShape shape) {
        if (shape.kvHeadMajor())
            throw new IllegalArgumentException(op + ": keys and values laid out head by head (the CPU's KV cache layout); "
                    + "this backend reads them row by row");
        long qRows = OpChecks.product(op, (long) shape.batch(), shape.seqQ());
        long qFloats = OpChecks.product(op, qRows, (long) shape.heads() * shape.headDim());
        long kvRows = Math.addExact(OpChecks.product(op, shape.batch() - 1L, shape.kvRowsPerBatch()), shape.seqKv());
        long kvFloats = OpChecks.product(op, kvRows, (long) shape.kvHeads() * shape.headDim());
        if (shape.seqQ() > (long) Integer.MAX_VALUE * 16 || shape.seqKv() > (long) Integer.MAX_VALUE * 16)
            throw new IllegalArgumentException(op + ": sequence too long for the CUDA grid: " + shape);
        // The kernels rank their blocks in 32-bit arithmetic (ranked_place): tiles of at least 32 rows x heads x
        // sequences must stay under 2^32 blocks.
        double blocks = Math.ceil(Math.max(shape.seqQ(), shape.seqKv()) / 32.0) * Math.max(shape.heads(), shape.kvHeads())
                * shape.batch();
        if (blocks >= 0x1p32)
            throw new IllegalArgumentException(op + ": too many attention blocks for one CUDA grid (split the batch): " + shape);
        return new AttentionBuffers(qFloats, kvFloats, qRows);
    }

    private record AttentionOperands(CudaTensor out, CudaTensor q, CudaTensor k, CudaTensor v) {}

    /**
     * The forward's tensors, checked against the shape's sizes ({@code kvFormula} names the keys' for messages). q, k
     * and v may be float32, float16 or bfloat16 (k and v of one type).
     */
    private static AttentionOperands attentionOperands(String op, Tensor out, Tensor q, Tensor k, Tensor v,
                                                       AttentionBuffers sz, String kvFormula) {
        String qf = "batch*seqQ*heads*headDim";
        CudaTensor qs = atLeast(op, "q", anyTensor(op, "q", q), sz.qFloats, qf);
        CudaTensor os = atLeast(op, "out", floatOrBf16(op, "out", out), sz.qFloats, qf);
        CudaTensor[] kv = keysAndValues(op, k, v, sz, kvFormula);
        return new AttentionOperands(os, qs, kv[0], kv[1]);
    }

    /** A float32 tensor, or a bfloat16 one (attention's output as mixed precision keeps it). */
    private static CudaTensor floatOrBf16(String op, String name, Tensor t) {
        CudaTensor c = anyTensor(op, name, t);
        return c.storage() == CudaTensor.Storage.BF16 ? c : tensor(op, name, t);
    }

    /** Keys and values of one type (float32, float16: a KV cache or kept operands, or bfloat16), checked for size. */
    private static CudaTensor[] keysAndValues(String op, Tensor k, Tensor v, AttentionBuffers sz, String kvFormula) {
        CudaTensor ks = atLeast(op, "k", anyTensor(op, "k", k), sz.kvFloats, kvFormula);
        CudaTensor vs = atLeast(op, "v", anyTensor(op, "v", v), sz.kvFloats, kvFormula);
        if (ks.storage() != vs.storage())
            throw new IllegalArgumentException(op + ": k and v must be of one type (float32, float16 or bfloat16), got "
                    + ks + " and " + vs);
        return new CudaTensor[] {ks, vs};
    }

    @Override
    public void attention(Tensor out, Tensor q, Tensor k, Tensor v, Tensor lse, AttentionShape shape) {
        String op = "attention";
        if (shape == null) throw new IllegalArgumentException(op + ": shape is null");
        AttentionBuffers sz = attentionSizes(op, shape);
        AttentionOperands o = attentionOperands(op, out, q, k, v, sz, "((batch-1)*kvRowsPerBatch + seqKv)*kvHeads*headDim");
        CudaTensor qs = o.q(), os = o.out(), ks = o.k(), vs = o.v();
        CudaTensor ls = lse == null ? null : atLeast(op, "lse", lse, sz.qRows * shape.heads(), "batch*seqQ*heads");
        int d = shape.headDim(), t = tile(d);
        List<CudaTensor> temps = new ArrayList<>();
        enter();
        try (HostScratch a = HostScratch.begin()) {
            if (shape.seqQ() > 1) {
                if (cudnnAttention != null && cudnnForward(os, ls, qs, ks, vs, shape, sz)) return;
                if (usesTensorCoreAttention(d) && tensorCoreAttention(os, ls, qs, ks, vs, shape, sz)) return;
            }
            // The exact kernels and the decode ones: float32 queries, float32 or float16 keys and values, float32 out.
            CudaTensor target = os;
            if (os.storage() != CudaTensor.Storage.F32) {
                os = new CudaTensor(this, sz.qFloats, CudaTensor.Storage.F32);
                temps.add(os);
            }
            qs = as(qs, sz.qFloats, CudaTensor.Storage.F32, temps);
            if (ks.storage() == CudaTensor.Storage.BF16) {
                ks = as(ks, sz.kvFloats, CudaTensor.Storage.F32, temps);
                vs = as(vs, sz.kvFloats, CudaTensor.Storage.F32, temps);
            }
            CudaModule module = attentionModule(d, ks.isHalf());
            if (shape.seqQ() == 1) {
                decode(module, os, ls, qs, ks, vs, shape);
            } else {
                int shared = (2 * t * paddedLd(d) + t * (t + 1)) * 4;
                checkShared(op, shared);
                module.launch("attention_forward", blocks(shape.seqQ(), t), shape.heads(), shape.batch(), THREADS, shared,
                        new KernelArgs(a).ptr(os.address()).ptr(ls == null ? 0 : ls.address()).ptr(qs.address())
                                .ptr(ks.address()).ptr(vs.address()).struct(shapeStruct(a, shape)));
            }
            if (target != os) place(target.address(), os, sz.qFloats, target.storage());
        } finally {
            for (CudaTensor c : temps) c.close();
            exit();
        }
    }

    /**
     * Tensor-core attention (attention_mma.cu, forward and backward): when products may round their inputs, for head
     * sizes that are multiples of 16 up to 128 on GPUs with float16 tensor cores and asynchronous copies (sm_80+).
     */
    private boolean usesTensorCoreAttention(int headDim) {
        return precision != MatmulPrecision.FP32 && headDim % 16 == 0 && headDim <= 128 && arch >= 80;
    }

    private CudaModule tensorCoreAttentionModule(MmaVariant key) {
        CudaModule m = tensorCoreAttentionModules.get(key);
        if (m != null) return m;
        List<String> options = new java.util.ArrayList<>(defines(key.headDim(), key.halfKv()));
        if (key.halfQ()) options.add("-DQ_HALF");
        if (key.outBf16()) options.add("-DOUT_BF16");
        if (key.forwardRows() != 128) options.add("-DFR=" + key.forwardRows());
        if (key.stages() != 2) options.add("-DSTAGES=" + key.stages());
        enter();
        try {
            return tensorCoreAttentionModules.computeIfAbsent(key, x -> new CudaModule(driver, stream,
                    nvrtc.compile("attention_mma.cu", source("attention_mma.cu"), arch, options)));
        } finally {
            exit();
        }
    }

    /**
     * Plans kernels for at most {@code bytes} of shared memory per block (never more than the GPU allows), as on a GPU
     * that allows that much: a test runs here the variants that GPUs with less shared memory (99 KB on sm_86 and sm_89)
     * take.
     */
    void limitSharedMemory(int bytes) {
        sharedLimit = Math.min(bytes, sharedOptIn);
    }

    /**
     * The forward on the tensor cores: scores and the probability-weighted values as products of float16 inputs
     * (m16n8k16: TF32's 11-bit significands at twice TF32's rate) with float32 accumulation, used whenever matrix
     * products may round their inputs. Float32 keys and values are rounded to float16 once, into scratch, before the
     * kernel when more than one block of queries reads them (the kernel would round them the same way as it read them,
     * once per block: at long contexts it streams every key and value through each block, and half the bytes is half
     * the time). Float16 queries (a training pass's kept operands) are read as they are, with float16 keys and values
     * (rounded first where they are not); bfloat16 ones are converted to float16 first. False, having done nothing,
     * where the kernel cannot take the call (tensors not aligned for its pair or 16-byte loads): the exact kernel then
     * does.
     */
    private boolean tensorCoreAttention(CudaTensor os, CudaTensor ls, CudaTensor qs, CudaTensor ks, CudaTensor vs,
                                        AttentionShape shape, AttentionBuffers sz) {
        int d = shape.headDim();
        boolean halfQ = qs.storage() != CudaTensor.Storage.F32, convertQ = qs.storage() == CudaTensor.Storage.BF16;
        boolean round = ks.storage() == CudaTensor.Storage.BF16 || !ks.isHalf() && (halfQ || shape.seqQ() > 128);
        boolean half = ks.isHalf() || round;
        // Key and value tiles come by 16-byte asynchronous copies: float16 ones straight into their double buffer,
        // float32 ones staged through two raw tiles when those fit (rows of at most 64 features; else pair loads);
        // the kernel decides the same way. Rounded copies are the backend's own scratch.
        boolean staged = !half && d <= 64;
        boolean outBf16 = os.storage() == CudaTensor.Storage.BF16;
        int kvAlign = round ? 1 : half || staged ? 16 : 8, qAlign = convertQ ? 1 : halfQ ? 16 : 8;
        if (qs.address() % qAlign != 0 || os.address() % (outBf16 ? 4 : 8) != 0 || ks.address() % kvAlign != 0
                || vs.address() % kvAlign != 0)
            return false;
        // 128 query rows per block (FR; 64 where that does not fit the GPU's shared memory): float16 keys and values
        // with heads of at most 64 features give each warp 32 rows (RT = 2), otherwise 16. Shared memory: the block's
        // queries and 64-key tiles (LH = d + 8 halves a row) of keys and values, two of each for float16 (KV_STAGES),
        // one plus two raw float32 tiles where they are staged. Where neither fits, the exact kernel runs.
        int rows = 128, rowsPerWarp = half && d <= 64 ? 32 : 16, shared = 0;
        for (; rows >= 64; rows /= 2) {
            shared = half ? (rows + 4 * 64) * (d + 8) * 2 : (rows + 2 * 64) * (d + 8) * 2 + (staged ? 2 * 64 * d * 4 : 0);
            if (shared <= sharedLimit) break;
        }
        if (rows < 64) return false;
        int threads = rows / rowsPerWarp * 32;
        CudaModule module = tensorCoreAttentionModule(new MmaVariant(d, half, halfQ, outBf16, rows, 2));
        enter();
        long rounded = 0;
        try (HostScratch a = HostScratch.begin()) {
            long q = qs.address(), k = ks.address(), v = vs.address();
            if (round || convertQ) {
                // Each a multiple of 16 halves (the head size is), so each part stays 32-byte aligned.
                rounded = scratch((round ? sz.kvFloats * 4 : 0) + (convertQ ? sz.qFloats * 2 : 0));
                long next = rounded;
                if (round) {
                    k = next;
                    v = next + sz.kvFloats * 2;
                    next += sz.kvFloats * 4;
                    place(k, ks, sz.kvFloats, CudaTensor.Storage.F16);
                    place(v, vs, sz.kvFloats, CudaTensor.Storage.F16);
                }
                if (convertQ) {
                    q = next;
                    place(q, qs, sz.qFloats, CudaTensor.Storage.F16);
                }
            }
            module.launch("attention_forward_f16", blocks(shape.seqQ(), rows), shape.heads(), shape.batch(), threads, shared,
                    new KernelArgs(a).ptr(os.address()).ptr(ls == null ? 0 : ls.address()).ptr(q)
                            .ptr(k).ptr(v).struct(shapeStruct(a, shape)));
        } finally {
            if (rounded != 0) release(rounded);
            exit();
        }
        return true;
    }

    /**
     * One query per sequence (a decode step): the visible keys are split across enough blocks to fill the GPU, each
     * running its own online softmax, and the partial results are combined in order (flash-decoding).
     */
    private void decode(CudaModule module, CudaTensor os, CudaTensor ls, CudaTensor qs, CudaTensor ks, CudaTensor vs,
                        AttentionShape shape) {
        long p = shape.qStart(), keys = p + 1 - shape.firstVisibleKey(p);
        decode(module, os, ls, qs, ks, vs, shape, splits(shape, keys), 0);
    }

    /** Key splits of a decode attention over {@code keys} keys: enough blocks to fill the GPU, 256 keys or more each. */
    private int splits(AttentionShape shape, long keys) {
        long rowsHeads = (long) shape.batch() * shape.heads();
        long wanted = Math.max(1, 4L * multiprocessors / Math.max(1, rowsHeads));
        return (int) Math.max(1, Math.min(Math.min(wanted, (keys + 255) / 256), 1024));
    }

    /**
     * The decode kernels with {@code splits} blocks per head; with a {@code position} address (a recorded step) the
     * kernels read the query's position there and split its visible keys themselves.
     */
    private void decode(CudaModule module, CudaTensor os, CudaTensor ls, CudaTensor qs, CudaTensor ks, CudaTensor vs,
                        AttentionShape shape, int splits, long position) {
        long p = shape.qStart(), keys = p + 1 - shape.firstVisibleKey(p);
        long chunk = (keys + splits - 1) / splits;
        long rowsHeads = (long) shape.batch() * shape.heads();
        int d = shape.headDim();
        enter();
        try (HostScratch a = HostScratch.begin()) {
            long slots = rowsHeads * splits, bytes = slots * (2L + d) * 4;
            // A recording's kernels keep their own partials (the shared buffer may grow and move after it).
            long partM = capturingHere() != null ? scratch(bytes) : decodeScratch(bytes), partL = partM + slots * 4, partAcc = partL + slots * 4;
            MemorySegment st = shapeStruct(a, shape);
            // 16-byte loads where the rows allow them (every realistic head size), else one element per lane.
            boolean vectors = d % (ks.isHalf() ? 8 : 4) == 0 && ks.address() % 16 == 0 && vs.address() % 16 == 0;
            module.launch(vectors ? "attention_decode_partial_vec" : "attention_decode_partial", splits, shape.heads(),
                    shape.batch(), 256, 0, new KernelArgs(a)
                    .ptr(partM).ptr(partL).ptr(partAcc).ptr(qs.address()).ptr(ks.address()).ptr(vs.address()).struct(st)
                    .i64(chunk).i32(splits).ptr(position));
            module.launch("attention_decode_combine", shape.heads(), shape.batch(), 1, 128, 0, new KernelArgs(a)
                    .ptr(os.address()).ptr(ls == null ? 0 : ls.address()).ptr(partM).ptr(partL).ptr(partAcc).struct(st)
                    .i32(splits));
        } finally {
            exit();
        }
    }

    /**
     * Decode attention at a recorded step's position. The number of key splits follows the length in powers of two
     * (at least 256 keys): a graph captured at one length serves until the length leaves that range, then the step is
     * captured again.
     */
    @Override
    public void attention(Tensor out, Tensor q, Tensor k, Tensor v, AttentionShape shape, dev.ropeway.tensor.DecodeStep step) {
        String op = "attention";
        if (shape == null) throw new IllegalArgumentException(op + ": shape is null");
        CudaDecodeStep st = step(op, step);
        AttentionShape at = shape.atPosition(step.position());
        AttentionBuffers sz = attentionSizes(op, shape);
        AttentionOperands o = attentionOperands(op, out, q, k, v, sz, "kvRowsPerBatch*kvHeads*headDim");
        if (o.q().storage() != CudaTensor.Storage.F32 || o.k().storage() == CudaTensor.Storage.BF16)
            throw new IllegalArgumentException(op + ": a decode step takes float32 queries and float32 or float16 keys and "
                    + "values, got " + o.q() + ", " + o.k() + " and " + o.v());
        long range = keyRange(at);
        GraphStep r = capturingHere();
        if (r != null) r.require(() -> keyRange(shape.atPosition(step.position())) == range);
        AttentionShape widest = shape.atPosition(Math.min(shape.kvRowsPerBatch() - 1, range - 1));
        decode(attentionModule(shape.headDim(), o.k().isHalf()), o.out(), null, o.q(), o.k(), o.v(), widest,
                splits(shape, range), st.address() + CudaDecodeStep.POSITION);
    }

    /** The {@link #bucket} of the number of keys a decode step at this shape's position sees. */
    private static long keyRange(AttentionShape at) {
        return bucket(at.qStart() + 1 - at.firstVisibleKey(at.qStart()));
    }

    @Override
    public void embedding(Tensor out, Tensor table, dev.ropeway.tensor.DecodeStep step, int dim) {
        String op = "embedding";
        CudaDecodeStep st = step(op, step);
        CudaTensor t = embeddingTable(op, "table", table, new int[] {step.token()}, dim, true);
        CudaTensor o = atLeast(op, "out", out, dim, "dim");
        enter();
        try (HostScratch a = HostScratch.begin()) {
            ops.launch(embeddingKernel(t), 1, 1, 1, THREADS, 0, new KernelArgs(a).ptr(o.address()).ptr(t.address())
                    .ptr(st.address() + CudaDecodeStep.TOKEN).i64(1).i32(dim));
        } finally {
            exit();
        }
    }

    @Override
    public void rotaryTable(RotaryTable table, dev.ropeway.tensor.DecodeStep step, float attentionScale) {
        String op = "rotaryTable";
        CudaDecodeStep st = step(op, step);
        if (table == null || table.half() != step.half() || table.rows() < 1)
            throw new IllegalArgumentException(op + ": the table must have a row of half = " + step.half() + " frequencies");
        int half = step.half();
        CudaTensor cos = atLeast(op, "table.cos", table.cos(), half, "half"), sin = atLeast(op, "table.sin", table.sin(), half, "half");
        if (half == 0) return;
        enter();
        try (HostScratch a = HostScratch.begin()) {
            ops.launch("rotary_table", gridFor(half), 1, 1, THREADS, 0, new KernelArgs(a).ptr(cos.address()).ptr(sin.address())
                    .ptr(st.address() + CudaDecodeStep.POSITION_FLOAT).ptr(st.address() + CudaDecodeStep.INV_FREQ)
                    .i64(1).i32(half).f32(attentionScale));
        } finally {
            exit();
        }
    }

    @Override
    public void storeRow(Tensor cache, Tensor row, dev.ropeway.tensor.DecodeStep step, int width) {
        String op = "storeRow";
        CudaDecodeStep st = step(op, step);
        OpChecks.positive(op, "width", width);
        CudaTensor c = anyTensor(op, "cache", cache);
        CudaTensor src = atLeast(op, "row", row, width, "width");
        if (c.storage() == CudaTensor.Storage.BF16)
            throw new IllegalArgumentException(op + ": a cache holds float32 or float16, got " + c);
        long rows = c.size() / width;
        if (step.position() >= rows)
            throw new IllegalArgumentException(op + ": position " + step.position() + " is outside the cache's " + rows + " rows");
        enter();
        try (HostScratch a = HostScratch.begin()) {
            ops.launch(c.isHalf() ? "store_row_half" : "store_row", gridFor(width), 1, 1, THREADS, 0, new KernelArgs(a)
                    .ptr(c.address()).ptr(src.address()).ptr(st.address() + CudaDecodeStep.POSITION).i64(rows).i32(width));
        } finally {
            exit();
        }
    }

    private long decodeScratch, decodeScratchBytes;

    /** The decode partials' buffer, kept between steps (grown when a longer context needs more splits). */
    private long decodeScratch(long bytes) {
        if (bytes > decodeScratchBytes) {
            if (decodeScratch != 0) release(decodeScratch);
            decodeScratch = scratch(bytes);
            decodeScratchBytes = bytes;
        }
        return decodeScratch;
    }

    @Override
    public void attentionBackward(Tensor dq, Tensor dk, Tensor dv, Tensor dOut, Tensor q, Tensor k, Tensor v,
                                  Tensor out, Tensor lse, AttentionShape shape) {
        String op = "attentionBackward";
        if (shape == null) throw new IllegalArgumentException(op + ": shape is null");
        AttentionBuffers sz = attentionSizes(op, shape);
        String qf = "batch*seqQ*heads*headDim", kvf = "((batch-1)*kvRowsPerBatch + seqKv)*kvHeads*headDim";
        CudaTensor dqs = atLeast(op, "dq", dq, sz.qFloats, qf);
        CudaTensor dks = atLeast(op, "dk", dk, sz.kvFloats, kvf);
        CudaTensor dvs = atLeast(op, "dv", dv, sz.kvFloats, kvf);
        CudaTensor dos = atLeast(op, "dOut", dOut, sz.qFloats, qf);
        CudaTensor qs = atLeast(op, "q", anyTensor(op, "q", q), sz.qFloats, qf);
        CudaTensor[] kv = keysAndValues(op, k, v, sz, kvf);
        CudaTensor ks = kv[0], vs = kv[1];
        CudaTensor os = atLeast(op, "out", floatOrBf16(op, "out", out), sz.qFloats, qf);
        long rowStats = OpChecks.product(op, sz.qRows, (long) shape.heads());
        CudaTensor ls = atLeast(op, "lse", lse, rowStats, "batch*seqQ*heads");
        Tensor[] outputs = {dq, dk, dv}, all = {dq, dk, dv, dOut, q, k, v, out, lse};
        String[] names = {"dq", "dk", "dv", "dOut", "q", "k", "v", "out", "lse"};
        for (int i = 0; i < outputs.length; i++)
            for (int j = 0; j < all.length; j++)
                if (i != j && outputs[i] == all[j])
                    throw new IllegalArgumentException(op + ": " + names[i] + " and " + names[j] + " are the same tensor");
        int d = shape.headDim(), t = tile(d);
        if (cudnnAttention != null && !deterministic && cudnnBackward(dqs, dks, dvs, dos, qs, ks, vs, os, ls, shape, sz))
            return;
        if (usesTensorCoreAttention(d) && dos.address() % 8 == 0 && os.address() % (2L * os.elementBytes()) == 0
                && tensorCoreAttentionBackward(dqs, dks, dvs, dos, qs, ks, vs, os, ls, shape, sz, rowStats))
            return;
        CudaModule module = attentionModule(d, false);
        int sharedKv = exactBackwardKvShared(d, t);
        int sharedQ = (4 * t * paddedLd(d) + t * (t + 1) + 2 * t) * 4;
        checkShared(op, sharedKv);
        List<CudaTensor> temps = new ArrayList<>();
        enter();
        try (HostScratch a = HostScratch.begin()) {
            // The exact kernels read float32.
            os = as(os, sz.qFloats, CudaTensor.Storage.F32, temps);
            qs = as(qs, sz.qFloats, CudaTensor.Storage.F32, temps);
            ks = as(ks, sz.kvFloats, CudaTensor.Storage.F32, temps);
            vs = as(vs, sz.kvFloats, CudaTensor.Storage.F32, temps);
            long delta = scratch(rowStats * 4);
            module.launch("attention_delta", gridFor(rowStats), 1, 1, THREADS, 0,
                    new KernelArgs(a).ptr(delta).ptr(dos.address()).ptr(os.address()).i64(rowStats));
            MemorySegment st = shapeStruct(a, shape);
            module.launch("attention_backward_kv", blocks(shape.seqKv(), t), shape.kvHeads(), shape.batch(), THREADS,
                    sharedKv, new KernelArgs(a).ptr(dks.address()).ptr(dvs.address()).ptr(dos.address())
                            .ptr(qs.address()).ptr(ks.address()).ptr(vs.address()).ptr(ls.address()).ptr(delta).struct(st));
            module.launch("attention_backward_q", blocks(shape.seqQ(), t), shape.heads(), shape.batch(), THREADS,
                    sharedQ, new KernelArgs(a).ptr(dqs.address()).ptr(dos.address()).ptr(qs.address())
                            .ptr(ks.address()).ptr(vs.address()).ptr(ls.address()).ptr(delta).struct(st));
            release(delta);
        } finally {
            for (CudaTensor c : temps) c.close();
            exit();
        }
    }

    /**
     * The backward on the tensor cores (float16 products, float32 accumulation). q, k, v (unless a training pass keeps
     * them as float16) and dOut are rounded to float16 once, into scratch; dOut is first multiplied by the power of two that puts its largest magnitude in
     * [1, 2) (a gradient's entries are mostly below float16's normal range), which the kernels take back off their
     * results exactly. dK and dV by blocks of 64 keys; dQ added up by the same blocks with atomics, or (deterministic)
     * by a second kernel over blocks of 64 queries, which computes the scores and dP again. Tiles are streamed through
     * two buffers each, or one where two do not fit the GPU's shared memory; false, having done nothing, where
     * neither fits (the exact kernels then run).
     */
    private boolean tensorCoreAttentionBackward(CudaTensor dqs, CudaTensor dks, CudaTensor dvs, CudaTensor dos,
                                                CudaTensor qs, CudaTensor ks, CudaTensor vs, CudaTensor os, CudaTensor ls,
                                                AttentionShape shape, AttentionBuffers sz, long rowStats) {
        int d = shape.headDim();
        boolean fused = !deterministic && dqs.address() % 8 == 0;   // paired atomic additions
        // The dK/dV kernel: keys and values, `stages` query and dOut tiles and their rows' statistics, and (fused) dS^T
        // (64 x 72 halves); the dQ kernel: queries, dOut and their statistics, `stages` key and value tiles.
        int stages = 2, sharedKv = 0, sharedQ = 0;
        for (; stages >= 1; stages--) {
            sharedKv = (2 * 64 + 2 * stages * 64) * (d + 8) * 2 + 2 * stages * 64 * 4 + (fused ? 64 * 72 * 2 : 0);
            sharedQ = (2 * 64 + 2 * stages * 64) * (d + 8) * 2 + 2 * 64 * 4;
            if (sharedKv <= sharedLimit && (fused || sharedQ <= sharedLimit)) break;
        }
        if (stages < 1) return false;
        CudaModule mma = tensorCoreAttentionModule(new MmaVariant(d, true, false, false, 128, stages));
        enter();
        long scratch = 0;
        try (HostScratch a = HostScratch.begin()) {
            // Halves of dOut, q, k and v (those not float16 already; each a multiple of 16 elements: 32-byte aligned one
            // after the other), then delta and the largest magnitude's bits.
            CudaTensor.Storage f16 = CudaTensor.Storage.F16;
            // (16-byte copies: a float16 tensor not aligned for them is copied too.)
            boolean copyQ = qs.storage() != f16 || qs.address() % 16 != 0;
            boolean copyKv = ks.storage() != f16 || ks.address() % 16 != 0 || vs.address() % 16 != 0;
            long qBytes = sz.qFloats * 2, kvBytes = copyKv ? sz.kvFloats * 2 : 0;
            scratch = scratch(qBytes + (copyQ ? qBytes : 0) + 2 * kvBytes + rowStats * 4 + 4);
            long doh = scratch, next = doh + qBytes;
            long qh = qs.address(), kh = ks.address(), vh = vs.address();
            if (copyQ) {
                place(qh = next, qs, sz.qFloats, f16);
                next += qBytes;
            }
            if (copyKv) {
                place(kh = next, ks, sz.kvFloats, f16);
                place(vh = next + kvBytes, vs, sz.kvFloats, f16);
                next += 2 * kvBytes;
            }
            long delta = next, maxBits = delta + rowStats * 4;
            driver.fill32(maxBits, 0, 1, stream);
            mma.launch("attention_grad_absmax", gridFor(sz.qFloats), 1, 1, THREADS, 0,
                    new KernelArgs(a).ptr(maxBits).ptr(dos.address()).i64(sz.qFloats));
            mma.launch("attention_backward_prep", blocks(rowStats, 8), 1, 1, 256, 0, new KernelArgs(a)
                    .ptr(doh).ptr(delta).ptr(dos.address()).ptr(os.address())
                    .i32(os.storage() == CudaTensor.Storage.BF16 ? 1 : 0).ptr(maxBits).i64(rowStats));
            MemorySegment st = shapeStruct(a, shape);
            if (fused) driver.fill32(dqs.address(), 0, sz.qFloats, stream);
            mma.launch("attention_backward_f16", blocks(shape.seqKv(), 64), shape.kvHeads(), shape.batch(), 128,
                    sharedKv, new KernelArgs(a).ptr(fused ? dqs.address() : 0).ptr(dks.address()).ptr(dvs.address())
                            .ptr(doh).ptr(qh).ptr(kh).ptr(vh).ptr(ls.address()).ptr(delta).ptr(maxBits).struct(st));
            if (!fused)
                mma.launch("attention_backward_q_f16", blocks(shape.seqQ(), 64), shape.heads(), shape.batch(), 128,
                        sharedQ, new KernelArgs(a).ptr(dqs.address()).ptr(doh).ptr(qh).ptr(kh).ptr(vh)
                                .ptr(ls.address()).ptr(delta).ptr(maxBits).struct(st));
        } finally {
            if (scratch != 0) release(scratch);
            exit();
        }
        return true;
    }

    private void checkShared(String op, int bytes) {
        if (bytes > sharedLimit)
            throw new IllegalArgumentException(op + ": needs " + bytes + " bytes of shared memory per block, this GPU allows "
                    + sharedLimit);
    }

    // ---- element-wise ----

    @Override
    public void swiglu(Tensor out, Tensor gate, Tensor up, long n) {
        String op = "swiglu";
        OpChecks.nonNegative(op, "n", n);
        CudaTensor g = atLeast(op, "gate", operand(op, "gate", gate), n, "n"), u = atLeast(op, "up", operand(op, "up", up), n, "n");
        boolean fromBf16 = sameOperandTypes(op, "gate", g, "up", u);
        CudaTensor o = atLeast(op, "out", operand(op, "out", out), n, "n");
        if (n == 0) return;
        launchElementwise((o.storage() == CudaTensor.Storage.BF16 ? "swiglu_forward_bf16" : "swiglu_forward")
                        + (fromBf16 ? "_from_bf16" : ""), n,
                a -> new KernelArgs(a).ptr(o.address()).ptr(g.address()).ptr(u.address()).i64(n));
    }

    @Override
    public void addInPlace(Tensor y, Tensor x, long n) {
        String op = "addInPlace";
        OpChecks.nonNegative(op, "n", n);
        CudaTensor ys = atLeast(op, "y", y, n, "n"), xs = atLeast(op, "x", x, n, "n");
        if (n == 0) return;
        launchElementwise("add_in_place", n, a -> new KernelArgs(a).ptr(ys.address()).ptr(xs.address()).i64(n));
    }

    @Override
    public void addRmsNorm(Tensor out, Tensor sum, Tensor a, Tensor b, Tensor weight, long rows, int dim, float eps) {
        String op = "addRmsNorm";
        long n = OpChecks.addRmsNorm(op, out, sum, rows, dim);
        CudaTensor os = atLeast(op, "out", operand(op, "out", out), n, "rows*dim");
        CudaTensor ss = atLeast(op, "sum", sum, n, "rows*dim");
        CudaTensor as = atLeast(op, "a", a, n, "rows*dim"), bs = atLeast(op, "b", b, n, "rows*dim");
        CudaTensor ws = atLeast(op, "weight", weight, dim, "dim");
        if (rows == 0) return;
        boolean bf16 = os.storage() == CudaTensor.Storage.BF16;
        enter();
        try (HostScratch h = HostScratch.begin()) {
            forRowBlocks(rows, (r0, count) -> ops.launch(bf16 ? "add_rmsnorm_bf16" : "add_rmsnorm", count, 1, 1, THREADS,
                    0, new KernelArgs(h).ptr(os.address() + r0 * dim * os.elementBytes()).ptr(ss.address() + r0 * dim * 4)
                            .ptr(as.address() + r0 * dim * 4).ptr(bs.address() + r0 * dim * 4).ptr(ws.address())
                            .i64(count).i32(dim).f32(eps)));
        } finally {
            exit();
        }
    }

    @Override
    public void scale(Tensor y, float factor, long n) {
        String op = "scale";
        OpChecks.nonNegative(op, "n", n);
        CudaTensor ys = atLeast(op, "y", y, n, "n");
        if (n == 0) return;
        launchElementwise("scale_in_place", n, a -> new KernelArgs(a).ptr(ys.address()).f32(factor).i64(n));
    }

    @Override
    public void swigluBackward(Tensor dGate, Tensor dUp, Tensor dOut, Tensor gate, Tensor up, long n) {
        String op = "swigluBackward";
        OpChecks.nonNegative(op, "n", n);
        CudaTensor dg = atLeast(op, "dGate", operand(op, "dGate", dGate), n, "n");
        CudaTensor du = atLeast(op, "dUp", operand(op, "dUp", dUp), n, "n");
        boolean bf16 = sameOperandTypes(op, "dGate", dg, "dUp", du);
        CudaTensor dy = atLeast(op, "dOut", dOut, n, "n");
        CudaTensor g = atLeast(op, "gate", operand(op, "gate", gate), n, "n"), u = atLeast(op, "up", operand(op, "up", up), n, "n");
        boolean fromBf16 = sameOperandTypes(op, "gate", g, "up", u);
        if (dGate == dUp) throw new IllegalArgumentException(op + ": dGate and dUp are the same tensor");
        if (n == 0) return;
        launchElementwise((bf16 ? "swiglu_backward_bf16" : "swiglu_backward") + (fromBf16 ? "_from_bf16" : ""), n, a -> new KernelArgs(a)
                .ptr(dg.address()).ptr(du.address()).ptr(dy.address()).ptr(g.address()).ptr(u.address()).i64(n));
    }

    @Override
    public void adamW(Tensor param, Tensor grad, Tensor m, Tensor v, long n, float lr, float beta1, float beta2, float eps,
                      float weightDecay, float gradScale, long step) {
        String op = "adamW";
        OpChecks.nonNegative(op, "n", n);
        if (step <= 0) throw new IllegalArgumentException(op + ": step must be positive, got " + step);
        if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
            throw new IllegalArgumentException(op + ": beta1 and beta2 must be in [0, 1), got " + beta1 + " and " + beta2);
        CudaTensor ps = atLeast(op, "param", param, n, "n"), gs = atLeast(op, "grad", grad, n, "n");
        CudaTensor ms = atLeast(op, "m", m, n, "n"), vs = atLeast(op, "v", v, n, "n");
        if (n == 0) return;
        float correct1 = (float) (1 / (1 - Math.pow(beta1, step)));
        float correct2 = (float) (1 / (1 - Math.pow(beta2, step)));
        launchElementwise("adamw_step", n, a -> new KernelArgs(a).ptr(ps.address()).ptr(gs.address()).ptr(ms.address())
                .ptr(vs.address()).i64(n).f32(lr).f32(beta1).f32(beta2).f32(eps).f32(weightDecay).f32(gradScale)
                .f32(correct1).f32(correct2));
    }

    private void launchElementwise(String kernel, long n, java.util.function.Function<HostScratch, KernelArgs> args) {
        enter();
        try (HostScratch a = HostScratch.begin()) {
            ops.launch(kernel, gridFor(n), 1, 1, THREADS, 0, args.apply(a));
        } finally {
            exit();
        }
    }

    // ---- losses and reductions ----

    @Override
    public double[] crossEntropy(Tensor logits, int[] targets, long rows, int vocab) {
        return crossEntropy("crossEntropy", logits, null, targets, rows, vocab, 1f);
    }

    @Override
    public double[] crossEntropyBackward(Tensor logits, int[] targets, long rows, int vocab, float gradScale) {
        return crossEntropy("crossEntropyBackward", logits, logits, targets, rows, vocab, gradScale);
    }

    @Override
    public double[] crossEntropyBackward(Tensor logits, Tensor dLogits, int[] targets, long rows, int vocab, float gradScale) {
        String op = "crossEntropyBackward";
        if (dLogits == null) throw new IllegalArgumentException(op + ": dLogits is null");
        return crossEntropy(op, logits, dLogits, targets, rows, vocab, gradScale);
    }

    /** The losses, and the gradient into {@code grad} (float32, possibly the logits themselves, or bfloat16) unless null. */
    private double[] crossEntropy(String op, Tensor logits, Tensor grad, int[] targets, long rows, int vocab, float gradScale) {
        OpChecks.nonNegative(op, "rows", rows);
        OpChecks.positive(op, "vocab", vocab);
        if (rows > Integer.MAX_VALUE - 8) throw new IllegalArgumentException(op + ": rows " + rows + " does not fit a double[]");
        if (targets == null || targets.length < rows)
            throw new IllegalArgumentException(op + ": targets has " + (targets == null ? "null" : targets.length + " entries")
                    + ", needs rows = " + rows);
        for (int r = 0; r < rows; r++)
            if (targets[r] >= vocab)
                throw new IllegalArgumentException(op + ": targets[" + r + "] = " + targets[r] + " is not below vocab = " + vocab);
        long n = OpChecks.product(op, rows, vocab);
        CudaTensor ls = atLeast(op, "logits", logits, n, "rows*vocab");
        CudaTensor gs = grad == null ? null : atLeast(op, "dLogits", operand(op, "dLogits", grad), n, "rows*vocab");
        boolean bf16 = gs != null && gs.storage() == CudaTensor.Storage.BF16;
        double[] loss = new double[(int) rows];
        if (rows == 0) return loss;
        enter();
        try (HostScratch a = HostScratch.begin()) {
            long dTargets = uploadInts(a, Arrays.copyOf(targets, (int) rows));
            long dLoss = scratch(rows * 8);
            ops.launch(bf16 ? "cross_entropy_bf16" : "cross_entropy", (int) rows, 1, 1, THREADS, 0, new KernelArgs(a)
                    .ptr(gs == null ? 0 : gs.address()).ptr(ls.address()).ptr(dTargets).ptr(dLoss).i64(rows).i32(vocab)
                    .f32(gradScale));
            MemorySegment host = a.allocate(JAVA_DOUBLE, rows);
            driver.copyToHost(host, dLoss, rows * 8);
            MemorySegment.copy(host, JAVA_DOUBLE, 0, loss, 0, (int) rows);
            release(dTargets);
            release(dLoss);
        } finally {
            exit();
        }
        return loss;
    }

    @Override
    public void rmsNormBackward(Tensor dx, Tensor dWeight, Tensor dOut, Tensor x, Tensor weight, long rows, int dim, float eps) {
        String op = "rmsNormBackward";
        OpChecks.nonNegative(op, "rows", rows);
        OpChecks.positive(op, "dim", dim);
        long n = OpChecks.product(op, rows, dim);
        CudaTensor dxs = atLeast(op, "dx", dx, n, "rows*dim"), dws = atLeast(op, "dWeight", dWeight, dim, "dim");
        CudaTensor dos = atLeast(op, "dOut", dOut, n, "rows*dim"), xs = atLeast(op, "x", x, n, "rows*dim");
        CudaTensor ws = atLeast(op, "weight", weight, dim, "dim");
        if (rows == 0) return;
        enter();
        try (HostScratch a = HostScratch.begin()) {
            long rstd = scratch(rows * 4);
            forRowBlocks(rows, (r0, count) -> ops.launch("rmsnorm_rstd", count, 1, 1, THREADS, 0,
                    new KernelArgs(a).ptr(rstd + r0 * 4).ptr(xs.address() + r0 * dim * 4).i64(count).i32(dim).f32(eps)));
            // The weight's gradient reads dOut, so it comes before dx, which may overwrite it.
            columnSums(a, dws.address(), rows, dim, (partial, chunks, perChunk) -> ops.launch("rmsnorm_weight_partial",
                    blocks(dim, THREADS), chunks, 1, THREADS, 0, new KernelArgs(a).ptr(partial).ptr(dos.address())
                            .ptr(xs.address()).ptr(rstd).i64(rows).i32(dim).i64(perChunk)));
            forRowBlocks(rows, (r0, count) -> ops.launch("rmsnorm_backward_x", count, 1, 1, THREADS, 0,
                    new KernelArgs(a).ptr(dxs.address() + r0 * dim * 4).ptr(dos.address() + r0 * dim * 4)
                            .ptr(xs.address() + r0 * dim * 4).ptr(ws.address()).ptr(rstd + r0 * 4).i64(count).i32(dim)));
            release(rstd);
        } finally {
            exit();
        }
    }

    /** The widest row whose weight-gradient share the fused norm backward keeps in shared memory (under 48 KiB). */
    private static final int FUSED_NORM_MAX_DIM = 11 * 1024;

    @Override
    public void rmsNormBackwardAdd(Tensor dResidual, Tensor rounded, Tensor dWeight, Tensor dOut, Tensor x, Tensor weight,
                                   long rows, int dim, float eps) {
        String op = "rmsNormBackwardAdd";
        long n = OpChecks.rmsNormBackwardAdd(op, dResidual, rounded, dOut, x, rows, dim);
        if (dim > FUSED_NORM_MAX_DIM) {
            Backend.super.rmsNormBackwardAdd(dResidual, rounded, dWeight, dOut, x, weight, rows, dim, eps);
            return;
        }
        CudaTensor drs = atLeast(op, "dResidual", dResidual, n, "rows*dim");
        CudaTensor cs = rounded == null ? null : atLeast(op, "rounded", operand(op, "rounded", rounded), n, "rows*dim");
        CudaTensor dws = atLeast(op, "dWeight", dWeight, dim, "dim");
        CudaTensor dos = atLeast(op, "dOut", dOut, n, "rows*dim"), xs = atLeast(op, "x", x, n, "rows*dim");
        CudaTensor ws = atLeast(op, "weight", weight, dim, "dim");
        if (rows == 0) return;
        boolean bf16 = cs != null && cs.storage() == CudaTensor.Storage.BF16;
        // Enough blocks to fill the GPU (each walks its rows in order, so the weight's gradient is summed in a fixed
        // order whatever the timing).
        RowChunks rc = RowChunks.of(rows, 8L * multiprocessors);
        enter();
        try (HostScratch a = HostScratch.begin()) {
            long partial = scratch((long) rc.chunks() * dim * 4);
            ops.launch(bf16 ? "rmsnorm_backward_add_bf16" : "rmsnorm_backward_add", rc.chunks(), 1, 1, THREADS, dim * 4,
                    new KernelArgs(a).ptr(drs.address()).ptr(cs == null ? 0 : cs.address()).ptr(partial)
                            .ptr(dos.address()).ptr(xs.address()).ptr(ws.address()).i64(rows).i32(dim).f32(eps)
                            .i64(rc.perChunk()));
            ops.launch("column_sum_finish", blocks(dim, THREADS), 1, 1, THREADS, 0,
                    new KernelArgs(a).ptr(dws.address()).ptr(partial).i32(rc.chunks()).i32(dim));
            release(partial);
        } finally {
            exit();
        }
    }

    @Override
    public void sumRows(Tensor out, Tensor x, long rows, int cols) {
        String op = "sumRows";
        OpChecks.nonNegative(op, "rows", rows);
        OpChecks.positive(op, "cols", cols);
        CudaTensor xs = atLeast(op, "x", x, OpChecks.product(op, rows, cols), "rows*cols");
        CudaTensor os = atLeast(op, "out", out, cols, "cols");
        if (rows == 0) return;
        enter();
        try (HostScratch a = HostScratch.begin()) {
            columnSums(a, os.address(), rows, cols, (partial, chunks, perChunk) -> ops.launch("column_sum_partial",
                    blocks(cols, THREADS), chunks, 1, THREADS, 0,
                    new KernelArgs(a).ptr(partial).ptr(xs.address()).i64(rows).i32(cols).i64(perChunk)));
        } finally {
            exit();
        }
    }

    /** Rows cut into chunks of equal length (the last shorter) for fixed-order column sums: at most MAX_CHUNKS of 64+. */
    private record RowChunks(int chunks, long perChunk) {
        static RowChunks of(long rows) {
            return of(rows, Math.min(MAX_CHUNKS, Math.max(1, (rows + 63) / 64)));
        }

        /** Rows (at least one) in at most {@code wanted} chunks of equal length, the last shorter. */
        static RowChunks of(long rows, long wanted) {
            int chunks = (int) Math.max(1, Math.min(rows, wanted));
            long perChunk = (rows + chunks - 1) / chunks;
            return new RowChunks((int) ((rows + perChunk - 1) / perChunk), perChunk);
        }
    }

    private interface PartialKernel {
        void launch(long partial, int chunks, long rowsPerChunk);
    }

    /** Column sums in two fixed-order passes: row chunks into partials, then partials added (in order) into out. */
    private void columnSums(HostScratch a, long out, long rows, int cols, PartialKernel partialKernel) {
        RowChunks rc = RowChunks.of(rows);
        long partial = scratch((long) rc.chunks() * cols * 4);
        partialKernel.launch(partial, rc.chunks(), rc.perChunk());
        ops.launch("column_sum_finish", blocks(cols, THREADS), 1, 1, THREADS, 0,
                new KernelArgs(a).ptr(out).ptr(partial).i32(rc.chunks()).i32(cols));
        release(partial);
    }

    @Override
    public double sumOfSquares(Tensor x, long n) {
        String op = "sumOfSquares";
        OpChecks.nonNegative(op, "n", n);
        CudaTensor xs = atLeast(op, "x", x, n, "n");
        if (n == 0) return 0;
        enter();
        try (HostScratch a = HostScratch.begin()) {
            int grid = gridFor(n);
            long partial = scratch((long) grid * 8);
            ops.launch("sum_squares_partial", grid, 1, 1, THREADS, 0, new KernelArgs(a).ptr(partial).ptr(xs.address()).i64(n));
            MemorySegment host = a.allocate(JAVA_DOUBLE, grid);
            driver.copyToHost(host, partial, (long) grid * 8);
            release(partial);
            double sum = 0;
            for (int i = 0; i < grid; i++) sum += host.getAtIndex(JAVA_DOUBLE, i);
            return sum;
        } finally {
            exit();
        }
    }

    @Override
    public void rotaryBackward(Tensor d, Tensor rotated, RotaryTable table, float[] positions, double[] dInvFreq,
                               long rows, int heads, int headDim) {
        rotaryBackward(d, null, rotated, table, positions, dInvFreq, rows, heads, headDim);
    }

    /** In one pass: the copy is written beside d (the features the rotation leaves alone by a second kernel). */
    @Override
    public void rotaryBackward(Tensor d, Tensor rounded, Tensor rotated, RotaryTable table, float[] positions,
                               double[] dInvFreq, long rows, int heads, int headDim) {
        String op = "rotaryBackward";
        RotaryTable.check(op, table, rows, heads, headDim);
        int half = table.half();
        long n = OpChecks.product(op, rows, (long) heads * headDim);
        CudaTensor ds = atLeast(op, "d", d, n, "rows*heads*headDim");
        CudaTensor rs = rounded == null ? null : atLeast(op, "rounded", anyTensor(op, "rounded", rounded), n, "rows*heads*headDim");
        if (rounded == d) throw new IllegalArgumentException(op + ": rounded and d must be different tensors");
        CudaTensor c = atLeast(op, "table.cos", table.cos(), rows * half, "rows*half");
        CudaTensor s = atLeast(op, "table.sin", table.sin(), rows * half, "rows*half");
        CudaTensor ys = null;
        if (dInvFreq != null) {
            if (dInvFreq.length != half)
                throw new IllegalArgumentException(op + ": dInvFreq has " + dInvFreq.length + " entries, needs table.half = " + half);
            if (positions == null || positions.length < rows)
                throw new IllegalArgumentException(op + ": positions has " + (positions == null ? "null" : positions.length + " entries")
                        + ", needs rows = " + rows);
            ys = atLeast(op, "rotated", anyTensor(op, "rotated", rotated), n, "rows*heads*headDim");
        }
        if (n == 0) return;
        if (half == 0) {
            if (rs != null) copy(rs, 0, ds, 0, n);
            return;
        }
        enter();
        try (HostScratch a = HostScratch.begin()) {
            long angle = 0, dPos = 0;
            if (ys != null) {
                angle = scratch(rows * half * 8);
                dPos = uploadFloats(a, Arrays.copyOf(positions, (int) rows));
            }
            ops.launch("rotary_backward", gridFor(rows * half), 1, 1, THREADS, 0, new KernelArgs(a).ptr(ds.address())
                    .ptr(ys == null ? 0 : ys.address()).i32(ys == null ? 0 : typeCode(ys))
                    .ptr(rs == null ? 0 : rs.address()).i32(rs == null ? 0 : typeCode(rs))
                    .ptr(c.address()).ptr(s.address()).ptr(dPos).ptr(angle)
                    .i64(rows).i32(heads).i32(headDim).i32(half));
            if (rs != null && 2 * half < headDim) {
                long rest = rows * heads * (headDim - 2L * half);
                ops.launch("copy_unrotated", gridFor(rest), 1, 1, THREADS, 0, new KernelArgs(a).ptr(rs.address())
                        .i32(typeCode(rs)).ptr(ds.address()).i64(rows).i32(heads).i32(headDim).i32(half));
            }
            if (ys != null) {
                RowChunks rc = RowChunks.of(rows);
                int chunks = rc.chunks();
                long partial = scratch((long) chunks * half * 8);
                ops.launch("column_sum_partial_d", blocks(half, THREADS), chunks, 1, THREADS, 0,
                        new KernelArgs(a).ptr(partial).ptr(angle).i64(rows).i32(half).i64(rc.perChunk()));
                MemorySegment host = a.allocate(JAVA_DOUBLE, (long) chunks * half);
                driver.copyToHost(host, partial, (long) chunks * half * 8);
                for (int k = 0; k < chunks; k++)
                    for (int j = 0; j < half; j++) dInvFreq[j] += host.getAtIndex(JAVA_DOUBLE, (long) k * half + j);
                release(partial);
                release(angle);
                release(dPos);
            }
        } finally {
            exit();
        }
    }

    @Override
    public void embeddingBackward(Tensor dTable, Tensor dOut, int[] ids, int dim) {
        String op = "embeddingBackward";
        CudaTensor t = embeddingTable(op, "dTable", dTable, ids, dim, false);
        CudaTensor dy = atLeast(op, "dOut", dOut, (long) ids.length * dim, "ids.length*dim");
        if (ids.length == 0) return;
        // Rows grouped by id (each group in row order), so every table row is summed by one block, deterministically.
        Integer[] order = new Integer[ids.length];
        for (int i = 0; i < order.length; i++) order[i] = i;
        Arrays.sort(order, (x, y) -> ids[x] != ids[y] ? Integer.compare(ids[x], ids[y]) : Integer.compare(x, y));
        int[] rowsById = new int[ids.length], unique = new int[ids.length], starts = new int[ids.length + 1];
        int u = 0;
        for (int i = 0; i < order.length; i++) {
            rowsById[i] = order[i];
            if (i == 0 || ids[order[i]] != ids[order[i - 1]]) {
                unique[u] = ids[order[i]];
                starts[u++] = i;
            }
        }
        starts[u] = ids.length;
        int distinct = u;
        enter();
        try (HostScratch a = HostScratch.begin()) {
            long dUnique = uploadInts(a, Arrays.copyOf(unique, distinct)), dStarts = uploadInts(a, Arrays.copyOf(starts, distinct + 1));
            long dOrder = uploadInts(a, rowsById);
            ops.launch("embedding_backward", distinct, 1, 1, THREADS, 0, new KernelArgs(a).ptr(t.address())
                    .ptr(dy.address()).ptr(dUnique).ptr(dStarts).ptr(dOrder).i32(dim));
            release(dUnique);
            release(dStarts);
            release(dOrder);
        } finally {
            exit();
        }
    }

    @Override
    public void close() {
        lock.lock();
        try {
            if (closed) return;
            driver.setCurrent(context);
            driver.synchronize();
            if (profile) System.err.print(profileReport());
            if (decodeScratch != 0) release(decodeScratch);
            for (GraphStep g : List.copyOf(graphs)) g.free();
            if (cudnnAttention != null) closeCudnn();
            cublas.close();
            driver.freeFixed(cublasWorkspace);
            driver.destroyStream(stream);
            closed = true;
        } finally {
            lock.unlock();
        }
    }

    // ---- recorded decode steps ----

    /** The recording being captured now (by the thread that holds the lock), or null. */
    private volatile GraphStep capturing;
    private final java.util.Set<GraphStep> graphs = java.util.concurrent.ConcurrentHashMap.newKeySet();
    private final java.util.concurrent.atomic.AtomicLong graphLaunches = new java.util.concurrent.atomic.AtomicLong();
    private final java.util.concurrent.atomic.AtomicLong graphCaptures = new java.util.concurrent.atomic.AtomicLong();
    /** Set ROPEWAY_CUDA_GRAPHS=0 to run recorded steps op by op (for comparisons). */
    private final boolean graphsEnabled = !"0".equals(System.getenv("ROPEWAY_CUDA_GRAPHS"));

    /** How many recorded steps were launched as graphs, and how many graphs were captured, since the start. */
    public long[] graphCounts() {
        return new long[] {graphLaunches.get(), graphCaptures.get()};
    }

    @Override
    public CudaDecodeStep decodeStep(int half) {
        return new CudaDecodeStep(this, half);
    }

    /** The step's device block, checked to belong to this backend. */
    private CudaDecodeStep step(String op, dev.ropeway.tensor.DecodeStep step) {
        if (!(step instanceof CudaDecodeStep c) || c.backend() != this)
            throw new IllegalArgumentException(op + ": the decode step was not made by this backend's decodeStep");
        return c;
    }

    /** Runs {@code action} holding the backend (for the decode step's copies). */
    void locked(Runnable action) {
        enter();
        try {
            action.run();
        } finally {
            exit();
        }
    }

    Driver driver() {
        return driver;
    }

    @Override
    public boolean recordingPays() {
        return graphsEnabled && !profile;
    }

    /**
     * Records the ops as a CUDA graph: captured from this backend's stream the first time they are replayed (and again
     * whenever a condition they were captured under, such as the number of key splits of a decode attention, no longer
     * holds), then launched whole. Their temporaries come from memory the recording owns. Ops that cannot be captured
     * (a synchronous copy, for one) make the recording fall back to running the ops one by one, as does
     * ROPEWAY_CUDA_GRAPHS=0 or ROPEWAY_CUDA_PROFILE.
     */
    @Override
    public dev.ropeway.tensor.Recording record(Runnable ops) {
        if (ops == null) throw new IllegalArgumentException("record: ops is null");
        GraphStep g = new GraphStep(ops);
        graphs.add(g);
        return g;
    }

    /** A recorded step: its graph, the memory its kernels use, and the conditions it was captured under. */
    private final class GraphStep implements dev.ropeway.tensor.Recording {
        private final Runnable ops;
        private final java.util.Set<Long> owned = new java.util.HashSet<>();
        private final List<java.util.function.BooleanSupplier> conditions = new java.util.ArrayList<>();
        private MemorySegment graph, exec;
        private boolean direct = !recordingPays();
        private boolean lastAsGraph;

        GraphStep(Runnable ops) {
            this.ops = ops;
        }

        long own(long address) {
            owned.add(address);
            return address;
        }

        boolean owns(long address) {
            return owned.contains(address);
        }

        /** A condition the capture depends on: when it turns false, the next replay captures again. */
        void require(java.util.function.BooleanSupplier condition) {
            conditions.add(condition);
        }

        @Override
        public void replay() {
            lastAsGraph = false;
            if (direct) {
                ops.run();
                return;
            }
            enter();
            try {
                if (exec != null && !conditions.stream().allMatch(java.util.function.BooleanSupplier::getAsBoolean)) free();
                if (exec == null && !capture()) {
                    ops.run();
                    return;
                }
                driver.launchGraph(exec, stream);
                graphLaunches.incrementAndGet();
                lastAsGraph = true;
            } finally {
                exit();
            }
        }

        /** Captures the ops into a graph; false (having freed what it made, and run nothing) when they cannot be. */
        private boolean capture() {
            if (capturing != null) throw new IllegalStateException("record: a recorded step may not replay another");
            driver.beginCapture(stream);
            capturing = this;
            RuntimeException error = null;
            try {
                ops.run();
            } catch (RuntimeException e) {
                error = e;
            } finally {
                capturing = null;
            }
            MemorySegment g = null;
            try {
                g = driver.endCapture(stream);
            } catch (CudaException e) {
                if (error == null) error = e;
            }
            if (error == null) {
                try {
                    exec = driver.instantiate(g);
                    graph = g;
                    graphCaptures.incrementAndGet();
                    return true;
                } catch (CudaException e) {
                    error = e;
                }
            }
            if (g != null) driver.destroyGraph(g, null);
            free();
            direct = true;
            System.err.println("ropeway: a recorded step could not be captured as a CUDA graph (" + error.getMessage()
                    + "); it runs op by op");
            return false;
        }

        /** Destroys the graph and frees the memory it used (holding the lock). */
        void free() {
            // The last launch may still be running: it uses the graph and the memory.
            if (exec != null || !owned.isEmpty()) driver.synchronize();
            driver.destroyGraph(graph, exec);
            exec = null;
            graph = null;
            for (long p : owned) driver.freeFixed(p);
            owned.clear();
            conditions.clear();
        }

        @Override
        public boolean replayedAsGraph() {
            return lastAsGraph;
        }

        @Override
        public void close() {
            if (!graphs.remove(this)) return;
            if (closed) return;
            enter();
            try {
                free();
            } finally {
                exit();
            }
        }
    }

    // ---- helpers ----

    private long uploadInts(HostScratch a, int[] values) {
        long p = scratch((long) values.length * 4);
        driver.copyToDevice(p, a.allocateFrom(JAVA_INT, values), (long) values.length * 4);
        return p;
    }

    private long uploadFloats(HostScratch a, float[] values) {
        long p = scratch((long) Math.max(1, values.length) * 4);
        if (values.length > 0) driver.copyToDevice(p, a.allocateFrom(JAVA_FLOAT, values), (long) values.length * 4);
        return p;
    }

    private interface RowBlock {
        void run(long firstRow, int count);
    }

    /** Row kernels launch one block per row; grids past 2^31 - 1 rows are split. */
    private static void forRowBlocks(long rows, RowBlock block) {
        long max = Integer.MAX_VALUE;
        for (long r0 = 0; r0 < rows; r0 += max) block.run(r0, (int) Math.min(max, rows - r0));
    }

    /** Blocks for a grid-stride loop over n elements: enough to fill the GPU, no more. */
    private int gridFor(long n) {
        long want = (n + THREADS - 1) / THREADS;
        return (int) Math.max(1, Math.min(want, (long) multiprocessors * 16));
    }

    private static int blocks(long n, int per) {
        long b = (n + per - 1) / per;
        if (b > Integer.MAX_VALUE) throw new IllegalArgumentException("grid of " + b + " blocks is too large");
        return (int) Math.max(1, b);
    }

    /** A float32 GPU tensor (a float16 KV cache is refused: only copy, view, download and attention read one). */
    private static CudaTensor tensor(String op, String name, Tensor t) {
        CudaTensor c = anyTensor(op, name, t);
        if (c.isHalf())
            throw new IllegalArgumentException(op + ": " + name + " is a float16 tensor (a KV cache, attention's operands "
                    + "as training keeps them, or a float16 checkpoint's weights), which only copy, view, download, "
                    + "attention's and attentionBackward's q, k and v, rotary's out, rotaryBackward's rounded and rotated, "
                    + "the weights of linear and gemm beside float32 activations and embedding's table take; copy it into "
                    + "a float32 tensor first");
        if (c.storage() == CudaTensor.Storage.BF16)
            throw new IllegalArgumentException(op + ": " + name + " is a bfloat16 tensor, which only copy, view, download, "
                    + "the operands of gemm and linear, embedding's table, and the outputs rounded for them (rmsNorm's, addRmsNorm's and "
                    + "swiglu's out, swigluBackward's dGate and dUp, rmsNormBackwardAdd's rounded, crossEntropyBackward's "
                    + "dLogits, attention's out), attention's and attentionBackward's q, k, v and out, rotary's out and "
                    + "rotaryBackward's rounded and rotated take");
        return c;
    }

    /**
     * An embedding op's table (or its gradient), with dim positive and every id one of its rows; float32, or bfloat16
     * or float16 (a narrow checkpoint's) where {@code narrow} allows it.
     */
    private static CudaTensor embeddingTable(String op, String name, Tensor table, int[] ids, int dim, boolean narrow) {
        OpChecks.positive(op, "dim", dim);
        if (ids == null) throw new IllegalArgumentException(op + ": ids is null");
        CudaTensor t = narrow ? anyTensor(op, name, table) : tensor(op, name, table);
        OpChecks.ids(op, ids, t.size() / dim);
        return t;
    }

    /** The embedding lookup for a float32, bfloat16 or float16 table. */
    private static String embeddingKernel(CudaTensor table) {
        return switch (table.storage()) {
            case F32 -> "embedding_forward";
            case BF16 -> "embedding_forward_bf16";
            case F16 -> "embedding_forward_f16";
        };
    }

    private static CudaTensor anyTensor(String op, String name, Tensor t) {
        if (t == null) throw new IllegalArgumentException(op + ": " + name + " is null");
        if (!(t instanceof CudaTensor c))
            throw new IllegalArgumentException(op + ": " + name + " is not a GPU tensor of this backend: " + t);
        c.address();
        return c;
    }

    private static CudaTensor atLeast(String op, String name, Tensor t, long need, String formula) {
        return atLeast(op, name, tensor(op, name, t), need, formula);
    }

    private static CudaTensor atLeast(String op, String name, CudaTensor c, long need, String formula) {
        if (c.size() < need)
            throw new IllegalArgumentException(op + ": " + name + " has " + c.size() + " " + c.storage().plural + ", needs "
                    + formula + " = " + need);
        return c;
    }

    private static void checkRange(String op, String name, CudaTensor t, long offset, long length) {
        if (offset < 0 || length < 0 || offset > t.size() - length)
            throw new IllegalArgumentException(op + ": " + name + " range [" + offset + ", " + (offset + length)
                    + ") is outside its " + t.size() + " floats");
    }
}
