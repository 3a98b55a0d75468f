package dev.ropeway.eval;

import dev.ropeway.RopewayException;
import dev.ropeway.io.AtomicWrite;
import dev.ropeway.io.Json;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.BiFunction;

/**
 * The report of a comparison: {@code report.md} (provenance, the methods, then a table per task), {@code report.json}
 * (the same facts and every cell's result) and PNG charts (perplexity against length; a heat map of length × depth
 * per retrieval task with depths; the answer's log-likelihood against length for RULER's other tasks and the
 * LongBench-style ones, and each suite's average score when several of its tasks ran). Written from the cells alone, so a rerun that computes nothing writes
 * the same report.
 */
public final class CompareReport {

    /** What was compared and how: the grid, the settings, and the trained length the ratios refer to. */
    public record Plan(List<Evaluation.Task> tasks, List<Integer> lengths, List<Integer> retrievalLengths,
                       List<Double> depths, Evaluation.Settings settings, int trainLength) {}

    private final Path out;
    private final RunRecord run;
    private final List<Evaluation.Resolved> methods;
    private final Plan plan;
    private final Map<String, Map<Evaluation.CellSpec, Map<String, Object>>> results;
    private final Evaluation.Outcome outcome;
    private final Map<String, Object> dataRecord;
    private final StringBuilder md = new StringBuilder();
    private final List<String> errors = new ArrayList<>();

    public CompareReport(Path out, RunRecord run, List<Evaluation.Resolved> methods, Plan plan, Evaluation.Outcome outcome,
                         Map<String, Object> dataRecord) {
        this.out = out;
        this.run = run;
        this.methods = methods;
        this.plan = plan;
        this.outcome = outcome;
        this.results = outcome.results();
        this.dataRecord = dataRecord;
    }

    /** Writes report.md, report.json and the charts into the output folder; returns report.md's path. */
    public Path write() {
        header();
        if (plan.tasks().contains(Evaluation.Task.PPL)) perplexity();
        if (plan.tasks().contains(Evaluation.Task.PASSKEY)) depthTask(Evaluation.Task.PASSKEY);
        if (plan.tasks().contains(Evaluation.Task.LINES)) depthTask(Evaluation.Task.LINES);
        List<Evaluation.Task> ruler = plan.tasks().stream().filter(t -> t.ruler() != null).toList();
        if (ruler.size() > 1)
            suiteAverage(ruler, "RULER average", fmt("The mean of RULER's string_match_all (0–100) over the %d RULER tasks "
                    + "run (%s), each task with one needle averaged over its depths; the tasks follow one by one below. "
                    + "Higher is better.", ruler.size(), titles(ruler)), "ruler-average.png",
                    "RULER: mean string_match_all over the tasks run");
        for (Evaluation.Task t : ruler) {
            if (t.hasDepth()) depthTask(t);
            else lengthTask(t);
        }
        List<Evaluation.Task> longBench = plan.tasks().stream().filter(t -> t.longBench() != null).toList();
        if (longBench.size() > 1)
            suiteAverage(longBench, "LongBench-style average (synthetic, offline)", fmt("The mean of the %d LongBench-style "
                    + "tasks' scores (0–100) run (%s). These tasks rebuild LongBench's passage_count, passage_retrieval_en "
                    + "and lcc offline, with LongBench's prompts and metrics on other text and code, each prompt sized to "
                    + "the length: they are not LongBench scores. Higher is better.", longBench.size(), titles(longBench)),
                    "longbench-average.png", "LongBench-style (synthetic, offline): mean score over the tasks run");
        for (Evaluation.Task t : longBench) lengthTask(t);
        if (!errors.isEmpty()) {
            md.append("\n## Cells that could not be computed\n\n");
            for (String e : errors) md.append("- ").append(e).append('\n');
        }
        Path file = out.resolve("report.md");
        try {
            Files.createDirectories(out);
        } catch (IOException e) {
            throw new RopewayException("cannot create " + out + ": " + e.getMessage());
        }
        AtomicWrite.bytes(file, md.toString().getBytes(StandardCharsets.UTF_8));
        Json.writeAtomic(out.resolve("report.json"), json());
        return file;
    }

    private String fmt(String pattern, Object... args) {
        return String.format(Locale.ROOT, pattern, args);
    }

    private void header() {
        md.append("# Ropeway compare\n\n");
        md.append(fmt("%d method(s) × %d task(s); lengths in tokens; trained length L = %d (the 1× of every ratio).%n%n",
                methods.size(), plan.tasks().size(), plan.trainLength()));
        md.append("```\n").append(run.command()).append("\n```\n\n");
        if (plan.settings().chat() && plan.tasks().stream().anyMatch(Evaluation.Task::chats))
            md.append("The lines, RULER and LongBench-style prompts went through each model's own chat template (the "
                    + "question as the user's message, RULER's answer prefix after the start of the reply).\n\n");
        Map<String, Object> m = run.machine();
        md.append(fmt("Ropeway %s, git revision `%s`, %s. Machine: %s cores, %s, %s (%s), Java %s.%n%n", run.version(),
                run.revision(), run.date(), m.get("cores"), m.get("cpu"), m.get("os"), m.get("arch"), m.get("java")));
        md.append(fmt("%d cells took %s to compute (wall-clock time summed over cells; this invocation computed %d and "
                        + "reused %d saved by earlier ones, in `cells/`).%n%n", outcome.computed() + outcome.reused(),
                duration(outcome.cellSeconds()), outcome.computed(), outcome.reused()));
        md.append("| method | model | RoPE at inference | config.json SHA-256 | weights |\n|---|---|---|---|---|\n");
        for (Evaluation.Resolved r : methods)
            md.append(fmt("| %s | `%s` | %s%s | `%s` | %,d bytes |%n", r.target().name(), r.record().path(),
                    r.target().rope() == null ? "own: " : "`--rope " + r.target().rope() + "`: ", r.ropeDescription(),
                    r.record().configSha256().substring(0, 12), r.record().weightBytes()));
    }

    private static String duration(double seconds) {
        long s = Math.round(seconds);
        return s < 60 ? s + " s" : s < 3600 ? (s / 60) + " min " + (s % 60) + " s" : (s / 3600) + " h " + (s % 3600 / 60) + " min";
    }

    private Map<String, Object> cell(String method, Evaluation.CellSpec c) {
        Map<String, Object> r = results.getOrDefault(method, Map.of()).get(c);
        if (r != null && r.containsKey("error")) {
            errors.add(fmt("%s %s: %s", method, c.fileName(), r.get("error")));
            return null;
        }
        return r;
    }

    private String lengthHeader(List<Integer> lengths) {
        StringBuilder sb = new StringBuilder("| method |");
        for (int l : lengths) sb.append(fmt(" %,d (%s×) |", l, factor(l)));
        sb.append("\n|---|");
        sb.append("---|".repeat(lengths.size()));
        return sb.append('\n').toString();
    }

    private String factor(int length) {
        double f = (double) length / plan.trainLength();
        return f == Math.rint(f) ? Long.toString((long) f) : fmt("%.2f", f);
    }

    private void perplexity() {
        Evaluation.Settings s = plan.settings();
        md.append(fmt("%n## Perplexity%n%n`%s` protocol%s on `%s` (%s part, %d files), at most %s scored tokens per "
                        + "length. Each cell: perplexity (ratio to the same method at %s). Lower is better.%n%n",
                s.protocol().label(), s.protocol() == PerplexityProtocol.SLIDING
                        ? (s.stride() > 0 ? " (stride " + s.stride() + ")" : " (stride L / 2)") : "",
                dataRecord.get("path"), dataRecord.get("part"), ((Number) dataRecord.get("files")).intValue(),
                s.maxTokens() > 0 ? fmt("%,d", s.maxTokens()) : "all", reference() == plan.trainLength()
                        ? fmt("L = %d", plan.trainLength()) : fmt("%d, the shortest length", reference())));
        md.append(lengthHeader(plan.lengths()));
        Map<String, List<Perplexity.Result>> series = new LinkedHashMap<>();
        for (Evaluation.Resolved r : methods) {
            String name = r.target().name();
            List<Perplexity.Result> rs = new ArrayList<>();
            Double ref = null;
            for (int l : plan.lengths()) {
                Map<String, Object> c = cell(name, new Evaluation.CellSpec(Evaluation.Task.PPL, l, Double.NaN));
                Perplexity.Result p = c == null ? null : Perplexity.Result.fromJson(c);
                if (p != null && l == reference()) ref = p.perplexity();
                if (p != null) rs.add(p);
            }
            md.append("| ").append(name).append(" |");
            for (int l : plan.lengths()) {
                Perplexity.Result p = rs.stream().filter(x -> x.length() == l).findFirst().orElse(null);
                if (p == null) md.append(" — |");
                else md.append(ref == null ? fmt(" %.2f |", p.perplexity()) : fmt(" %.2f (%.2f×) |", p.perplexity(), p.perplexity() / ref));
            }
            md.append('\n');
            series.put(name, rs);
        }
        if (Plots.perplexityByLength(out.resolve("perplexity.png"), "Perplexity by context length (" + s.protocol().label()
                + " protocol)", series, plan.trainLength()))
            md.append("\n![perplexity against context length, one line per method](perplexity.png)\n");
    }

    /** The length the perplexity ratios divide by: the trained length when measured, else the shortest. */
    private int reference() {
        return plan.lengths().contains(plan.trainLength()) ? plan.trainLength()
                : plan.lengths().stream().mapToInt(Integer::intValue).min().orElse(plan.trainLength());
    }

    private static String titles(List<Evaluation.Task> tasks) {
        return String.join(", ", tasks.stream().map(Evaluation.Task::title).toList());
    }

    /**
     * A suite's headline (RULER's, the LongBench-style tasks'): by method and length, the mean over the tasks run of
     * their scores (a task with depths counting the mean over its depths), "—" where a task's cell is missing.
     */
    private void suiteAverage(List<Evaluation.Task> tasks, String heading, String intro, String png, String chartTitle) {
        md.append(fmt("%n## %s%n%n%s%n%n", heading, intro));
        Map<String, List<Plots.Point>> series = lengthRows((name, l) -> {
            double sum = 0;
            for (Evaluation.Task t : tasks) {
                double taskSum = 0;
                int n = 0;
                for (double d : t.hasDepth() ? plan.depths() : List.of(Double.NaN)) {
                    Map<String, Object> c = results.getOrDefault(name, Map.of()).get(new Evaluation.CellSpec(t, l, d));
                    if (c == null || c.containsKey("error")) continue;
                    taskSum += ((Number) c.get("score")).doubleValue();
                    n++;
                }
                if (n == 0) return null;
                sum += taskSum / n;
            }
            double mean = sum / tasks.size();
            return new LengthEntry(fmt("%.1f", mean), mean);
        });
        if (series.values().stream().anyMatch(p -> !p.isEmpty())
                && Plots.byLength(out.resolve(png), chartTitle, "score (0-100, higher is better)", series, plan.trainLength()))
            md.append(fmt("%n![%s against length](%s)%n", heading, png));
    }

    /** Passkey and RULER's single-needle tasks: a summary by length, a heat map of length × depth, the per-depth detail. */
    private void depthTask(Evaluation.Task task) {
        boolean passkey = task == Evaluation.Task.PASSKEY, lines = task == Evaluation.Task.LINES;
        String title = passkey ? "Passkey retrieval" : lines ? "LongEval lines" : "RULER " + task.title();
        String llName = passkey ? "key" : lines ? "number" : "answer";
        Evaluation.Settings s = plan.settings();
        md.append(fmt("%n## %s%n%n", title));
        md.append(passkey
                ? "The Landmark prompt with the key at each depth of the filler; accuracy = the first integer of the greedy "
                + "answer is the key. "
                : lines ? fmt("LongEval's record of lines \"line <index>: REGISTER_CONTENT is <number>\", as many as fit, "
                + "and the question for the line at each depth, %d tokens generated; accuracy = LongEval's rule (the last "
                + "integer of the answer's line is the number). ", s.newTokens(task))
                : fmt("%s, %d tokens generated; accuracy = RULER's string_match_all (the value appears in the output).%s ",
                task.ruler().summary(), s.newTokens(task), proseSource(task)));
        md.append(fmt("%d trials per (length, depth), seed %d. Each cell: correct / trials over all depths, and the mean "
                + "log-likelihood of the %s's tokens (higher is better; it moves where accuracy is still 0).%n%n",
                s.trials(), s.seed(), llName));
        md.append(lengthHeader(plan.retrievalLengths()));
        Map<String, Plots.Grid> acc = new LinkedHashMap<>(), ll = new LinkedHashMap<>();
        double llMin = Double.MAX_VALUE, llMax = -Double.MAX_VALUE;
        StringBuilder detail = new StringBuilder();
        for (Evaluation.Resolved r : methods) {
            String name = r.target().name();
            int nl = plan.retrievalLengths().size(), nd = plan.depths().size();
            double[][] a = new double[nd][nl], l = new double[nd][nl];
            md.append("| ").append(name).append(" |");
            for (int li = 0; li < nl; li++) {
                int right = 0, trials = 0;
                double llSum = 0;
                for (int di = 0; di < nd; di++) {
                    a[di][li] = l[di][li] = Double.NaN;
                    Map<String, Object> c = cell(name, new Evaluation.CellSpec(task, plan.retrievalLengths().get(li),
                            plan.depths().get(di)));
                    if (c == null) continue;
                    int n, k;
                    double cellLl;
                    if (passkey) {
                        Passkey.Cell p = Passkey.Cell.fromJson(c);
                        n = p.trials();
                        k = p.regexCorrect();
                        cellLl = p.meanKeyLogLikelihood();
                    } else if (lines) {
                        LongEvalLines.Cell p = LongEvalLines.Cell.fromJson(c);
                        n = p.trials();
                        k = p.correct();
                        cellLl = p.meanAnswerLogLikelihood();
                    } else {
                        Ruler.Cell p = Ruler.Cell.fromJson(c);
                        n = p.trials();
                        k = p.allFound();
                        cellLl = p.meanAnswerLogLikelihood();
                    }
                    a[di][li] = (double) k / n;
                    l[di][li] = cellLl;
                    llMin = Math.min(llMin, cellLl);
                    llMax = Math.max(llMax, cellLl);
                    right += k;
                    trials += n;
                    llSum += cellLl * n;
                }
                md.append(trials == 0 ? " — |" : fmt(" %d/%d, %.2f |", right, trials, llSum / trials));
            }
            md.append('\n');
            acc.put(name, new Plots.Grid(plan.retrievalLengths(), plan.depths(), a));
            ll.put(name, new Plots.Grid(plan.retrievalLengths(), plan.depths(), l));
            for (int di = 0; di < nd; di++) {
                detail.append(fmt("| %s | %.2f |", name, plan.depths().get(di)));
                for (int li = 0; li < nl; li++)
                    detail.append(Double.isNaN(a[di][li]) ? " — |" : fmt(" %.2f, %.2f |", a[di][li], l[di][li]));
                detail.append('\n');
            }
        }
        String stem = task.label();
        if (llMin <= llMax) {
            if (Plots.heatMaps(out.resolve(stem + "-accuracy.png"), "accuracy", acc, 0, 1, "0.00"))
                md.append(fmt("%n![%s accuracy by length and depth, one map per method](%s-accuracy.png)%n", title, stem));
            if (Plots.heatMaps(out.resolve(stem + "-loglik.png"), llName + " log-likelihood", ll, llMin, llMax, "0.0"))
                md.append(fmt("%n![%s log-likelihood by length and depth](%s-loglik.png)%n", llName, stem));
        }
        md.append(fmt("%n<details><summary>By depth (accuracy, %s log-likelihood)</summary>%n%n", llName));
        md.append("| method | depth |");
        for (int l : plan.retrievalLengths()) md.append(fmt(" %,d |", l));
        md.append("\n|---|---|").append("---|".repeat(plan.retrievalLengths().size())).append('\n');
        md.append(detail).append("\n</details>\n");
    }

    /** A table cell's text and the value its method's line plots at that length. */
    private record LengthEntry(String text, double plotted) {}

    /**
     * A table with a row per method and a column per retrieval length, each cell from {@code entry} ("—" where it
     * gives null); returns each method's points for a chart.
     */
    private Map<String, List<Plots.Point>> lengthRows(BiFunction<String, Integer, LengthEntry> entry) {
        md.append(lengthHeader(plan.retrievalLengths()));
        Map<String, List<Plots.Point>> series = new LinkedHashMap<>();
        for (Evaluation.Resolved r : methods) {
            String name = r.target().name();
            List<Plots.Point> ps = new ArrayList<>();
            md.append("| ").append(name).append(" |");
            for (int l : plan.retrievalLengths()) {
                LengthEntry e = entry.apply(name, l);
                if (e == null) {
                    md.append(" — |");
                    continue;
                }
                ps.add(new Plots.Point(l, e.plotted()));
                md.append(' ').append(e.text()).append(" |");
            }
            md.append('\n');
            series.put(name, ps);
        }
        return series;
    }

    /**
     * Where a task's text came from (RULER's prose, cwe's long word lists, the passage tasks' paragraphs) or its code
     * (lcc), as a sentence; empty for the others.
     */
    private String proseSource(Evaluation.Task task) {
        if (task.needsCode()) return plan.settings().code() == null ? ""
                : fmt(" Code from `%s`.", plan.settings().code().toAbsolutePath().normalize());
        if (!task.readsText() || dataRecord.isEmpty()) return "";
        return fmt(" %s from `%s` (%s part).", task == Evaluation.Task.CWE ? "Words beyond the built-in list"
                : task.longBench() != null ? "Paragraphs" : "Prose", dataRecord.get("path"), dataRecord.get("part"));
    }

    /** The tasks without a controlled depth (RULER's others, the LongBench-style ones): score and answer log-likelihood by length. */
    private void lengthTask(Evaluation.Task task) {
        Evaluation.Settings s = plan.settings();
        boolean ruler = task.ruler() != null;
        String title = task == Evaluation.Task.VT ? "RULER vt (variable tracking)"
                : ruler ? "RULER " + task.title() : "LongBench-style " + task.title() + " (synthetic, offline)";
        String scoring = ruler ? "RULER's string_match_all (0–100, the share of the gold strings found in the output)"
                : task.needsCode() ? "LongBench's code_sim_score (0–100: the fuzzy similarity of the output's first code "
                + "line to the line of the file)" : fmt("LongBench's %s (0–100: the share of the numbers in the output that "
                + "are the answer)", task.longBench().metric());
        md.append(fmt("%n## %s%n%n%s, %d tokens generated, %d trials per length, seed %d. Each cell: %s, then the mean "
                + "log-likelihood of the answer.%s%n%n", title, ruler ? task.ruler().summary() : task.longBench().summary(),
                s.newTokens(task), s.trials(), s.seed(), scoring, proseSource(task)));
        Map<String, List<Plots.Point>> series = lengthRows((name, l) -> {
            Map<String, Object> c = cell(name, new Evaluation.CellSpec(task, l, Double.NaN));
            if (c == null) return null;
            double score = ((Number) c.get("score")).doubleValue();
            double ll = ((Number) c.get("answer_log_likelihood")).doubleValue();
            return new LengthEntry(fmt("%.1f, %.2f", score, ll), ll);
        });
        String stem = task.label() + "-loglik.png";
        if (series.values().stream().anyMatch(p -> !p.isEmpty())
                && Plots.byLength(out.resolve(stem), (ruler ? "RULER " : "LongBench-style ") + task.title()
                        + ": log-likelihood of the answer", "answer log-likelihood (nats, higher is better)", series,
                plan.trainLength()))
            md.append(fmt("%n![%s: answer log-likelihood against length](%s)%n", task.title(), stem));
    }

    private Map<String, Object> json() {
        Map<String, Object> root = new LinkedHashMap<>();
        root.put("run", run.toJson());
        root.put("cells", Map.of("computed", outcome.computed(), "reused", outcome.reused(), "seconds", outcome.cellSeconds()));
        Map<String, Object> settings = new LinkedHashMap<>();
        Evaluation.Settings s = plan.settings();
        settings.put("tasks", plan.tasks().stream().map(Evaluation.Task::label).toList());
        settings.put("lengths", plan.lengths());
        settings.put("retrieval_lengths", plan.retrievalLengths());
        settings.put("depths", plan.depths());
        settings.put("train_length", plan.trainLength());
        settings.put("trials", s.trials());
        settings.put("seed", s.seed());
        if (s.chat()) settings.put("chat", true);
        if (plan.tasks().contains(Evaluation.Task.PPL)) {
            settings.put("data", dataRecord);
            settings.put("protocol", s.protocol().label());
            settings.put("stride", s.stride());
            settings.put("max_tokens", s.maxTokens());
        }
        for (Evaluation.Task t : plan.tasks())
            if (t.ruler() != null || t.longBench() != null || t == Evaluation.Task.LINES)
                settings.put(t.label() + "_new_tokens", s.newTokens(t));
        if (!plan.tasks().contains(Evaluation.Task.PPL) && plan.tasks().stream().anyMatch(Evaluation.Task::readsText)
                && s.data() != null) settings.put("data", dataRecord);
        if (s.code() != null && plan.tasks().stream().anyMatch(Evaluation.Task::needsCode))
            settings.put("code", s.code().toAbsolutePath().normalize().toString());
        root.put("settings", settings);
        List<Map<String, Object>> ms = new ArrayList<>();
        Map<String, Object> rs = new LinkedHashMap<>();
        for (Evaluation.Resolved r : methods) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("name", r.target().name());
            m.put("model", r.record().toJson());
            m.put("rope_spec", r.target().rope());
            m.put("rope", r.rope().toParameters());
            m.put("rope_description", r.ropeDescription());
            ms.add(m);
            Map<String, List<Map<String, Object>>> byTask = new LinkedHashMap<>();
            for (var e : results.getOrDefault(r.target().name(), Map.of()).entrySet()) {
                Map<String, Object> v = new LinkedHashMap<>(e.getValue());
                if (v.containsKey("error")) {
                    v.put("length", e.getKey().length());
                    if (e.getKey().task().hasDepth()) v.put("depth", e.getKey().depth());
                }
                byTask.computeIfAbsent(e.getKey().task().label(), k -> new ArrayList<>()).add(v);
            }
            rs.put(r.target().name(), byTask);
        }
        root.put("methods", ms);
        root.put("results", rs);
        return root;
    }
}
