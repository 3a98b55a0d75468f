package dev.ropeway.rope;

import dev.ropeway.RopewayException;

import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.OptionalDouble;

/**
 * LongRoPE as Phi-3 uses it (transformers' "longrope"): one searched divisor per pair, a short set for sequences
 * within the original context and a long set beyond it, and an attention factor
 * {@code sqrt(1 + ln(factor) / ln(original))} shared by both sets.
 *
 * <p>{@code factor} is already resolved (max_position_embeddings / original when the parameters leave it out);
 * {@code attentionFactor} is present only when the parameters name one, so it is written back as read.
 */
public record LongRope(double theta, int rotaryDim, List<Double> shortFactor, List<Double> longFactor, double factor,
                       long originalMaxPositionEmbeddings, OptionalDouble attentionFactor) implements RopeScaling {
    public static final String TYPE = "longrope";

    public LongRope {
        RopeChecks.theta(TYPE, theta);
        RopeChecks.rotaryDim(TYPE, rotaryDim, 2);
        shortFactor = checkedFactors("short_factor", shortFactor, rotaryDim);
        longFactor = checkedFactors("long_factor", longFactor, rotaryDim);
        RopeChecks.positive(TYPE, "factor", factor);
        RopeChecks.positiveWhole(TYPE, "original_max_position_embeddings", originalMaxPositionEmbeddings);
        Objects.requireNonNull(attentionFactor, "attentionFactor");
        if (attentionFactor.isPresent()) RopeChecks.positive(TYPE, "attention_factor", attentionFactor.getAsDouble());
    }

    private static List<Double> checkedFactors(String key, List<Double> factors, int rotaryDim) {
        String expected = "a list of " + rotaryDim / 2 + " numbers > 0, one per rotary pair";
        if (factors == null) throw RopeChecks.needs(TYPE, key, expected);
        if (factors.size() != rotaryDim / 2)
            throw new RopewayException("rope_type 'longrope' needs '" + key + "' (" + expected + "), got "
                    + factors.size() + " numbers");
        for (Double v : factors)
            if (v == null || !(v > 0) || v.isInfinite()) throw RopeChecks.needs(TYPE, key, expected, factors);
        return List.copyOf(factors);
    }

    @Override
    public String type() {
        return TYPE;
    }

    /** Whether a pass of {@code seqLen} tokens uses the long factors (strictly beyond the original context). */
    public boolean usesLongFactors(long seqLen) {
        return seqLen > originalMaxPositionEmbeddings;
    }

    /** {@code 1 / (ext_factor * theta^(2j/d))}: the factor list is a float32 tensor multiplied before the reciprocal. */
    @Override
    public float[] inverseFrequencies(long seqLen) {
        List<Double> ext = usesLongFactors(seqLen) ? longFactor : shortFactor;
        float[] powers = RopeMath.basePowers(theta, rotaryDim);
        float[] inv = new float[powers.length];
        for (int j = 0; j < inv.length; j++) inv[j] = 1f / (ext.get(j).floatValue() * powers[j]);
        return inv;
    }

    /** The factor multiplying cos and sin, in double as transformers keeps it. */
    public double resolvedAttentionFactor() {
        if (attentionFactor.isPresent()) return attentionFactor.getAsDouble();
        if (factor <= 1) return 1.0;
        return Math.sqrt(1 + Math.log(factor) / Math.log(originalMaxPositionEmbeddings));
    }

    @Override
    public float attentionScaling() {
        return (float) resolvedAttentionFactor();
    }

    @Override
    public Map<String, Object> toParameters() {
        Map<String, Object> p = RopeMath.parameters(TYPE, theta);
        p.put("short_factor", shortFactor);
        p.put("long_factor", longFactor);
        p.put("factor", factor);
        p.put("original_max_position_embeddings", originalMaxPositionEmbeddings);
        attentionFactor.ifPresent(v -> p.put("attention_factor", v));
        return p;
    }
}
