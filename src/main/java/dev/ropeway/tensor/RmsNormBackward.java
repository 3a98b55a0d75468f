package dev.ropeway.tensor;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import static dev.ropeway.tensor.VectorMath.F;
import static dev.ropeway.tensor.VectorMath.LANES;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/**
 * Backward of {@code y = x * inv * w} with {@code inv = 1 / sqrt(mean(x^2) + eps)}:
 * {@code dx = inv * dy * w - x * inv^3 * sum(dy * w * x) / dim} and {@code dw += sum over rows of dy * x * inv}.
 */
final class RmsNormBackward {
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();

    private RmsNormBackward() {}

    /**
     * Each chunk of rows sums its weight gradient into its own array; the arrays are then added to {@code dWeight}
     * in chunk order (in double), so the result is the same on every run.
     */
    static void run(WorkerPool pool, MemorySegment dx, MemorySegment dWeight, MemorySegment dOut, MemorySegment x,
                    MemorySegment w, long rows, int dim, float eps) {
        Split split = Split.of(pool, rows, RowKernels.rowsPerChunk(dim));
        float[][] partial = new float[split.count()][dim];
        pool.run(split.count(), c -> {
            for (long r = split.from(c); r < split.to(c); r++) row(dx, partial[c], dOut, x, w, r * dim * 4L, dim, eps);
        });
        for (int j = 0; j < dim; j++) {
            double sum = dWeight.getAtIndex(JAVA_FLOAT, j);
            for (float[] p : partial) sum += p[j];
            dWeight.setAtIndex(JAVA_FLOAT, j, (float) sum);
        }
    }

    /** One row; every dy[i] is read before dx[i] is written, so dx may be dOut itself. */
    private static void row(MemorySegment dx, float[] dw, MemorySegment dy, MemorySegment x, MemorySegment w,
                            long base, int dim, float eps) {
        int bound = F.loopBound(dim);
        FloatVector sq = FloatVector.zero(F), dotV = FloatVector.zero(F);
        int i = 0;
        for (; i < bound; i += LANES) {
            FloatVector xv = FloatVector.fromMemorySegment(F, x, base + i * 4L, NATIVE);
            FloatVector gv = FloatVector.fromMemorySegment(F, dy, base + i * 4L, NATIVE)
                    .mul(FloatVector.fromMemorySegment(F, w, i * 4L, NATIVE));
            sq = xv.fma(xv, sq);
            dotV = gv.fma(xv, dotV);
        }
        float sum = VectorMath.sumLanes(sq);
        double dot = VectorMath.sumLanes(dotV);
        for (; i < dim; i++) {
            float xi = x.get(JAVA_FLOAT, base + i * 4L);
            sum += xi * xi;
            dot += dy.get(JAVA_FLOAT, base + i * 4L) * w.get(JAVA_FLOAT, i * 4L) * xi;
        }
        // The same float arithmetic as the forward kernel, so inv is the factor the forward pass used.
        float mean = sum / dim;
        float inv = (float) (1.0 / Math.sqrt(mean + eps));
        float coef = (float) ((double) inv * inv * inv * dot / dim);
        i = 0;
        for (; i < bound; i += LANES) {
            FloatVector xv = FloatVector.fromMemorySegment(F, x, base + i * 4L, NATIVE);
            FloatVector dyv = FloatVector.fromMemorySegment(F, dy, base + i * 4L, NATIVE);
            FloatVector wv = FloatVector.fromMemorySegment(F, w, i * 4L, NATIVE);
            dyv.mul(xv).mul(inv).add(FloatVector.fromArray(F, dw, i)).intoArray(dw, i);
            dyv.mul(wv).mul(inv).sub(xv.mul(coef)).intoMemorySegment(dx, base + i * 4L, NATIVE);
        }
        for (; i < dim; i++) {
            float xi = x.get(JAVA_FLOAT, base + i * 4L), dyi = dy.get(JAVA_FLOAT, base + i * 4L);
            dw[i] += dyi * xi * inv;
            dx.set(JAVA_FLOAT, base + i * 4L, dyi * w.get(JAVA_FLOAT, i * 4L) * inv - xi * coef);
        }
    }
}
