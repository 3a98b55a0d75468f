package dev.ropeway.cli;

import dev.ropeway.train.Trainer;

import java.nio.file.Path;
import java.util.Locale;

/** Shows a training run: a progress bar per step, held-out losses and checkpoints as lines above it. */
final class TrainingDisplay implements Trainer.Listener {
    private final String label;
    private ProgressBar bar;
    private double lastHeldout = Double.NaN;

    TrainingDisplay(String label, long totalSteps) {
        this.label = label;
    }

    void log(String line) {
        if (bar != null) bar.finish();
        System.err.println(line);
    }

    @Override
    public void step(Trainer.StepReport r) {
        // Created at the first step, so a resumed run's rate and ETA count only the steps done in this process.
        if (bar == null) bar = new ProgressBar(label, r.totalSteps(), r.step() - 1);
        String heldout = Double.isNaN(lastHeldout) ? "" : String.format(Locale.ROOT, " held-out %.3f |", lastHeldout);
        bar.update(r.step(), String.format(Locale.ROOT, "loss %.4f |%s lr %.2e | %s tok/s", r.loss(), heldout, r.lr(),
                ProgressBar.rate(r.tokensPerSecond())));
    }

    @Override
    public void evaluated(long step, double heldoutLoss) {
        lastHeldout = heldoutLoss;
    }

    @Override
    public void checkpointed(Path checkpoint) {
        // Quiet: the bar's line would be broken by every checkpoint; metrics.jsonl and the folder record them.
    }

    void finish() {
        if (bar != null) bar.finish();
    }
}
