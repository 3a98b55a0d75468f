package dev.ropeway.tensor;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;

import static dev.ropeway.tensor.VectorMath.F;
import static dev.ropeway.tensor.VectorMath.LANES;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/**
 * Softmax cross-entropy per row: {@code loss = max + log(sum e^(x - max)) - x[target]}. The exponentials are
 * float vectors; their sum is accumulated in double, so a 150k-entry vocabulary loses nothing to rounding.
 */
final class CrossEntropy {
    /** Doubles hold half as many lanes: each float vector converts in two parts. */
    private static final VectorSpecies<Double> D = VectorSpecies.of(double.class, F.vectorShape());

    private static final int BLOCK = 4096;

    private CrossEntropy() {}

    /** Per-row losses; rows whose target is below 0 get 0. */
    static double[] losses(WorkerPool pool, MemorySegment logits, int[] targets, long rows, int vocab) {
        double[] loss = new double[(int) rows];
        pool.forRange(rows, Math.max(1, (1 << 15) / vocab), (from, to) -> {
            float[] block = new float[Math.min(vocab, BLOCK)];
            for (long r = from; r < to; r++) {
                int target = targets[(int) r];
                if (target < 0) continue;
                loss[(int) r] = rowLoss(logits, r * vocab * 4L, vocab, target, block);
            }
        });
        return loss;
    }

    /**
     * One pass over the row, block by block, with a running maximum: when a block raises it, the sum so far is
     * rescaled by e^(old max - new max). Reading the logits once instead of twice matters, since a row of a large
     * vocabulary does not stay in cache.
     */
    private static double rowLoss(MemorySegment x, long base, int vocab, int target, float[] block) {
        float max = Float.NEGATIVE_INFINITY;
        double sum = 0;
        for (int start = 0; start < vocab; start += BLOCK) {
            int len = Math.min(BLOCK, vocab - start), bound = F.loopBound(len);
            MemorySegment.copy(x, JAVA_FLOAT, base + start * 4L, block, 0, len);
            FloatVector maxV = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
            int j = 0;
            for (; j < bound; j += LANES) maxV = maxV.max(FloatVector.fromArray(F, block, j));
            float blockMax = maxV.reduceLanes(VectorOperators.MAX);
            for (; j < len; j++) blockMax = Math.max(blockMax, block[j]);
            if (blockMax > max) {
                sum *= Math.exp((double) max - blockMax);
                max = blockMax;
            }
            for (j = 0; j < bound; j += LANES) FloatVector.fromArray(F, block, j).sub(max).intoArray(block, j);
            for (; j < len; j++) block[j] -= max;
            VectorMath.expInPlace(block, 0, len);
            DoubleVector sumV = DoubleVector.zero(D);
            for (j = 0; j < bound; j += LANES) {
                FloatVector e = FloatVector.fromArray(F, block, j);
                sumV = sumV.add(e.convertShape(VectorOperators.F2D, D, 0)).add(e.convertShape(VectorOperators.F2D, D, 1));
            }
            sum += VectorMath.sumLanes(sumV);
            for (; j < len; j++) sum += block[j];
        }
        return max + Math.log(sum) - x.get(JAVA_FLOAT, base + (long) target * 4);
    }
}
