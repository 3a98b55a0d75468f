package dev.ropeway.rope;

import java.util.Map;

/**
 * CLEX at inference: for a sequence of S tokens, length factor {@code t = min(ceil(S / L0), T)} (at least 1) and
 * inverse frequencies {@code theta(t)} from the CLEX ODE ({@link ClexOde}, solved once over 1..T and cached). With
 * t = 1 the model's own frequencies. L0 is the config's {@code max_position_embeddings}, as in the released CLEX
 * checkpoints. Beyond the reference: a sequence longer than L0·T gets t = T and works (the reference's table has
 * only L0·T rows), and without ODE weights (a plain checkpoint scored with {@code --rope clex}) the untrained
 * layer's closed form applies, NTK-aware scaling with alpha = 2t − 1.
 *
 * <p>{@code logScale}: the released 16K checkpoints multiply queries by ln S / ln L0 after RoPE; here both q and k
 * are scaled by its square root (through cos and sin), which gives the same attention logits.
 */
public record ClexRope(double theta, int rotaryDim, long originalMax, int maxFactor, int paramFactor, String act,
                       double timeDt, boolean logScale, ClexOde ode) implements RopeScaling {
    public static final String TYPE = ClexOde.TYPE;

    public ClexRope {
        RopeChecks.theta(TYPE, theta);
        RopeChecks.rotaryDim(TYPE, rotaryDim, 4);
        RopeChecks.positive(TYPE, "max_position_embeddings", originalMax);
        if (maxFactor < 1) RopeChecks.positive(TYPE, "max_factor", maxFactor);
        if (paramFactor < 1) RopeChecks.positive(TYPE, "param_factor", paramFactor);
        RopeChecks.positive(TYPE, "time_dt", timeDt);
        ClexOde.Activation.of(act);
        if (ode != null && (ode.dim() != rotaryDim || ode.maxFactor() != maxFactor || ode.paramFactor() != paramFactor))
            throw new IllegalArgumentException("CLEX layer of dim " + ode.dim() + ", T " + ode.maxFactor() + ", λ "
                    + ode.paramFactor() + " does not match the config (" + rotaryDim + ", " + maxFactor + ", " + paramFactor + ")");
    }

    @Override
    public String type() {
        return TYPE;
    }

    /** The same method with the ODE layer's weights. */
    public ClexRope withOde(ClexOde layer) {
        return new ClexRope(theta, rotaryDim, originalMax, maxFactor, paramFactor, act, timeDt, logScale, layer);
    }

    public ClexRope withLogScale(boolean on) {
        return new ClexRope(theta, rotaryDim, originalMax, maxFactor, paramFactor, act, timeDt, on, ode);
    }

    /** A fresh ODE layer for training: W_up kaiming-uniform from {@code seed}, W_down zero (so it starts as NTK). */
    public ClexOde newLayer(long seed) {
        int half = rotaryDim / 2, width = paramFactor * rotaryDim;
        return new ClexOde(rotaryDim, maxFactor, paramFactor, ClexOde.Activation.of(act), (float) timeDt,
                RopeMath.standardInverseFrequencies(theta, rotaryDim), ClexOde.initialUp(rotaryDim, paramFactor, seed),
                new float[width * half]);
    }

    /** The model's own inverse frequencies, 1 / theta^(2j/d) in float32 (the ODE's start without a checkpoint buffer). */
    public float[] baseFrequencies() {
        return RopeMath.standardInverseFrequencies(theta, rotaryDim);
    }

    /** The length factor for a sequence of {@code seqLen} tokens. */
    public int factorFor(long seqLen) {
        long t = (Math.max(1, seqLen) + originalMax - 1) / originalMax;
        return (int) Math.min(Math.max(1, t), maxFactor);
    }

    /** Inverse frequencies at length factor t (1..T). */
    public float[] frequenciesAt(int t) {
        if (ode != null) return ode.theta(t);
        float[] inv = RopeMath.standardInverseFrequencies(theta, rotaryDim);
        if (t == 1) return inv;
        double[] closed = ClexOde.closedFormTheta(inv, t);
        float[] out = new float[closed.length];
        for (int j = 0; j < out.length; j++) out[j] = (float) closed[j];
        return out;
    }

    @Override
    public float[] inverseFrequencies(long seqLen) {
        return frequenciesAt(factorFor(seqLen));
    }

    @Override
    public RopePlan plan(float[] positions, long seqLen) {
        return new RopePlan(inverseFrequencies(seqLen), positions, attentionScaleFor(seqLen));
    }

    /** sqrt(ln S / ln L0) with log scaling (applied to q and k alike), else 1. */
    public float attentionScaleFor(long seqLen) {
        if (!logScale) return 1f;
        return (float) Math.sqrt(Math.log(Math.max(2, seqLen)) / Math.log(originalMax));
    }

    @Override
    public Map<String, Object> toParameters() {
        Map<String, Object> p = RopeMath.parameters(TYPE, theta);
        p.put("factor", 1);
        p.put("max_factor", maxFactor);
        p.put("param_factor", paramFactor);
        p.put("act", act);
        p.put("time_dt", timeDt);
        return p;
    }
}
