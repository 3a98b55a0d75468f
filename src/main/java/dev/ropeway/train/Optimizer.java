package dev.ropeway.train;

import dev.ropeway.model.ParameterLayout;
import dev.ropeway.model.TrainableModel;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.Tensor;

/**
 * AdamW over a {@link TrainableModel}'s flat parameter buffer: one global gradient norm, clipping folded into the
 * update's gradient scale, and two fused update calls (the decayed matrices, then norms and biases without decay).
 */
public final class Optimizer implements AutoCloseable {

    /** What one step did: the gradient norm before clipping and the learning rate used. */
    public record StepStats(double gradNorm, double lr, boolean clipped) {}

    private final Backend backend;
    private final OptimizerSettings settings;
    private final Tensor m, v;
    private final long size, decayed;

    public Optimizer(TrainableModel model, OptimizerSettings settings) {
        this.backend = model.backend();
        this.settings = settings;
        ParameterLayout layout = model.layout();
        this.size = layout.totalSize();
        this.decayed = layout.decayedSize();
        this.m = backend.allocate(size);
        this.v = backend.allocate(size);
    }

    public OptimizerSettings settings() {
        return settings;
    }

    /** First and second moments, flat in the parameter layout (for checkpoints). */
    public Tensor firstMoment() { return m; }

    public Tensor secondMoment() { return v; }

    /**
     * Applies step {@code step} (from 1) with the gradients in the model's gradient buffer, which hold the
     * gradient of the mean loss. Returns the norm, or a non-finite norm without touching the weights.
     */
    public StepStats step(TrainableModel model, long step) {
        Tensor grads = model.gradients();
        double norm = Math.sqrt(backend.sumOfSquares(grads, size));
        double lr = settings.lrAt(step);
        if (!Double.isFinite(norm)) return new StepStats(norm, lr, false);
        boolean clip = settings.clipNorm() > 0 && norm > settings.clipNorm();
        float scale = clip ? (float) (settings.clipNorm() / norm) : 1f;
        Tensor p = model.parameters();
        float b1 = (float) settings.beta1(), b2 = (float) settings.beta2(), eps = (float) settings.eps();
        backend.adamW(p, grads, m, v, decayed, (float) lr, b1, b2, eps, (float) settings.weightDecay(), scale, step);
        if (size > decayed) {
            try (Tensor pt = backend.view(p, decayed, size - decayed); Tensor gt = backend.view(grads, decayed, size - decayed);
                 Tensor mt = backend.view(m, decayed, size - decayed); Tensor vt = backend.view(v, decayed, size - decayed)) {
                backend.adamW(pt, gt, mt, vt, size - decayed, (float) lr, b1, b2, eps, 0f, scale, step);
            }
        }
        return new StepStats(norm, lr, clip);
    }

    @Override
    public void close() {
        m.close();
        v.close();
    }
}
