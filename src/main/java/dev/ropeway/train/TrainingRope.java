package dev.ropeway.train;

import dev.ropeway.rope.RopePlan;
import dev.ropeway.rope.RopeScaling;

import java.util.SplittableRandom;

/**
 * How RoPE behaves during training: the plan (frequencies, per-token positions, attention scale) for each
 * micro-batch. Pretraining uses plain positions; E²-LLM, CLEX and PoSE sample positions or scales from
 * {@code random}, which is seeded by the step, so a resumed run draws the same plans.
 */
public interface TrainingRope {

    RopePlan plan(int batch, int seq, SplittableRandom random);

    /** Whether the trainer should compute d loss / d inverse frequency (for methods that learn frequencies). */
    default boolean wantsFrequencyGradient() {
        return false;
    }

    /** Receives d loss / d inverse frequency of the last micro-batch (only if {@link #wantsFrequencyGradient}). */
    default void frequencyGradient(double[] dInvFreq) {}

    /** Called before a held-out evaluation, after optimizer steps (a method whose frequencies are learnt refreshes them). */
    default void beforeEvaluation() {}

    /** Positions 0..seq-1 in every sequence, with a fixed RoPE method. */
    static TrainingRope fixed(RopeScaling rope) {
        return (batch, seq, random) -> {
            float[] positions = new float[batch * seq];
            for (int i = 0; i < positions.length; i++) positions[i] = i % seq;
            return rope.plan(positions, seq);
        };
    }
}
