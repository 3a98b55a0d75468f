package dev.ropeway.rope;

import java.util.Map;

/**
 * E²-LLM at inference: position interpolation whose scale g follows the input, {@code g = max(1, ceil(S / L0))} for
 * a sequence of S tokens and a model trained at L0 ({@code original_max_position_embeddings}), or a fixed
 * {@code factor} when one is given. One fine-tune with random g and position offsets serves every g.
 * {@code max_scale} records the largest g seen in training (G); larger ones still work, as the paper's "unseen
 * scales" do, with less accuracy. Written as rope_type {@code "e2"}; stock transformers does not know it, so
 * {@code ropeway export} can write the equivalent fixed-g {@code linear} config.
 */
public record E2Rope(double theta, int rotaryDim, long originalMax, double factor, int maxScale) implements RopeScaling {
    public static final String TYPE = "e2";

    public E2Rope {
        RopeChecks.theta(TYPE, theta);
        RopeChecks.rotaryDim(TYPE, rotaryDim, 2);
        RopeChecks.positive(TYPE, "original_max_position_embeddings", originalMax);
        if (!(factor == 0 || factor > 0)) RopeChecks.positive(TYPE, "factor", factor);
        if (maxScale < 1) RopeChecks.positive(TYPE, "max_scale", maxScale);
    }

    @Override
    public String type() {
        return TYPE;
    }

    /** The scale for a sequence of {@code seqLen} tokens. */
    public double scaleFor(long seqLen) {
        if (factor > 0) return factor;
        return Math.max(1, (seqLen + originalMax - 1) / originalMax);
    }

    @Override
    public float[] inverseFrequencies(long seqLen) {
        float[] inv = RopeMath.standardInverseFrequencies(theta, rotaryDim);
        float g = (float) scaleFor(seqLen);
        for (int j = 0; j < inv.length; j++) inv[j] = inv[j] / g;
        return inv;
    }

    @Override
    public Map<String, Object> toParameters() {
        Map<String, Object> p = RopeMath.parameters(TYPE, theta);
        p.put("original_max_position_embeddings", originalMax);
        p.put("max_scale", maxScale);
        if (factor > 0) p.put("factor", factor);
        return p;
    }
}
