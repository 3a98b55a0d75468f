package dev.ropeway.cli;

import dev.ropeway.RopewayException;
import dev.ropeway.eval.CellStore;
import dev.ropeway.eval.Evaluation;
import dev.ropeway.eval.LongEvalLines;
import dev.ropeway.eval.Passkey;
import dev.ropeway.eval.Perplexity;
import dev.ropeway.eval.PerplexityProtocol;
import dev.ropeway.eval.Ruler;
import dev.ropeway.eval.RunRecord;
import dev.ropeway.io.Json;
import dev.ropeway.tensor.Backend;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code ropeway eval}: long-context evaluations of one model. */
@Command(name = "eval", mixinStandardHelpOptions = true, description = "Long-context evaluation of one model.",
        subcommands = {EvalCommand.Ppl.class, EvalCommand.PasskeyCommand.class, EvalCommand.NiahCommand.class,
                EvalCommand.VtCommand.class, EvalCommand.LinesCommand.class, EvalCommand.RulerSuite.class, EvalCommand.LongBenchSuite.class})
final class EvalCommand implements Runnable {
    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    /** What every evaluation takes: the model, its RoPE method, where to keep cells, how to print. */
    abstract static class Base implements Callable<Integer> {
        @picocli.CommandLine.Spec
        picocli.CommandLine.Model.CommandSpec spec;
        @Option(names = "--model", required = true, paramLabel = "<dir>", order = 0, description = "Checkpoint folder, or a GGUF file (imported once into the cache, then read from there).")
        Path model;
        @Option(names = "--rope", paramLabel = "<spec>", order = 50, description = "Replace the model's RoPE method (see score --rope).")
        String rope;
        @Option(names = "--out", paramLabel = "<dir>", order = 51, description = {"Keep each cell's result in <dir>/cells/ as it "
                + "finishes and reuse it on a rerun (an interrupted run resumes); the whole result goes to <dir>/<task>.json."})
        Path out;
        @Option(names = "--json", order = 52, description = "Print the result as JSON.")
        boolean json;
        @Mixin
        BackendOptions backendOptions;

        abstract Evaluation.Task task();

        /**
         * Whether a cell that cannot be computed is reported and the others shown (the command still fails when no
         * cell has a result); else the command fails on it.
         */
        boolean keepsGoing() {
            return false;
        }

        /** The name of the run: its progress line and {@code <out>/<label>.json}. */
        String label() {
            return task().label();
        }

        abstract Evaluation.Settings settings();

        abstract List<Evaluation.CellSpec> cells();

        abstract void print(Evaluation.Resolved resolved, List<Map<String, Object>> results);

        @Override
        public Integer call() {
            RunRecord run = RunRecord.now(spec.commandLine().getParseResult().originalArgs());
            Evaluation.Target target = ModelFolders.resolve(
                    new Evaluation.Target(Evaluation.Target.defaultName(model, rope), model, rope));
            Evaluation.Resolved resolved = Evaluation.resolve(target);
            List<Evaluation.CellSpec> cells = cells();
            Evaluation.Settings settings = settings();
            EvaluationProgress progress = new EvaluationProgress(label(), spec.commandLine().getErr());
            Evaluation.Outcome outcome;
            Evaluation evaluation;
            try (Backend backend = backendOptions.open()) {
                evaluation = new Evaluation(backend, settings, out == null ? null : new CellStore(out.resolve("cells")), progress);
                outcome = evaluation.run(List.of(target), cells);
            }
            progress.finish();
            List<Map<String, Object>> results = new ArrayList<>();
            Map<Evaluation.CellSpec, Map<String, Object>> byCell = outcome.results().get(target.name());
            if (cells.stream().allMatch(c -> byCell.get(c).containsKey("error")))
                throw new RopewayException(cells.getFirst().fileName() + ": " + byCell.get(cells.getFirst()).get("error"));
            for (Evaluation.CellSpec c : cells) {
                Map<String, Object> r = byCell.get(c);
                if (r.containsKey("error")) {
                    if (!keepsGoing()) throw new RopewayException(c.fileName() + ": " + r.get("error"));
                    spec.commandLine().getErr().println("no result for " + c.fileName() + ": " + r.get("error"));
                    Map<String, Object> e = new LinkedHashMap<>();
                    e.put("task", c.task().title());
                    e.put("length", c.length());
                    if (c.task().hasDepth()) e.put("depth", c.depth());
                    e.put("error", r.get("error"));
                    r = e;
                }
                results.add(r);
            }
            Map<String, Object> doc = new LinkedHashMap<>();
            doc.put("run", run.toJson());
            doc.put("task", label());
            doc.put("model", resolved.record().toJson());
            doc.put("rope", resolved.rope().toParameters());
            Map<String, Object> settingsJson = settingsJson(settings, settings.data() != null ? evaluation.dataRecord() : null);
            if (settings.code() != null) settingsJson.put("code", evaluation.codeRecord());
            doc.put("settings", settingsJson);
            doc.put("results", results);
            if (out != null) Json.writeAtomic(out.resolve(label() + ".json"), doc);
            if (json) System.out.println(Output.json(doc));
            else print(resolved, results);
            return 0;
        }

        Map<String, Object> settingsJson(Evaluation.Settings s, Map<String, Object> data) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("trials", s.trials());
            m.put("seed", s.seed());
            if (data != null) m.put("data", data);
            return m;
        }
    }

    static List<Integer> parseLengths(List<String> texts) {
        List<Integer> out = new ArrayList<>();
        for (String t : texts) out.add(parseLength(t));
        return out;
    }

    static int parseLength(String text) {
        String s = text.strip().toLowerCase(Locale.ROOT);
        long mult = 1;
        if (s.endsWith("k")) {
            mult = 1024;
            s = s.substring(0, s.length() - 1);
        }
        try {
            long v = Long.parseLong(s) * mult;
            if (v < 2 || v > Integer.MAX_VALUE) throw new NumberFormatException();
            return (int) v;
        } catch (NumberFormatException e) {
            throw new RopewayException("bad length '" + text + "' (a whole number of tokens, optionally with k = 1024)");
        }
    }

    static List<Double> checkDepths(List<Double> depths) {
        for (double d : depths) if (!(d >= 0 && d <= 1)) throw new RopewayException("depths must be in [0, 1], got " + d);
        return depths;
    }

    @Command(name = "ppl", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"Perplexity on long documents at several context lengths.",
                    "chunks: non-overlapping windows of exactly L tokens (CLEX's protocol); sliding: windows of L every "
                    + "--stride tokens, each scoring only its new tokens (YaRN's and E²-LLM's); prefill: the chunks windows fed "
                    + "through the KV cache --stride tokens per forward (CLEX's chunked evaluation)."})
    static final class Ppl extends Base {
        @Option(names = "--data", required = true, paramLabel = "<dir>", order = 1,
                description = "Documents: a prepared corpus (its heldout/ part) or any folder of .txt / .jsonl files.")
        Path data;
        @Option(names = "--lengths", required = true, split = ",", paramLabel = "<L>", order = 2,
                description = "Context lengths in tokens, e.g. 256,512,1k,4k.")
        List<String> lengths;
        @Option(names = "--protocol", defaultValue = "chunks", order = 3, description = "chunks, sliding or prefill (default: ${DEFAULT-VALUE}).")
        String protocol;
        @Option(names = "--stride", order = 4, description = "sliding: step between windows (default: L / 2); prefill: tokens per forward (default: min(L, 4096)).")
        Integer stride;
        @Option(names = "--max-tokens", defaultValue = "32768", order = 5,
                description = "Tokens scored per length at most, 0 = all (default: ${DEFAULT-VALUE}).")
        long maxTokens;

        @Override
        Evaluation.Task task() {
            return Evaluation.Task.PPL;
        }

        @Override
        Evaluation.Settings settings() {
            if (stride != null && stride < 1) throw new RopewayException("--stride must be at least 1, got " + stride);
            return new Evaluation.Settings(data, PerplexityProtocol.parse(protocol), stride == null ? 0 : stride, maxTokens,
                    1, 0, 0);
        }

        @Override
        Map<String, Object> settingsJson(Evaluation.Settings s, Map<String, Object> data) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("data", data);
            m.put("protocol", s.protocol().label());
            m.put("stride", s.stride());
            m.put("max_tokens", s.maxTokens());
            return m;
        }

        @Override
        List<Evaluation.CellSpec> cells() {
            return Evaluation.CellSpec.grid(List.of(task()), parseLengths(lengths), List.of(), List.of());
        }

        @Override
        void print(Evaluation.Resolved r, List<Map<String, Object>> results) {
            System.out.printf("%s, %s protocol, RoPE %s%n", model, PerplexityProtocol.parse(protocol).label(), r.ropeDescription());
            for (Map<String, Object> m : results) {
                Perplexity.Result p = Perplexity.Result.fromJson(m);
                System.out.printf(Locale.ROOT, "  L = %,7d  perplexity %10.3f  (loss %.4f, %,d tokens, %d windows)%n",
                        p.length(), p.perplexity(), p.loss(), p.tokens(), p.windows());
            }
        }
    }

    /** Needle depths, for the tasks that hide a needle at a depth (passkey, niah). */
    static final class Depths {
        @Option(names = "--depths", split = ",", defaultValue = "0,0.25,0.5,0.75,1", order = 3,
                description = "Needle depths in [0, 1] (default: ${DEFAULT-VALUE}).")
        List<Double> values;
    }

    /** Options of the retrieval tasks: lengths, depths, trials, seed. A cell that cannot be built is reported, the others shown. */
    abstract static class Retrieval extends Base {
        @Option(names = "--lengths", required = true, split = ",", paramLabel = "<L>", order = 2, description = "Prompt lengths in tokens.")
        List<String> lengths;
        @Option(names = "--trials", defaultValue = "5", order = 4, description = "Trials (keys) per cell (default: ${DEFAULT-VALUE}).")
        int trials;
        @Option(names = "--seed", defaultValue = "0", order = 5)
        long seed;

        List<Double> depths() {
            return List.of();
        }

        int newTokens() {
            return 0;
        }

        /** A text the task reads (RULER's essay haystacks, the passage tasks' paragraphs), or null. */
        Path text() {
            return null;
        }

        /** A folder of source files the task reads (lcc), or null. */
        Path code() {
            return null;
        }

        /** Whether the prompts go through the model's chat template. */
        boolean chat() {
            return false;
        }

        List<Evaluation.Task> tasks() {
            return List.of(task());
        }

        @Override
        Evaluation.Settings settings() {
            if (trials < 1) throw new RopewayException("--trials must be at least 1, got " + trials);
            return new Evaluation.Settings(text(), PerplexityProtocol.CHUNKS, 0, 0, trials, seed, newTokens(), code(), chat());
        }

        @Override
        List<Evaluation.CellSpec> cells() {
            return Evaluation.CellSpec.grid(tasks(), List.of(), parseLengths(lengths), checkDepths(depths()));
        }

        @Override
        boolean keepsGoing() {
            return true;
        }

        /** Prints a cell that has no result (its error went to stderr) as a line of its own; false for the others. */
        static boolean printedAsMissing(Map<String, Object> m) {
            if (!m.containsKey("error")) return false;
            Object depth = m.get("depth");
            System.out.printf(Locale.ROOT, "  L = %,6d %s —  (no result)%n", ((Number) m.get("length")).intValue(),
                    depth == null ? "" : String.format(Locale.ROOT, " depth %.2f ", ((Number) depth).doubleValue()));
            return true;
        }

        /** The line above a retrieval task's cells. */
        void printHeader(Evaluation.Resolved r) {
            System.out.printf("%s, RoPE %s, %d trials per cell%n", model, r.ropeDescription(), trials);
        }
    }

    @Command(name = "passkey", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"Passkey retrieval (the Landmark / LongLoRA / YaRN prompt) over a grid of lengths and needle depths.",
                    "Scores: first integer of the greedy answer, exact key tokens, and the key's log-likelihood."})
    static final class PasskeyCommand extends Retrieval {
        @Mixin
        Depths depths;

        @Override
        Evaluation.Task task() {
            return Evaluation.Task.PASSKEY;
        }

        @Override
        List<Double> depths() {
            return depths.values;
        }

        @Override
        void print(Evaluation.Resolved r, List<Map<String, Object>> results) {
            printHeader(r);
            for (Map<String, Object> m : results) {
                if (printedAsMissing(m)) continue;
                Passkey.Cell c = Passkey.Cell.fromJson(m);
                System.out.printf(Locale.ROOT, "  L = %,6d  depth %.2f  accuracy %.2f  exact %.2f  key log-likelihood %8.3f%n",
                        c.targetTokens(), c.depth(), c.regexAccuracy(), c.exactAccuracy(), c.meanKeyLogLikelihood());
            }
        }
    }

    /** RULER's tasks and the LongBench-style ones, which also take the number of tokens to generate. */
    abstract static class RulerCommand extends Retrieval {
        @Option(names = "--new-tokens", order = 6, paramLabel = "<n>",
                description = {"Tokens to generate, also reserved within the length (default: each task's own: RULER's 128 "
                        + "for the needles, 30 for vt, 120 for cwe, 50 for fwe; LongBench's 32 for the passage tasks, 64 for "
                        + "lcc; LongEval's 15 for lines, 100 with --chat)."})
        Integer newTokens;
        @Option(names = "--chat", order = 7, description = {"Prompt a chat model through its own chat template "
                + "(tokenizer_config.json or chat_template.jinja): the question as the user's message and the answer "
                + "prefix, where the task has one (RULER's), after the start of the assistant's reply, as RULER prompts "
                + "chat models; LongBench's and LongEval's prompts go whole into the message. Generation stops at the "
                + "model's end of turn."})
        boolean chat;

        @Override
        boolean chat() {
            return chat;
        }

        @Override
        int newTokens() {
            if (newTokens != null && newTokens < 1) throw new RopewayException("--new-tokens must be at least 1, got " + newTokens);
            return newTokens == null ? 0 : newTokens;
        }

        @Override
        Map<String, Object> settingsJson(Evaluation.Settings s, Map<String, Object> data) {
            Map<String, Object> m = super.settingsJson(s, data);
            if (s.chat()) m.put("chat", true);
            if (tasks().size() == 1) {
                m.put("new_tokens", s.newTokens(task()));
            } else {
                Map<String, Object> byTask = new LinkedHashMap<>();
                for (Evaluation.Task t : tasks()) byTask.put(t.title(), s.newTokens(t));
                m.put("new_tokens", byTask);
            }
            return m;
        }

        @Override
        void print(Evaluation.Resolved r, List<Map<String, Object>> results) {
            printHeader(r);
            for (Map<String, Object> m : results) {
                if (printedAsMissing(m)) continue;
                Ruler.Cell c = Ruler.Cell.fromJson(m);
                System.out.printf(Locale.ROOT, "  L = %,6d %s string_match_all %6.2f  all found %d/%d  answer log-likelihood %8.3f%n",
                        c.targetTokens(), Double.isNaN(c.depth()) ? "" : String.format(Locale.ROOT, " depth %.2f ", c.depth()),
                        c.score(), c.allFound(), c.trials(), c.meanAnswerLogLikelihood());
            }
        }
    }

    @Command(name = "niah", aliases = "niah_single_1", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"RULER's niah_single_1: one 7-digit value hidden in a noise haystack, at each length and needle depth.",
                    "Scored by RULER's string_match_all, and the log-likelihood of the value."})
    static final class NiahCommand extends RulerCommand {
        @Mixin
        Depths depths;

        @Override
        Evaluation.Task task() {
            return Evaluation.Task.NIAH;
        }

        @Override
        List<Double> depths() {
            return depths.values;
        }
    }

    @Command(name = "lines", aliases = "longeval_lines", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"LongEval's line retrieval: a record of \"line <index>: REGISTER_CONTENT is <number>\" lines filling "
                    + "each length, and the question for the line at each depth.",
                    "Scored by LongEval's rule (the last integer of the answer's line is the number), and the number's "
                    + "log-likelihood."})
    static final class LinesCommand extends RulerCommand {
        @Mixin
        Depths depths;

        @Override
        Evaluation.Task task() {
            return Evaluation.Task.LINES;
        }

        @Override
        List<Double> depths() {
            return depths.values;
        }

        @Override
        void print(Evaluation.Resolved r, List<Map<String, Object>> results) {
            printHeader(r);
            for (Map<String, Object> m : results) {
                if (printedAsMissing(m)) continue;
                LongEvalLines.Cell c = LongEvalLines.Cell.fromJson(m);
                System.out.printf(Locale.ROOT, "  L = %,6d  depth %.2f  %,5d lines  accuracy %.2f  number log-likelihood %8.3f%n",
                        c.targetTokens(), c.depth(), c.lines(), c.accuracy(), c.meanAnswerLogLikelihood());
            }
        }
    }

    @Command(name = "vt", aliases = "variable_tracking", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"RULER's vt: find every variable a chain of assignments gives a value, at each length.",
                    "Scored by RULER's string_match_all, and the log-likelihood of the five names."})
    static final class VtCommand extends RulerCommand {
        @Override
        Evaluation.Task task() {
            return Evaluation.Task.VT;
        }
    }

    /**
     * eval ruler and eval longbench: the tasks --tasks selects at each length, a table of their scores and their
     * average by length; a cell that cannot be built is reported and shown as "—".
     */
    abstract static class Suite extends RulerCommand {
        /** The tasks --tasks selects, once parsed. */
        private List<Evaluation.Task> selected;

        /** The names --tasks gives. */
        abstract List<String> names();

        @Override
        Evaluation.Task task() {
            return tasks().getFirst();
        }

        @Override
        List<Evaluation.Task> tasks() {
            if (selected == null) {
                Evaluation.Task.Selection selection = Evaluation.Task.select(names(), text() != null, code() != null);
                for (String note : selection.notes()) spec.commandLine().getErr().printf("eval %s: %s%n", label(), note);
                if (selection.tasks().isEmpty())
                    throw new RopewayException("no task left to run: give " + (code() == null ? "--code or " : "") + "--data");
                selected = selection.tasks();
            }
            return selected;
        }

        @Override
        void print(Evaluation.Resolved r, List<Map<String, Object>> results) {
            printHeader(r);
            List<Map<String, Object>> cells = results.stream().filter(m -> !m.containsKey("error")).toList();
            List<Integer> lengths = parseLengths(this.lengths);
            System.out.print(String.format(Locale.ROOT, "  %-18s", "task"));
            for (int l : lengths) System.out.printf(Locale.ROOT, " %9s", String.format(Locale.ROOT, "%,d", l));
            System.out.printf("   (%s by length%s; answer log-likelihood)%n", scoreName(),
                    tasks().stream().anyMatch(Evaluation.Task::hasDepth) ? ", over depths" : "");
            Map<Integer, List<Double>> byLength = new LinkedHashMap<>();
            for (Evaluation.Task t : tasks()) {
                StringBuilder scores = new StringBuilder(), lls = new StringBuilder();
                for (int l : lengths) {
                    List<Map<String, Object>> at = cells.stream().filter(c -> t.title().equals(c.get("task"))
                            && ((Number) c.get("length")).intValue() == l).toList();
                    double score = at.stream().mapToDouble(c -> ((Number) c.get("score")).doubleValue()).average().orElse(Double.NaN);
                    double ll = at.stream().mapToDouble(c -> ((Number) c.get("answer_log_likelihood")).doubleValue())
                            .average().orElse(Double.NaN);
                    byLength.computeIfAbsent(l, k -> new ArrayList<>()).add(score);
                    scores.append(at.isEmpty() ? String.format(Locale.ROOT, " %9s", "—") : String.format(Locale.ROOT, " %9.2f", score));
                    lls.append(at.isEmpty() ? " —" : String.format(Locale.ROOT, " %.2f", ll));
                }
                System.out.printf(Locale.ROOT, "  %-18s%s   (%s)%n", t.title(), scores, lls.toString().strip());
            }
            // The average needs every task's score at that length.
            StringBuilder avg = new StringBuilder();
            for (int l : lengths) {
                List<Double> scores = byLength.get(l);
                avg.append(scores.stream().anyMatch(d -> d.isNaN()) ? String.format(Locale.ROOT, " %9s", "—")
                        : String.format(Locale.ROOT, " %9.2f", scores.stream().mapToDouble(d -> d).average().orElse(Double.NaN)));
            }
            System.out.printf(Locale.ROOT, "  %-18s%s%n", "average", avg);
        }

        /** What the scores are, for the table's heading. */
        abstract String scoreName();
    }

    @Command(name = "ruler", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"RULER's synthetic tasks at each length: the eight needle-in-a-haystack variants, vt, cwe and fwe "
                    + "(all of RULER but its two QA tasks, whose data is not offline), then their average by length.",
                    "Each task is scored by RULER's string_match_all (0-100), with the log-likelihood of its answer. The tasks "
                    + "with one needle are run at each --depths; the others place their needles as RULER does."})
    static final class RulerSuite extends Suite {
        @Option(names = "--tasks", split = ",", defaultValue = "ruler", paramLabel = "<task>", order = 1,
                description = {"Tasks: ruler (all: niah_single_1, niah_single_2, niah_single_3, niah_multikey_1, "
                        + "niah_multikey_2, niah_multikey_3, niah_multivalue, niah_multiquery, vt, cwe, fwe) or any of them "
                        + "(default: ${DEFAULT-VALUE})."})
        List<String> taskNames;
        @Option(names = "--data", paramLabel = "<dir>", order = 7, description = {"Prose for the essay haystacks "
                + "(niah_single_2, niah_single_3, niah_multikey_1, niah_multivalue, niah_multiquery) and the words of cwe lists "
                + "longer than the built-in word list: a prepared corpus (its held-out novels) or any folder of text. Without "
                + "it, --tasks ruler runs the tasks that need none."})
        Path data;
        @Mixin
        Depths depths;

        @Override
        List<String> names() {
            return taskNames;
        }

        @Override
        String label() {
            return "ruler";
        }

        @Override
        String scoreName() {
            return "string_match_all";
        }

        @Override
        Path text() {
            return data;
        }

        @Override
        List<Double> depths() {
            return depths.values;
        }
    }

    @Command(name = "longbench", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"LongBench-style tasks rebuilt offline, at each length: passage_count and passage_retrieval on "
                    + "paragraphs of a text, lcc (next-line code completion) on a folder of source files, with LongBench's "
                    + "prompts and metrics; then their average by length. Labelled LongBench-style (synthetic, offline): "
                    + "LongBench's own data is not offline, so these are not LongBench scores.",
                    "Scores 0-100: count_score, retrieval_score (the share of the numbers in the answer that are right) "
                    + "and code_sim_score (fuzzy similarity of the first code line), with the log-likelihood of the answer."})
    static final class LongBenchSuite extends Suite {
        @Option(names = "--tasks", split = ",", defaultValue = "longbench", paramLabel = "<task>", order = 1,
                description = {"Tasks: longbench (all: passage_count, passage_retrieval, lcc) or any of them "
                        + "(default: ${DEFAULT-VALUE})."})
        List<String> taskNames;
        @Option(names = "--data", paramLabel = "<dir>", order = 7, description = {"The paragraphs of the passage tasks: a "
                + "prepared corpus (its held-out novels) or any folder of text, paragraphs separated by blank lines."})
        Path data;
        @Option(names = "--code", paramLabel = "<dir>", order = 8, description = {"The source files lcc completes: any "
                + "folder of code (.py, .java, .c, .cs, .js, .go, .rs and kin), e.g. a project of yours or "
                + "/usr/lib/python3.*."})
        Path code;

        @Override
        List<String> names() {
            return taskNames;
        }

        @Override
        String label() {
            return "longbench";
        }

        @Override
        String scoreName() {
            return "LongBench's metric";
        }

        @Override
        Path text() {
            return data;
        }

        @Override
        Path code() {
            return code;
        }
    }
}
