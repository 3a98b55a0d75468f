package dev.ropeway.cli;

import dev.ropeway.generate.Generator;
import dev.ropeway.io.FileTrees;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.Tokenizers;
import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.model.Decoder;
import dev.ropeway.model.ModelPreset;
import dev.ropeway.model.Recompute;
import dev.ropeway.model.TokenBatch;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.RopeContext;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.rope.RopeSpec;
import dev.ropeway.RopewayException;
import dev.ropeway.serve.LoadTest;
import dev.ropeway.serve.Server;
import dev.ropeway.serve.ServerSettings;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.KernelBenchmark;
import dev.ropeway.train.tokenizer.BpeTrainer;
import dev.ropeway.train.tokenizer.TokenizerFiles;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.Callable;

/** {@code ropeway bench}: measured speed of the kernels and of whole forward passes. */
@Command(name = "bench", mixinStandardHelpOptions = true, description = "Benchmarks (results for BENCHMARKS.md).",
        subcommands = {BenchCommand.Gemm.class, BenchCommand.Forward.class, BenchCommand.Decode.class,
                BenchCommand.Train.class, BenchCommand.Serve.class})
final class BenchCommand implements Runnable {

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    /** The model a benchmark runs: a checkpoint the user names, or a temporary random one of a preset's size. */
    static final class BenchModel {
        @Option(names = "--model", paramLabel = "<dir>", description = "Checkpoint to run (default: a random model of --preset).")
        Path model;

        @Option(names = "--preset", defaultValue = "20m", description = "Size of the random model when no --model is given (default: ${DEFAULT-VALUE}).")
        String preset;

        @Option(names = "--weights", defaultValue = "f32", paramLabel = "f32|bf16|f16",
                description = "How the random model's weights are stored: f32 (default), bf16 or f16, as most published "
                        + "checkpoints are (16-bit matrices are kept so in memory: half the bytes a decode step reads).")
        String weights;

        private Path temporary;

        /** {@code --model}, or a random checkpoint for positions up to {@code maxLen}, deleted by {@link #deleteTemporary}. */
        Path checkpoint(long maxLen) throws IOException {
            if (model != null) {
                if (!weights.equals("f32"))
                    throw new RopewayException("--weights applies to the random model of --preset; to hold a "
                            + "checkpoint's matrices in bf16, use --cpu-weights bf16 (or convert it with `ropeway export "
                            + "--dtype bf16` or `--dtype f16`)");
                return ModelFolders.resolve(model);
            }
            dev.ropeway.tensor.DType type = switch (weights) {
                case "f32" -> null;
                case "bf16" -> dev.ropeway.tensor.DType.BF16;
                case "f16" -> dev.ropeway.tensor.DType.F16;
                default -> throw new RopewayException("unknown --weights '" + weights + "' (f32, bf16 or f16)");
            };
            temporary = randomModel(preset, maxLen);
            if (type != null) {
                Path narrow = Files.createTempDirectory("ropeway-bench");
                CheckpointWriter.convertWeights(temporary, narrow, type);
                Files.copy(temporary.resolve("config.json"), narrow.resolve("config.json"));
                FileTrees.delete(temporary);
                temporary = narrow;
            }
            return temporary;
        }

        String label() {
            return model == null ? "random " + preset + (weights.equals("f32") ? "" : ", " + weights + " weights") : model.toString();
        }

        void deleteTemporary() throws IOException {
            if (temporary != null) FileTrees.delete(temporary);
            temporary = null;
        }
    }

    /** A temporary checkpoint of random weights with a preset's shape, default RoPE, for positions up to maxLen. */
    static Path randomModel(String preset, long maxLen) throws IOException {
        ModelPreset p = ModelPreset.parse(preset);
        Path dir = Files.createTempDirectory("ropeway-bench");
        RopeContext ctx = new RopeContext(p.headDim, maxLen, 0, 10000);
        CheckpointWriter.writeRandom(dir, CheckpointWriter.llamaConfig(p.vocab, p.hidden, p.ffn, p.layers,
                p.heads, p.kvHeads, p.headDim, maxLen, RopeSpec.parse("default", ctx), false), 1);
        return dir;
    }

    @Command(name = "kernels", aliases = "gemm", mixinStandardHelpOptions = true,
            description = "GEMM GFLOP/s of the CPU backend against direct OpenBLAS calls in the same run, attention GFLOP/s, "
                    + "decode-step attention times and products by weight type (f32, bf16, f16, q8_0 and ggml's block types).")
    static final class Gemm implements Callable<Integer> {
        @Option(names = "--threads", description = "Threads (default: all cores).")
        Integer threads;

        @Option(names = "--only", paramLabel = "<case>",
                description = "Run one part: gemm, elementwise, attention, attention-backward, decode-attention or weights "
                        + "(default: all).")
        String only;

        @Option(names = "--weights", split = ",", paramLabel = "<type>",
                description = "Weight types the weights part times besides f32 (f32, bf16, f16, q8_0, q2_k, q3_k, q4_k, q5_k, "
                        + "q6_k, iq4_xs, q4_0, q4_1, q5_0, q5_1, iq4_nl, iq2_xxs, iq2_xs, iq2_s, iq3_xxs, iq3_s, iq1_s, iq1_m, "
                        + "tq1_0, tq2_0; default: all). Each alone in a run shows its speed "
                        + "without the others' code compiled beside it.")
        List<String> weights;

        @Override
        public Integer call() {
            List<String> args = new ArrayList<>();
            if (threads != null) args.addAll(List.of("--threads", String.valueOf(threads)));
            if (only != null) {
                if (!KernelBenchmark.CASES.contains(only))
                    throw new RopewayException("--only must be one of " + String.join(", ", KernelBenchmark.CASES) + ", got " + only);
                args.addAll(List.of("--only", only));
            }
            if (weights != null) {
                List<String> known = KernelBenchmark.weightTypes();
                for (String w : weights)
                    if (!known.contains(w.toLowerCase(java.util.Locale.ROOT)))
                        throw new RopewayException("--weights takes " + String.join(", ", known) + ", got " + w);
                args.addAll(List.of("--weights", String.join(",", weights)));
            }
            KernelBenchmark.main(args.toArray(String[]::new));
            return 0;
        }
    }

    @Command(name = "forward", mixinStandardHelpOptions = true,
            description = "Forward-pass tokens/s and peak resident memory at given sequence lengths.")
    static final class Forward implements Callable<Integer> {
        @Mixin
        BenchModel source;

        @Option(names = "--tokens", split = ",", defaultValue = "1024", description = "Sequence lengths (comma-separated).")
        long[] lengths;

        @Option(names = "--repeat", defaultValue = "3", description = "Timed runs per length; the median is reported.")
        int repeat;

        @Option(names = "--json", description = "Print JSON instead of text.")
        boolean json;

        @Mixin
        BackendOptions backendOptions;

        @Override
        public Integer call() throws IOException {
            if (repeat < 1) throw new RopewayException("--repeat must be at least 1");
            Path dir = source.checkpoint(Arrays.stream(lengths).max().orElse(1024));
            List<Map<String, Object>> rows = new ArrayList<>();
            try (Backend backend = backendOptions.open(); Transformer t = Transformer.load(backend, dir)) {
                int vocab = t.config().vocabSize();
                Random random = new Random(7);
                for (long len : lengths) {
                    if (len < 1 || len > Integer.MAX_VALUE) throw new RopewayException("bad --tokens value " + len);
                    int[] ids = random.ints((int) len, 0, vocab).toArray();
                    TokenBatch batch = TokenBatch.of(ids, 1, (int) len);
                    t.forward(batch, (first, n, logits) -> { });   // warm-up
                    double[] secs = new double[repeat];
                    for (int i = 0; i < repeat; i++) {
                        long s = System.nanoTime();
                        t.forward(batch, (first, n, logits) -> { });
                        secs[i] = (System.nanoTime() - s) / 1e9;
                    }
                    Arrays.sort(secs);
                    double median = secs[repeat / 2];
                    Map<String, Object> row = new LinkedHashMap<>();
                    row.put("tokens", len);
                    row.put("median_seconds", median);
                    row.put("tokens_per_second", len / median);
                    row.put("peak_rss_mib", peakRssMiB());
                    rows.add(row);
                    if (!json)
                        System.out.printf("%,8d tokens  %8.3f s  %,10.0f tokens/s  peak RSS %,d MiB%n", len, median,
                                len / median, (Long) row.get("peak_rss_mib"));
                }
                Map<String, Object> out = new LinkedHashMap<>();
                out.put("model", source.label());
                out.put("parameters", t.config().parameterCount());
                out.put("device", where(backend));
                out.put("threads", backend.threads());
                out.put("results", rows);
                if (json) System.out.println(Output.json(out));
            } finally {
                source.deleteTemporary();
            }
            return 0;
        }
    }

    @Command(name = "decode", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"Generation speed: tokens/s of one-token decode steps (KV cache; one sequence, or --batch n) at given context lengths, "
                    + "and the prefill rate when --fill prefill."})
    static final class Decode implements Callable<Integer> {
        @Mixin
        BenchModel source;

        @Option(names = "--contexts", split = ",", defaultValue = "1k,16k,64k", paramLabel = "<n>",
                description = "Tokens already in the cache when decoding starts (default: ${DEFAULT-VALUE}).")
        List<String> contexts;

        @Option(names = "--tokens", defaultValue = "64", description = "Decode steps timed per context (default: ${DEFAULT-VALUE}).")
        int tokens;

        @Option(names = "--fill", defaultValue = "random", description = {"How the context is made: random (random keys and "
                + "values, instant; a step's cost depends only on the length) or prefill (the model runs over random tokens, timed).",
                "Default: ${DEFAULT-VALUE}."})
        String fill;

        @Option(names = "--batch", defaultValue = "1", description = {"Sequences decoded together, each with its own cache of the "
                + "context's length (one step appends a token to every one, as serve's batched slots do; default: ${DEFAULT-VALUE})."})
        int batch;

        @Option(names = "--graphs", negatable = true,
                description = {"Run each decode step as one recorded step: on a GPU, one CUDA graph launch instead of a "
                        + "couple of hundred kernel launches (the GPU's default); --no-graphs runs the ops one by one "
                        + "(the CPU's default: there a recorded step only runs its ops again)."})
        Boolean graphs;

        @Option(names = "--json", description = "Print JSON instead of text.")
        boolean json;

        @Mixin
        BackendOptions backendOptions;

        @Override
        public Integer call() throws IOException {
            if (tokens < 1) throw new RopewayException("--tokens must be at least 1");
            if (batch < 1) throw new RopewayException("--batch must be at least 1, got " + batch);
            if (!fill.equals("random") && !fill.equals("prefill")) throw new RopewayException("--fill must be random or prefill, got " + fill);
            List<Long> ctx = new ArrayList<>();
            for (String c : contexts) ctx.add((long) EvalCommand.parseLength(c));
            long maxLen = ctx.stream().mapToLong(Long::longValue).max().orElse(1024) + tokens;
            Path dir = source.checkpoint(maxLen);
            List<Map<String, Object>> rows = new ArrayList<>();
            try (Backend backend = backendOptions.open(); Transformer t = Transformer.load(backend, dir)) {
                Random random = new Random(7);
                for (long c : ctx) {
                    Map<String, Object> row = new LinkedHashMap<>();
                    row.put("context", c);
                    List<Decoder> ds = new ArrayList<>();
                    try {
                        for (int b = 0; b < batch; b++) {
                            Decoder d = new Decoder(t, t.config().rope(), c + tokens);
                            ds.add(d);
                            if (graphs != null) d.recordSteps(graphs);
                        }
                        if (fill.equals("prefill")) {
                            long s = System.nanoTime();
                            for (Decoder d : ds)
                                if (c > 0) d.append(random.ints((int) c, 0, t.config().vocabSize()).toArray());
                            double secs = (System.nanoTime() - s) / 1e9;
                            row.put("prefill_seconds", secs);
                            row.put("prefill_tokens_per_second", c * batch / secs);
                        } else {
                            for (int b = 0; b < batch; b++) ds.get(b).fillRandom(c, 7 + b);
                        }
                        int[] next = new int[batch];
                        for (int b = 0; b < batch; b++) next[b] = random.nextInt(t.config().vocabSize());
                        // Warm-up (the JIT compiles the kernels) for at least a second and 8 steps, then back to c.
                        long warm = System.nanoTime();
                        for (int i = 0; i < 8 || System.nanoTime() - warm < 1_000_000_000L; i++) {
                            if (ds.get(0).length() == ds.get(0).capacity()) for (Decoder d : ds) d.truncate(c);
                            Decoder.next(ds, next);
                        }
                        for (Decoder d : ds) d.truncate(c);
                        double[] step = new double[tokens];
                        for (int i = 0; i < tokens; i++) {
                            long s = System.nanoTime();
                            List<float[]> logits = Decoder.next(ds, next);
                            step[i] = (System.nanoTime() - s) / 1e9;
                            for (int b = 0; b < batch; b++) next[b] = dev.ropeway.generate.Sampler.argmax(logits.get(b));
                        }
                        Arrays.sort(step);
                        double median = step[tokens / 2];
                        row.put("batch", batch);
                        row.put("graph_steps", ds.stream().mapToLong(Decoder::graphSteps).sum());
                        row.put("decode_tokens", tokens);
                        row.put("median_step_ms", median * 1e3);
                        row.put("tokens_per_second", batch / median);
                        row.put("kv_cache_mib", ds.stream().mapToLong(Decoder::cacheBytes).sum() >> 20);
                        row.put("peak_rss_mib", peakRssMiB());
                    } finally {
                        for (Decoder d : ds) d.close();
                    }
                    rows.add(row);
                    if (!json) {
                        System.out.printf("context %,8d  decode %8.1f tokens/s  (median step %.2f ms%s%s)", c,
                                (Double) row.get("tokens_per_second"), (Double) row.get("median_step_ms"),
                                batch > 1 ? " for " + batch + " sequences" : "",
                                (Long) row.get("graph_steps") > 0 ? ", CUDA graphs" : "");
                        if (row.containsKey("prefill_tokens_per_second"))
                            System.out.printf("  prefill %,.0f tokens/s", (Double) row.get("prefill_tokens_per_second"));
                        System.out.printf("  peak RSS %,d MiB%n", (Long) row.get("peak_rss_mib"));
                    }
                }
                Map<String, Object> out = new LinkedHashMap<>();
                out.put("model", source.label());
                out.put("parameters", t.config().parameterCount());
                out.put("device", where(backend));
                out.put("threads", backend.threads());
                out.put("fill", fill);
                out.put("results", rows);
                if (json) System.out.println(Output.json(out));
            } finally {
                source.deleteTemporary();
            }
            return 0;
        }
    }

    @Command(name = "train", mixinStandardHelpOptions = true,
            description = {"Training tokens/s (forward, backward and AdamW step) of random models, and model-FLOP "
                    + "utilisation as a fraction of the SGEMM rate this backend reaches in the same run."})
    static final class Train implements Callable<Integer> {
        @Option(names = "--preset", split = ",", defaultValue = "5m,20m", description = "Model sizes (default: ${DEFAULT-VALUE}).")
        String[] presets;

        @Option(names = "--seq", split = ",", defaultValue = "256,1024", description = "Sequence lengths (default: ${DEFAULT-VALUE}).")
        int[] seqs;

        @Option(names = "--tokens-per-step", defaultValue = "8192", description = "Tokens per step; batch = this / seq (default: ${DEFAULT-VALUE}).")
        int tokensPerStep;

        @Option(names = "--steps", defaultValue = "5", description = "Timed steps per case; the median is reported (default: ${DEFAULT-VALUE}).")
        int steps;

        @Option(names = "--recompute", arity = "0..1", defaultValue = "auto", fallbackValue = "on", paramLabel = "auto|on|off",
                description = "Recompute activations in the backward: auto (the default: only when keeping them would not fit), on or off.")
        String recompute;

        @Option(names = "--json", description = "Print JSON instead of text.")
        boolean json;

        @Mixin
        BackendOptions backendOptions;

        @Override
        public Integer call() {
            if (steps < 1) throw new RopewayException("--steps must be at least 1");
            Recompute mode = Recompute.parse(recompute);
            List<Map<String, Object>> rows = new ArrayList<>();
            try (Backend backend = backendOptions.open()) {
                double sgemm = dev.ropeway.train.TrainingBenchmark.sgemmGflops(backend);
                if (!json) System.out.printf("SGEMM (2048 x 2048 x 2048, %s): %.1f GFLOP/s; training products on %s operands%n",
                        where(backend), sgemm, backend.trainingOperandType() == dev.ropeway.tensor.DType.BF16
                                ? "bfloat16 (mixed precision)" : "float32");
                for (String preset : presets) {
                    for (int seq : seqs) {
                        if (backend instanceof dev.ropeway.cuda.CudaBackend gpu) gpu.resetPeakTensorBytes();
                        var r = dev.ropeway.train.TrainingBenchmark.run(backend, ModelPreset.parse(preset), seq,
                                Math.max(1, tokensPerStep / seq), steps, mode);
                        Map<String, Object> row = new LinkedHashMap<>();
                        row.put("preset", preset);
                        row.put("parameters", r.parameters());
                        row.put("seq", seq);
                        row.put("batch", r.batch());
                        row.put("recompute", r.memory().recompute());
                        row.put("median_step_seconds", r.stepSeconds());
                        row.put("tokens_per_second", r.tokensPerSecond());
                        row.put("model_gflops", r.modelGflops());
                        row.put("mfu_of_sgemm", r.modelGflops() / sgemm);
                        row.put("peak_rss_mib", peakRssMiB());
                        if (backend instanceof dev.ropeway.cuda.CudaBackend gpu)
                            row.put("peak_gpu_tensors_mib", gpu.peakTensorBytes() >> 20);
                        rows.add(row);
                        if (!json)
                            System.out.printf("%-4s %,11d params  seq %5d x %3d  %7.3f s/step  %,8.0f tokens/s  %6.1f GFLOP/s  %5.1f%% of SGEMM%s%s%n",
                                    preset, r.parameters(), seq, r.batch(), r.stepSeconds(), r.tokensPerSecond(),
                                    r.modelGflops(), 100 * r.modelGflops() / sgemm,
                                    row.containsKey("peak_gpu_tensors_mib") ? String.format("  peak GPU tensors %,d MiB",
                                            (Long) row.get("peak_gpu_tensors_mib")) : "",
                                    r.memory().recompute() ? "  (recomputing)" : "");
                        if (!json && mode == Recompute.AUTO && r.memory().recompute())
                            System.out.println("     " + r.memory().explanation());
                    }
                }
                Map<String, Object> out = new LinkedHashMap<>();
                out.put("device", where(backend));
                out.put("threads", backend.threads());
                out.put("sgemm_gflops", sgemm);
                out.put("recompute", mode.toString());
                out.put("operands", backend.trainingOperandType().name());
                out.put("results", rows);
                if (json) System.out.println(Output.json(out));
            }
            return 0;
        }
    }

    /** Where a benchmark ran: the GPU's description, or the CPU backend's thread count. */
    static String where(Backend backend) {
        return backend instanceof dev.ropeway.cuda.CudaBackend gpu ? gpu.description() : backend.threads() + " CPU threads";
    }

    /** Peak resident set size of this process (Linux VmHWM), or -1 where unavailable. */
    static long peakRssMiB() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status")))
                if (line.startsWith("VmHWM:")) return Long.parseLong(line.replaceAll("[^0-9]", "")) / 1024;
        } catch (IOException | NumberFormatException e) {
            return -1;
        }
        return -1;
    }


    @Command(name = "serve", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"Load test of an OpenAI-compatible server: --clients clients at once, each streaming greedy "
                    + "completions of --max-tokens tokens one after another until --requests have run. Reports output "
                    + "tokens/s, and the time to the first text, between streamed pieces of text and per request (median "
                    + "and 90th percentile). Starts Ropeway's server (one slot per client unless --slots says otherwise) on "
                    + "--model, a checkpoint with its tokenizer, or on a random model of --preset with a small byte-level "
                    + "BPE written beside it; or measures the server at --url, Ropeway's or another one's."})
    static final class Serve implements Callable<Integer> {
        @Mixin
        BenchModel source;
        @Option(names = "--url", paramLabel = "<url>", description = "A running server to measure instead, e.g. http://127.0.0.1:8080.")
        URI url;
        @Option(names = "--model-name", paramLabel = "<id>", description = "With --url: the model field of the requests (default: left out).")
        String modelName;
        @Option(names = "--clients", defaultValue = "4", description = "Clients at once (default: ${DEFAULT-VALUE}).")
        int clients;
        @Option(names = "--requests", description = "Requests counted (default: 4 per client).")
        Integer requests;
        @Option(names = "--warmup", defaultValue = "2", description = "Requests per client before the counted ones (default: ${DEFAULT-VALUE}).")
        int warmup;
        @Option(names = "--prompt-words", defaultValue = "200", description = "Words per prompt (default: ${DEFAULT-VALUE}).")
        int promptWords;
        @Option(names = "--shared-words", defaultValue = "0",
                description = "Words every prompt starts with, as a system prompt (default: ${DEFAULT-VALUE}).")
        int sharedWords;
        @Option(names = "--max-tokens", defaultValue = "64", description = "Tokens generated per request (default: ${DEFAULT-VALUE}).")
        int maxTokens;
        @Option(names = "--seed", defaultValue = "1", description = "Seed of the prompts' words (default: ${DEFAULT-VALUE}).")
        long seed;
        @Option(names = "--slots", description = "Slots of the started server (default: --clients).")
        Integer slots;
        @Option(names = "--context", description = "Tokens per slot of the started server (default: as serve; 2048 for a random model).")
        Integer context;
        @Option(names = "--batch", negatable = true, defaultValue = "true", fallbackValue = "true",
                description = "The started server's decode steps: batched (default) or each slot on its own (--no-batch).")
        boolean batch;
        @Option(names = "--json", description = "Print JSON instead of text.")
        boolean json;
        @Mixin
        BackendOptions backendOptions;

        @Override
        public Integer call() throws Exception {
            int count = requests != null ? requests : 4 * clients;
            if (url != null) {
                if (source.model != null) throw new RopewayException("--model starts a server to measure; --url measures a running one: name one");
                return report(new LoadTest.Settings(url, modelName, clients, count, warmup,
                        promptWords, sharedWords, maxTokens, seed), url.toString());
            }
            if (modelName != null) throw new RopewayException("--model-name goes with --url (the started server takes any model field)");
            int n = slots != null ? slots : clients;
            int positions = context != null ? context : 2048;
            Path model = source.checkpoint(positions);
            try {
                if (source.model == null) {
                    // A random model has no tokenizer: a byte-level BPE learnt from the prompts' own words.
                    int vocab = Math.min(ModelPreset.parse(source.preset).vocab, BpeTrainer.MIN_VOCAB_SIZE + 256);
                    var trained = BpeTrainer.train(List.of(LoadTest.vocabularyText()),
                            new BpeTrainer.Options(vocab, 1, 1), BpeTrainer.Progress.NONE);
                    TokenizerFiles.write(model, trained.model(), positions);
                }
                return serveAndMeasure(model, n, count);
            } finally {
                source.deleteTemporary();
            }
        }

        private int serveAndMeasure(Path model, int n, int count) throws Exception {
            try (Tokenizer tok = Tokenizers.open(model); Backend backend = backendOptions.open();
                 Transformer t = Transformer.load(backend, model)) {
                RopeScaling method = t.config().rope();
                int ctx = context != null ? context : ServeCommand.defaultContext(t.config(), method);
                ServerSettings settings = new ServerSettings("127.0.0.1", 0, n,
                        Math.max(64, clients), ctx, Math.max(1, ctx - 1), 1 << 24, 1, batch);
                try (Server server = new Server(t, method,
                        new Generator(tok), null, "bench", settings, Decoder.RopeChange.REROTATE)) {
                    return report(new LoadTest.Settings(URI.create("http://127.0.0.1:" + server.port()),
                            null, clients, count, warmup, promptWords, sharedWords, maxTokens, seed),
                            source.label() + ", " + n + (n == 1 ? " slot" : " slots" + (batch ? ", batched steps" : ", each slot on its own")));
                }
            }
        }

        private int report(LoadTest.Settings s, String what) {
            LoadTest.Report r = LoadTest.run(s);
            if (json) {
                Map<String, Object> out = new LinkedHashMap<>();
                out.put("server", what);
                out.putAll(r.toJson());
                System.out.println(Output.json(out));
                return 0;
            }
            System.out.printf("%s: %d client%s, %d request%s in %.2f s (prompts of %.0f tokens, %.0f of them cached; %.0f new tokens each)%n",
                    what, r.clients(), r.clients() == 1 ? "" : "s", r.requests(), r.requests() == 1 ? "" : "s", r.seconds(),
                    (double) r.promptTokens() / r.requests(),
                    (double) r.cachedTokens() / r.requests(), (double) r.completionTokens() / r.requests());
            System.out.printf("  throughput      %,.1f output tokens/s, %.2f requests/s%n", r.outputTokensPerSecond(), r.requestsPerSecond());
            System.out.printf("  first text      p50 %s  p90 %s%n", time(r.firstTextP50()), time(r.firstTextP90()));
            System.out.printf("  between texts   p50 %s  p90 %s%n", time(r.gapP50()), time(r.gapP90()));
            System.out.printf("  whole request   p50 %s  p90 %s%n", time(r.requestP50()), time(r.requestP90()));
            return 0;
        }

        private static String time(double seconds) {
            if (Double.isNaN(seconds)) return "-";
            return seconds < 1 ? String.format("%.1f ms", seconds * 1e3) : String.format("%.2f s", seconds);
        }
    }
}
