package dev.ropeway.tensor;

import java.util.Arrays;

/**
 * Timing for {@link KernelBenchmark}: warm-up, then samples of several calls each, reported as a median. Two
 * contenders are sampled in alternating rounds so that a burst of load from elsewhere on the machine hits both
 * alike; after each round of the second one the timer pauses, because a multi-threaded OpenBLAS call leaves its
 * threads spinning for about 0.1 s, which would otherwise be charged to the first contender.
 */
final class BenchTiming {
    /** How long one sample should run, so timer resolution and call overhead do not matter. */
    static final double SAMPLE_SECONDS = 0.05;
    private static final int ROUNDS = 3;
    private static final long SETTLE_MILLIS = 250;

    private BenchTiming() {}

    /** Median seconds per call of {@code a} and of {@code b} ({@code b} may be null). */
    static double[] medians(Runnable a, Runnable b, double warmupSeconds, int samples) {
        int repsB = b == null ? 0 : warmUp(b, warmupSeconds);
        settle();
        int repsA = warmUp(a, warmupSeconds);
        double[] ta = new double[samples], tb = new double[samples];
        for (int round = 0; round < ROUNDS; round++) {
            int from = samples * round / ROUNDS, to = samples * (round + 1) / ROUNDS;
            for (int i = from; i < to; i++) ta[i] = sample(a, repsA);
            if (b == null) continue;
            for (int i = from; i < to; i++) tb[i] = sample(b, repsB);
            settle();
        }
        return new double[]{median(ta), b == null ? Double.NaN : median(tb)};
    }

    /** Runs {@code op} for about {@code seconds} (at least three calls); returns calls per sample. */
    private static int warmUp(Runnable op, double seconds) {
        long start = System.nanoTime();
        int calls = 0;
        do {
            op.run();
            calls++;
        } while (calls < 3 || System.nanoTime() - start < seconds * 1e9);
        double perCall = (System.nanoTime() - start) / 1e9 / calls;
        return (int) Math.max(1, Math.min(1_000_000, SAMPLE_SECONDS / perCall));
    }

    private static void settle() {
        try {
            Thread.sleep(SETTLE_MILLIS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static double sample(Runnable op, int reps) {
        long t0 = System.nanoTime();
        for (int i = 0; i < reps; i++) op.run();
        return (System.nanoTime() - t0) / 1e9 / reps;
    }

    static double median(double[] values) {
        double[] v = values.clone();
        Arrays.sort(v);
        int n = v.length;
        return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    }
}
