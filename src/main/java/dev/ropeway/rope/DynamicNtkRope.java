package dev.ropeway.rope;

import java.util.Map;

/**
 * Dynamic NTK scaling (transformers' "dynamic"): for sequences longer than the checkpoint's
 * max_position_embeddings L, the base grows to {@code theta * (factor * seqLen / L - (factor - 1))^(d/(d-2))}.
 *
 * <p>transformers is stateful here: its rotary module recomputes the table when a forward pass reaches a longer
 * sequence than any before and restores the original table when a short one follows a long one. This record is
 * the pure function behind that cache: the table for a pass whose sequence length is {@code seqLen}; a caller that
 * must follow the cache keeps the largest length seen.
 */
public record DynamicNtkRope(double theta, int rotaryDim, double factor, long maxPositionEmbeddings)
        implements RopeScaling {
    public static final String TYPE = "dynamic";

    public DynamicNtkRope {
        RopeChecks.theta(TYPE, theta);
        RopeChecks.rotaryDim(TYPE, rotaryDim, 4);
        RopeChecks.positive(TYPE, "factor", factor);
        RopeChecks.positiveWhole(TYPE, "max_position_embeddings", maxPositionEmbeddings);
    }

    @Override
    public String type() {
        return TYPE;
    }

    /**
     * The base used for a pass of {@code seqLen} tokens. Up to L it is the table built when the model loads, where
     * transformers evaluates the formula with seq_len = L in Python doubles. Beyond L the update path passes
     * seq_len as an int64 tensor, which turns factor * seq_len, / L, - (factor - 1) and the product with theta
     * into float32 operations. The power is the exception: torch raises a float32 tensor to a Python-float
     * exponent with a double pow (the exponent is not rounded to float32) and rounds the result to float32.
     */
    public double base(long seqLen) {
        double exponent = rotaryDim / (double) (rotaryDim - 2);
        if (seqLen <= maxPositionEmbeddings) {
            long l = maxPositionEmbeddings;
            return theta * Math.pow(factor * l / l - (factor - 1), exponent);
        }
        float ratio = (float) factor * (float) seqLen;
        ratio = ratio / (float) maxPositionEmbeddings;
        ratio = ratio - (float) (factor - 1);
        float grown = (float) Math.pow(ratio, exponent);
        return (float) theta * grown;
    }

    @Override
    public float[] inverseFrequencies(long seqLen) {
        return RopeMath.standardInverseFrequencies(base(seqLen), rotaryDim);
    }

    @Override
    public Map<String, Object> toParameters() {
        Map<String, Object> p = RopeMath.parameters(TYPE, theta);
        p.put("factor", factor);
        return p;
    }
}
