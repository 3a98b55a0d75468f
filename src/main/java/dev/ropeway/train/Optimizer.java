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
    private final long size, decayed, clexStart;
    private final double clexLrScale;

    public Optimizer(TrainableModel model, OptimizerSettings settings) {
        this(model, settings, 1.0);
    }

    /**
     * With a learning-rate multiplier for the CLEX layer. Adam moves every weight by about the learning rate per
     * step whatever its gradient's size, and the layer's weights act on log-frequencies integrated over up to T
     * units of time: at the learning rates small models train with (1e-3), an unscaled update changes the
     * frequencies by a large factor within a few steps. The reference fine-tunes everything at 2e-5.
     */
    public Optimizer(TrainableModel model, OptimizerSettings settings, double clexLrScale) {
        this.backend = model.backend();
        this.settings = settings;
        ParameterLayout layout = model.layout();
        this.size = layout.totalSize();
        this.decayed = layout.decayedSize();
        this.clexStart = layout.clexStart();
        if (!(clexLrScale > 0)) throw new IllegalArgumentException("CLEX learning-rate scale must be positive");
        this.clexLrScale = clexLrScale;
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
        update(p, grads, decayed, clexStart, lr, scale, step);
        update(p, grads, clexStart, size, lr * clexLrScale, scale, step);
        return new StepStats(norm, lr, clip);
    }

    /** AdamW without weight decay on [from, to). */
    private void update(Tensor p, Tensor grads, long from, long to, double lr, float scale, long step) {
        if (to <= from) return;
        long n = to - from;
        try (Tensor pt = backend.view(p, from, n); Tensor gt = backend.view(grads, from, n);
             Tensor mt = backend.view(m, from, n); Tensor vt = backend.view(v, from, n)) {
            backend.adamW(pt, gt, mt, vt, n, (float) lr, (float) settings.beta1(), (float) settings.beta2(),
                    (float) settings.eps(), 0f, scale, step);
        }
    }

    @Override
    public void close() {
        m.close();
        v.close();
    }
}
