package dev.ropeway.tensor;

import jdk.incubator.vector.FloatVector;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.Arrays;

import static dev.ropeway.tensor.VectorMath.F;
import static dev.ropeway.tensor.VectorMath.LANES;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/**
 * Backward of the rotary embedding. The forward map of a pair is the matrix {@code [[c, -s], [s, c]]}, so the
 * gradient goes through its transpose: {@code dx1 = dy1*c + dy2*s, dx2 = dy2*c - dy1*s}. The derivative of the
 * output with respect to the angle is {@code (-y2, y1)}, which gives the inverse-frequency gradient from the
 * rotated output alone.
 */
final class RotaryBackward {
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();

    private RotaryBackward() {}

    /** Rotates {@code d} back in place; when {@code dInvFreq} is not null, also adds the frequency gradient to it. */
    static void run(WorkerPool pool, MemorySegment d, MemorySegment rotated, MemorySegment cos, MemorySegment sin,
                    float[] positions, double[] dInvFreq, long rows, int heads, int headDim, int half) {
        Split split = Split.of(pool, rows, RowKernels.rowsPerChunk((long) heads * headDim));
        double[][] partial = dInvFreq == null ? null : new double[split.count()][half];
        pool.run(split.count(), c -> {
            float[] angleGrad = dInvFreq == null ? null : new float[half];
            for (long r = split.from(c); r < split.to(c); r++) {
                if (angleGrad != null) Arrays.fill(angleGrad, 0f);
                for (int h = 0; h < heads; h++)
                    head(d, rotated, cos, sin, angleGrad, r * half * 4L, (r * heads + h) * headDim * 4L, half);
                if (angleGrad != null) {
                    double p = positions[(int) r];
                    double[] acc = partial[c];
                    for (int j = 0; j < half; j++) acc[j] += p * angleGrad[j];
                }
            }
        });
        if (dInvFreq == null) return;
        for (double[] p : partial)
            for (int j = 0; j < half; j++) dInvFreq[j] += p[j];
    }

    /** One head of one row; adds this head's dL/dangle into {@code angleGrad} when it is not null. */
    private static void head(MemorySegment d, MemorySegment y, MemorySegment cos, MemorySegment sin, float[] angleGrad,
                             long table, long b1, int half) {
        long b2 = b1 + half * 4L;
        int bound = F.loopBound(half);
        int j = 0;
        for (; j < bound; j += LANES) {
            long o = j * 4L;
            FloatVector c = FloatVector.fromMemorySegment(F, cos, table + o, NATIVE);
            FloatVector s = FloatVector.fromMemorySegment(F, sin, table + o, NATIVE);
            FloatVector d1 = FloatVector.fromMemorySegment(F, d, b1 + o, NATIVE);
            FloatVector d2 = FloatVector.fromMemorySegment(F, d, b2 + o, NATIVE);
            if (angleGrad != null) {
                FloatVector y1 = FloatVector.fromMemorySegment(F, y, b1 + o, NATIVE);
                FloatVector y2 = FloatVector.fromMemorySegment(F, y, b2 + o, NATIVE);
                d2.mul(y1).sub(d1.mul(y2)).add(FloatVector.fromArray(F, angleGrad, j)).intoArray(angleGrad, j);
            }
            d1.mul(c).add(d2.mul(s)).intoMemorySegment(d, b1 + o, NATIVE);
            d2.mul(c).sub(d1.mul(s)).intoMemorySegment(d, b2 + o, NATIVE);
        }
        for (; j < half; j++) {
            long o = j * 4L;
            float c = cos.get(JAVA_FLOAT, table + o), s = sin.get(JAVA_FLOAT, table + o);
            float d1 = d.get(JAVA_FLOAT, b1 + o), d2 = d.get(JAVA_FLOAT, b2 + o);
            if (angleGrad != null) angleGrad[j] += d2 * y.get(JAVA_FLOAT, b1 + o) - d1 * y.get(JAVA_FLOAT, b2 + o);
            d.set(JAVA_FLOAT, b1 + o, d1 * c + d2 * s);
            d.set(JAVA_FLOAT, b2 + o, d2 * c - d1 * s);
        }
    }
}
