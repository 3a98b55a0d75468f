package dev.ropeway.train;

import dev.ropeway.RopewayException;

/**
 * AdamW hyper-parameters and the learning-rate schedule: linear warmup from 0 to {@code lr} over
 * {@code warmupSteps}, then {@code schedule} down to {@code minLr} at {@code totalSteps}.
 *
 * @param clipNorm global gradient-norm clipping threshold; 0 disables clipping
 */
public record OptimizerSettings(double lr, double minLr, long warmupSteps, long totalSteps, Schedule schedule,
                                double beta1, double beta2, double eps, double weightDecay, double clipNorm) {

    public enum Schedule { COSINE, LINEAR, CONSTANT }

    public OptimizerSettings {
        if (!(lr > 0) || !Double.isFinite(lr)) throw new RopewayException("learning rate must be positive, got " + lr);
        if (!(minLr >= 0 && minLr <= lr)) throw new RopewayException("minimum learning rate must be in [0, lr], got " + minLr);
        if (totalSteps <= 0) throw new RopewayException("training needs at least one step, got " + totalSteps);
        if (warmupSteps < 0 || warmupSteps > totalSteps)
            throw new RopewayException("warmup steps must be in [0, " + totalSteps + "], got " + warmupSteps);
        if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
            throw new RopewayException("Adam betas must be in [0, 1), got " + beta1 + ", " + beta2);
        if (!(eps > 0)) throw new RopewayException("Adam epsilon must be positive, got " + eps);
        if (!(weightDecay >= 0)) throw new RopewayException("weight decay must be >= 0, got " + weightDecay);
        if (!(clipNorm >= 0)) throw new RopewayException("gradient clipping norm must be >= 0 (0 = off), got " + clipNorm);
    }

    /** The usual small-model pretraining settings: cosine to lr/10, betas (0.9, 0.95), decay 0.1, clip 1. */
    public static OptimizerSettings defaults(double lr, long warmupSteps, long totalSteps) {
        return new OptimizerSettings(lr, lr / 10, warmupSteps, totalSteps, Schedule.COSINE, 0.9, 0.95, 1e-8, 0.1, 1.0);
    }

    /** The learning rate of optimizer step {@code step} (counted from 1). */
    public double lrAt(long step) {
        if (step <= warmupSteps) return lr * step / Math.max(1, warmupSteps);
        double progress = Math.min(1.0, (double) (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps));
        return switch (schedule) {
            case CONSTANT -> lr;
            case LINEAR -> minLr + (lr - minLr) * (1 - progress);
            case COSINE -> minLr + (lr - minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
        };
    }
}
