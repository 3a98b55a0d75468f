package dev.ropeway.cli;

import dev.ropeway.RopewayException;
import dev.ropeway.eval.CellStore;
import dev.ropeway.eval.CompareReport;
import dev.ropeway.eval.Evaluation;
import dev.ropeway.eval.PerplexityProtocol;
import dev.ropeway.eval.RunRecord;
import dev.ropeway.io.Json;
import dev.ropeway.tensor.Backend;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code ropeway compare}: methods × lengths, every task, one report. */
@Command(name = "compare", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Compare models and RoPE methods across context lengths: perplexity, passkey, LongEval's "
                + "lines, RULER's synthetic tasks, LongBench-style tasks.",
                "Writes <out>/report.md, report.json and PNG charts; every cell is kept in <out>/cells/<method>/ as it "
                + "finishes, so a rerun reuses them and an interrupted run continues."})
final class CompareCommand implements Callable<Integer> {
    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = "--models", split = ",", paramLabel = "<dir>",
            description = "Model folders, each read with its own RoPE method and named after its folder.")
    List<String> models = new ArrayList<>();
    @Option(names = "--model", paramLabel = "[name=]<dir>[@<rope>]",
            description = {"A method (repeatable): a model folder read with its own RoPE method or with a --rope spec, e.g.",
                    "pi-zero-shot=runs/base@linear:factor=4. Listed after the --models entries."})
    List<String> methods = new ArrayList<>();
    @Option(names = "--tasks", split = ",", defaultValue = "ppl,passkey", paramLabel = "<task>",
            description = {"Any of ppl, passkey, lines (LongEval's line retrieval), ruler (all of RULER's tasks below that the inputs allow: the essay haystacks "
                    + "need --data), or RULER's niah_single_1 (or niah), niah_single_2, niah_single_3, niah_multikey_1, "
                    + "niah_multikey_2, niah_multikey_3, niah_multivalue, niah_multiquery, vt, cwe, fwe; longbench (the "
                    + "LongBench-style tasks the inputs allow: passage_count and passage_retrieval need --data, lcc --code) "
                    + "or any of them (default: ${DEFAULT-VALUE})."})
    List<String> tasks;
    @Option(names = "--lengths", required = true, split = ",", paramLabel = "<L>",
            description = "Context lengths in tokens, e.g. 256,512,1k,2k,4k.")
    List<String> lengths;
    @Option(names = "--retrieval-lengths", split = ",", paramLabel = "<L>",
            description = "Lengths for passkey, lines, RULER's and the LongBench-style tasks (default: --lengths).")
    List<String> retrievalLengths;
    @Option(names = "--out", required = true, paramLabel = "<dir>")
    Path out;
    @Option(names = "--data", paramLabel = "<dir>", description = {"Documents for perplexity, the prose of RULER's essay "
            + "haystacks and the paragraphs of the passage tasks (a prepared corpus's heldout/ part, or any folder of text)."})
    Path data;
    @Option(names = "--code", paramLabel = "<dir>", description = {"The source files of the LongBench-style lcc task: any "
            + "folder of code (a project of yours, or e.g. /usr/lib/python3.*)."})
    Path code;
    @Option(names = "--protocol", defaultValue = "chunks", description = "Perplexity protocol: chunks or sliding (default: ${DEFAULT-VALUE}).")
    String protocol;
    @Option(names = "--stride", description = "sliding: step between windows (default: L / 2).")
    Integer stride;
    @Option(names = "--max-tokens", defaultValue = "16384",
            description = "Perplexity: tokens scored per length at most, 0 = all (default: ${DEFAULT-VALUE}).")
    long maxTokens;
    @Option(names = "--depths", split = ",", defaultValue = "0,0.5,1",
            description = "Needle depths for passkey, lines (the asked line) and RULER's one-needle tasks, in [0, 1] "
                    + "(default: ${DEFAULT-VALUE}).")
    List<Double> depths;
    @Option(names = "--trials", defaultValue = "3", description = "Trials per retrieval cell (default: ${DEFAULT-VALUE}).")
    int trials;
    @Option(names = "--seed", defaultValue = "0")
    long seed;
    @Option(names = "--new-tokens", paramLabel = "<n>",
            description = {"lines, RULER's and the LongBench-style tasks: tokens to generate, also reserved within the "
                    + "length (default: each task's own: 15 for lines, 128 for RULER's needles, 30 for vt, 120 for cwe, 50 "
                    + "for fwe, 32 for the passage tasks, 64 for lcc; 100 for lines with --chat)."})
    Integer newTokens;
    @Option(names = "--chat", description = {"Prompt chat models through their own chat templates in the lines, RULER's "
            + "and the LongBench-style tasks (every model compared needs one); perplexity and passkey read plain text."})
    boolean chat;
    @Option(names = "--train-length", paramLabel = "<L>",
            description = "The trained length that ratios and charts refer to (default: the shortest trained length of the models).")
    Integer trainLength;
    @Option(names = "--json", description = "Print report.json when done.")
    boolean json;
    @Mixin
    BackendOptions backendOptions;

    @Override
    public Integer call() {
        RunRecord run = RunRecord.now(spec.commandLine().getParseResult().originalArgs());
        List<Evaluation.Target> targets = new ArrayList<>();
        for (String m : models) {
            if (m.isBlank()) throw new RopewayException("--models has an empty entry");
            Path p = Path.of(m.strip());
            targets.add(ModelFolders.resolve(new Evaluation.Target(Evaluation.Target.defaultName(p, null), p, null)));
        }
        for (String m : methods) targets.add(ModelFolders.resolve(Evaluation.Target.parse(m)));
        if (targets.isEmpty()) throw new RopewayException("nothing to compare: give --models and/or --model");
        Evaluation.Task.Selection selection = Evaluation.Task.select(tasks, data != null, code != null);
        for (String note : selection.notes()) spec.commandLine().getErr().println("compare: " + note);
        List<Evaluation.Task> taskList = selection.tasks();
        if (taskList.contains(Evaluation.Task.PPL) && data == null)
            throw new RopewayException("the ppl task needs --data <dir> (documents to score)");
        if (data != null && !Files.isDirectory(data)) throw new RopewayException("--data " + data + " is not a folder");
        if (code != null && !Files.isDirectory(code)) throw new RopewayException("--code " + code + " is not a folder");
        if (stride != null && stride < 1) throw new RopewayException("--stride must be at least 1, got " + stride);
        if (newTokens != null && newTokens < 1) throw new RopewayException("--new-tokens must be at least 1, got " + newTokens);
        if (trainLength != null && trainLength < 1) throw new RopewayException("--train-length must be positive, got " + trainLength);
        List<Integer> ls = EvalCommand.parseLengths(lengths);
        List<Integer> rls = retrievalLengths == null ? ls : EvalCommand.parseLengths(retrievalLengths);
        EvalCommand.checkDepths(depths);
        Evaluation.Settings settings = new Evaluation.Settings(data, PerplexityProtocol.parse(protocol),
                stride == null ? 0 : stride, maxTokens, trials, seed, newTokens == null ? 0 : newTokens, code, chat);

        List<Evaluation.Resolved> resolved = targets.stream().map(Evaluation::resolve).toList();
        int train = trainLength != null ? trainLength : resolved.stream().mapToInt(CompareCommand::trainedLength).min().orElseThrow();
        List<Evaluation.CellSpec> cells = Evaluation.CellSpec.grid(taskList, ls, rls, depths);
        PrintWriter err = spec.commandLine().getErr();
        err.printf(Locale.ROOT, "compare: %d methods × %d cells, results in %s%n", targets.size(), cells.size(), out);
        err.flush();
        EvaluationProgress progress = new EvaluationProgress("compare", err);
        Evaluation.Outcome outcome;
        Map<String, Object> dataRecord;
        try (Backend backend = backendOptions.open()) {
            Evaluation evaluation = new Evaluation(backend, settings, new CellStore(out.resolve("cells")), progress);
            outcome = evaluation.run(targets, cells);
            dataRecord = data == null ? Map.of() : evaluation.dataRecord();
        }
        progress.finish();
        Path report = new CompareReport(out, run, resolved,
                new CompareReport.Plan(taskList, ls, rls, depths, settings, train), outcome, dataRecord).write();
        err.printf(Locale.ROOT, "compare: computed %d cells, reused %d%n", outcome.computed(), outcome.reused());
        err.flush();
        if (json) System.out.println(Output.json(Json.readObject(out.resolve("report.json"))));
        else System.out.println("report: " + report);
        return 0;
    }

    /** The context a checkpoint was (pre)trained at: the RoPE method's original length, else max_position_embeddings. */
    static int trainedLength(Evaluation.Resolved r) {
        Object original = r.config().rope().toParameters().get("original_max_position_embeddings");
        long l = original instanceof Number n ? n.longValue() : r.config().maxPositionEmbeddings();
        return (int) Math.min(Integer.MAX_VALUE, l);
    }
}
