package dev.ropeway.cli;

import dev.ropeway.RopewayException;
import dev.ropeway.demo.Demo;
import dev.ropeway.tensor.Backend;
import dev.ropeway.train.corpus.CorpusPreparer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;

/** {@code ropeway demo}: the whole story on a small model, in one command. */
@Command(name = "demo", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Get a corpus, train a tokenizer, pretrain a small Llama at L tokens, extend it with PI, YaRN, "
                + "E²-LLM and CLEX, add zero-shot PI / NTK / YaRN, and compare perplexity at 1x..16x L.",
                "Every stage reuses what an earlier (or interrupted) run left in --work."})
final class DemoCommand implements Callable<Integer> {

    @Option(names = "--work", paramLabel = "<dir>",
            description = "Work folder (default: ropeway-data/demo for the small preset, ropeway-data/demo-<preset> for the others).")
    Path work;

    @Option(names = "--preset", defaultValue = "small",
            description = "quick (a smoke run), small (about 20 minutes on 2 cores, the default), medium, or gpu (a "
                    + "17M-parameter model trained with pass-key windows; needs an NVIDIA GPU).")
    String preset;

    @Option(names = "--corpus", paramLabel = "<dir>",
            description = "Use this corpus (a prepared one, or any folder of .txt / .jsonl files) instead of fetching one with apt.")
    Path corpus;

    @Option(names = "--report-only",
            description = "Only write the report (tables and charts) from the evaluations already in --work, e.g. copied "
                    + "from a headless GPU server; trains and scores nothing.")
    boolean reportOnly;

    @Mixin
    BackendOptions backendOptions;

    @Override
    public Integer call() throws IOException {
        Demo.Preset p = Demo.Preset.named(preset);
        long start = System.nanoTime();
        try (Backend backend = backendOptions.open()) {
            if (p.needsGpu() && !reportOnly && !backend.name().equals("cuda"))
                throw new RopewayException("the demo's " + p.name() + " preset needs an NVIDIA GPU (it would take many hours on "
                        + "the CPU); --device found none here. Use --preset small or medium on a CPU.");
            StageDisplay stages = new StageDisplay();
            Path dir = work != null ? work : Demo.defaultWork(p);
            Path shared = sharedCorpus(p, dir);
            if (shared != null) System.err.println("[demo] corpus: reusing " + shared + " (the default run's)");
            Path text = corpus != null ? corpus : shared;
            Demo demo = new Demo(backend, dir, p, line -> {
                stages.finish();
                System.err.println("[demo] " + line);
            }, stages);
            Path report;
            try {
                report = reportOnly ? demo.reportOnly() : demo.run(text);
            } catch (RopewayException e) {
                if (corpus == null && e.getMessage() != null && e.getMessage().contains("apt"))
                    throw new RopewayException(e.getMessage() + " (or run the demo on your own text: ropeway demo --corpus <folder of .txt files>)");
                throw e;
            }
            System.out.println(Files.readString(report));
            System.out.printf("report: %s (and report.json beside it); total %s%n", report,
                    ProgressBar.duration((System.nanoTime() - start) / 1e9));
        }
        return 0;
    }

    /**
     * The default run's prepared corpus, for another preset in its own default folder that has none yet (the text
     * does not depend on the preset, and fetching it needs the network); else null.
     */
    private Path sharedCorpus(Demo.Preset p, Path dir) {
        if (corpus != null || work != null || reportOnly) return null;
        Path own = dir.resolve("corpus/prepared"), small = Demo.defaultWork(Demo.Preset.named("small")).resolve("corpus/prepared");
        if (own.equals(small) || Files.isRegularFile(own.resolve(CorpusPreparer.MANIFEST))) return null;
        return Files.isRegularFile(small.resolve(CorpusPreparer.MANIFEST)) ? small : null;
    }

    /** A fresh progress bar for each training stage. */
    private static final class StageDisplay implements dev.ropeway.train.Trainer.Listener {
        private ProgressBar bar;
        private long total = -1;

        @Override
        public void step(dev.ropeway.train.Trainer.StepReport r) {
            if (bar == null || r.totalSteps() != total || r.step() == 1) {
                total = r.totalSteps();
                bar = new ProgressBar("  step", total, r.step() - 1);
            }
            bar.update(r.step(), String.format(java.util.Locale.ROOT, "loss %.3f | %s tok/s", r.loss(),
                    ProgressBar.rate(r.tokensPerSecond())));
            if (r.step() == r.totalSteps()) bar = null;
        }

        void finish() {
            if (bar != null) bar.finish();
        }
    }
}
