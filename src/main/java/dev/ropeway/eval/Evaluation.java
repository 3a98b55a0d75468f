package dev.ropeway.eval;

import dev.ropeway.RopewayException;
import dev.ropeway.generate.ChatTemplate;
import dev.ropeway.io.Json;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.Tokenizers;
import dev.ropeway.io.WeightStore;
import dev.ropeway.model.ClexLayer;
import dev.ropeway.model.ModelConfig;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.rope.RopeSpec;
import dev.ropeway.tensor.Backend;
import dev.ropeway.train.Corpus;
import dev.ropeway.train.CorpusDocument;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * Runs evaluation cells (one task at one length, and one needle depth for the tasks that have one) for models each
 * read with a RoPE method. With a {@link CellStore}, every cell's result is saved as soon as it is known and a saved
 * cell whose inputs are unchanged is reused, so a rerun computes nothing and an interrupted run resumes. A model is
 * loaded only when one of its cells has to be computed.
 */
public final class Evaluation {

    /**
     * What a cell measures: perplexity, passkey retrieval, LongEval's line retrieval, one of RULER's tasks or a
     * LongBench-style one.
     */
    public enum Task {
        PPL("ppl", null), PASSKEY("passkey", null), LINES("lines", null),
        NIAH("niah", Ruler.Task.NIAH_SINGLE_1),
        NIAH_SINGLE_2("niah_single_2", Ruler.Task.NIAH_SINGLE_2),
        NIAH_SINGLE_3("niah_single_3", Ruler.Task.NIAH_SINGLE_3),
        NIAH_MULTIKEY_1("niah_multikey_1", Ruler.Task.NIAH_MULTIKEY_1),
        NIAH_MULTIKEY_2("niah_multikey_2", Ruler.Task.NIAH_MULTIKEY_2),
        NIAH_MULTIKEY_3("niah_multikey_3", Ruler.Task.NIAH_MULTIKEY_3),
        NIAH_MULTIVALUE("niah_multivalue", Ruler.Task.NIAH_MULTIVALUE),
        NIAH_MULTIQUERY("niah_multiquery", Ruler.Task.NIAH_MULTIQUERY),
        VT("vt", Ruler.Task.VT),
        CWE("cwe", Ruler.Task.CWE),
        FWE("fwe", Ruler.Task.FWE),
        PASSAGE_COUNT(LongBenchStyle.Task.PASSAGE_COUNT),
        PASSAGE_RETRIEVAL(LongBenchStyle.Task.PASSAGE_RETRIEVAL),
        LCC(LongBenchStyle.Task.LCC);

        private final String label;
        private final Ruler.Task ruler;
        private final LongBenchStyle.Task longBench;

        Task(String label, Ruler.Task ruler) {
            this.label = label;
            this.ruler = ruler;
            this.longBench = null;
        }

        Task(LongBenchStyle.Task longBench) {
            this.label = longBench.label();
            this.ruler = null;
            this.longBench = longBench;
        }

        /** The name in file names, keys and reports ("niah" for RULER's niah_single_1, as results were first saved). */
        public String label() {
            return label;
        }

        /** RULER's name for the task ("niah_single_1" for niah), or the label for the others. */
        public String title() {
            return ruler == null ? label : ruler.label();
        }

        public boolean hasDepth() {
            return this == PASSKEY || this == LINES || ruler != null && ruler.hasDepth();
        }

        public boolean retrieval() {
            return this != PPL;
        }

        /**
         * Whether a chat model's template can carry the task's prompts (RULER's, LongEval's and the LongBench-style
         * tasks; perplexity and passkey read plain text).
         */
        public boolean chats() {
            return this != PPL && this != PASSKEY;
        }

        /** The RULER task this is, or null for the others. */
        public Ruler.Task ruler() {
            return ruler;
        }

        /** The LongBench-style task this is, or null for the others. */
        public LongBenchStyle.Task longBench() {
            return longBench;
        }

        /** Whether the task reads a text (--data): perplexity, RULER's prose tasks and cwe, the passage tasks. */
        public boolean readsText() {
            return this == PPL || ruler != null && ruler.readsText() || longBench != null && longBench.readsText();
        }

        /** Whether the task cannot run without a text. */
        public boolean needsText() {
            return this == PPL || ruler != null && ruler.needsText() || longBench != null && longBench.readsText();
        }

        /** Whether the task reads a folder of code (--code). */
        public boolean needsCode() {
            return longBench == LongBenchStyle.Task.LCC;
        }

        /** Tokens to generate by default: RULER's, LongBench's or LongEval's for the task. */
        public int defaultNewTokens() {
            if (this == LINES) return LongEvalLines.NEW_TOKENS;
            if (ruler != null) return ruler.defaultNewTokens();
            if (longBench != null) return longBench.defaultNewTokens();
            throw new IllegalStateException(label + " generates nothing");
        }

        public static Task parse(String name) {
            String n = name.strip().toLowerCase(Locale.ROOT);
            switch (n) {
                case "ppl", "perplexity" -> { return PPL; }
                case "passkey" -> { return PASSKEY; }
                case "lines", "longeval_lines", "longeval" -> { return LINES; }
                default -> { }
            }
            for (Task t : values()) if (t.longBench != null && t.label.equals(n)) return t;
            if (n.equals("passage_retrieval_en")) return PASSAGE_RETRIEVAL;
            Ruler.Task r;
            try {
                r = Ruler.Task.parse(n);
            } catch (RopewayException e) {
                throw new RopewayException("unknown task '" + name + "' (ppl, passkey, lines, ruler for all of RULER's, one of "
                        + Ruler.Task.labels() + ", longbench for the LongBench-style passage_count, passage_retrieval and "
                        + "lcc, or one of them)");
            }
            for (Task t : values()) if (t.ruler == r) return t;
            throw new IllegalStateException("no evaluation task for " + r);
        }

        /**
         * The tasks a list of names selects, and those that {@code ruler} or {@code longbench} would have brought but
         * left out for want of their input (a text, a code folder).
         */
        public record Selection(List<Task> tasks, List<Task> leftOut) {
            /** What was left out and why, a line per missing input, e.g. "lcc left out (it needs --code)". */
            public List<String> notes() {
                List<String> out = new ArrayList<>();
                for (boolean code : new boolean[] {false, true}) {
                    List<String> names = leftOut.stream().filter(t -> t.needsCode() == code).map(Task::title).toList();
                    if (!names.isEmpty())
                        out.add(String.join(", ", names) + " left out (" + (names.size() == 1 ? "it needs " : "they need ")
                                + (code ? "--code" : "--data") + ")");
                }
                return out;
            }
        }

        /**
         * The tasks {@code names} name, in order and once each; {@code ruler} stands for all of RULER's and
         * {@code longbench} for the LongBench-style ones, less those whose input is missing (a text when
         * {@code hasText} is false, a code folder when {@code hasCode} is). A task named on its own stays, and fails
         * when run for want of its input.
         */
        public static Selection select(List<String> names, boolean hasText, boolean hasCode) {
            LinkedHashSet<Task> out = new LinkedHashSet<>(), suites = new LinkedHashSet<>(), named = new LinkedHashSet<>();
            for (String name : names) {
                String n = name.strip().toLowerCase(Locale.ROOT);
                if (n.equals("ruler") || n.equals("longbench")) {
                    List<Task> suite = n.equals("ruler") ? rulerTasks() : longBenchTasks();
                    suites.addAll(suite);
                    out.addAll(suite);
                } else {
                    Task t = parse(name);
                    named.add(t);
                    out.add(t);
                }
            }
            List<Task> leftOut = new ArrayList<>();
            for (Task t : suites)
                if (!named.contains(t) && (t.needsText() && !hasText || t.needsCode() && !hasCode)) leftOut.add(t);
            out.removeAll(leftOut);
            return new Selection(List.copyOf(out), List.copyOf(leftOut));
        }

        /** RULER's tasks, in RULER's order. */
        public static List<Task> rulerTasks() {
            return java.util.Arrays.stream(values()).filter(t -> t.ruler != null).toList();
        }

        /** The LongBench-style tasks. */
        public static List<Task> longBenchTasks() {
            return java.util.Arrays.stream(values()).filter(t -> t.longBench != null).toList();
        }
    }

    /** A model folder read with a RoPE method ({@code rope} null: its own), under a name that labels its results. */
    public record Target(String name, Path model, String rope) {
        private static final Pattern NAME = Pattern.compile("[A-Za-z0-9._-]+");

        public Target {
            if (!NAME.matcher(name).matches())
                throw new RopewayException("method name '" + name + "' may use only letters, digits, '.', '_' and '-'");
        }

        /**
         * {@code [name=]<dir>[@<rope spec>]}, e.g. {@code pi-zero-shot=runs/base@linear:factor=4}. Without a name, the
         * folder's name (and the spec's, when there is one). A RoPE spec never holds '/', so an '@' in a folder name
         * is taken as part of the path.
         */
        public static Target parse(String spec) {
            String s = spec.strip();
            if (s.isEmpty()) throw new RopewayException("an empty method entry (expected [name=]<dir>[@<rope spec>])");
            String name = null;
            int eq = s.indexOf('=');
            int at = s.lastIndexOf('@');
            if (eq > 0 && (at < 0 || eq < at) && NAME.matcher(s.substring(0, eq)).matches()) {
                name = s.substring(0, eq);
                s = s.substring(eq + 1);
                at = s.lastIndexOf('@');
            }
            String rope = null;
            if (at >= 0 && s.indexOf('/', at) < 0) {
                rope = s.substring(at + 1);
                s = s.substring(0, at);
                if (rope.isEmpty()) throw new RopewayException("'" + spec + "': nothing after '@' (expected a RoPE spec)");
            }
            if (s.isEmpty()) throw new RopewayException("'" + spec + "': no model folder");
            Path model = Path.of(s);
            return new Target(name != null ? name : defaultName(model, rope), model, rope);
        }

        /** The folder's name, then '_' and the RoPE spec with its other characters turned into '-'. */
        public static String defaultName(Path model, String rope) {
            Path f = model.toAbsolutePath().normalize().getFileName();
            String base = f == null ? "model" : f.toString().replaceAll("[^A-Za-z0-9._-]+", "-");
            if (base.isEmpty()) base = "model";
            return rope == null ? base : base + "_" + rope.replaceAll("[^A-Za-z0-9._]+", "-");
        }
    }

    /** One cell: a task at a length in tokens, with a needle depth in [0, 1] or NaN for tasks without one. */
    public record CellSpec(Task task, int length, double depth) {
        public CellSpec {
            if (task.hasDepth() != !Double.isNaN(depth))
                throw new IllegalArgumentException(task.label() + (task.hasDepth() ? " needs" : " takes no") + " depth");
        }

        public String fileName() {
            return task.hasDepth() ? String.format(Locale.ROOT, "%s-%d-d%.2f", task.label(), length, depth)
                    : task.label() + "-" + length;
        }

        /** The grid of a run: each task at each of its lengths (and each depth where it has them). */
        public static List<CellSpec> grid(List<Task> tasks, List<Integer> pplLengths, List<Integer> retrievalLengths,
                                          List<Double> depths) {
            List<CellSpec> out = new ArrayList<>();
            for (Task t : tasks)
                for (int len : t.retrieval() ? retrievalLengths : pplLengths) {
                    if (t.hasDepth()) for (double d : depths) out.add(new CellSpec(t, len, d));
                    else out.add(new CellSpec(t, len, Double.NaN));
                }
            return out;
        }
    }

    /**
     * How cells are computed. {@code data}: documents for perplexity and the text of RULER's essay haystacks and the
     * passage tasks; {@code code}: the source files of lcc; {@code stride} 0 means L / 2 (sliding); {@code maxTokens} 0
     * means every document; {@code newTokens} 0 means RULER's or LongBench's count for each task.
     */
    public record Settings(Path data, PerplexityProtocol protocol, int stride, long maxTokens, int trials, long seed,
                           int newTokens, Path code, boolean chat) {
        public Settings(Path data, PerplexityProtocol protocol, int stride, long maxTokens, int trials, long seed,
                        int newTokens) {
            this(data, protocol, stride, maxTokens, trials, seed, newTokens, null, false);
        }

        public Settings(Path data, PerplexityProtocol protocol, int stride, long maxTokens, int trials, long seed,
                        int newTokens, Path code) {
            this(data, protocol, stride, maxTokens, trials, seed, newTokens, code, false);
        }

        public Settings {
            if (trials < 1) throw new RopewayException("trials must be at least 1, got " + trials);
            if (maxTokens < 0) throw new RopewayException("the token budget must be 0 (all) or positive, got " + maxTokens);
            if (stride < 0) throw new RopewayException("the stride must be positive, got " + stride);
            if (newTokens < 0) throw new RopewayException("the tokens to generate must be positive, got " + newTokens);
        }

        public int newTokens(Task task) {
            if (newTokens > 0) return newTokens;
            return task == Task.LINES && chat(task) ? LongEvalLines.CHAT_NEW_TOKENS : task.defaultNewTokens();
        }

        /** Whether {@code task}'s prompts go through the model's chat template. */
        public boolean chat(Task task) {
            return chat && task.chats();
        }
    }

    /** Hears about the run: its plan, then every cell as it is reused or computed. */
    public interface Listener {
        default void planned(int cells, int reusedCells, double work, double reusedWork) {}

        default void finished(Target target, CellSpec cell, Map<String, Object> result, boolean reused, double work) {}
    }

    /**
     * Every cell's result (or {"error": ...} for a cell that cannot be computed), by target name, the counts, and the
     * seconds all the cells took to compute (in this run or, for reused ones, in the run that saved them).
     */
    public record Outcome(Map<String, Map<CellSpec, Map<String, Object>>> results, int computed, int reused,
                          double cellSeconds) {}

    /** A target's fixed facts: its checkpoint's fingerprint, config and the RoPE method it is read with. */
    public record Resolved(Target target, ModelRecord record, ModelConfig config, RopeScaling rope) {
        public String ropeDescription() {
            return RopeSpec.describe(rope);
        }
    }

    private final Backend backend;
    private final Settings settings;
    private final CellStore store;
    private final Listener listener;
    private final Map<String, List<int[]>> documentsByTokenizer = new HashMap<>();
    private final Map<Path, ChatTemplate> chatTemplates = new HashMap<>();
    private Map<String, Object> dataRecord;
    private RulerText text;
    private Passages passages;
    private CodeFiles code;

    public Evaluation(Backend backend, Settings settings, CellStore store, Listener listener) {
        this.backend = backend;
        this.settings = settings;
        this.store = store;
        this.listener = listener;
    }

    /**
     * Reads a target's config and fingerprint, resolving its RoPE method as loading the model would (a CLEX
     * checkpoint's trained ODE layer included, read from its mapped weights); bad input fails here.
     */
    public static Resolved resolve(Target t) {
        ModelRecord record = ModelRecord.of(t.model());
        ModelConfig config = ModelConfig.parse(Json.readObject(record.path().resolve("config.json")),
                t.model().resolve("config.json").toString());
        try (WeightStore store = WeightStore.open(t.model())) {
            config = ClexLayer.attach(config, store);
        }
        RopeScaling rope;
        try {
            rope = config.ropeOrSpec(t.rope());
        } catch (RopewayException e) {
            throw new RopewayException(t.name() + ": " + e.getMessage(), e);
        }
        return new Resolved(t, record, config, rope);
    }

    public Outcome run(List<Target> targets, List<CellSpec> cells) {
        Set<String> names = new LinkedHashSet<>();
        for (Target t : targets)
            if (!names.add(t.name())) throw new RopewayException("two methods are named '" + t.name() + "'; name them apart");
        if (cells.stream().anyMatch(c -> c.task() == Task.PPL) && settings.data() == null)
            throw new RopewayException("perplexity needs documents (--data <dir>)");
        for (CellSpec c : cells) {
            if (c.task().ruler() != null && c.task().ruler().needsText() && settings.data() == null)
                throw new RopewayException(c.task().title() + " hides its needles in prose: it needs a text (--data <dir>: a "
                        + "prepared corpus, whose held-out novels are used, or any folder of text)");
            if (c.task().longBench() != null && c.task().needsText() && settings.data() == null)
                throw new RopewayException(c.task().title() + " reads paragraphs of a text: it needs one (--data <dir>: a "
                        + "prepared corpus, whose held-out novels are used, or any folder of text)");
            if (c.task().needsCode() && settings.code() == null)
                throw new RopewayException(c.task().title() + " completes lines of code: it needs a folder of source files "
                        + "(--code <dir>: a project of yours, or e.g. Python's standard library)");
        }
        List<Resolved> resolved = targets.stream().map(Evaluation::resolve).toList();

        // The plan: which cells are already saved.
        Map<String, Map<CellSpec, Map<String, Object>>> results = new LinkedHashMap<>();
        Map<String, Map<CellSpec, Map<String, Object>>> keys = new LinkedHashMap<>();
        int reused = 0;
        double work = 0, reusedWork = 0, seconds = 0;
        for (Resolved r : resolved) {
            Map<CellSpec, Map<String, Object>> got = new LinkedHashMap<>(), ks = new LinkedHashMap<>();
            for (CellSpec c : cells) {
                Map<String, Object> key = key(r, c);
                ks.put(c, key);
                work += work(c);
                if (store != null) {
                    var saved = store.load(r.target().name(), c.fileName(), key);
                    if (saved.isPresent()) {
                        got.put(c, saved.get().result());
                        seconds += saved.get().seconds();
                        reused++;
                        reusedWork += work(c);
                    }
                }
            }
            results.put(r.target().name(), got);
            keys.put(r.target().name(), ks);
        }
        listener.planned(resolved.size() * cells.size(), reused, work, reusedWork);

        int computed = 0;
        for (Resolved r : resolved) {
            String name = r.target().name();
            Map<CellSpec, Map<String, Object>> got = results.get(name);
            for (CellSpec c : cells) if (got.containsKey(c)) listener.finished(r.target(), c, got.get(c), true, work(c));
            if (got.size() == cells.size()) continue;
            try (Transformer model = Transformer.load(backend, r.target().model());
                 Tokenizer tok = Tokenizers.open(r.target().model())) {
                Map<CellSpec, Map<String, Object>> ordered = new LinkedHashMap<>();
                for (CellSpec c : cells) {
                    Map<String, Object> result = got.get(c);
                    if (result == null) {
                        long start = System.nanoTime();
                        try {
                            result = CellStore.asSaved(compute(r.target().model(), model, r.rope(), tok, c));
                            double took = (System.nanoTime() - start) / 1e9;
                            seconds += took;
                            if (store != null) store.save(name, c.fileName(), keys.get(name).get(c), result, took);
                        } catch (RopewayException e) {
                            // A cell the settings cannot produce (a prompt longer than the length, documents shorter
                            // than it) is reported, not saved: it costs nothing to find again.
                            result = Map.of("error", e.getMessage());
                        }
                        computed++;
                        listener.finished(r.target(), c, result, false, work(c));
                    }
                    ordered.put(c, result);
                }
                results.put(name, ordered);
            }
        }
        return new Outcome(results, computed, reused, seconds);
    }

    private Map<String, Object> compute(Path modelDir, Transformer model, RopeScaling rope, Tokenizer tok, CellSpec c) {
        PromptFormat format = settings.chat(c.task()) ? PromptFormat.chat(tok, chatTemplate(modelDir)) : PromptFormat.plain(tok);
        return switch (c.task()) {
            case PPL -> {
                int stride = settings.stride() > 0 ? Math.min(settings.stride(), c.length())
                        : settings.protocol() == PerplexityProtocol.PREFILL ? Math.min(c.length(), 4096) : Math.max(1, c.length() / 2);
                yield Perplexity.evaluate(model, rope, documents(modelDir, tok), c.length(), settings.protocol(), stride,
                        settings.maxTokens(), n -> { }).toJson();
            }
            case PASSKEY -> Passkey.run(model, rope, tok, c.length(), c.depth(), settings.trials(), settings.seed()).toJson();
            case LINES -> LongEvalLines.run(model, rope, format, c.length(), c.depth(), settings.trials(), settings.seed(),
                    settings.newTokens(c.task())).toJson();
            case PASSAGE_COUNT, PASSAGE_RETRIEVAL, LCC -> LongBenchStyle.run(model, rope, format, c.task().longBench(), c.length(),
                    settings.trials(), settings.seed(), settings.newTokens(c.task()), c.task().needsText() ? passages() : null,
                    c.task().needsCode() ? code() : null).toJson();
            default -> Ruler.run(model, rope, format, c.task().ruler(), c.length(), c.depth(), settings.trials(),
                    settings.seed(), settings.newTokens(c.task()), c.task().ruler().readsText() ? text() : null).toJson();
        };
    }

    /** What a cell's result depends on; a saved result is reused only under an equal key. */
    private Map<String, Object> key(Resolved r, CellSpec c) {
        Map<String, Object> k = new LinkedHashMap<>();
        k.put("task", c.task().label());
        k.put("length", c.length());
        if (c.task().hasDepth()) k.put("depth", c.depth());
        k.put("model", r.record().toJson());
        k.put("rope", r.rope().toParameters());
        switch (c.task()) {
            case PPL -> {
                k.put("data", dataRecord());
                k.put("protocol", settings.protocol().label());
                if (settings.protocol() == PerplexityProtocol.SLIDING)
                    k.put("stride", settings.stride() > 0 ? Math.min(settings.stride(), c.length()) : Math.max(1, c.length() / 2));
                if (settings.protocol() == PerplexityProtocol.PREFILL)
                    k.put("block", settings.stride() > 0 ? Math.min(settings.stride(), c.length()) : Math.min(c.length(), 4096));
                k.put("max_tokens", settings.maxTokens());
            }
            case PASSKEY -> {
                k.put("trials", settings.trials());
                k.put("seed", settings.seed());
            }
            default -> {
                k.put("trials", settings.trials());
                k.put("seed", settings.seed());
                k.put("new_tokens", settings.newTokens(c.task()));
                if (c.task().readsText() && settings.data() != null) k.put("text", dataRecord());
                if (c.task().needsCode()) k.put("code", code().record());
                if (settings.chat(c.task()))
                    k.put("chat_template", ModelRecord.sha256(chatTemplate(r.target().model()).source().getBytes(StandardCharsets.UTF_8)));
            }
        }
        return k;
    }

    /** A model folder's chat template, read once (a folder without one fails with a message that says so). */
    private ChatTemplate chatTemplate(Path modelDir) {
        return chatTemplates.computeIfAbsent(modelDir.toAbsolutePath().normalize(), dir -> ChatTemplate.find(dir).orElseThrow(
                () -> new RopewayException(modelDir + " has no chat template (no chat_template in tokenizer_config.json, no "
                        + "chat_template.jinja): evaluate it without --chat, as a base model")));
    }

    /**
     * A rough cost in token-forwards, for the progress display only: tokens run through the model, weighted up with
     * the length because attention's share grows with it.
     */
    private double work(CellSpec c) {
        double tokens = switch (c.task()) {
            case PPL -> settings.maxTokens() > 0 ? settings.maxTokens() : 1 << 16;
            case PASSKEY -> (double) settings.trials() * 11 * c.length();
            default -> (double) settings.trials() * (1 + settings.newTokens(c.task())) * c.length();
        };
        return tokens * (1 + c.length() / 4096.0);
    }

    /**
     * The documents perplexity and RULER's essays read: the folder, and the name and size of every file (cheap, and
     * edits show).
     */
    public Map<String, Object> dataRecord() {
        if (dataRecord == null) {
            Corpus corpus = Corpus.open(settings.data());
            List<Path> files = corpus.hasHeldout() ? corpus.heldoutFiles() : corpus.trainFiles();
            StringBuilder sb = new StringBuilder();
            long bytes = 0;
            Path root = corpus.root().toAbsolutePath().normalize();
            for (Path f : files) {
                try {
                    long size = Files.size(f);
                    bytes += size;
                    sb.append(root.relativize(f.toAbsolutePath().normalize())).append('\t').append(size).append('\n');
                } catch (IOException e) {
                    throw new RopewayException("cannot read " + f + ": " + e.getMessage());
                }
            }
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("path", root.toString());
            m.put("part", corpus.hasHeldout() ? Corpus.HELDOUT : "all");
            m.put("files", files.size());
            m.put("bytes", bytes);
            m.put("listing_sha256", ModelRecord.sha256(sb.toString().getBytes(StandardCharsets.UTF_8)));
            dataRecord = m;
        }
        return dataRecord;
    }

    /** The paragraphs of the passage tasks: the data's held-out part, read once. */
    private Passages passages() {
        if (passages == null) passages = Passages.of(Corpus.open(settings.data()));
        return passages;
    }

    /** The source files of lcc, read once. */
    private CodeFiles code() {
        if (code == null) code = CodeFiles.of(settings.code());
        return code;
    }

    /** The folder of source files the lcc cells read (its fingerprint); null without one. */
    public Map<String, Object> codeRecord() {
        return settings.code() == null ? null : code().record();
    }

    /** The text of RULER's essay haystacks and long cwe lists: the data's held-out part, read once; null without data. */
    private RulerText text() {
        if (text == null && settings.data() != null) text = RulerText.of(Corpus.open(settings.data()));
        return text;
    }

    /** The perplexity documents in {@code tok}'s ids, each with BOS in front; tokenised once per tokenizer file. */
    private List<int[]> documents(Path modelDir, Tokenizer tok) {
        String id;
        try {
            Path file = modelDir.resolve("tokenizer.json");
            id = Files.isRegularFile(file) ? ModelRecord.sha256(Files.readAllBytes(file)) : modelDir.toAbsolutePath().toString();
        } catch (IOException e) {
            throw new RopewayException("cannot read the tokenizer of " + modelDir + ": " + e.getMessage());
        }
        return documentsByTokenizer.computeIfAbsent(id, k -> {
            Corpus corpus = Corpus.open(settings.data());
            List<int[]> docs = new ArrayList<>();
            for (CorpusDocument d : corpus.hasHeldout() ? corpus.heldout() : corpus.train())
                docs.add(tok.encodeWithBos(d.text()));
            return docs;
        });
    }
}
