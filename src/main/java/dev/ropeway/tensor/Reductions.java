package dev.ropeway.tensor;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import static dev.ropeway.tensor.VectorMath.F;
import static dev.ropeway.tensor.VectorMath.LANES;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/** Sums and scaling over gradient buffers: bias gradients, gradient norms, zeroing. */
final class Reductions {
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    private static final long MIN_CHUNK = 1 << 15;
    /** Squares are summed in float vectors over blocks this long, then the block sums in double. */
    private static final int SQUARE_BLOCK = 1024;
    /** Columns summed together by one task in {@link #sumRows}: an accumulator row that stays in L1. */
    private static final int COLUMN_BLOCK = 1024;

    private Reductions() {}

    /**
     * {@code out[c] += sum over rows of x[r, c]}. Tasks own blocks of columns and walk every row, so there is no
     * shared accumulator and the order of additions is fixed.
     */
    static void sumRows(WorkerPool pool, MemorySegment out, MemorySegment x, long rows, int cols) {
        Split split = Split.of(pool, cols, rows * cols < MIN_CHUNK ? cols : LANES);
        pool.run(split.count(), c -> {
            for (long c0 = split.from(c); c0 < split.to(c); c0 += COLUMN_BLOCK) {
                int width = (int) Math.min(COLUMN_BLOCK, split.to(c) - c0), bound = F.loopBound(width);
                float[] acc = new float[width];
                for (long r = 0; r < rows; r++) {
                    long base = (r * cols + c0) * 4;
                    int j = 0;
                    for (; j < bound; j += LANES)
                        FloatVector.fromArray(F, acc, j).add(FloatVector.fromMemorySegment(F, x, base + j * 4L, NATIVE)).intoArray(acc, j);
                    for (; j < width; j++) acc[j] += x.get(JAVA_FLOAT, base + j * 4L);
                }
                for (int j = 0; j < width; j++) out.setAtIndex(JAVA_FLOAT, c0 + j, out.getAtIndex(JAVA_FLOAT, c0 + j) + acc[j]);
            }
        });
    }

    /** {@code y *= a}; a factor of exactly 0 writes zeros, so that zeroing also clears stale infinities and NaNs. */
    static void scale(WorkerPool pool, MemorySegment y, float a, long n) {
        pool.forRange(n, MIN_CHUNK, (from, to) -> {
            if (a == 0f) {
                y.asSlice(from * 4, (to - from) * 4).fill((byte) 0);
                return;
            }
            long i = from;
            for (long bound = from + F.loopBound(to - from); i < bound; i += LANES)
                FloatVector.fromMemorySegment(F, y, i * 4, NATIVE).mul(a).intoMemorySegment(y, i * 4, NATIVE);
            for (; i < to; i++) y.setAtIndex(JAVA_FLOAT, i, y.getAtIndex(JAVA_FLOAT, i) * a);
        });
    }

    /** The sum of squares, one partial per chunk, combined in chunk order so the result is the same every run. */
    static double sumOfSquares(WorkerPool pool, MemorySegment x, long n) {
        Split split = Split.of(pool, n, MIN_CHUNK);
        double[] partial = new double[split.count()];
        pool.run(split.count(), c -> {
            double sum = 0;
            for (long start = split.from(c), end = split.to(c); start < end; start += SQUARE_BLOCK) {
                long stop = Math.min(end, start + SQUARE_BLOCK), i = start;
                FloatVector acc = FloatVector.zero(F);
                for (long bound = start + F.loopBound(stop - start); i < bound; i += LANES) {
                    FloatVector v = FloatVector.fromMemorySegment(F, x, i * 4, NATIVE);
                    acc = v.fma(v, acc);
                }
                sum += VectorMath.sumLanes(acc);
                for (; i < stop; i++) {
                    double v = x.getAtIndex(JAVA_FLOAT, i);
                    sum += v * v;
                }
            }
            partial[c] = sum;
        });
        double total = 0;
        for (double p : partial) total += p;
        return total;
    }
}
