package dev.ropeway.tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/**
 * Measures the CPU backend's GEMM and attention throughput in one run.
 *
 * <p>GEMM: {@link CpuBackend#linear} (or {@link CpuBackend#gemm} for square shapes) against one plain
 * {@code cblas_sgemm} downcall on the same buffers with OpenBLAS's own threads (as many as the backend has).
 * Attention: causal self-attention, counted as 4 * S^2 * D / 2 flops per head (two S x S x D products, half of
 * them masked away), optionally against the per-tile-sgemm design in {@link TileSgemmAttention}. Attention backward:
 * training shapes, the backward counted as 2.5 times the forward's flops (five products instead of two).
 *
 * <p>Run: {@code java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -cp ...
 * dev.ropeway.tensor.KernelBenchmark [--threads N] [--quick] [--only CASE]}, CASE one of {@link #CASES}.
 */
public final class KernelBenchmark {
    /** One GEMM shape: C[m, n] from A[m, k] and B (stored [n, k] for linear, [k, n] for gemm). */
    public record GemmResult(String label, int m, int n, int k, double backendGflops, double directGflops) {}

    /** One attention shape; {@code tileSgemmGflops} is NaN when the comparison was not run. */
    public record AttentionResult(long seq, int heads, int headDim, double gflops, double tileSgemmGflops) {}

    /** One training-shape attention: forward (with lse) and backward GFLOP/s, measured in the same run. */
    public record AttentionBackwardResult(int batch, long seq, int heads, int headDim, double forwardGflops,
                                          double backwardGflops) {}

    /** One element-wise kernel: time per call and the bytes it reads and writes per second. */
    public record KernelResult(String name, double millis, double gigabytesPerSecond) {}

    /** Nanoseconds per call of a tiny sgemm, plain and critical downcall. */
    public record CallOverhead(int size, double plainNanos, double criticalNanos) {}

    /** The parts of {@link #main}, each selectable with {@code --only}. */
    public static final List<String> CASES = List.of("gemm", "elementwise", "attention", "attention-backward", "decode-attention",
            "weights");

    /**
     * One {@code linear} call with its weight matrix held as {@code type} ("f32", "bf16", "f16", "q8_0", "q4_k" or
     * "q6_k"): milliseconds per call, weight bytes per second (as held).
     */
    public record WeightsResult(String type, int rows, int out, int in, double millis, double gigabytesPerSecond) {}

    /** One decode-attention shape: a query per head over {@code keys} cached keys, per layer and as cache bytes read per second. */
    public record DecodeAttentionResult(int heads, int kvHeads, int headDim, DType cache, int keys, double millisPerLayer,
                                        double gigabytesPerSecond) {}

    private KernelBenchmark() {}

    /**
     * Times one product through the backend ({@code linear} when {@code asLinear}, else {@code gemm}) and through
     * a direct multi-threaded OpenBLAS call. Leaves OpenBLAS single-threaded, as the backend expects.
     */
    public static GemmResult gemm(CpuBackend cpu, String label, int m, int n, int k, boolean asLinear, double warmupSeconds, int samples) {
        Random rnd = new Random(42);
        try (CpuTensor a = cpu.upload(random(rnd, (long) m * k)); CpuTensor b = cpu.upload(random(rnd, (long) n * k));
             CpuTensor c = cpu.allocate((long) m * n)) {
            int threads = cpu.threads();
            Runnable backend = asLinear
                    ? () -> cpu.linear(c, a, b, null, m, k, n)
                    : () -> cpu.gemm(false, false, m, n, k, 1f, a, 0, k, b, 0, n, 0f, c, 0, n);
            Runnable direct = () -> {
                OpenBlas.setThreads(threads);
                OpenBlas.sgemm(false, asLinear, m, n, k, 1f, a.segment(), k, b.segment(), asLinear ? k : n, 0f, c.segment(), n);
                OpenBlas.setThreads(1);
            };
            double[] t = BenchTiming.medians(backend, direct, warmupSeconds, samples);
            OpenBlas.setThreads(1);
            double flops = 2.0 * m * n * k;
            return new GemmResult(label, m, n, k, flops / t[0] / 1e9, flops / t[1] / 1e9);
        }
    }

    /** Times causal self-attention (batch 1, no grouping) through the backend and, if asked, the sgemm-tile design. */
    public static AttentionResult attention(CpuBackend cpu, int seq, int heads, int headDim, boolean compareSgemmTiles,
                                            double warmupSeconds, int samples) {
        AttentionShape shape = AttentionShape.selfAttention(1, seq, heads, heads, headDim);
        long n = (long) seq * heads * headDim;
        Random rnd = new Random(7);
        try (CpuTensor q = cpu.upload(random(rnd, n)); CpuTensor k = cpu.upload(random(rnd, n));
             CpuTensor v = cpu.upload(random(rnd, n)); CpuTensor out = cpu.allocate(n)) {
            Runnable ours = () -> cpu.attention(out, q, k, v, null, shape);
            AttentionGeometry g = new AttentionGeometry(shape, out.segment(), q.segment(), k.segment(), v.segment(), null);
            Runnable tiles = compareSgemmTiles ? () -> TileSgemmAttention.run(cpu.workerPool(), g) : null;
            double[] t = BenchTiming.medians(ours, tiles, warmupSeconds, samples);
            double flops = 2.0 * seq * (double) seq * headDim * heads;
            return new AttentionResult(seq, heads, headDim, flops / t[0] / 1e9, flops / t[1] / 1e9);
        }
    }

    /**
     * Times causal self-attention forward (writing lse, as training does) and {@link CpuBackend#attentionBackward} on
     * {@code batch} sequences. The forward counts 2 * S^2 * D flops per head and sequence (two S x S x D products,
     * half masked), the backward 2.5 times that (five such products).
     */
    public static AttentionBackwardResult attentionBackward(CpuBackend cpu, int batch, int seq, int heads, int headDim,
                                                            double warmupSeconds, int samples) {
        AttentionShape shape = AttentionShape.selfAttention(batch, seq, heads, heads, headDim);
        long n = (long) batch * seq * heads * headDim;
        Random rnd = new Random(11);
        try (CpuTensor q = cpu.upload(random(rnd, n)); CpuTensor k = cpu.upload(random(rnd, n));
             CpuTensor v = cpu.upload(random(rnd, n)); CpuTensor out = cpu.allocate(n);
             CpuTensor lse = cpu.allocate((long) batch * seq * heads); CpuTensor dOut = cpu.upload(random(rnd, n));
             CpuTensor dq = cpu.allocate(n); CpuTensor dk = cpu.allocate(n); CpuTensor dv = cpu.allocate(n)) {
            cpu.attention(out, q, k, v, lse, shape);
            double[] t = BenchTiming.medians(() -> cpu.attention(out, q, k, v, lse, shape),
                    () -> cpu.attentionBackward(dq, dk, dv, dOut, q, k, v, out, lse, shape), warmupSeconds, samples);
            double flops = 2.0 * batch * seq * (double) seq * headDim * heads;
            return new AttentionBackwardResult(batch, seq, heads, headDim, flops / t[0] / 1e9, 2.5 * flops / t[1] / 1e9);
        }
    }

    /**
     * Times the Vector API kernels at Llama-like sizes: {@code rows} tokens of width 4096 (rmsNorm, rotary with 32
     * heads of 128), an MLP of 11008 (swiglu), a 128256-entry vocabulary on 64 rows (crossEntropy) and a bf16
     * upload of 4096 x 4096 weights.
     */
    public static List<KernelResult> elementwise(CpuBackend cpu, int rows, double warmupSeconds, int samples) {
        List<KernelResult> results = new ArrayList<>();
        Random rnd = new Random(3);
        int dim = 4096, hidden = 11008, vocab = 128256, logitRows = 64;
        try (CpuTensor x = cpu.upload(random(rnd, (long) rows * dim)); CpuTensor w = cpu.upload(random(rnd, dim));
             CpuTensor out = cpu.allocate((long) rows * dim);
             CpuTensor gate = cpu.upload(random(rnd, (long) rows * hidden)); CpuTensor up = cpu.upload(random(rnd, (long) rows * hidden));
             CpuTensor act = cpu.allocate((long) rows * hidden); CpuTensor logits = cpu.upload(random(rnd, (long) logitRows * vocab))) {
            float[] positions = new float[rows], invFreq = new float[64];
            for (int i = 0; i < rows; i++) positions[i] = i;
            for (int j = 0; j < 64; j++) invFreq[j] = (float) Math.pow(500000, -j / 64.0);
            int[] targets = new int[logitRows];
            for (int i = 0; i < logitRows; i++) targets[i] = rnd.nextInt(vocab);
            try (RotaryTable table = cpu.rotaryTable(positions, invFreq, 1f); Arena arena = Arena.ofShared()) {
                MemorySegment bf16 = arena.allocate(2L * dim * dim);
                results.add(time("rmsNorm", () -> cpu.rmsNorm(out, x, w, rows, dim, 1e-5f), 3.0 * rows * dim * 4, warmupSeconds, samples));
                results.add(time("rotary", () -> cpu.rotary(out, table, rows, 32, 128), 3.0 * rows * dim * 4, warmupSeconds, samples));
                results.add(time("swiglu", () -> cpu.swiglu(act, gate, up, (long) rows * hidden), 3.0 * rows * hidden * 4, warmupSeconds, samples));
                results.add(time("addInPlace", () -> cpu.addInPlace(out, x, (long) rows * dim), 3.0 * rows * dim * 4, warmupSeconds, samples));
                results.add(time("crossEntropy", () -> cpu.crossEntropy(logits, targets, logitRows, vocab), 4.0 * logitRows * vocab, warmupSeconds, samples));
                results.add(time("upload bf16", () -> cpu.upload(bf16, DType.BF16, (long) dim * dim).close(), 6.0 * dim * dim, warmupSeconds, samples));
            }
        }
        return results;
    }

    private static KernelResult time(String name, Runnable op, double bytes, double warmupSeconds, int samples) {
        double seconds = BenchTiming.medians(op, null, warmupSeconds, samples)[0];
        return new KernelResult(name, seconds * 1e3, bytes / seconds / 1e9);
    }

    /** Per-call cost of a {@code size}^3 sgemm through a plain and through a critical downcall. */
    public static CallOverhead sgemmCallOverhead(int size, double warmupSeconds, int samples) {
        try (Arena arena = Arena.ofConfined()) {
            long bytes = (long) size * size * Float.BYTES;
            MemorySegment a = arena.allocate(bytes, 64), b = arena.allocate(bytes, 64), c = arena.allocate(bytes, 64);
            for (long i = 0; i < (long) size * size; i++) {
                a.setAtIndex(JAVA_FLOAT, i, 1f);
                b.setAtIndex(JAVA_FLOAT, i, 0.5f);
            }
            OpenBlas.setThreads(1);
            double[] t = BenchTiming.medians(
                    () -> OpenBlas.sgemm(false, true, size, size, size, 1f, a, size, b, size, 0f, c, size),
                    () -> OpenBlas.sgemmCritical(false, true, size, size, size, 1f, a, size, b, size, 0f, c, size),
                    warmupSeconds, samples);
            return new CallOverhead(size, t[0] * 1e9, t[1] * 1e9);
        }
    }

    /**
     * Decode-step attention (one query per head, {@link DecodeAttention}) over {@code layers} separate caches of
     * {@code keys} keys, as a model's decode step reads them: one layer after another, so a long cache comes from
     * memory, not from the CPU's caches. Random keys and values, stored as {@code cache} (F32 or BF16).
     */
    public static DecodeAttentionResult decodeAttention(int threads, int heads, int kvHeads, int headDim, DType cache,
                                                        int keys, int layers, double warmupSeconds, int samples) {
        Random rnd = new Random(7);
        long n = (long) keys * kvHeads * headDim;
        try (CpuBackend cpu = new CpuBackend(threads, cache)) {
            Tensor[] k = new Tensor[layers], v = new Tensor[layers];
            try (CpuTensor q = cpu.upload(random(rnd, (long) heads * headDim)); CpuTensor out = cpu.allocate((long) heads * headDim)) {
                for (int l = 0; l < layers; l++) {
                    k[l] = cpu.allocateKv(n);
                    v[l] = cpu.allocateKv(n);
                    try (CpuTensor x = cpu.upload(random(rnd, n))) {
                        cpu.copy(k[l], 0, x, 0, n);
                    }
                    try (CpuTensor x = cpu.upload(random(rnd, n))) {
                        cpu.copy(v[l], 0, x, 0, n);
                    }
                }
                // In the backend's cache layout (head by head by default); the values are random either way.
                AttentionShape shape = new AttentionShape(1, 1, keys, keys, keys - 1, heads, kvHeads, headDim,
                        (float) (1 / Math.sqrt(headDim))).withKvHeadMajor(cpu.kvHeadMajor());
                double seconds = BenchTiming.medians(() -> {
                    for (int l = 0; l < layers; l++) cpu.attention(out, q, k[l], v[l], null, shape);
                }, null, warmupSeconds, samples)[0];
                double bytes = 2.0 * layers * n * cache.bytes();
                return new DecodeAttentionResult(heads, kvHeads, headDim, cache, keys, seconds * 1e3 / layers, bytes / seconds / 1e9);
            } finally {
                for (int l = 0; l < layers; l++) {
                    if (k[l] != null) k[l].close();
                    if (v[l] != null) v[l].close();
                }
            }
        }
    }

    /** The block types {@link #weights} times, beside the float ones and Q8_0. */
    private static final List<DType> BLOCK_TYPES = List.of(DType.Q2_K, DType.Q3_K, DType.Q4_K, DType.Q5_K, DType.Q6_K,
            DType.IQ4_XS, DType.Q4_0, DType.Q4_1, DType.Q5_0, DType.Q5_1, DType.IQ4_NL, DType.IQ2_XXS, DType.IQ2_XS,
            DType.IQ2_S, DType.IQ3_XXS, DType.IQ3_S, DType.IQ1_S, DType.IQ1_M, DType.TQ1_0, DType.TQ2_0);

    /**
     * Times {@code linear} of {@code rows} rows through an [out, in] weight matrix held as float32, bfloat16, float16 and
     * Q8_0 (one set of float16 values; the bfloat16 and Q8_0 copies round them), and in each of {@link #BLOCK_TYPES}
     * (random blocks with float16 factors around 0.01: the kernels' speed does not depend on the values), sampled in turn.
     */
    public static List<WeightsResult> weights(CpuBackend cpu, int rows, int out, int in, double warmupSeconds, int samples) {
        return weights(cpu, rows, out, in, warmupSeconds, samples, null);
    }

    /** The names {@link #weights} gives its types: f32, bf16, f16, q8_0 and the block types in lower case. */
    public static List<String> weightTypes() {
        List<String> names = new ArrayList<>(List.of("f32", "bf16", "f16", "q8_0"));
        for (DType type : BLOCK_TYPES) names.add(type.name().toLowerCase(java.util.Locale.ROOT));
        return names;
    }

    /**
     * {@link #weights} for float32 and the types named in {@code only} ({@link #weightTypes()}; null: all). A process
     * that has run several types' kernels may run each a little slower than one that ran only its own (the JIT compiles
     * shared code for every type it has seen), as a model with two or three types does.
     */
    public static List<WeightsResult> weights(CpuBackend cpu, int rows, int out, int in, double warmupSeconds, int samples,
                                              java.util.Set<String> only) {
        Random rnd = new Random(5);
        long count = (long) out * in;
        java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofConfined();
        java.lang.foreign.MemorySegment f16 = arena.allocate(2 * count), bf16 = arena.allocate(2 * count);
        for (long i = 0; i < count; i++) {
            short h = Float.floatToFloat16((float) (rnd.nextGaussian() * 0.02));
            f16.setAtIndex(java.lang.foreign.ValueLayout.JAVA_SHORT, i, h);
            bf16.setAtIndex(java.lang.foreign.ValueLayout.JAVA_SHORT, i, Bfloat16.round(Float.float16ToFloat(h)));
        }
        List<WeightsResult> results = new ArrayList<>();
        List<String> names = new ArrayList<>(List.of("f32", "bf16", "f16", "q8_0"));
        List<Double> bytesPerWeight = new ArrayList<>(List.of(4.0, 2.0, 2.0, 1 + 4.0 / Q8Blocks.BLOCK));
        List<Tensor> held = new ArrayList<>();
        java.util.function.Predicate<String> wanted = name -> only == null || name.equals("f32") || only.contains(name);
        try (arena; Tensor x = cpu.upload(random(rnd, (long) rows * in)); Tensor y = cpu.allocate((long) rows * out);
             CpuBackend quantiser = new CpuBackend(1, DType.F32, CpuBackend.Weights.Q8_0)) {
            held.add(cpu.upload(f16, DType.F16, count));
            held.add(cpu.uploadWeights(bf16, DType.BF16, count));
            held.add(cpu.uploadWeights(f16, DType.F16, count));
            held.add(quantiser.uploadWeights(f16, DType.F16, out, in));
            if (!(held.get(1) instanceof CpuBf16Tensor) || !(held.get(2) instanceof CpuF16Tensor) || !(held.get(3) instanceof CpuQ8Tensor))
                throw new IllegalStateException("the backend must keep 16-bit weights as they are (--cpu-weights auto)");
            for (DType type : BLOCK_TYPES) {
                // The 256-value blocks (Q4_K ...) need rows of whole 256s; the small ones (Q4_0 ...) whole 32s.
                if (!wanted.test(type.name().toLowerCase(java.util.Locale.ROOT)) || in % type.blockSize() != 0) continue;
                Tensor w = cpu.uploadWeights(kQuantBlocks(arena, rnd, type, count), type, out, in);
                held.add(w);
                if (!(w instanceof CpuKQuantTensor))
                    throw new IllegalStateException("the backend must keep " + type + " blocks as they are (--cpu-weights auto)");
                names.add(type.name().toLowerCase(java.util.Locale.ROOT));
                bytesPerWeight.add((double) type.blockBytes() / type.blockSize());
            }
            for (int i = 0; i < held.size(); i++) {
                if (!wanted.test(names.get(i))) continue;
                Tensor w = held.get(i);
                double seconds = BenchTiming.medians(() -> cpu.linear(y, x, w, null, rows, in, out), null, warmupSeconds,
                        samples)[0];
                results.add(new WeightsResult(names.get(i), rows, out, in, seconds * 1e3, count * bytesPerWeight.get(i) / seconds / 1e9));
            }
        } finally {
            for (Tensor w : held) w.close();
        }
        return results;
    }

    /** {@code count} values of random blocks of {@code type}: random bytes, the float16 factors d (and dmin or m) near 0.01. */
    private static MemorySegment kQuantBlocks(Arena arena, Random rnd, DType type, long count) {
        MemorySegment s = arena.allocate(type.byteSize(count));
        byte[] block = new byte[type.blockBytes()];
        java.lang.foreign.ValueLayout.OfShort half = java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (long b = 0; b < count / type.blockSize(); b++) {
            rnd.nextBytes(block);
            long p = b * type.blockBytes();
            MemorySegment.copy(block, 0, s, java.lang.foreign.ValueLayout.JAVA_BYTE, p, block.length);
            short d = Float.floatToFloat16((float) (0.005 + 0.01 * rnd.nextDouble()));
            if (type == DType.Q6_K) s.set(half, p + 208, d);
            else if (type == DType.Q3_K) s.set(half, p + 108, d);
            else if (type == DType.Q2_K) {
                s.set(half, p + 80, d);
                s.set(half, p + 82, d);
            } else if (type == DType.TQ1_0 || type == DType.TQ2_0) {
                s.set(half, p + (type == DType.TQ1_0 ? 52 : 64), d);
            } else if (type == DType.IQ1_M) {
                for (int i = 0; i < 4; i++) {
                    long at = p + 49 + 2 * i;
                    s.set(java.lang.foreign.ValueLayout.JAVA_BYTE, at,
                            (byte) (s.get(java.lang.foreign.ValueLayout.JAVA_BYTE, at) & 0x0F | (d >> 4 * i & 0xF) << 4));
                }
            } else {
                s.set(half, p, d);
                s.set(half, p + 2, d);
            }
        }
        return s;
    }

    /** A line describing the machine and the settings the figures depend on. */
    public static String machine(CpuBackend cpu) {
        return "cpus=" + Runtime.getRuntime().availableProcessors() + " threads=" + cpu.threads()
                + " species=" + VectorMath.F + " java=" + System.getProperty("java.vm.version")
                + " openblas=[" + OpenBlas.config() + "] core=" + OpenBlas.coreName()
                + " OPENBLAS_CORETYPE=" + System.getenv("OPENBLAS_CORETYPE");
    }

    public static void main(String[] args) {
        int threads = Runtime.getRuntime().availableProcessors();
        boolean quick = false;
        String only = null;
        java.util.Set<String> types = null;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--threads" -> threads = Integer.parseInt(args[++i]);
                case "--quick" -> quick = true;
                case "--only" -> only = args[++i];
                case "--weights" -> types = java.util.Set.of(args[++i].toLowerCase(java.util.Locale.ROOT).split(","));
                default -> throw new IllegalArgumentException("unknown argument " + args[i]
                        + " (use --threads N, --quick, --only " + String.join("|", CASES) + ", --weights t1,t2)");
            }
        }
        if (types != null)
            for (String t : types)
                if (!weightTypes().contains(t))
                    throw new IllegalArgumentException("unknown weight type " + t + " (one of " + String.join(", ", weightTypes()) + ")");
        if (only != null && !CASES.contains(only))
            throw new IllegalArgumentException("unknown case " + only + " (one of " + String.join(", ", CASES) + ")");
        double warmup = quick ? 0.2 : 1.0;
        int samples = quick ? 3 : 7;
        try (CpuBackend cpu = new CpuBackend(threads)) {
            System.out.println(machine(cpu));
            warmUpCompiler(cpu, types);
            System.out.println("median of " + samples + " samples; direct = one cblas_sgemm call with " + threads + " OpenBLAS threads");
            if (only == null || only.equals("gemm")) {
                for (CallOverhead o : List.of(sgemmCallOverhead(8, warmup, samples), sgemmCallOverhead(32, warmup, samples)))
                    System.out.printf("sgemm %d^3 per call: plain downcall %.0f ns, critical %.0f ns%n", o.size(), o.plainNanos(), o.criticalNanos());
                List<GemmResult> gemms = new ArrayList<>();
                for (int s : new int[]{512, 1024, 2048}) gemms.add(gemm(cpu, "square gemm", s, s, s, false, warmup, samples));
                gemms.add(gemm(cpu, "linear", 1024, 1024, 256, true, warmup, samples));
                gemms.add(gemm(cpu, "linear", 8192, 768, 256, true, warmup, samples));
                gemms.add(gemm(cpu, "linear", 2048, 2048, 2048, true, warmup, samples));
                gemms.add(gemm(cpu, "linear decode", 1, 4096, 4096, true, warmup, samples));
                System.out.println("GEMM                  m     n     k   backend GFLOP/s   direct GFLOP/s   ratio");
                for (GemmResult g : gemms)
                    System.out.printf("%-16s %6d %5d %5d   %14.1f   %14.1f   %5.2f%n", g.label(), g.m(), g.n(), g.k(),
                            g.backendGflops(), g.directGflops(), g.backendGflops() / g.directGflops());
            }
            if (only == null || only.equals("elementwise")) {
                System.out.println("kernel (1024 tokens)       ms     GB/s");
                for (KernelResult k : elementwise(cpu, 1024, warmup, samples))
                    System.out.printf("%-20s %9.3f %8.1f%n", k.name(), k.millis(), k.gigabytesPerSecond());
            }
            if (only == null || only.equals("attention")) {
                System.out.println("attention (causal)    seq heads dim   GFLOP/s   per-tile sgemm GFLOP/s");
                for (int dim : new int[]{32, 64})
                    for (int seq : new int[]{1024, 4096, 8192}) {
                        AttentionResult r = attention(cpu, seq, 8, dim, seq >= 4096 && !quick, warmup, quick ? 3 : 5);
                        System.out.printf("%-18s %6d %5d %3d   %7.1f   %s%n", "", r.seq(), r.heads(), r.headDim(), r.gflops(),
                                Double.isNaN(r.tileSgemmGflops()) ? "-" : String.format("%.1f", r.tileSgemmGflops()));
                    }
            }
            if (only == null || only.equals("attention-backward")) {
                System.out.println("attention-backward (causal, training)  batch   seq heads dim   forward GFLOP/s   backward GFLOP/s   ratio");
                int[][] shapes = {{8, 256}, {8, 1024}, {1, 4096}};
                for (int[] bs : shapes) {
                    AttentionBackwardResult r = attentionBackward(cpu, bs[0], bs[1], 8, 64, warmup, quick ? 3 : 5);
                    System.out.printf("%-36s %6d %5d %5d %3d   %15.1f   %16.1f   %5.2f%n", "", r.batch(), r.seq(), r.heads(),
                            r.headDim(), r.forwardGflops(), r.backwardGflops(), r.backwardGflops() / r.forwardGflops());
                }
            }
            if (only == null || only.equals("decode-attention")) {
                System.out.println("decode-attention (8 layers' caches, one query per head)  heads kv dim cache    keys   ms/layer   GB/s");
                int[][] shapes = {{6, 6}, {32, 8}, {14, 2}};
                for (int[] hk : shapes)
                    for (DType type : new DType[]{DType.F32, DType.BF16})
                        for (int keys : quick ? new int[]{1024, 4096} : new int[]{1024, 4096, 16384}) {
                            DecodeAttentionResult r = decodeAttention(threads, hk[0], hk[1], 64, type, keys, 8, warmup, quick ? 5 : 15);
                            System.out.printf("%-55s %5d %2d %3d %-5s %7d   %8.3f   %4.1f%n", "", r.heads(), r.kvHeads(), r.headDim(),
                                    r.cache().name().toLowerCase(java.util.Locale.ROOT), r.keys(), r.millisPerLayer(), r.gigabytesPerSecond());
                        }
            }
            if (only == null || only.equals("weights")) {
                System.out.println("linear by weight type (rows x [out, in])   rows   out    in  type         ms   weight GB/s   vs f32");
                int[][] shapes = quick ? new int[][] {{1, 2048, 2048}, {64, 2048, 2048}}
                        : new int[][] {{1, 4096, 4096}, {2, 4096, 4096}, {4, 4096, 4096}, {1, 11008, 4096}, {1, 4864, 896},
                                {512, 2048, 2048}};
                for (int[] s : shapes) {
                    List<WeightsResult> rs = weights(cpu, s[0], s[1], s[2], warmup, samples, types);
                    for (WeightsResult r : rs)
                        System.out.printf("%-42s %5d %5d %5d  %-6s%9.3f   %11.1f   %6.2f%n", "", r.rows(), r.out(), r.in(),
                                r.type(), r.millis(), r.gigabytesPerSecond(),
                                rs.get(0).millis() / r.millis());
                }
            }
        }
    }

    /**
     * Runs every kernel for a few seconds so that the JIT has compiled them before anything is timed: on a small
     * machine the compiler threads would otherwise compete with the first measurements.
     */
    public static void warmUpCompiler(CpuBackend cpu) {
        warmUpCompiler(cpu, null);
    }

    /** {@link #warmUpCompiler(CpuBackend)} with the weight types limited as {@link #weights} limits them. */
    public static void warmUpCompiler(CpuBackend cpu, java.util.Set<String> weightTypes) {
        long end = System.nanoTime() + 3_000_000_000L;
        while (System.nanoTime() < end) {
            attention(cpu, 512, 4, 32, false, 0.1, 1);
            attention(cpu, 512, 4, 64, false, 0.1, 1);
            attentionBackward(cpu, 2, 256, 4, 64, 0.1, 1);
            gemm(cpu, "warm-up", 256, 256, 256, true, 0.05, 1);
            for (int rows : new int[] {1, 2, 4}) weights(cpu, rows, 256, 512, 0.02, 1, weightTypes);
        }
    }

    private static float[] random(Random rnd, long n) {
        float[] x = new float[Math.toIntExact(n)];
        for (int i = 0; i < x.length; i++) x[i] = rnd.nextFloat() - 0.5f;
        return x;
    }
}
