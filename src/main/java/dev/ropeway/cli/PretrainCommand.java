package dev.ropeway.cli;

import dev.ropeway.RopewayException;
import dev.ropeway.model.ModelPreset;
import dev.ropeway.tensor.Backend;
import dev.ropeway.train.OptimizerSettings;
import dev.ropeway.train.Pretraining;
import dev.ropeway.train.Trainer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code ropeway pretrain}: trains a fresh Llama on a corpus. */
@Command(name = "pretrain", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Pretrain a fresh Llama-architecture model on a corpus.",
                "Writes a Hugging Face folder (config.json, model.safetensors, tokenizer files) to --out, with",
                "checkpoint-<step>/ folders (atomic; --resume continues from the newest) and metrics.jsonl."})
final class PretrainCommand implements Callable<Integer> {

    @Option(names = "--corpus", required = true, paramLabel = "<dir>",
            description = "Prepared corpus (train/ + heldout/) or any folder of .txt / .jsonl files.")
    Path corpus;

    @Option(names = "--tokenizer", required = true, paramLabel = "<dir>",
            description = "Folder with tokenizer.json (from `ropeway tokenizer train`).")
    Path tokenizer;

    @Option(names = "--out", required = true, paramLabel = "<dir>", description = "Run folder.")
    Path out;

    @Option(names = "--preset", defaultValue = "5m", description = "Model size: tiny, 5m, 20m, 134m (default: ${DEFAULT-VALUE}); "
            + "--hidden/--layers/... override parts of it.")
    String preset;
    @Option(names = "--hidden") Integer hidden;
    @Option(names = "--ffn") Integer ffn;
    @Option(names = "--layers") Integer layers;
    @Option(names = "--heads") Integer heads;
    @Option(names = "--kv-heads") Integer kvHeads;
    @Option(names = "--rope-theta", defaultValue = "10000") double theta;

    @Option(names = "--seq", defaultValue = "256", description = "Training length in tokens (default: ${DEFAULT-VALUE}).")
    int seq;
    @Option(names = "--batch", defaultValue = "16", description = "Sequences per micro-batch (default: ${DEFAULT-VALUE}).")
    int batch;
    @Option(names = "--accumulate", defaultValue = "1", description = "Micro-batches per optimizer step (default: ${DEFAULT-VALUE}).")
    int accumulate;
    @Option(names = "--steps", defaultValue = "1000", description = "Optimizer steps (default: ${DEFAULT-VALUE}).")
    long steps;
    @Option(names = "--lr", defaultValue = "1e-3", description = "Peak learning rate (default: ${DEFAULT-VALUE}).")
    double lr;
    @Option(names = "--min-lr", description = "Final learning rate (default: lr / 10).")
    Double minLr;
    @Option(names = "--warmup", defaultValue = "50", description = "Warmup steps (default: ${DEFAULT-VALUE}).")
    long warmup;
    @Option(names = "--schedule", defaultValue = "cosine", description = "cosine, linear or constant (default: ${DEFAULT-VALUE}).")
    String schedule;
    @Option(names = "--weight-decay", defaultValue = "0.1") double weightDecay;
    @Option(names = "--clip", defaultValue = "1.0", description = "Gradient-norm clipping, 0 = off (default: ${DEFAULT-VALUE}).")
    double clip;
    @Option(names = "--seed", defaultValue = "0") long seed;
    @Option(names = "--checkpoint-every", defaultValue = "100") long checkpointEvery;
    @Option(names = "--keep", defaultValue = "2", description = "Checkpoints kept (default: ${DEFAULT-VALUE}).")
    int keep;
    @Option(names = "--eval-every", defaultValue = "100", description = "Steps between held-out evaluations (default: ${DEFAULT-VALUE}).")
    long evalEvery;
    @Option(names = "--eval-sequences", defaultValue = "16") int evalSequences;
    @Option(names = "--recompute", description = "Recompute activations layer by layer in the backward (less memory, ~30% more compute).")
    boolean recompute;
    @Option(names = "--resume", description = "Continue the run in --out from its newest checkpoint.")
    boolean resume;
    @Option(names = "--json", description = "Print the result as JSON.")
    boolean json;

    @Mixin
    BackendOptions backendOptions;

    @Override
    public Integer call() {
        ModelPreset p = ModelPreset.parse(preset);
        int h = hidden != null ? hidden : p.hidden, nh = heads != null ? heads : p.heads;
        if (h % nh != 0) throw new RopewayException("--hidden " + h + " is not divisible by --heads " + nh);
        Pretraining.ModelShape shape = new Pretraining.ModelShape(h, ffn != null ? ffn : p.ffn,
                layers != null ? layers : p.layers, nh, kvHeads != null ? kvHeads : Math.min(nh, p.kvHeads), h / nh, theta);
        OptimizerSettings.Schedule sched;
        try {
            sched = OptimizerSettings.Schedule.valueOf(schedule.toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new RopewayException("unknown --schedule '" + schedule + "' (cosine, linear, constant)");
        }
        OptimizerSettings opt = new OptimizerSettings(lr, minLr != null ? minLr : lr / 10, warmup, steps, sched, 0.9, 0.95,
                1e-8, weightDecay, clip);
        Trainer.Settings settings = new Trainer.Settings(batch, seq, accumulate, seed, checkpointEvery, keep, evalEvery,
                evalSequences, recompute);
        try (Backend backend = backendOptions.open()) {
            TrainingDisplay display = new TrainingDisplay("step", steps);
            Pretraining.Result r = Pretraining.run(backend, new Pretraining.Options(corpus, tokenizer, out, shape, settings,
                    opt, resume), display::log, display);
            display.finish();
            if (json) {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("model", r.model().toString());
                m.put("parameters", r.parameters());
                m.put("steps", r.state().step());
                m.put("tokens", r.state().tokens());
                m.put("heldout_loss", r.heldoutLoss());
                m.put("elapsed_seconds", r.state().elapsedSeconds());
                System.out.println(Output.json(m));
            } else {
                System.out.printf(Locale.ROOT, "trained %,d parameters for %d steps (%,d tokens) in %s; held-out loss %.4f "
                                + "(perplexity %.2f); model in %s%n", r.parameters(), r.state().step(), r.state().tokens(),
                        ProgressBar.duration(r.state().elapsedSeconds()), r.heldoutLoss(), Math.exp(r.heldoutLoss()), r.model());
            }
        }
        return 0;
    }
}
