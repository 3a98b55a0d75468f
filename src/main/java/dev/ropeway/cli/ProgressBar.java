package dev.ropeway.cli;

import java.io.PrintStream;
import java.util.Locale;

/**
 * A one-line progress display on stderr: bar, percentage, the caller's status text, rate and ETA. On a terminal it
 * redraws in place (at most 10 times a second); when stderr is a file or pipe it prints a full line every
 * {@link #LOG_INTERVAL_NANOS} instead, so logs stay readable.
 */
final class ProgressBar {
    private static final long LOG_INTERVAL_NANOS = 10_000_000_000L;
    private static final int WIDTH = 24;

    private final PrintStream out;
    private final String label;
    private final long total;
    private final boolean terminal;
    private final long start = System.nanoTime();
    private final long startDone;
    private long lastDraw;
    private boolean drawn;

    ProgressBar(String label, long total, long alreadyDone) {
        this(System.err, label, total, alreadyDone, System.console() != null);
    }

    ProgressBar(PrintStream out, String label, long total, long alreadyDone, boolean terminal) {
        this.out = out;
        this.label = label;
        this.total = Math.max(1, total);
        this.startDone = alreadyDone;
        this.terminal = terminal;
    }

    /** Shows {@code done} of the total with a status such as "loss 3.21 | 12.3k tok/s". */
    void update(long done, String status) {
        long now = System.nanoTime();
        boolean last = done >= total;
        if (!last && drawn && now - lastDraw < (terminal ? 100_000_000L : LOG_INTERVAL_NANOS)) return;
        lastDraw = now;
        drawn = true;
        String line = render(done, status, now);
        if (terminal) {
            out.print("\r" + line + "\u001b[K");
            if (last) out.println();
        } else {
            out.println(line);
        }
        out.flush();
    }

    /** Ends the line (on a terminal) so the next output starts clean. */
    void finish() {
        if (terminal && drawn) {
            out.println();
            out.flush();
            drawn = false;
        }
    }

    String render(long done, String status, long now) {
        double fraction = Math.min(1.0, (double) done / total);
        int filled = (int) Math.round(fraction * WIDTH);
        double elapsed = (now - start) / 1e9;
        long doneHere = done - startDone;
        String eta = doneHere <= 0 ? "--" : duration(elapsed / doneHere * (total - done));
        return String.format(Locale.ROOT, "%s %d/%d [%s%s] %3.0f%% %s | elapsed %s, ETA %s", label, done, total,
                "#".repeat(filled), ".".repeat(WIDTH - filled), fraction * 100, status, duration(elapsed), eta);
    }

    static String duration(double seconds) {
        long s = Math.round(seconds);
        if (s < 60) return s + "s";
        if (s < 3600) return String.format(Locale.ROOT, "%dm%02ds", s / 60, s % 60);
        return String.format(Locale.ROOT, "%dh%02dm", s / 3600, (s % 3600) / 60);
    }

    static String rate(double perSecond) {
        if (perSecond >= 1e6) return String.format(Locale.ROOT, "%.2fM", perSecond / 1e6);
        if (perSecond >= 1e3) return String.format(Locale.ROOT, "%.1fk", perSecond / 1e3);
        return String.format(Locale.ROOT, "%.0f", perSecond);
    }
}
