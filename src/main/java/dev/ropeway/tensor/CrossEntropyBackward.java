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
 * Softmax cross-entropy, forward and backward in one pass over the logits: the loss of each row as
 * {@link CrossEntropy} computes it, and the logits overwritten with {@code gradScale * (softmax - onehot(target))}.
 */
final class CrossEntropyBackward {
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    private static final VectorSpecies<Double> D = VectorSpecies.of(double.class, F.vectorShape());
    private static final int BLOCK = 4096;

    private CrossEntropyBackward() {}

    static double[] run(WorkerPool pool, MemorySegment logits, int[] targets, long rows, int vocab, float gradScale) {
        double[] loss = new double[(int) rows];
        pool.forRange(rows, Math.max(1, (1 << 15) / vocab), (from, to) -> {
            float[] block = new float[Math.min(vocab, BLOCK)];
            for (long r = from; r < to; r++) {
                long base = r * vocab * 4L;
                int target = targets[(int) r];
                if (target < 0) logits.asSlice(base, vocab * 4L).fill((byte) 0);
                else loss[(int) r] = row(logits, base, vocab, target, gradScale, block);
            }
        });
        return loss;
    }

    /**
     * Three passes over the row: the maximum; e^(x - max) written back over the logits while its sum accumulates
     * in double; then the scaling by {@code gradScale / sum} and the target's {@code - gradScale}.
     */
    private static double row(MemorySegment x, long base, int vocab, int target, float gradScale, float[] block) {
        int vb = F.loopBound(vocab);
        FloatVector maxV = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
        int j = 0;
        for (; j < vb; j += LANES) maxV = maxV.max(FloatVector.fromMemorySegment(F, x, base + j * 4L, NATIVE));
        float max = maxV.reduceLanes(VectorOperators.MAX);
        for (; j < vocab; j++) max = Math.max(max, x.get(JAVA_FLOAT, base + j * 4L));
        float targetLogit = x.get(JAVA_FLOAT, base + (long) target * 4);

        double sum = 0;
        for (int start = 0; start < vocab; start += BLOCK) {
            int len = Math.min(BLOCK, vocab - start), bound = F.loopBound(len);
            MemorySegment.copy(x, JAVA_FLOAT, base + start * 4L, block, 0, len);
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
            MemorySegment.copy(block, 0, x, JAVA_FLOAT, base + start * 4L, len);
        }

        float k = (float) (gradScale / sum);
        for (j = 0; j < vb; j += LANES)
            FloatVector.fromMemorySegment(F, x, base + j * 4L, NATIVE).mul(k).intoMemorySegment(x, base + j * 4L, NATIVE);
        for (; j < vocab; j++) x.set(JAVA_FLOAT, base + j * 4L, x.get(JAVA_FLOAT, base + j * 4L) * k);
        // The target's probability is close to 1 exactly when its gradient is small: subtract in double.
        long t = base + (long) target * 4;
        double pTarget = Math.exp((double) targetLogit - max) / sum;
        x.set(JAVA_FLOAT, t, (float) (gradScale * (pTarget - 1)));
        return max + Math.log(sum) - targetLogit;
    }
}
