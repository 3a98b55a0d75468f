package dev.ropeway.cli;

import dev.ropeway.eval.Evaluation;

import java.io.PrintWriter;
import java.util.Locale;
import java.util.Map;

/**
 * The progress of an evaluation on stderr: a bar over the estimated work (cells weighted by the tokens they run, so
 * the ETA does not treat a 4k-token passkey cell like a 256-token one), the cells done, and the cell just finished.
 * Reused cells count as done from the start, so the rate and ETA are those of this run.
 */
final class EvaluationProgress implements Evaluation.Listener {
    private static final int STEPS = 1000;
    private final String label;
    private final PrintWriter err;
    private ProgressBar bar;
    private double total = 1, done;
    private int cells, cellsDone;

    /** {@code err} receives the one-line messages (the command's error stream); the bar itself draws on stderr. */
    EvaluationProgress(String label, PrintWriter err) {
        this.label = label;
        this.err = err;
    }

    @Override
    public void planned(int cells, int reusedCells, double work, double reusedWork) {
        this.cells = cells;
        this.cellsDone = reusedCells;
        this.total = Math.max(work, 1e-9);
        this.done = reusedWork;
        if (reusedCells > 0) {
            err.printf(Locale.ROOT, "%s: reusing %d of %d cells saved by an earlier run%n", label, reusedCells, cells);
            err.flush();
        }
        bar = new ProgressBar(label, STEPS, steps());
    }

    private long steps() {
        return Math.min(STEPS, Math.round(done / total * STEPS));
    }

    @Override
    public void finished(Evaluation.Target target, Evaluation.CellSpec cell, Map<String, Object> result, boolean reused,
                         double work) {
        if (reused) return;
        done += work;
        cellsDone++;
        String status = String.format(Locale.ROOT, "%d/%d cells | %s %s%s", cellsDone, cells, target.name(), cell.fileName(),
                result.containsKey("error") ? " (cannot be computed)" : "");
        bar.update(cellsDone == cells ? STEPS : steps(), status);
    }

    void finish() {
        if (bar != null) bar.finish();
    }
}
