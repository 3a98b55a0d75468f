package dev.ropeway.demo;

import dev.ropeway.RopewayException;
import dev.ropeway.eval.Passkey;
import dev.ropeway.eval.Perplexity;
import dev.ropeway.eval.Plots;
import dev.ropeway.eval.PerplexityProtocol;
import dev.ropeway.io.Json;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.Tokenizers;
import dev.ropeway.model.Recompute;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.tensor.Backend;
import dev.ropeway.train.Checkpoints;
import dev.ropeway.train.Corpus;
import dev.ropeway.train.CorpusDocument;
import dev.ropeway.train.Extension;
import dev.ropeway.train.OptimizerSettings;
import dev.ropeway.train.Pretraining;
import dev.ropeway.train.Trainer;
import dev.ropeway.train.corpus.CorpusFetcher;
import dev.ropeway.train.corpus.CorpusPreparer;
import dev.ropeway.train.corpus.Source;
import dev.ropeway.train.tokenizer.BpeTrainer;
import dev.ropeway.train.tokenizer.TokenizerFiles;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Consumer;

/**
 * The whole story on a small model, stage by stage, each reusing what an earlier run left in the work folder:
 * corpus, tokenizer, pretraining at L, fine-tuning with PI, YaRN, E²-LLM and CLEX, zero-shot baselines, perplexity
 * at 1x to 16x L, and a report.
 */
public final class Demo {

    /** How big a run: model, lengths, steps and how much text each evaluation scores. */
    public record Preset(String name, Pretraining.ModelShape shape, int vocab, int trainLen, int batch, long pretrainSteps,
                         double pretrainLr, long extendSteps, double extendLr, long evalTokens, int passkeyTrials,
                         double retrievalMix, boolean needsGpu) {
        public Preset(String name, Pretraining.ModelShape shape, int vocab, int trainLen, int batch, long pretrainSteps,
                      double pretrainLr, long extendSteps, double extendLr, long evalTokens, int passkeyTrials) {
            this(name, shape, vocab, trainLen, batch, pretrainSteps, pretrainLr, extendSteps, extendLr, evalTokens,
                    passkeyTrials, 0, false);
        }

        public static Preset named(String name) {
            return switch (name.toLowerCase(Locale.ROOT)) {
                case "small" -> new Preset("small", new Pretraining.ModelShape(256, 688, 4, 4, 4, 64, 10000), 4096, 256, 32,
                        400, 2e-3, 100, 5e-4, 8192, 3);
                case "medium" -> new Preset("medium", new Pretraining.ModelShape(384, 1024, 8, 6, 6, 64, 10000), 8192, 256, 32,
                        1500, 1.5e-3, 300, 4e-4, 32768, 5);
                case "quick" -> new Preset("quick", new Pretraining.ModelShape(64, 128, 2, 4, 2, 16, 10000), 512, 64, 8,
                        40, 3e-3, 10, 1e-3, 1024, 1);
                // Half the training windows carry a pass-key needle and end with its answer: a 17M-parameter model
                // learns to retrieve at L from about 50M such tokens (71 s on an H100), which no CPU preset can afford.
                case "gpu" -> new Preset("gpu", new Pretraining.ModelShape(384, 1024, 8, 6, 6, 64, 10000), 4096, 256, 64,
                        4000, 1.5e-3, 600, 5e-4, 65536, 10, 0.5, true);
                default -> throw new RopewayException("unknown demo preset '" + name + "' (quick, small, medium, gpu)");
            };
        }
    }

    /**
     * The work folder a preset uses unless told otherwise: {@code ropeway-data/demo} for the default (small),
     * {@code ropeway-data/demo-<preset>} for the others, so one preset never picks up another's stages.
     */
    public static Path defaultWork(Preset preset) {
        return Path.of(preset.name().equals("small") ? "ropeway-data/demo" : "ropeway-data/demo-" + preset.name());
    }

    /** The file that names the preset whose run a work folder holds. */
    static final String PRESET_FILE = "preset.json";

    /** One row of the comparison: a model folder and the RoPE method it is read with. */
    public record Entry(String name, String description, Path model, String ropeSpec) {}

    private final Backend backend;
    private final Path work;
    private final Preset preset;
    private final Consumer<String> log;
    private final Trainer.Listener listener;

    public Demo(Backend backend, Path work, Preset preset, Consumer<String> log, Trainer.Listener listener) {
        this.backend = backend;
        this.work = work;
        this.preset = preset;
        this.log = log;
        this.listener = listener;
    }

    /** Runs every stage; returns the report's path. */
    public Path run(Path userCorpus) {
        claimWork(true);
        Path corpus = userCorpus != null ? userCorpus : corpus();
        Path tokenizer = tokenizer(corpus);
        Path base = pretrain(corpus, tokenizer);
        List<Entry> entries = entries(base, m -> extend(m, base, corpus, tokenizer));
        Map<String, List<Perplexity.Result>> results = new LinkedHashMap<>();
        for (Entry e : entries) results.put(e.name(), evaluate(e, corpus));
        Map<String, List<Passkey.Cell>> passkeys = new LinkedHashMap<>();
        for (Entry e : entries)
            if (PASSKEY_ENTRIES.contains(e.name())) passkeys.put(e.name(), passkey(e));
        return report(entries, results, passkeys);
    }

    /**
     * Writes the report from the evaluations an earlier run left in {@code eval/} (for example copied from a
     * headless GPU server, to draw the charts where fonts are installed) without loading, training or scoring any
     * model; fails naming the first evaluation that is missing.
     */
    public Path reportOnly() {
        claimWork(false);
        List<Entry> entries = entries(work.resolve("base"), m -> work.resolve("extend-" + m.label()));
        Map<String, List<Perplexity.Result>> results = new LinkedHashMap<>();
        Map<String, List<Passkey.Cell>> passkeys = new LinkedHashMap<>();
        for (Entry e : entries) {
            Path cache = work.resolve("eval/" + e.name() + ".json");
            if (!Files.isRegularFile(cache))
                throw new RopewayException("--report-only: " + cache + " is missing; run the demo without --report-only "
                        + "(with the same --preset) to evaluate " + e.name());
            results.put(e.name(), evaluate(e, null));
            if (!PASSKEY_ENTRIES.contains(e.name())) continue;
            if (!Files.isRegularFile(work.resolve("eval/" + e.name() + "-passkey.json")))
                throw new RopewayException("--report-only: " + work.resolve("eval/" + e.name() + "-passkey.json")
                        + " is missing; run the demo without --report-only (with the same --preset) to measure it");
            passkeys.put(e.name(), passkey(e));
        }
        return report(entries, results, passkeys);
    }

    private static final List<String> PASSKEY_ENTRIES = List.of("base", "pi", "e2", "clex");

    /** The report's rows: the base model with its own RoPE and three zero-shot ones, then one row per fine-tune. */
    private List<Entry> entries(Path base, java.util.function.Function<Extension.Method, Path> extended) {
        List<Entry> entries = new ArrayList<>();
        int l = preset.trainLen();
        entries.add(new Entry("base", "no scaling", base, null));
        entries.add(new Entry("pi-zero-shot", "PI, zero-shot (g = ceil(S / L))", base, "e2"));
        entries.add(new Entry("ntk-zero-shot", "dynamic NTK, zero-shot", base, "dynamic:factor=2"));
        entries.add(new Entry("yarn-zero-shot", "YaRN x16, zero-shot", base, "yarn:factor=16,original_max_position_embeddings=" + l));
        for (Extension.Method m : List.of(Extension.Method.PI, Extension.Method.YARN, Extension.Method.E2, Extension.Method.CLEX))
            entries.add(new Entry(m.label(), describe(m), extended.apply(m), null));
        return entries;
    }

    /** Passkey at L, 4L and 8L with the needle at the start, middle and end. */
    /** Length × depth heat maps of passkey accuracy and key log-likelihood, one map per method, on shared scales. */
    private void passkeyHeatMaps(List<Entry> entries, Map<String, List<Passkey.Cell>> passkeys, StringBuilder md) {
        Map<String, Plots.Grid> accuracy = new LinkedHashMap<>(), likelihood = new LinkedHashMap<>();
        double lo = Double.POSITIVE_INFINITY, hi = Double.NEGATIVE_INFINITY;
        for (Entry e : entries) {
            List<Passkey.Cell> cells = passkeys.get(e.name());
            if (cells == null || cells.isEmpty()) continue;
            List<Integer> lengths = cells.stream().map(Passkey.Cell::targetTokens).distinct().sorted().toList();
            List<Double> depths = cells.stream().map(Passkey.Cell::depth).distinct().sorted().toList();
            double[][] a = new double[depths.size()][lengths.size()], ll = new double[depths.size()][lengths.size()];
            for (double[] row : a) java.util.Arrays.fill(row, Double.NaN);
            for (double[] row : ll) java.util.Arrays.fill(row, Double.NaN);
            for (Passkey.Cell c : cells) {
                int di = depths.indexOf(c.depth()), li = lengths.indexOf(c.targetTokens());
                a[di][li] = c.regexAccuracy();
                ll[di][li] = c.meanKeyLogLikelihood();
                lo = Math.min(lo, ll[di][li]);
                hi = Math.max(hi, ll[di][li]);
            }
            String label = switch (e.name()) {
                case "base" -> "no scaling";
                case "pi" -> "PI (4L)";
                case "e2" -> "E²-LLM";
                case "clex" -> "CLEX";
                default -> e.name();
            };
            accuracy.put(label, new Plots.Grid(lengths, depths, a));
            likelihood.put(label, new Plots.Grid(lengths, depths, ll));
        }
        if (accuracy.isEmpty()) return;
        if (Plots.heatMaps(work.resolve("passkey-accuracy.png"), "passkey accuracy", accuracy, 0, 1, "0.00"))
            md.append("\n![passkey accuracy by length and depth](passkey-accuracy.png)\n");
        if (Plots.heatMaps(work.resolve("passkey-loglik.png"), "key log-likelihood", likelihood, lo, hi > lo ? hi : lo + 1, "0.0"))
            md.append("\n![key log-likelihood by length and depth](passkey-loglik.png)\n");
    }

    private List<Passkey.Cell> passkey(Entry e) {
        Path cache = work.resolve("eval/" + e.name() + "-passkey.json");
        List<Passkey.Cell> cells = new ArrayList<>();
        if (Files.isRegularFile(cache)) {
            log.accept("passkey " + e.name() + ": reusing " + cache);
            @SuppressWarnings("unchecked")
            List<Map<String, Object>> rows = (List<Map<String, Object>>) Json.readObject(cache).get("cells");
            for (Map<String, Object> r : rows) cells.add(Passkey.Cell.fromJson(r));
            return cells;
        }
        int l = preset.trainLen();
        log.accept("passkey " + e.name() + ": lengths " + List.of(l, 4 * l, 8 * l) + ", depths 0 / 0.5 / 1, "
                + preset.passkeyTrials() + " keys each");
        List<Map<String, Object>> rows = new ArrayList<>();
        try (Transformer t = Transformer.load(backend, e.model()); Tokenizer tok = Tokenizers.open(e.model())) {
            RopeScaling rope = t.config().rope();
            for (int len : List.of(l, 4 * l, 8 * l))
                for (double depth : List.of(0.0, 0.5, 1.0)) {
                    Passkey.Cell c = Passkey.run(t, rope, tok, len, depth, preset.passkeyTrials(), 0);
                    cells.add(c);
                    rows.add(c.toJson());
                }
        }
        Json.writeAtomic(cache, Map.of("model", e.model().toString(), "cells", rows));
        return cells;
    }

    private static String describe(Extension.Method m) {
        return switch (m) {
            case PI -> "PI fine-tuned at 4L";
            case YARN -> "YaRN fine-tuned at 4L";
            case E2 -> "E²-LLM fine-tuned at L (g in 1..16)";
            case CLEX -> "CLEX fine-tuned at 4L (t in 1..16)";
            case POSE -> "PoSE fine-tuned at L (target 16L)";
        };
    }

    /**
     * Refuses a work folder that holds another preset's run (its stages would be reused or fail to resume: another
     * vocabulary, model shape, batch), named by {@link #PRESET_FILE} or, in a folder written before that file existed,
     * by the pretrained model's shape; with {@code claim}, names this preset there.
     */
    private void claimWork(boolean claim) {
        Path file = work.resolve(PRESET_FILE);
        String holder = null;
        if (Files.isRegularFile(file)) {
            holder = String.valueOf(Json.readObject(file).get("preset"));
        } else if (Files.isRegularFile(work.resolve("base/config.json"))) {
            Map<String, Object> config = Json.readObject(work.resolve("base/config.json"));
            boolean same = config.get("hidden_size") instanceof Number h && h.intValue() == preset.shape().hidden()
                    && config.get("num_hidden_layers") instanceof Number l && l.intValue() == preset.shape().layers()
                    && config.get("vocab_size") instanceof Number v && v.intValue() == preset.vocab();
            if (!same) holder = "";
        }
        if (holder != null && !holder.equals(preset.name()))
            throw new RopewayException(work + " holds a run of " + (holder.isEmpty() ? "another preset of the demo (its "
                    + "pretrained model is not the " + preset.name() + " preset's shape)" : "the demo's " + holder + " preset")
                    + (work.normalize().equals(defaultWork(preset))
                    ? "; delete it (it is the " + preset.name() + " preset's default folder) or pass another --work"
                    : "; run the " + preset.name() + " preset in its own folder (--work " + defaultWork(preset)
                      + ", its default), or delete " + work));
        if (claim && holder == null) {
            try {
                Files.createDirectories(work);
            } catch (IOException e) {
                throw new RopewayException("cannot create the work folder " + work + ": " + e.getMessage());
            }
            Json.writeAtomic(file, Map.of("preset", preset.name()));
        }
    }

    private Path corpus() {
        Path prepared = work.resolve("corpus/prepared");
        if (Files.isRegularFile(prepared.resolve(CorpusPreparer.MANIFEST))) {
            log.accept("corpus: reusing " + prepared);
            return prepared;
        }
        Path raw = work.resolve("corpus/raw");
        // The kernel sources are a 139 MB download; the demo's model could not use that much text anyway.
        EnumSet<Source> sources = EnumSet.allOf(Source.class);
        sources.remove(Source.LINUX_DOC);
        sources.remove(Source.LINUX_CODE);
        log.accept("corpus: fetching " + sources.size() + " public-domain sources from Debian packages");
        CorpusFetcher.fetch(raw, sources, log);
        CorpusPreparer.prepare(raw, prepared);
        return prepared;
    }

    private Path tokenizer(Path corpus) {
        Path dir = work.resolve("tokenizer");
        if (Files.isRegularFile(dir.resolve(TokenizerFiles.TOKENIZER_JSON))) {
            log.accept("tokenizer: reusing " + dir);
            return dir;
        }
        List<String> docs = Corpus.open(corpus).train().stream().map(CorpusDocument::text).toList();
        log.accept("tokenizer: training a byte-level BPE of " + preset.vocab() + " tokens");
        BpeTrainer.Result r = BpeTrainer.train(docs, new BpeTrainer.Options(preset.vocab(), 2, backend.threads()),
                BpeTrainer.Progress.NONE);
        TokenizerFiles.write(dir, r.model(), preset.trainLen() * 64);
        return dir;
    }

    private boolean finished(Path run, long steps) {
        return Files.isRegularFile(run.resolve("model.safetensors"))
                && Checkpoints.latest(run).map(Checkpoints::stepOf).orElse(-1L) >= steps;
    }

    private Path pretrain(Path corpus, Path tokenizer) {
        Path out = work.resolve("base");
        if (finished(out, preset.pretrainSteps())) {
            log.accept("pretrain: reusing " + out);
            return out;
        }
        log.accept(String.format(Locale.ROOT, "pretrain: %d steps at L = %d", preset.pretrainSteps(), preset.trainLen()));
        Trainer.Settings s = new Trainer.Settings(preset.batch(), preset.trainLen(), 1, 0, 50, 1,
                Math.max(1, preset.pretrainSteps() / 4), 16, Recompute.AUTO, 0, preset.retrievalMix());
        Pretraining.run(backend, new Pretraining.Options(corpus, tokenizer, out, preset.shape(), s,
                OptimizerSettings.defaults(preset.pretrainLr(), Math.max(1, preset.pretrainSteps() / 20), preset.pretrainSteps()),
                true), log, listener);
        return out;
    }

    private Path extend(Extension.Method m, Path base, Path corpus, Path tokenizer) {
        Path out = work.resolve("extend-" + m.label());
        if (finished(out, preset.extendSteps())) {
            log.accept("extend " + m.label() + ": reusing " + out);
            return out;
        }
        int l = preset.trainLen();
        boolean long4 = m != Extension.Method.E2;
        int seq = long4 ? 4 * l : l, batch = Math.max(1, long4 ? preset.batch() / 4 : preset.batch());
        log.accept("extend " + m.label() + ": " + preset.extendSteps() + " steps, " + describe(m));
        Trainer.Settings s = new Trainer.Settings(batch, seq, 1, 1, 50, 1, Math.max(1, preset.extendSteps() / 2), 4, Recompute.AUTO, 4 * l,
                preset.retrievalMix());
        OptimizerSettings opt = new OptimizerSettings(preset.extendLr(), preset.extendLr() / 10,
                Math.max(1, preset.extendSteps() / 10), preset.extendSteps(), OptimizerSettings.Schedule.COSINE, 0.9, 0.95, 1e-8, 0, 1);
        Extension.run(backend, new Extension.Options(base, m, corpus, tokenizer, out, s, opt, true, l, 4, 16, false, 4,
                new Extension.ClexSettings(16, 1, "tanh", 0.01, false, 0.02)), log, listener);
        return out;
    }

    private List<Perplexity.Result> evaluate(Entry e, Path corpus) {
        Path cache = work.resolve("eval/" + e.name() + ".json");
        List<Integer> lengths = new ArrayList<>();
        for (int f = 1; f <= 16; f *= 2) lengths.add(f * preset.trainLen());
        if (Files.isRegularFile(cache)) {
            log.accept("eval " + e.name() + ": reusing " + cache);
            List<Perplexity.Result> out = new ArrayList<>();
            @SuppressWarnings("unchecked")
            List<Map<String, Object>> rows = (List<Map<String, Object>>) Json.readObject(cache).get("results");
            for (Map<String, Object> r : rows) out.add(Perplexity.Result.fromJson(r));
            return out;
        }
        log.accept("eval " + e.name() + ": perplexity at " + lengths);
        List<int[]> docs = new ArrayList<>();
        Corpus c = Corpus.open(corpus);
        try (Tokenizer tok = Tokenizers.open(e.model())) {
            for (CorpusDocument d : c.hasHeldout() ? c.heldout() : c.train()) docs.add(tok.encodeWithBos(d.text()));
        }
        List<Perplexity.Result> out = new ArrayList<>();
        List<Map<String, Object>> rows = new ArrayList<>();
        try (Transformer t = Transformer.load(backend, e.model())) {
            RopeScaling rope = t.config().ropeOrSpec(e.ropeSpec());
            for (int len : lengths) {
                Perplexity.Result r = Perplexity.evaluate(t, rope, docs, len, PerplexityProtocol.CHUNKS, 0, preset.evalTokens(), n -> { });
                out.add(r);
                rows.add(r.toJson());
            }
            Map<String, Object> json = new LinkedHashMap<>();
            json.put("model", e.model().toString());
            json.put("rope", rope.toParameters());
            json.put("results", rows);
            try {
                Files.createDirectories(cache.getParent());
            } catch (IOException ex) {
                throw new RopewayException("cannot create " + cache.getParent() + ": " + ex.getMessage());
            }
            Json.writeAtomic(cache, json);
        }
        return out;
    }

    private Path report(List<Entry> entries, Map<String, List<Perplexity.Result>> results,
                        Map<String, List<Passkey.Cell>> passkeys) {
        int l = preset.trainLen();
        StringBuilder md = new StringBuilder();
        md.append("# Ropeway demo: perplexity by context length\n\n");
        md.append(String.format(Locale.ROOT, "Preset `%s`: a Llama with %d layers, hidden %d, pretrained at L = %d tokens; "
                + "held-out books (never trained on), `chunks` protocol (non-overlapping windows of exactly S tokens), up to "
                + "%,d tokens per length. Lower is better.%n%n", preset.name(), preset.shape().layers(), preset.shape().hidden(),
                l, preset.evalTokens()));
        if (preset.retrievalMix() > 0)
            md.append(String.format(Locale.ROOT, "In pretraining and fine-tuning, %.0f%% of the training windows carry a "
                    + "pass-key needle in the text and end with its question and answer (`--retrieval-mix`).%n%n",
                    100 * preset.retrievalMix()));
        md.append("| method |");
        for (int f = 1; f <= 16; f *= 2) md.append(String.format(" %d× (%d) |", f, f * l));
        md.append("\n|---|");
        for (int f = 1; f <= 16; f *= 2) md.append("---|");
        md.append('\n');
        Map<String, Object> json = new LinkedHashMap<>();
        for (Entry e : entries) {
            md.append("| ").append(e.description()).append(" |");
            List<Map<String, Object>> rows = new ArrayList<>();
            for (Perplexity.Result r : results.get(e.name())) {
                md.append(String.format(Locale.ROOT, " %.2f |", r.perplexity()));
                rows.add(Map.of("length", r.length(), "perplexity", r.perplexity(), "loss", r.loss(), "tokens", r.tokens()));
            }
            md.append('\n');
            json.put(e.name(), Map.of("description", e.description(), "model", e.model().toString(),
                    "rope", e.ropeSpec() == null ? "own" : e.ropeSpec(), "results", rows));
        }
        md.append(String.format(Locale.ROOT, "%n## Passkey retrieval%n%nThe Landmark prompt at L, 4L and 8L, needle at depth 0, "
                + "0.5 and 1, %d keys per cell: accuracy (first integer of the greedy answer) and the mean log-likelihood of "
                + "the key's tokens (higher is better; a smooth signal where a small model still answers wrong).%n%n",
                preset.passkeyTrials()));
        md.append(String.format(Locale.ROOT, "| method | accuracy %d | %d | %d | key log-likelihood %d | %d | %d |%n|---|---|---|---|---|---|---|%n",
                l, 4 * l, 8 * l, l, 4 * l, 8 * l));
        for (Entry e : entries) {
            List<Passkey.Cell> cells = passkeys.get(e.name());
            if (cells == null) continue;
            md.append("| ").append(e.description()).append(" |");
            StringBuilder ll = new StringBuilder();
            for (int len : List.of(l, 4 * l, 8 * l)) {
                int right = 0, trials = 0;
                double sum = 0;
                for (Passkey.Cell c : cells)
                    if (c.targetTokens() == len) {
                        right += c.regexCorrect();
                        trials += c.trials();
                        sum += c.meanKeyLogLikelihood() * c.trials();
                    }
                md.append(String.format(Locale.ROOT, " %d/%d |", right, trials));
                ll.append(String.format(Locale.ROOT, " %.2f |", sum / Math.max(1, trials)));
            }
            md.append(ll).append('\n');
        }
        passkeyHeatMaps(entries, passkeys, md);
        Map<String, List<Perplexity.Result>> named = new LinkedHashMap<>();
        for (Entry e : entries) named.put(e.description(), results.get(e.name()));
        if (Plots.perplexityByLength(work.resolve("perplexity.png"), "Perplexity on held-out books by context length", named, l))
            md.append("\n![perplexity against context length](perplexity.png)\n");
        Path file = work.resolve("report.md");
        try {
            Files.createDirectories(work);
            dev.ropeway.io.AtomicWrite.bytes(file, md.toString().getBytes(StandardCharsets.UTF_8));
        } catch (IOException ex) {
            throw new RopewayException("cannot write " + file + ": " + ex.getMessage());
        }
        Json.writeAtomic(work.resolve("report.json"), json);
        return file;
    }
}
