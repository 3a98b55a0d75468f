package dev.ropeway.train;

import dev.ropeway.model.ClexLayer;
import dev.ropeway.model.ParameterLayout;
import dev.ropeway.model.TrainableModel;
import dev.ropeway.rope.ClexOde;
import dev.ropeway.rope.ClexRope;
import dev.ropeway.rope.RopePlan;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.Tensor;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * CLEX training, as the reference trains it: per micro-batch a length factor t uniform in {1..T}; the L tokens of
 * each sequence take positions sampled from a t-times longer window ({@code [0] ++ (S + 1) / sf ++ [L·t / sf − 1]},
 * S a sorted random (L − 2)-subset of {0..L·t − 3}, sf = max(1, L div L0)), shared by the micro-batch's sequences;
 * frequencies theta(t) from the ODE solved from 1 to t. The loss's gradient with respect to those frequencies flows
 * back through every solver stage into the ODE's weights, which live in the model's parameter buffer and are updated
 * by the same optimizer step as the rest of the model.
 */
public final class ClexTrainingRope implements TrainingRope {
    private final TrainableModel model;
    private final ClexRope rope;
    private final ClexOde ode;
    private final long originalLength;
    private final ParameterLayout.Entry up, down;
    private int lastT = 1;

    public ClexTrainingRope(TrainableModel model) {
        if (!(model.config().rope() instanceof ClexRope clex))
            throw new IllegalArgumentException("the model does not use CLEX RoPE: " + model.config().rope().type());
        this.model = model;
        this.up = model.layout().entry(ClexLayer.UP);
        this.down = model.layout().entry(ClexLayer.DOWN);
        this.originalLength = clex.originalMax();
        this.ode = new ClexOde(clex.rotaryDim(), clex.maxFactor(), clex.paramFactor(), ClexOde.Activation.of(clex.act()),
                (float) clex.timeDt(), model.clexInvFreq(), model.read(ClexLayer.UP, false), model.read(ClexLayer.DOWN, false));
        this.rope = clex.withOde(ode);
    }

    /** The inference-time method bound to the layer being trained (refreshed by {@link #beforeEvaluation}). */
    public ClexRope inferenceRope() {
        return rope;
    }

    /** The positions of one training sequence of length {@code seq} at length factor {@code t}. */
    public static float[] positions(int seq, int t, long originalLength, SplittableRandom random) {
        long sf = Math.max(1, seq / originalLength);
        int n = seq * t - 2, k = seq - 2;
        int[] pool = new int[n];
        for (int i = 0; i < n; i++) pool[i] = i;
        for (int i = 0; i < k; i++) {
            int j = i + random.nextInt(n - i);
            int tmp = pool[i];
            pool[i] = pool[j];
            pool[j] = tmp;
        }
        int[] chosen = Arrays.copyOf(pool, k);
        Arrays.sort(chosen);
        float[] p = new float[seq];
        p[0] = 0;
        for (int i = 0; i < k; i++) p[i + 1] = (float) (chosen[i] + 1) / sf;
        p[seq - 1] = (float) ((long) seq * t / sf - 1);
        return p;
    }

    @Override
    public RopePlan plan(int batch, int seq, SplittableRandom random) {
        syncWeights();
        lastT = 1 + random.nextInt(rope.maxFactor());
        float[] one = positions(seq, lastT, originalLength, random);
        float[] all = new float[batch * seq];
        for (int b = 0; b < batch; b++) System.arraycopy(one, 0, all, b * seq, seq);
        float[] freqs = lastT == 1 ? model.clexInvFreq() : ode.trainingTheta(lastT);
        return new RopePlan(freqs, all, 1f);
    }

    @Override
    public boolean wantsFrequencyGradient() {
        return true;
    }

    @Override
    public void frequencyGradient(double[] dInvFreq) {
        if (lastT == 1) return;   // the base frequencies are a fixed buffer
        double[] dUp = new double[(int) up.size()], dDown = new double[(int) down.size()];
        ode.backward(lastT, dInvFreq, dUp, dDown);
        add(up, dUp);
        add(down, dDown);
    }

    @Override
    public void beforeEvaluation() {
        syncWeights();
    }

    private void syncWeights() {
        ode.setWeights(model.read(ClexLayer.UP, false), model.read(ClexLayer.DOWN, false));
    }

    private void add(ParameterLayout.Entry e, double[] g) {
        float[] f = new float[g.length];
        for (int i = 0; i < g.length; i++) f[i] = (float) g[i];
        Backend b = model.backend();
        try (Tensor t = b.upload(f); Tensor view = b.view(model.gradients(), e.offset(), e.size())) {
            b.addInPlace(view, t, e.size());
        }
    }
}
