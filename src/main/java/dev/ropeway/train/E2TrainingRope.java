package dev.ropeway.train;

import dev.ropeway.rope.RopePlan;
import dev.ropeway.rope.RopeScaling;

import java.util.SplittableRandom;

/**
 * E²-LLM's training augmentation. For each iteration (or, with {@code perSample}, each sequence) draw a scale g
 * uniformly from {1..G} and an offset t uniformly from {0..g·L0 − R} (R = the training length, L0 = the length the
 * model was trained at); token m then sits at position m for the first {@link #SINK_TOKENS} tokens (kept in place, as
 * attention sinks) and at m + t after them, and every position is divided by g. A short window so stands in for
 * every part of a g-times longer one, at every scale, and one fine-tune serves all lengths up to G·L0.
 *
 * @param base the model's own RoPE frequencies (before any scaling)
 */
public record E2TrainingRope(RopeScaling base, long originalLength, int maxScale, boolean perSample) implements TrainingRope {
    public static final int SINK_TOKENS = 4;

    public E2TrainingRope {
        if (maxScale < 1) throw new IllegalArgumentException("E2 max scale must be >= 1, got " + maxScale);
        if (originalLength < 1) throw new IllegalArgumentException("E2 original length must be >= 1");
    }

    /** One draw: the scale and the offset. */
    public record Draw(int g, long t) {}

    public Draw draw(int seq, SplittableRandom random) {
        int g = 1 + random.nextInt(maxScale);
        long tMax = Math.max(0, g * originalLength - seq);
        return new Draw(g, random.nextLong(tMax + 1));
    }

    @Override
    public RopePlan plan(int batch, int seq, SplittableRandom random) {
        float[] positions = new float[batch * seq];
        Draw d = draw(seq, random);
        for (int b = 0; b < batch; b++) {
            if (perSample && b > 0) d = draw(seq, random);
            float g = d.g();
            for (int m = 0; m < seq; m++) {
                long p = m < SINK_TOKENS ? m : m + d.t();
                positions[b * seq + m] = (float) p / g;
            }
        }
        return new RopePlan(base.inverseFrequencies(seq), positions, base.attentionScaling());
    }
}
