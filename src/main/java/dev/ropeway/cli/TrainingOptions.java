package dev.ropeway.cli;

import dev.ropeway.RopewayException;
import dev.ropeway.model.Recompute;
import dev.ropeway.train.OptimizerSettings;
import dev.ropeway.train.Trainer;
import picocli.CommandLine.Option;

import java.util.Locale;

/** The trainer and optimizer options shared by {@code pretrain} and {@code extend}. */
final class TrainingOptions {
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
    @Option(names = "--weight-decay", defaultValue = "0.1", description = "Decoupled weight decay on matrices (default: ${DEFAULT-VALUE}).")
    double weightDecay;
    @Option(names = "--clip", defaultValue = "1.0", description = "Gradient-norm clipping, 0 = off (default: ${DEFAULT-VALUE}).")
    double clip;
    @Option(names = "--seed", defaultValue = "0", description = "Seed of initialisation, data order and sampling (default: ${DEFAULT-VALUE}).")
    long seed;
    @Option(names = "--checkpoint-every", defaultValue = "100", description = "Steps between checkpoints (default: ${DEFAULT-VALUE}).")
    long checkpointEvery;
    @Option(names = "--keep", defaultValue = "2", description = "Checkpoints kept (default: ${DEFAULT-VALUE}).")
    int keep;
    @Option(names = "--eval-every", defaultValue = "100", description = "Steps between held-out evaluations (default: ${DEFAULT-VALUE}).")
    long evalEvery;
    @Option(names = "--eval-sequences", defaultValue = "16", description = "Held-out sequences per evaluation (default: ${DEFAULT-VALUE}).")
    int evalSequences;
    @Option(names = "--recompute", arity = "0..1", defaultValue = "auto", fallbackValue = "on", paramLabel = "auto|on|off",
            description = "Recompute activations layer by layer in the backward (less memory, about a third more compute): "
                    + "auto (the default) only when keeping them would not fit in the memory left; --recompute alone is on.")
    String recompute;
    @Option(names = "--resume", description = "Continue the run in --out from its newest checkpoint.")
    boolean resume;

    OptimizerSettings optimizer() {
        OptimizerSettings.Schedule sched;
        try {
            sched = OptimizerSettings.Schedule.valueOf(schedule.toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new RopewayException("unknown --schedule '" + schedule + "' (cosine, linear, constant)");
        }
        return new OptimizerSettings(lr, minLr != null ? minLr : lr / 10, warmup, steps, sched, 0.9, 0.95, 1e-8,
                weightDecay, clip);
    }

    @Option(names = "--retrieval-mix", defaultValue = "0", paramLabel = "<fraction>",
            description = {"Fraction of training windows that carry a pass-key needle in their text and end with its question "
                    + "and answer (retrieval warm-up for small models; 0 = none, the default)."})
    double retrievalMix;

    Trainer.Settings settings(int seq, int evalLength) {
        return new Trainer.Settings(batch, seq, accumulate, seed, checkpointEvery, keep, evalEvery, evalSequences,
                Recompute.parse(recompute), evalLength, retrievalMix);
    }
}
