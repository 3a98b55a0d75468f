package dev.ropeway.tensor;

/**
 * A split of {@code [0, n)} into {@code count} consecutive chunks of {@code step} elements (the last may be shorter).
 * Kernels that reduce across chunks keep one partial result per chunk and combine them in chunk order, so a result
 * does not depend on which thread ran which chunk.
 */
record Split(long n, long step, int count) {

    /** At most {@code 2 * threads} chunks of at least {@code minChunk} elements, as {@link WorkerPool#forRange} makes. */
    static Split of(WorkerPool pool, long n, long minChunk) {
        if (n <= 0) return new Split(0, 1, 0);
        long chunks = Math.min(2L * pool.threads(), Math.max(1, n / Math.max(1, minChunk)));
        long step = (n + chunks - 1) / chunks;
        return new Split(n, step, (int) ((n + step - 1) / step));
    }

    long from(int chunk) {
        return chunk * step;
    }

    long to(int chunk) {
        return Math.min(n, (chunk + 1) * step);
    }
}
