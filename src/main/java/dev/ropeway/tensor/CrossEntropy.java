package dev.ropeway.tensor;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import static dev.ropeway.tensor.VectorMath.F;
import static dev.ropeway.tensor.VectorMath.LANES;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/**
 * Softmax cross-entropy per row: {@code loss = max + log(sum e^(x - max)) - x[target]}. The exponentials are
 * float vectors; their sum is accumulated in double, so a 150k-entry vocabulary loses nothing to rounding.
 */
final class CrossEntropy {
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    /** Doubles hold half as many lanes: each float vector converts in two parts. */
    private static final VectorSpecies<Double> D = VectorSpecies.of(double.class, F.vectorShape());

    private static final int BLOCK = 4096;

    private CrossEntropy() {}

    /** Per-row losses; rows whose target is below 0 get 0. */
    static double[] losses(WorkerPool pool, MemorySegment logits, int[] targets, long rows, int vocab) {
        double[] loss = new double[(int) rows];
        pool.forRange(rows, Math.max(1, (1 << 15) / vocab), (from, to) -> {
            for (long r = from; r < to; r++) {
                int target = targets[(int) r];
                if (target < 0) continue;
                loss[(int) r] = rowLoss(logits, r * vocab * 4L, vocab, target);
            }
        });
        return loss;
    }

    private static double rowLoss(MemorySegment x, long base, int vocab, int target) {
        int vocabBound = F.loopBound(vocab);
        FloatVector maxV = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
        int i = 0;
        for (; i < vocabBound; i += LANES) maxV = maxV.max(FloatVector.fromMemorySegment(F, x, base + i * 4L, NATIVE));
        float max = maxV.reduceLanes(VectorOperators.MAX);
        for (; i < vocab; i++) max = Math.max(max, x.get(JAVA_FLOAT, base + i * 4L));
        float[] block = new float[Math.min(vocab, BLOCK)];
        DoubleVector sumV = DoubleVector.zero(D);
        double sum = 0;
        for (int start = 0; start < vocab; start += BLOCK) {
            int len = Math.min(BLOCK, vocab - start);
            MemorySegment.copy(x, JAVA_FLOAT, base + start * 4L, block, 0, len);
            for (int j = 0; j < len; j++) block[j] -= max;
            VectorMath.expInPlace(block, 0, len);
            int j = 0;
            for (int bound = F.loopBound(len); j < bound; j += LANES) {
                FloatVector e = FloatVector.fromArray(F, block, j);
                sumV = sumV.add(e.convertShape(VectorOperators.F2D, D, 0)).add(e.convertShape(VectorOperators.F2D, D, 1));
            }
            for (; j < len; j++) sum += block[j];
        }
        sum += sumV.reduceLanes(VectorOperators.ADD);
        return max + Math.log(sum) - x.get(JAVA_FLOAT, base + (long) target * 4);
    }
}
