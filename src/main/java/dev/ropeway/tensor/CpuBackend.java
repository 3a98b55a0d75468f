package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicBoolean;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/**
 * The CPU backend: off-heap float32 tensors, products through OpenBLAS (single-threaded calls, split across this
 * backend's worker threads), every other kernel in the Vector API.
 *
 * <p>Threading: each backend owns a pool of {@code threads} workers (the calling thread counts as one). Ops may be
 * called from several threads at once: one op at a time gets the pool, and an op that finds it busy runs on its
 * caller's thread alone, so results are always the same, only slower. Tensors are not locked: two ops writing the
 * same tensor at once is a caller error.
 *
 * <p>Every op checks its arguments on entry and throws {@link IllegalArgumentException} naming the op, the buffer
 * and the size it needed.
 */
public final class CpuBackend implements Backend {
    /** Rows per sgemm call in {@link #linear}: row counts past int range are split into chunks of this many. */
    static final long LINEAR_ROW_CHUNK = 1L << 30;

    private final WorkerPool pool;
    /** What {@link #allocateKv} stores: F32 or BF16. */
    private final DType kvType;
    /** How {@link #uploadWeights} holds weight matrices. */
    private final Weights weights;
    /** Whether KV caches are laid out head by head ({@link #kvHeadMajor()}). */
    private final boolean kvHeadMajor;
    private volatile boolean closed;

    /** A backend using every available processor, with a float32 KV cache. */
    public CpuBackend() {
        this(Runtime.getRuntime().availableProcessors());
    }

    /** A backend with {@code threads} workers and a float32 KV cache. */
    public CpuBackend(int threads) {
        this(threads, DType.F32);
    }

    /**
     * A backend with {@code threads} workers whose KV caches ({@link #allocateKv}) hold {@code kvType}: F32, or BF16
     * (half the memory and half the bytes a long-context decode step reads; keys and values are rounded once as they
     * are stored, and attention widens them as it reads them).
     */
    public CpuBackend(int threads, DType kvType) {
        this(threads, kvType, Weights.AUTO);
    }

    /** How {@link #uploadWeights} holds a checkpoint's weight matrices on the CPU. */
    public enum Weights {
        /**
         * As stored where that is exact and compact: bfloat16 and float16 matrices stay 16-bit (a float16 one holding
         * an infinity or a NaN becomes float32), float32 and float64 ones become float32, and matrices in ggml's blocks
         * (Q8_0, the k-quants, IQ4_XS, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL) stay in them ({@link CpuQ8Tensor},
         * {@link CpuKQuantTensor}; loaded without their shape, float32).
         */
        AUTO,
        /**
         * Every matrix widened exactly to float32 (quantised blocks dequantised as ggml does): twice the memory of a
         * 16-bit checkpoint, and prompt-sized products call OpenBLAS on the weights directly instead of widening a block
         * of them at a time.
         */
        F32,
        /**
         * Every matrix as bfloat16: float32, float16 and float64 ones (and quantised blocks, dequantised) rounded to
         * nearest even as they load (half the memory of float32 and half the bytes a memory-bound decode step streams,
         * for a relative change of at most 2^-9 per weight).
         */
        BF16,
        /**
         * Every matrix in ggml's Q8_0 form ({@link CpuQ8Tensor}): an int8 per weight and a scale per 32, about a quarter
         * of float32's memory and bytes per decode step, for a change per weight of at most half a quantisation step
         * plus the scale's float16 rounding: about max|x| / 225 of its block. Matrices whose rows are not a multiple
         * of 32 values (or loaded without their shape, or holding an infinity or a NaN) are held as BF16 instead. A
         * matrix already in ggml's blocks (Q8_0 or a {@link CpuKQuantTensor} type) is kept as it is, as under {@link #AUTO}: never quantised
         * twice.
         */
        Q8_0
    }

    /** {@link #CpuBackend(int, DType)} whose weight matrices ({@link #uploadWeights}) are held as {@code weights} says. */
    public CpuBackend(int threads, DType kvType, Weights weights) {
        this(threads, kvType, weights, true);
    }

    /**
     * As above, with KV caches laid out head by head ({@code kvHeadMajor}, the default: each head's keys and values
     * contiguous, which a decode step streams two to three times faster than one head's slice of every row) or row by
     * row (as the GPU backend keeps them; for comparing the two).
     */
    public CpuBackend(int threads, DType kvType, Weights weights, boolean kvHeadMajor) {
        if (threads <= 0) throw new IllegalArgumentException("threads must be positive, got " + threads);
        if (kvType != DType.F32 && kvType != DType.BF16)
            throw new IllegalArgumentException("the CPU backend keeps a KV cache in F32 or BF16, not " + kvType);
        if (weights == null) throw new IllegalArgumentException("weights must not be null");
        this.kvType = kvType;
        this.weights = weights;
        this.kvHeadMajor = kvHeadMajor;
        // This backend runs its own threads; OpenBLAS's own would spin after each call and slow the next kernel.
        OpenBlas.setThreads(1);
        this.pool = new WorkerPool(threads, "ropeway-cpu");
    }

    /** The native memory of a CPU tensor, for other CPU code; fails for other tensors and closed ones. */
    public static MemorySegment segment(Tensor t) {
        return Checks.segment("segment", "tensor", t);
    }

    @Override
    public String name() {
        return "cpu";
    }

    @Override
    public int threads() {
        return pool.threads();
    }

    /** The host memory left to this process (tensors live in native memory, outside the Java heap). */
    @Override
    public java.util.OptionalLong memoryAvailable() {
        return HostMemory.available();
    }

    /** The worker pool, for other kernels in this package. */
    WorkerPool workerPool() {
        return pool();
    }

    private WorkerPool pool() {
        if (closed) throw new IllegalStateException("CpuBackend is closed");
        return pool;
    }

    @Override
    public CpuTensor allocate(long size) {
        return new CpuTensor(size);
    }

    /** Float32 ({@link CpuTensor}) or bfloat16 ({@link CpuBf16Tensor}, written by copy, rmsNorm and swiglu). */
    @Override
    public Tensor allocate(long size, DType dtype) {
        OpChecks.nonNegative("allocate", "size", size);
        if (dtype == DType.BF16) return new CpuBf16Tensor(size);
        return Backend.super.allocate(size, dtype);
    }

    @Override
    public CpuTensor upload(float[] data) {
        if (data == null) throw new IllegalArgumentException("upload: data is null");
        CpuTensor t = new CpuTensor(data.length);
        MemorySegment.copy(data, 0, t.segment(), JAVA_FLOAT, 0, data.length);
        return t;
    }

    /** Also from ggml's Q8_0 and {@link CpuKQuantTensor} blocks ({@code count} then a whole number of blocks), dequantised as ggml does. */
    @Override
    public CpuTensor upload(MemorySegment src, DType dtype, long count) {
        if (src == null || dtype == null) throw new IllegalArgumentException("upload: src and dtype must not be null");
        if (!dtype.isFloatWeight() && !dtype.isQuantised())
            throw new IllegalArgumentException("upload: cannot convert " + dtype + " to float32");
        checkSource("upload", src, dtype, count);
        CpuTensor t = new CpuTensor(count);
        Convert.toFloat32(pool(), src, dtype, count, t.segment());
        return t;
    }

    /**
     * A weight matrix as this backend's {@link Weights} policy holds it: bfloat16 ({@link CpuBf16Tensor}), float16
     * ({@link CpuF16Tensor}) or float32 (as {@link #upload} makes it). Rounding to bfloat16 converts a slice at a time,
     * so loading needs no float32 copy of the whole matrix. Quantised blocks (Q8_0 or a {@link CpuKQuantTensor} type) without their matrix's
     * shape are dequantised: to bfloat16 under {@link Weights#BF16}, to float32 otherwise.
     */
    @Override
    public Tensor uploadWeights(MemorySegment src, DType dtype, long count) {
        if (dtype == null) throw new IllegalArgumentException("uploadWeights: dtype must not be null");
        boolean narrow = weights == Weights.BF16 || weights == Weights.Q8_0 && !dtype.isQuantised();
        boolean keep = weights == Weights.AUTO && (dtype == DType.BF16 || dtype == DType.F16) || narrow && dtype == DType.BF16;
        if (!keep && !narrow) return upload(src, dtype, count);
        checkSource("uploadWeights", src, dtype, count);
        if (dtype == DType.BF16) return new CpuBf16Tensor(src, count);
        if (keep) {
            CpuF16Tensor t = new CpuF16Tensor(src, count);
            if (allFinite(t)) return t;
            t.close();
            return upload(src, dtype, count);
        }
        CpuBf16Tensor t = new CpuBf16Tensor(count);
        try {
            long slice = 1L << 20;
            for (long at = 0; at < count; at += slice) {
                long n = Math.min(slice, count - at);
                try (CpuTensor part = upload(src.asSlice(dtype.byteSize(at), dtype.byteSize(n)), dtype, n)) {
                    copy(t, at, part, 0, n);
                }
            }
            return t;
        } catch (RuntimeException e) {
            t.close();
            throw e;
        }
    }

    /**
     * A [rows, cols] weight matrix: under {@link Weights#Q8_0}, quantised to Q8_0 blocks when its rows are a multiple of
     * 32 values and it holds only finite values; otherwise as {@link #uploadWeights(MemorySegment, DType, long)}.
     *
     * <p>ggml's quantised blocks ({@code dtype} Q8_0 or a {@link CpuKQuantTensor} type; {@code src} the matrix's blocks row after row, as a
     * GGUF file stores them, each row a whole number of blocks) are never quantised again: under {@link Weights#AUTO} and
     * {@link Weights#Q8_0} they are kept as they are ({@link CpuQ8Tensor}, {@link CpuKQuantTensor}), except that a matrix
     * whose float16 factors include an infinity or a NaN is dequantised to float32; under {@link Weights#F32} they are
     * dequantised to float32, under {@link Weights#BF16} dequantised and rounded to bfloat16.
     */
    @Override
    public Tensor uploadWeights(MemorySegment src, DType dtype, long rows, long cols) {
        long count = OpChecks.product("uploadWeights", rows, cols);
        if (dtype != null && dtype.isQuantised()) return uploadBlocks(src, dtype, rows, cols, count);
        if (weights != Weights.Q8_0 || cols % Q8Blocks.BLOCK != 0 || dtype == null || !dtype.isFloatWeight())
            return uploadWeights(src, dtype, count);
        checkSource("uploadWeights", src, dtype, count);
        CpuQ8Tensor t = new CpuQ8Tensor(count);
        MemorySegment q = t.quants(), scales = t.scales();
        int perBlock = 256;
        CpuQ8Tensor quantised = filledIfFinite(t, src, count / Q8Blocks.BLOCK, 1 << 12, (from, to) -> {
            boolean finite = true;
            float[] x = new float[perBlock * Q8Blocks.BLOCK];
            byte[] out = new byte[x.length];
            for (long b = from; b < to; b += perBlock) {
                int blocks = (int) Math.min(perBlock, to - b), n = blocks * Q8Blocks.BLOCK;
                Convert.toFloats(src, dtype, b * Q8Blocks.BLOCK, x, n);
                for (int i = 0; i < blocks; i++) {
                    float d = Float.float16ToFloat(Q8Blocks.block(x, i * Q8Blocks.BLOCK, out, i * Q8Blocks.BLOCK));
                    finite &= Float.isFinite(d);
                    scales.setAtIndex(JAVA_FLOAT, b + i, d);
                }
                MemorySegment.copy(out, 0, q, JAVA_BYTE, b * Q8Blocks.BLOCK, n);
            }
            return finite;
        });
        return quantised != null ? quantised : uploadWeights(src, dtype, count);
    }

    /** A source must hold {@code count} values of {@code dtype} (for a quantised type, whole blocks of them). */
    private static void checkSource(String op, MemorySegment src, DType dtype, long count) {
        OpChecks.nonNegative(op, "count", count);
        long bytes;
        String formula;
        if (dtype.isQuantised()) {
            if (count % dtype.blockSize() != 0)
                throw new IllegalArgumentException(op + ": " + dtype + " values come in blocks of " + dtype.blockSize()
                        + "; count = " + count + " is not a whole number of blocks");
            bytes = OpChecks.product(op, count / dtype.blockSize(), dtype.blockBytes());
            formula = "count/" + dtype.blockSize() + "*" + dtype.blockBytes();
        } else {
            bytes = OpChecks.product(op, count, dtype.bytes());
            formula = "count*" + dtype.bytes();
        }
        if (src == null || src.byteSize() < bytes)
            throw new IllegalArgumentException(op + ": src has " + (src == null ? "no" : src.byteSize())
                    + " bytes, needs " + formula + " = " + bytes);
    }

    /** {@link #uploadWeights(MemorySegment, DType, long, long)} for ggml's blocks: kept, or dequantised as the policy says. */
    private Tensor uploadBlocks(MemorySegment src, DType dtype, long rows, long cols, long count) {
        if (cols % dtype.blockSize() != 0)
            throw new IllegalArgumentException("uploadWeights: a " + dtype + " matrix's rows are whole blocks of "
                    + dtype.blockSize() + " values; cols = " + cols + " is not a multiple of " + dtype.blockSize());
        checkSource("uploadWeights", src, dtype, count);
        if (weights == Weights.F32 || weights == Weights.BF16) return uploadWeights(src, dtype, count);
        Tensor kept = dtype == DType.Q8_0 ? q8Blocks(src, count) : kQuantBlocks(src, dtype, rows, cols);
        return kept != null ? kept : upload(src, dtype, count);
    }

    /** Q8_0 blocks as a {@link CpuQ8Tensor} (the int8 values as they are, the scales widened), or null if a scale is not finite. */
    private CpuQ8Tensor q8Blocks(MemorySegment src, long count) {
        int block = Q8Blocks.BLOCK, bytes = DType.Q8_0.blockBytes(), perStage = 1024;
        CpuQ8Tensor t = new CpuQ8Tensor(count);
        MemorySegment q = t.quants(), scales = t.scales();
        return filledIfFinite(t, src, count / block, 1 << 12, (from, to) -> {
            boolean finite = true;
            byte[] in = new byte[perStage * bytes], values = new byte[perStage * block];
            float[] d = new float[perStage];
            for (long b = from; b < to; b += perStage) {
                int n = (int) Math.min(perStage, to - b);
                MemorySegment.copy(src, JAVA_BYTE, b * bytes, in, 0, n * bytes);
                for (int i = 0; i < n; i++) {
                    d[i] = Float.float16ToFloat((short) (in[i * bytes] & 0xFF | in[i * bytes + 1] << 8));
                    finite &= Float.isFinite(d[i]);
                    System.arraycopy(in, i * bytes + 2, values, i * block, block);
                }
                MemorySegment.copy(values, 0, q, JAVA_BYTE, b * block, n * block);
                MemorySegment.copy(d, 0, scales, JAVA_FLOAT, b * Float.BYTES, n);
            }
            return finite;
        });
    }

    /** Blocks other than Q8_0's as a {@link CpuKQuantTensor}, or null if a block's d, dmin or m is not finite. */
    private CpuKQuantTensor kQuantBlocks(MemorySegment src, DType dtype, long rows, long cols) {
        CpuKQuantTensor t = new CpuKQuantTensor(dtype, rows, cols);
        MemorySegment dst = t.blocks();
        long bytes = dtype.blockBytes();
        return filledIfFinite(t, src, t.size() / dtype.blockSize(), 1 << 10, (from, to) -> {
            MemorySegment.copy(src, from * bytes, dst, from * bytes, (to - from) * bytes);
            return KQuantGemm.finiteFactors(dtype, dst, from, to);
        });
    }

    /** Fills blocks {@code [from, to)} of a tensor being loaded; false when one holds a non-finite factor. */
    private interface BlockFill {
        boolean fill(long from, long to);
    }

    /**
     * Runs {@code fill} over {@code blocks} blocks of {@code t} on the workers (on the calling thread alone when they may
     * not read {@code src}); {@code t} when every block was finite, else null with {@code t} closed (as it is when the
     * fill throws).
     */
    private <T extends Tensor> T filledIfFinite(T t, MemorySegment src, long blocks, long minChunk, BlockFill fill) {
        try {
            AtomicBoolean finite = new AtomicBoolean(true);
            WorkerPool p = pool().workersCanAccess(src) ? pool() : WorkerPool.SERIAL;
            p.forRange(blocks, minChunk, (from, to) -> {
                if (!fill.fill(from, to)) finite.set(false);
            });
            if (finite.get()) return t;
        } catch (RuntimeException e) {
            t.close();
            throw e;
        }
        t.close();
        return null;
    }

    /** A weight held narrower than float32 (bfloat16, float16, or ggml's blocks), which only some ops read. */
    private static boolean narrowWeight(Tensor t) {
        return t instanceof HalfTensor || t instanceof CpuQ8Tensor || t instanceof CpuKQuantTensor;
    }

    /** Q8_0 or a {@link CpuKQuantTensor} type: a weight in ggml's blocks, which nothing writes and nothing views. */
    private static boolean blockWeight(Tensor t) {
        return t instanceof CpuQ8Tensor || t instanceof CpuKQuantTensor;
    }

    /** How a block weight names itself in errors. */
    private static String blockType(Tensor t) {
        return t instanceof CpuKQuantTensor k ? k.type().toString() : "Q8_0";
    }

    /** True when no value of the float16 tensor is an infinity or a NaN (all exponent bits set). */
    private boolean allFinite(CpuF16Tensor t) {
        MemorySegment s = t.segment();
        AtomicBoolean finite = new AtomicBoolean(true);
        pool().forRange(t.size(), 1 << 18, (from, to) -> {
            if (!HalfGemm.finiteF16(s, from, to)) finite.set(false);
        });
        return finite.get();
    }

    /** How {@link #uploadWeights} holds weight matrices. */
    public Weights weights() {
        return weights;
    }

    /** Float32, or bfloat16 ({@link CpuBf16Tensor}) when this backend was made with that KV type. */
    @Override
    public Tensor allocateKv(long size) {
        OpChecks.nonNegative("allocateKv", "size", size);
        return kvType == DType.F32 ? allocate(size) : new CpuBf16Tensor(size);
    }

    @Override
    public int kvBytesPerElement() {
        return kvType.bytes();
    }

    @Override
    public boolean kvHeadMajor() {
        return kvHeadMajor;
    }

    @Override
    public void storeKv(Tensor cache, Tensor rows, AttentionShape shape) {
        if (shape == null) throw new IllegalArgumentException("storeKv: shape is null");
        if (!shape.kvHeadMajor()) {
            Backend.super.storeKv(cache, rows, shape);
            return;
        }
        String op = "storeKv";
        if (shape.batch() != 1) throw new IllegalArgumentException(op + ": a cache holds one sequence, got batch " + shape.batch());
        int heads = shape.kvHeads(), dim = shape.headDim();
        long n = shape.seqQ(), width = (long) heads * dim, at = shape.qStart();
        MemorySegment src = Checks.atLeast(op, "rows", rows, OpChecks.product(op, n, width), "seqQ*kvHeads*headDim");
        long needed = kvValuesNeeded(op, shape);
        boolean narrow = cache instanceof CpuBf16Tensor;
        MemorySegment dst = narrow ? kvAtLeast(op, "cache", cache, needed, "((kvHeads-1)*kvRowsPerBatch + seqKv)*headDim")
                : Checks.atLeast(op, "cache", cache, needed, "((kvHeads-1)*kvRowsPerBatch + seqKv)*headDim");
        WorkerPool.Task head = h -> {
            long to = shape.kvHeadOffset(0, h) + at * dim;
            for (long r = 0; r < n; r++) {
                long from = (r * width + (long) h * dim) * Float.BYTES;
                if (narrow) HalfGemm.narrow(src, from, dst, (to + r * dim) * 2, dim);
                else MemorySegment.copy(src, from, dst, (to + r * dim) * Float.BYTES, (long) dim * Float.BYTES);
            }
        };
        if (n * width < 1 << 16) for (int h = 0; h < heads; h++) head.run(h);
        else pool().run(heads, head);
    }

    /** The type of this backend's KV caches: F32 or BF16. */
    public DType kvType() {
        return kvType;
    }

    /** A view of a float32 tensor, or of a bfloat16 (a bfloat16 KV cache's rows) or float16 one. */
    @Override
    public Tensor view(Tensor base, long offset, long size) {
        if (blockWeight(base))
            throw new IllegalArgumentException("view: a " + blockType(base) + " weight tensor has no views (read it with linear, gemm or embedding)");
        if (base instanceof CpuBf16Tensor b) return new CpuBf16Tensor(b, offset, size);
        if (base instanceof CpuF16Tensor h) return new CpuF16Tensor(h, offset, size);
        if (!(base instanceof CpuTensor t)) throw new IllegalArgumentException("view: base is not a CPU tensor: " + base);
        return new CpuTensor(t, offset, size);
    }

    @Override
    public void download(Tensor src, long offset, float[] dst, int dstOffset, int length) {
        if (narrowWeight(src)) {
            if (offset < 0 || length < 0 || offset > src.size() - length)
                throw new IllegalArgumentException("download: src range [" + offset + ", " + (offset + length) + ") is outside its "
                        + src.size() + " values");
            if (dst == null || dstOffset < 0 || dstOffset > dst.length - length)
                throw new IllegalArgumentException("download: dst range is outside its " + (dst == null ? "null" : dst.length + " floats"));
            // Vector stores need native memory (a float[] is not a byte[] heap segment): widen through a scratch block.
            try (java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofConfined()) {
                MemorySegment tmp = arena.allocate((long) Math.max(length, 1) * Float.BYTES, 64);
                widen(src, offset, tmp, 0, length);
                MemorySegment.copy(tmp, JAVA_FLOAT, 0, dst, dstOffset, length);
            }
            return;
        }
        MemorySegment s = Checks.range("download", "src", src, offset, length);
        if (dst == null || dstOffset < 0 || dstOffset > dst.length - length)
            throw new IllegalArgumentException("download: dst range [" + dstOffset + ", " + ((long) dstOffset + length)
                    + ") is outside its " + (dst == null ? "null" : dst.length + " floats"));
        MemorySegment.copy(s, JAVA_FLOAT, offset * Float.BYTES, dst, dstOffset, length);
    }

    @Override
    public void copy(Tensor dst, long dstOffset, Tensor src, long srcOffset, long length) {
        if (blockWeight(dst))
            throw new IllegalArgumentException("copy: dst is a " + blockType(dst) + " weight tensor, which nothing writes");
        if (blockWeight(src)) {
            Tensor w = src;
            if (srcOffset < 0 || length < 0 || srcOffset > w.size() - length)
                throw new IllegalArgumentException("copy: src range [" + srcOffset + ", " + (srcOffset + length)
                        + ") is outside its " + w.size() + " " + blockType(w) + " values");
            if (!(dst instanceof CpuTensor))
                throw new IllegalArgumentException("copy: a " + blockType(w) + " source copies into float32 only, not into " + dst);
            MemorySegment d = Checks.range("copy", "dst", dst, dstOffset, length);
            pool().forRange(length, 1 << 16, (from, to) -> widen(w, srcOffset + from, d, (dstOffset + from) * Float.BYTES, to - from));
            return;
        }
        if (dst instanceof HalfTensor || src instanceof HalfTensor) {
            convertingCopy(dst, dstOffset, src, srcOffset, length);
            return;
        }
        MemorySegment d = Checks.range("copy", "dst", dst, dstOffset, length);
        MemorySegment s = Checks.range("copy", "src", src, srcOffset, length);
        if (d.equals(s) && Math.abs(dstOffset - srcOffset) < length) {
            MemorySegment.copy(s, srcOffset * Float.BYTES, d, dstOffset * Float.BYTES, length * Float.BYTES);
            return;
        }
        pool().forRange(length, 1 << 18, (from, to) -> MemorySegment.copy(s, (srcOffset + from) * Float.BYTES,
                d, (dstOffset + from) * Float.BYTES, (to - from) * Float.BYTES));
    }

    /**
     * A copy into or out of bfloat16, or out of float16: float32 rounds to nearest even into bfloat16, 16-bit values
     * widen exactly (float16 into bfloat16 goes through float32), and a copy between tensors of one 16-bit type moves
     * the bits. Nothing writes a float16 tensor.
     */
    private void convertingCopy(Tensor dst, long dstOffset, Tensor src, long srcOffset, long length) {
        if (dst instanceof CpuF16Tensor && !(src instanceof CpuF16Tensor))
            throw new IllegalArgumentException("copy: dst is a float16 weight tensor, which only a float16 source may fill");
        MemorySegment d = anyRange("dst", dst, dstOffset, length), s = anyRange("src", src, srcOffset, length);
        if (dst.getClass() == src.getClass()) {
            MemorySegment.copy(s, srcOffset * 2, d, dstOffset * 2, length * 2);
            return;
        }
        HalfTensor from16 = src instanceof HalfTensor h ? h : null;
        boolean into16 = dst instanceof CpuBf16Tensor;
        pool().forRange(length, 1 << 16, (from, to) -> {
            if (from16 == null) {
                HalfGemm.narrow(s, (srcOffset + from) * Float.BYTES, d, (dstOffset + from) * 2, to - from);
            } else if (!into16) {
                widen(from16, srcOffset + from, d, (dstOffset + from) * Float.BYTES, to - from);
            } else {
                // float16 into bfloat16: widened a block at a time, then rounded.
                int block = 1 << 12;
                try (java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofConfined()) {
                    MemorySegment tmp = arena.allocate((long) block * Float.BYTES, 64);
                    for (long i = from; i < to; i += block) {
                        int n = (int) Math.min(block, to - i);
                        widen(from16, srcOffset + i, tmp, 0, n);
                        HalfGemm.narrow(tmp, 0, d, (dstOffset + i) * 2, n);
                    }
                }
            }
        });
    }

    /**
     * {@code count} values of a 16-bit or ggml block tensor from element {@code from}, widened (dequantised) to
     * float32 at byte {@code to} of dst.
     */
    private static void widen(Tensor weights, long from, MemorySegment dst, long to, long count) {
        if (weights instanceof CpuQ8Tensor q) {
            Q8Gemm.dequantize(q.quants(), q.scales(), from, dst, to, count);
            return;
        }
        if (weights instanceof CpuKQuantTensor k) {
            KQuantGemm.dequantize(k.type(), k.blocks(), from, dst, to, count);
            return;
        }
        HalfTensor t = (HalfTensor) weights;
        MemorySegment s = t.segment();
        boolean f16 = t instanceof CpuF16Tensor;
        for (long i = 0; i < count; i += Integer.MAX_VALUE / 4) {
            int n = (int) Math.min(Integer.MAX_VALUE / 4, count - i);
            if (f16) HalfGemm.widenF16(s, (from + i) * 2, dst, to + i * Float.BYTES, n);
            else HalfGemm.widen(s, (from + i) * 2, dst, to + i * Float.BYTES, n);
        }
    }

    /** A copy's float32 or 16-bit tensor, its range [offset, offset + length) checked. */
    private static MemorySegment anyRange(String name, Tensor t, long offset, long length) {
        if (!(t instanceof HalfTensor b)) return Checks.range("copy", name, t, offset, length);
        if (offset < 0 || length < 0 || offset > b.size() - length)
            throw new IllegalArgumentException("copy: " + name + " range [" + offset + ", " + (offset + length)
                    + ") is outside its " + b.size() + " " + b.typeName() + " values");
        return b.segment();
    }

    /** A float32 copy of the {@code length} 16-bit or block values of {@code t} from {@code offset} (the caller closes it). */
    private CpuTensor widened(Tensor t, long offset, long length) {
        CpuTensor wide = new CpuTensor(length);
        copy(wide, 0, t, offset, length);
        return wide;
    }

    /**
     * The first {@code n} values of an element-wise input that may be stored as bfloat16 (then widened, exactly), as a
     * float32 tensor the caller closes: a bfloat16 pair of inputs (SwiGLU's gate and up) must come as a pair.
     */
    private CpuTensor widenedInput(String op, String name, Tensor t, long n) {
        if (!(t instanceof CpuBf16Tensor h))
            throw new IllegalArgumentException(op + ": gate and up must be both float32 or both bfloat16, " + name + " is " + t);
        if (h.size() < n) throw new IllegalArgumentException(op + ": " + name + " has " + h.size() + " values, needs n = " + n);
        return widened(h, 0, n);
    }

    /** Writes {@code out} through a float32 buffer when it is bfloat16: {@code kernel} fills the buffer it is given. */
    private void intoMaybeBf16(String op, Tensor out, long n, java.util.function.Consumer<MemorySegment> kernel) {
        if (out instanceof CpuBf16Tensor b) {
            if (b.size() < n) throw new IllegalArgumentException(op + ": out has " + b.size() + " values, needs " + n);
            try (CpuTensor tmp = new CpuTensor(n)) {
                kernel.accept(tmp.segment());
                convertingCopy(out, 0, tmp, 0, n);
            }
            return;
        }
        kernel.accept(Checks.atLeast(op, "out", out, n, "n"));
    }

    @Override
    public void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                     Tensor a, long aOffset, int lda, Tensor b, long bOffset, int ldb,
                     float beta, Tensor c, long cOffset, int ldc) {
        String op = "gemm";
        OpChecks.nonNegative(op, "m", m);
        OpChecks.nonNegative(op, "n", n);
        OpChecks.nonNegative(op, "k", k);
        int aRows = transA ? k : m, aCols = transA ? m : k;
        int bRows = transB ? n : k, bCols = transB ? k : n;
        boolean read = m > 0 && n > 0 && k > 0;
        checkMatrix(op, "a", a, aOffset, aRows, aCols, lda, read);
        checkMatrix(op, "b", b, bOffset, bRows, bCols, ldb, read);
        checkMatrix(op, "c", c, cOffset, m, n, ldc, true);
        if (narrowWeight(c))
            throw new IllegalArgumentException(op + ": c must be float32, got " + c);
        if (m == 0 || n == 0) return;
        // Narrow operands other than a transposed weight under a float32 a (for blocks, one whose rows start on block
        // boundaries) are widened (exactly) first.
        boolean aNarrow = narrowWeight(a), bNarrow = narrowWeight(b);
        boolean fast = !aNarrow && !transA && transB
                && (!(b instanceof CpuQ8Tensor) || Q8Gemm.aligned(bOffset, ldb) && k % Q8Blocks.BLOCK == 0)
                && (!(b instanceof CpuKQuantTensor bk) || KQuantGemm.aligned(bk.type(), bOffset, ldb) && k % bk.type().blockSize() == 0);
        if (read && (aNarrow || bNarrow && !fast)) {
            CpuTensor wa = aNarrow ? widened(a, aOffset, (long) (aRows - 1) * lda + aCols) : null;
            CpuTensor wb = bNarrow ? widened(b, bOffset, (long) (bRows - 1) * ldb + bCols) : null;
            try {
                gemm(transA, transB, m, n, k, alpha, wa != null ? wa : a, wa != null ? 0 : aOffset, lda,
                        wb != null ? wb : b, wb != null ? 0 : bOffset, ldb, beta, c, cOffset, ldc);
            } finally {
                if (wa != null) wa.close();
                if (wb != null) wb.close();
            }
            return;
        }
        MemorySegment as = Checks.segment(op, "a", a), cs = Checks.segment(op, "c", c);
        if (b instanceof CpuQ8Tensor w)
            Q8Gemm.run(pool(), m, n, k, alpha, as, aOffset, lda, w, bOffset, ldb, beta, cs, cOffset, ldc, null);
        else if (b instanceof CpuKQuantTensor w)
            KQuantGemm.run(pool(), m, n, k, alpha, as, aOffset, lda, w, bOffset, ldb, beta, cs, cOffset, ldc, null);
        else if (b instanceof HalfTensor w)
            HalfGemm.run(pool(), m, n, k, alpha, as, aOffset, lda, w.segment(), bOffset, ldb, w instanceof CpuF16Tensor, beta,
                    cs, cOffset, ldc, null);
        else
            ParallelGemm.sgemm(pool(), transA, transB, m, n, k, alpha, as, aOffset, lda, Checks.segment(op, "b", b), bOffset,
                    ldb, beta, cs, cOffset, ldc, null);
    }

    /**
     * A row-major [rows, cols] matrix with row stride ld at offset must fit inside t (when it is read at all); t is a
     * float32 tensor or, where the op reads one, a 16-bit weight.
     */
    private static void checkMatrix(String op, String name, Tensor t, long offset, int rows, int cols, int ld, boolean read) {
        boolean half = narrowWeight(t);
        if (!half) Checks.segment(op, name, t);
        if (ld < Math.max(1, cols))
            throw new IllegalArgumentException(op + ": ld" + name + " = " + ld + " is less than its " + cols + " columns");
        OpChecks.nonNegative(op, name + "Offset", offset);
        if (!read || rows == 0 || cols == 0) return;
        long end = offset + (long) (rows - 1) * ld + cols;
        if (end > t.size())
            throw new IllegalArgumentException(op + ": " + name + " has " + t.size() + (half ? " values" : " floats")
                    + ", needs offset + (rows-1)*ld + cols = " + offset + " + " + (rows - 1) + "*" + ld + " + " + cols + " = " + end);
    }

    @Override
    public void linear(Tensor y, Tensor x, Tensor w, Tensor bias, long rows, int in, int out) {
        linear(y, x, w, bias, rows, in, out, LINEAR_ROW_CHUNK);
    }

    /** {@link #linear} issuing at most {@code rowChunk} rows per product (small values let tests cover the split). */
    void linear(Tensor y, Tensor x, Tensor w, Tensor bias, long rows, int in, int out, long rowChunk) {
        String op = "linear";
        OpChecks.nonNegative(op, "rows", rows);
        OpChecks.positive(op, "in", in);
        OpChecks.positive(op, "out", out);
        if (y instanceof CpuBf16Tensor hy) {
            // Into bfloat16 (an activation kept narrow): the float32 result, rounded once.
            long n = OpChecks.product(op, rows, out);
            if (hy.size() < n) throw new IllegalArgumentException(op + ": y has " + hy.size() + " values, needs rows*out = " + n);
            try (CpuTensor wide = new CpuTensor(n)) {
                linear(wide, x, w, bias, rows, in, out, rowChunk);
                convertingCopy(hy, 0, wide, 0, n);
            }
            return;
        }
        if (x instanceof CpuBf16Tensor hx) {
            long n = OpChecks.product(op, rows, in);
            if (hx.size() < n) throw new IllegalArgumentException(op + ": x has " + hx.size() + " values, needs rows*in = " + n);
            try (CpuTensor wide = widened(hx, 0, n)) {
                linear(y, wide, w, bias, rows, in, out, rowChunk);
            }
            return;
        }
        MemorySegment xs = Checks.atLeast(op, "x", x, OpChecks.product(op, rows, in), "rows*in");
        MemorySegment ys = Checks.atLeast(op, "y", y, OpChecks.product(op, rows, out), "rows*out");
        MemorySegment bs = bias == null ? null : Checks.atLeast(op, "bias", bias, out, "out");
        WorkerPool p = pool();
        boolean narrowW = narrowWeight(w);
        if (narrowW && w.size() < (long) out * in)
            throw new IllegalArgumentException(op + ": w has " + w.size() + " values, needs out*in = " + (long) out * in);
        if (w instanceof CpuQ8Tensor && in % Q8Blocks.BLOCK != 0 || w instanceof CpuKQuantTensor wk && in % wk.type().blockSize() != 0) {
            // Rows that are not whole blocks: the kernels cannot read them in place.
            try (CpuTensor wide = widened(w, 0, (long) out * in)) {
                linear(y, x, wide, bias, rows, in, out, rowChunk);
            }
            return;
        }
        MemorySegment ws = w instanceof HalfTensor h ? h.segment() : narrowW ? null : Checks.atLeast(op, "w", w, (long) out * in, "out*in");
        for (long r0 = 0; r0 < rows; r0 += rowChunk) {
            int m = (int) Math.min(rowChunk, rows - r0);
            long xOffset = r0 * in, yOffset = r0 * out;
            ParallelGemm.Epilogue addBias = bs == null ? null
                    : (rowFrom, rowTo, colFrom, colTo) -> Elementwise.addBias(ys, yOffset, out, bs, rowFrom, rowTo, colFrom, colTo);
            if (w instanceof CpuQ8Tensor wq) Q8Gemm.run(p, m, out, in, 1f, xs, xOffset, in, wq, 0, in, 0f, ys, yOffset, out, addBias);
            else if (w instanceof CpuKQuantTensor wk)
                KQuantGemm.run(p, m, out, in, 1f, xs, xOffset, in, wk, 0, in, 0f, ys, yOffset, out, addBias);
            else if (w instanceof HalfTensor) HalfGemm.run(p, m, out, in, 1f, xs, xOffset, in, ws, 0, in, w instanceof CpuF16Tensor,
                    0f, ys, yOffset, out, addBias);
            else ParallelGemm.sgemm(p, false, true, m, out, in, 1f, xs, xOffset, in, ws, 0, in, 0f, ys, yOffset, out, addBias);
        }
    }

    @Override
    public void embedding(Tensor out, Tensor table, int[] ids, int dim) {
        String op = "embedding";
        OpChecks.positive(op, "dim", dim);
        if (ids == null) throw new IllegalArgumentException(op + ": ids is null");
        MemorySegment o = Checks.atLeast(op, "out", out, (long) ids.length * dim, "ids.length*dim");
        if (narrowWeight(table)) {
            OpChecks.ids(op, ids, table.size() / dim);
            pool().forRange(ids.length, RowKernels.rowsPerChunk(dim), (from, to) -> {
                for (long r = from; r < to; r++) widen(table, (long) ids[(int) r] * dim, o, r * dim * Float.BYTES, dim);
            });
            return;
        }
        MemorySegment t = Checks.segment(op, "table", table);
        long vocab = table.size() / dim;
        OpChecks.ids(op, ids, vocab);
        pool().forRange(ids.length, RowKernels.rowsPerChunk(dim), (from, to) -> {
            for (long r = from; r < to; r++)
                MemorySegment.copy(t, (long) ids[(int) r] * dim * Float.BYTES, o, r * dim * Float.BYTES, (long) dim * Float.BYTES);
        });
    }

    @Override
    public void rmsNorm(Tensor out, Tensor x, Tensor weight, long rows, int dim, float eps) {
        String op = "rmsNorm";
        OpChecks.nonNegative(op, "rows", rows);
        OpChecks.positive(op, "dim", dim);
        long n = OpChecks.product(op, rows, dim);
        MemorySegment xs = Checks.atLeast(op, "x", x, n, "rows*dim");
        MemorySegment ws = Checks.atLeast(op, "weight", weight, dim, "dim");
        intoMaybeBf16(op, out, n, os -> RowKernels.rmsNorm(pool(), os, xs, ws, rows, dim, eps));
    }

    @Override
    public RotaryTable rotaryTable(float[] positions, float[] invFreq, float attentionScale) {
        if (positions == null || invFreq == null) throw new IllegalArgumentException("rotaryTable: positions and invFreq must not be null");
        long size = (long) positions.length * invFreq.length;
        CpuTensor cos = new CpuTensor(size), sin = new CpuTensor(size);
        RowKernels.rotaryTable(pool(), cos.segment(), sin.segment(), positions, invFreq, attentionScale);
        return new RotaryTable(cos, sin, positions.length, invFreq.length);
    }

    @Override
    public void rotary(Tensor x, RotaryTable table, long rows, int heads, int headDim) {
        String op = "rotary";
        RotaryTable.check(op, table, rows, heads, headDim);
        int half = table.half();
        MemorySegment xs = Checks.atLeast(op, "x", x, OpChecks.product(op, rows, (long) heads * headDim), "rows*heads*headDim");
        MemorySegment c = Checks.atLeast(op, "table.cos", table.cos(), rows * half, "rows*half");
        MemorySegment s = Checks.atLeast(op, "table.sin", table.sin(), rows * half, "rows*half");
        if (half == 0) return;
        RowKernels.rotary(pool(), xs, c, s, rows, heads, headDim, half);
    }

    @Override
    public void attention(Tensor out, Tensor q, Tensor k, Tensor v, Tensor lse, AttentionShape shape) {
        String op = "attention";
        if (shape == null) throw new IllegalArgumentException(op + ": shape is null");
        if (shape.seqKv() > Integer.MAX_VALUE - AttentionWorkspace.KEYS)
            throw new IllegalArgumentException(op + ": seqKv " + shape.seqKv() + " is past this backend's int positions");
        long qRows = OpChecks.product(op, shape.batch(), shape.seqQ());
        long qFloats = OpChecks.product(op, qRows, (long) shape.heads() * shape.headDim());
        long kvFloats = kvValuesNeeded(op, shape);
        MemorySegment qs = Checks.atLeast(op, "q", q, qFloats, "batch*seqQ*heads*headDim");
        String kvFormula = shape.kvHeadMajor() ? "((batch*kvHeads-1)*kvRowsPerBatch + seqKv)*headDim"
                : "((batch-1)*kvRowsPerBatch + seqKv)*kvHeads*headDim";
        DType kvType = k instanceof CpuBf16Tensor ? DType.BF16 : DType.F32;
        if ((v instanceof CpuBf16Tensor ? DType.BF16 : DType.F32) != kvType)
            throw new IllegalArgumentException(op + ": k is " + k + " and v is " + v + "; keys and values must have one type");
        MemorySegment ks = kvAtLeast(op, "k", k, kvFloats, kvFormula);
        MemorySegment vs = kvAtLeast(op, "v", v, kvFloats, kvFormula);
        MemorySegment ls = lse == null ? null : Checks.atLeast(op, "lse", lse, qRows * shape.heads(), "batch*seqQ*heads");
        // A bfloat16 out (mixed precision's) gets the float32 result rounded once.
        intoMaybeBf16(op, out, qFloats, os -> Attention.run(pool(), new AttentionGeometry(shape, os, qs, ks, vs, ls, kvType)));
    }

    /** {@link AttentionShape#kvValuesNeeded}, with an error naming the op where it overflows a long. */
    private static long kvValuesNeeded(String op, AttentionShape shape) {
        try {
            return shape.kvValuesNeeded();
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException(op + ": the keys and values of " + shape + " number more than a long holds");
        }
    }

    /** Keys or values: a float32 tensor or a bfloat16 KV cache of at least {@code needed} values. */
    private static MemorySegment kvAtLeast(String op, String name, Tensor t, long needed, String formula) {
        if (!(t instanceof CpuBf16Tensor kv)) return Checks.atLeast(op, name, t, needed, formula);
        if (kv.size() < needed)
            throw new IllegalArgumentException(op + ": " + name + " has " + kv.size() + " values, needs " + formula + " = " + needed);
        return kv.segment();
    }

    @Override
    public void swiglu(Tensor out, Tensor gate, Tensor up, long n) {
        String op = "swiglu";
        OpChecks.nonNegative(op, "n", n);
        if (gate instanceof CpuBf16Tensor || up instanceof CpuBf16Tensor) {
            try (CpuTensor g = widenedInput(op, "gate", gate, n); CpuTensor u = widenedInput(op, "up", up, n)) {
                swiglu(out, g, u, n);
            }
            return;
        }
        MemorySegment g = Checks.atLeast(op, "gate", gate, n, "n");
        MemorySegment u = Checks.atLeast(op, "up", up, n, "n");
        intoMaybeBf16(op, out, n, o -> Elementwise.swiglu(pool(), o, g, u, n));
    }

    @Override
    public void addInPlace(Tensor y, Tensor x, long n) {
        String op = "addInPlace";
        OpChecks.nonNegative(op, "n", n);
        MemorySegment ys = Checks.atLeast(op, "y", y, n, "n");
        MemorySegment xs = Checks.atLeast(op, "x", x, n, "n");
        Elementwise.addInPlace(pool(), ys, xs, n);
    }

    @Override
    public double[] crossEntropy(Tensor logits, int[] targets, long rows, int vocab) {
        String op = "crossEntropy";
        OpChecks.nonNegative(op, "rows", rows);
        OpChecks.positive(op, "vocab", vocab);
        if (rows > Integer.MAX_VALUE - 8) throw new IllegalArgumentException(op + ": rows " + rows + " does not fit a double[]");
        if (targets == null || targets.length < rows)
            throw new IllegalArgumentException(op + ": targets has " + (targets == null ? "null" : targets.length + " entries") + ", needs rows = " + rows);
        for (int r = 0; r < rows; r++)
            if (targets[r] >= vocab)
                throw new IllegalArgumentException(op + ": targets[" + r + "] = " + targets[r] + " is not below vocab = " + vocab);
        MemorySegment ls = Checks.atLeast(op, "logits", logits, OpChecks.product(op, rows, vocab), "rows*vocab");
        return CrossEntropy.losses(pool(), ls, targets, rows, vocab);
    }

    @Override
    public void close() {
        closed = true;
        pool.close();
    }

    @Override
    public String toString() {
        return "CpuBackend[" + pool.threads() + " threads, " + VectorMath.F + "]";
    }

    // ---- Backward ops and the optimizer step ----

    @Override
    public void rmsNormBackward(Tensor dx, Tensor dWeight, Tensor dOut, Tensor x, Tensor weight, long rows, int dim, float eps) {
        String op = "rmsNormBackward";
        OpChecks.nonNegative(op, "rows", rows);
        OpChecks.positive(op, "dim", dim);
        long n = OpChecks.product(op, rows, dim);
        MemorySegment dxs = Checks.atLeast(op, "dx", dx, n, "rows*dim");
        MemorySegment dws = Checks.atLeast(op, "dWeight", dWeight, dim, "dim");
        MemorySegment dos = Checks.atLeast(op, "dOut", dOut, n, "rows*dim");
        MemorySegment xs = Checks.atLeast(op, "x", x, n, "rows*dim");
        MemorySegment ws = Checks.atLeast(op, "weight", weight, dim, "dim");
        RmsNormBackward.run(pool(), dxs, dws, dos, xs, ws, rows, dim, eps);
    }

    @Override
    public void rotaryBackward(Tensor d, Tensor rotated, RotaryTable table, float[] positions, double[] dInvFreq,
                               long rows, int heads, int headDim) {
        String op = "rotaryBackward";
        RotaryTable.check(op, table, rows, heads, headDim);
        int half = table.half();
        long n = OpChecks.product(op, rows, (long) heads * headDim);
        MemorySegment ds = Checks.atLeast(op, "d", d, n, "rows*heads*headDim");
        MemorySegment c = Checks.atLeast(op, "table.cos", table.cos(), rows * half, "rows*half");
        MemorySegment s = Checks.atLeast(op, "table.sin", table.sin(), rows * half, "rows*half");
        MemorySegment ys = null;
        if (dInvFreq != null) {
            if (dInvFreq.length != half)
                throw new IllegalArgumentException(op + ": dInvFreq has " + dInvFreq.length + " entries, needs table.half = " + half);
            if (positions == null || positions.length < rows)
                throw new IllegalArgumentException(op + ": positions has " + (positions == null ? "null" : positions.length + " entries")
                        + ", needs rows = " + rows);
            ys = Checks.atLeast(op, "rotated", rotated, n, "rows*heads*headDim");
        }
        if (half == 0) return;
        RotaryBackward.run(pool(), ds, ys, c, s, positions, dInvFreq, rows, heads, headDim, half);
    }

    @Override
    public void attentionBackward(Tensor dq, Tensor dk, Tensor dv, Tensor dOut, Tensor q, Tensor k, Tensor v,
                                  Tensor out, Tensor lse, AttentionShape shape) {
        String op = "attentionBackward";
        if (shape == null) throw new IllegalArgumentException(op + ": shape is null");
        if (shape.kvHeadMajor())
            throw new IllegalArgumentException(op + ": keys and values laid out head by head (a KV cache's layout) are not trained through");
        if (shape.seqKv() > Integer.MAX_VALUE - AttentionBackward.KEYS)
            throw new IllegalArgumentException(op + ": seqKv " + shape.seqKv() + " is past this backend's int positions");
        long qRows = OpChecks.product(op, shape.batch(), shape.seqQ());
        long rowStats = OpChecks.product(op, qRows, shape.heads());
        if (rowStats > Integer.MAX_VALUE - 8)
            throw new IllegalArgumentException(op + ": batch*seqQ*heads = " + rowStats + " is past this backend's limit");
        long qFloats = OpChecks.product(op, qRows, (long) shape.heads() * shape.headDim());
        long kvRows = OpChecks.product(op, shape.batch() - 1L, shape.kvRowsPerBatch()) + shape.seqKv();
        long kvFloats = OpChecks.product(op, kvRows, (long) shape.kvHeads() * shape.headDim());
        String qFormula = "batch*seqQ*heads*headDim", kvFormula = "((batch-1)*kvRowsPerBatch + seqKv)*kvHeads*headDim";
        MemorySegment dqs = Checks.atLeast(op, "dq", dq, qFloats, qFormula);
        MemorySegment dks = Checks.atLeast(op, "dk", dk, kvFloats, kvFormula);
        MemorySegment dvs = Checks.atLeast(op, "dv", dv, kvFloats, kvFormula);
        MemorySegment dos = Checks.atLeast(op, "dOut", dOut, qFloats, qFormula);
        MemorySegment qs = Checks.atLeast(op, "q", q, qFloats, qFormula);
        MemorySegment ks = Checks.atLeast(op, "k", k, kvFloats, kvFormula);
        MemorySegment vs = Checks.atLeast(op, "v", v, kvFloats, kvFormula);
        MemorySegment ls = Checks.atLeast(op, "lse", lse, rowStats, "batch*seqQ*heads");
        // The three outputs are written while every input is still being read.
        Tensor[] outputs = {dq, dk, dv}, all = {dq, dk, dv, dOut, q, k, v, out, lse};
        String[] names = {"dq", "dk", "dv", "dOut", "q", "k", "v", "out", "lse"};
        for (int i = 0; i < outputs.length; i++)
            for (int j = 0; j < all.length; j++)
                if (i != j && outputs[i] == all[j])
                    throw new IllegalArgumentException(op + ": " + names[i] + " and " + names[j] + " are the same tensor");
        // A bfloat16 out (the forward's in mixed precision) is read widened.
        if (out instanceof CpuBf16Tensor b) {
            if (b.size() < qFloats) throw new IllegalArgumentException(op + ": out has " + b.size() + " values, needs "
                    + qFormula + " = " + qFloats);
            try (CpuTensor wide = widened(b, 0, qFloats)) {
                AttentionBackward.run(pool(), shape, dqs, dks, dvs, dos, qs, ks, vs, wide.segment(), ls);
            }
            return;
        }
        MemorySegment os = Checks.atLeast(op, "out", out, qFloats, qFormula);
        AttentionBackward.run(pool(), shape, dqs, dks, dvs, dos, qs, ks, vs, os, ls);
    }

    @Override
    public void swigluBackward(Tensor dGate, Tensor dUp, Tensor dOut, Tensor gate, Tensor up, long n) {
        String op = "swigluBackward";
        OpChecks.nonNegative(op, "n", n);
        if (dGate == dUp) throw new IllegalArgumentException(op + ": dGate and dUp are the same tensor");
        if (gate instanceof CpuBf16Tensor || up instanceof CpuBf16Tensor) {
            try (CpuTensor g = widenedInput(op, "gate", gate, n); CpuTensor u = widenedInput(op, "up", up, n)) {
                swigluBackward(dGate, dUp, dOut, g, u, n);
            }
            return;
        }
        if (dGate instanceof CpuBf16Tensor || dUp instanceof CpuBf16Tensor) {
            if (!(dGate instanceof CpuBf16Tensor && dUp instanceof CpuBf16Tensor))
                throw new IllegalArgumentException(op + ": dGate and dUp must be both float32 or both bfloat16");
            for (Tensor t : new Tensor[] {dGate, dUp})
                if (t.size() < n) throw new IllegalArgumentException(op + ": an output has " + t.size() + " values, needs n = " + n);
            if (n == 0) return;
            try (CpuTensor g = new CpuTensor(n); CpuTensor u = new CpuTensor(n)) {
                swigluBackward(g, u, dOut, gate, up, n);
                convertingCopy(dGate, 0, g, 0, n);
                convertingCopy(dUp, 0, u, 0, n);
            }
            return;
        }
        MemorySegment dg = Checks.atLeast(op, "dGate", dGate, n, "n");
        MemorySegment du = Checks.atLeast(op, "dUp", dUp, n, "n");
        MemorySegment dy = Checks.atLeast(op, "dOut", dOut, n, "n");
        MemorySegment g = Checks.atLeast(op, "gate", gate, n, "n");
        MemorySegment u = Checks.atLeast(op, "up", up, n, "n");
        if (dg.equals(du)) throw new IllegalArgumentException(op + ": dGate and dUp are the same tensor");
        SwigluBackward.run(pool(), dg, du, dy, g, u, n);
    }

    @Override
    public void embeddingBackward(Tensor dTable, Tensor dOut, int[] ids, int dim) {
        String op = "embeddingBackward";
        OpChecks.positive(op, "dim", dim);
        if (ids == null) throw new IllegalArgumentException(op + ": ids is null");
        MemorySegment dy = Checks.atLeast(op, "dOut", dOut, (long) ids.length * dim, "ids.length*dim");
        MemorySegment t = Checks.segment(op, "dTable", dTable);
        long vocab = dTable.size() / dim;
        OpChecks.ids(op, ids, vocab);
        if (ids.length == 0) return;
        EmbeddingBackward.run(pool(), t, dy, ids, dim, vocab);
    }

    @Override
    public double[] crossEntropyBackward(Tensor logits, int[] targets, long rows, int vocab, float gradScale) {
        String op = "crossEntropyBackward";
        OpChecks.nonNegative(op, "rows", rows);
        OpChecks.positive(op, "vocab", vocab);
        if (rows > Integer.MAX_VALUE - 8) throw new IllegalArgumentException(op + ": rows " + rows + " does not fit a double[]");
        if (targets == null || targets.length < rows)
            throw new IllegalArgumentException(op + ": targets has " + (targets == null ? "null" : targets.length + " entries") + ", needs rows = " + rows);
        for (int r = 0; r < rows; r++)
            if (targets[r] >= vocab)
                throw new IllegalArgumentException(op + ": targets[" + r + "] = " + targets[r] + " is not below vocab = " + vocab);
        MemorySegment ls = Checks.atLeast(op, "logits", logits, OpChecks.product(op, rows, vocab), "rows*vocab");
        return CrossEntropyBackward.run(pool(), ls, targets, rows, vocab, gradScale);
    }

    @Override
    public void sumRows(Tensor out, Tensor x, long rows, int cols) {
        String op = "sumRows";
        OpChecks.nonNegative(op, "rows", rows);
        OpChecks.positive(op, "cols", cols);
        MemorySegment xs = Checks.atLeast(op, "x", x, OpChecks.product(op, rows, cols), "rows*cols");
        MemorySegment os = Checks.atLeast(op, "out", out, cols, "cols");
        if (rows == 0) return;
        Reductions.sumRows(pool(), os, xs, rows, cols);
    }

    @Override
    public void scale(Tensor y, float a, long n) {
        String op = "scale";
        OpChecks.nonNegative(op, "n", n);
        MemorySegment ys = Checks.atLeast(op, "y", y, n, "n");
        Reductions.scale(pool(), ys, a, n);
    }

    @Override
    public double sumOfSquares(Tensor x, long n) {
        String op = "sumOfSquares";
        OpChecks.nonNegative(op, "n", n);
        MemorySegment xs = Checks.atLeast(op, "x", x, n, "n");
        return Reductions.sumOfSquares(pool(), xs, n);
    }

    @Override
    public void adamW(Tensor param, Tensor grad, Tensor m, Tensor v, long n, float lr, float beta1, float beta2, float eps,
                      float weightDecay, float gradScale, long step) {
        String op = "adamW";
        OpChecks.nonNegative(op, "n", n);
        OpChecks.positive(op, "step", step);
        if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
            throw new IllegalArgumentException(op + ": beta1 and beta2 must be in [0, 1), got " + beta1 + " and " + beta2);
        MemorySegment ps = Checks.atLeast(op, "param", param, n, "n");
        MemorySegment gs = Checks.atLeast(op, "grad", grad, n, "n");
        MemorySegment ms = Checks.atLeast(op, "m", m, n, "n");
        MemorySegment vs = Checks.atLeast(op, "v", v, n, "n");
        AdamW.step(pool(), ps, gs, ms, vs, n, lr, beta1, beta2, eps, weightDecay, gradScale, step);
    }
}
