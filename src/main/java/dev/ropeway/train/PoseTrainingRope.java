package dev.ropeway.train;

import dev.ropeway.rope.RopePlan;
import dev.ropeway.rope.RopeScaling;

import java.util.SplittableRandom;

/**
 * PoSE (positional skip-wise training) with two chunks, per sequence: the first chunk is tokens [0, r1) at positions
 * [0, r1), r1 uniform in {1..(R+1)/2}; the second chunk, the rest of the window, starts at position r1 + s, s uniform
 * in {0..Lt − R}. A window of R tokens so covers relative distances up to the target length Lt, and {@code scaled}
 * (position interpolation by Lt / L0, usually) maps those positions into the trained range. The text itself is a
 * contiguous window: only positions skip (the reference also skips content between the chunks).
 */
public record PoseTrainingRope(RopeScaling scaled, long targetLength) implements TrainingRope {

    @Override
    public RopePlan plan(int batch, int seq, SplittableRandom random) {
        if (targetLength < seq)
            throw new IllegalArgumentException("PoSE target length " + targetLength + " is shorter than the window " + seq);
        float[] positions = new float[batch * seq];
        for (int b = 0; b < batch; b++) {
            int r1 = 1 + random.nextInt((seq + 1) / 2);
            long skip = random.nextLong(targetLength - seq + 1);
            for (int m = 0; m < seq; m++) positions[b * seq + m] = m < r1 ? m : m + skip;
        }
        return scaled.plan(positions, targetLength);
    }
}
