package dev.ropeway.rope;

import java.util.Map;
import java.util.Objects;
import java.util.OptionalDouble;

/**
 * YaRN (transformers' "yarn"): pairs that rotate fewer than {@code beta_slow} times over the original context are
 * interpolated (divided by {@code factor}), pairs that rotate more than {@code beta_fast} times are kept, and a
 * linear ramp over the pair index blends the band between; cos and sin are multiplied by an attention factor.
 *
 * <p>The optional components hold what the parameters said, so that {@link #toParameters()} writes back what was
 * read: an explicit {@code attentionFactor} wins, otherwise {@code mscale}/{@code mscale_all_dim} (both non-zero)
 * or {@code 0.1 ln(factor) + 1} decide it. {@code betaFast}/{@code betaSlow} are already resolved (zero means 32/1
 * in transformers, as Python's {@code or} treats 0 as unset).
 */
public record YarnRope(double theta, int rotaryDim, double factor, long originalMaxPositionEmbeddings,
                       double betaFast, double betaSlow, OptionalDouble attentionFactor, OptionalDouble mscale,
                       OptionalDouble mscaleAllDim, boolean truncate) implements RopeScaling {
    public static final String TYPE = "yarn";
    public static final double DEFAULT_BETA_FAST = 32;
    public static final double DEFAULT_BETA_SLOW = 1;

    /** The pair-index band [low, high] over which the ramp runs (whole numbers when truncated). */
    public record CorrectionRange(double low, double high) {
    }

    public YarnRope {
        RopeChecks.theta(TYPE, theta);
        RopeChecks.rotaryDim(TYPE, rotaryDim, 2);
        RopeChecks.positive(TYPE, "factor", factor);
        RopeChecks.positiveWhole(TYPE, "original_max_position_embeddings", originalMaxPositionEmbeddings);
        RopeChecks.positive(TYPE, "beta_fast", betaFast);
        RopeChecks.positive(TYPE, "beta_slow", betaSlow);
        Objects.requireNonNull(attentionFactor, "attentionFactor");
        Objects.requireNonNull(mscale, "mscale");
        Objects.requireNonNull(mscaleAllDim, "mscaleAllDim");
        if (attentionFactor.isPresent()) RopeChecks.positive(TYPE, "attention_factor", attentionFactor.getAsDouble());
    }

    /** The common case: defaults for everything but factor and original context. */
    public static YarnRope of(double theta, int rotaryDim, double factor, long originalMaxPositionEmbeddings) {
        return new YarnRope(theta, rotaryDim, factor, originalMaxPositionEmbeddings, DEFAULT_BETA_FAST,
                DEFAULT_BETA_SLOW, OptionalDouble.empty(), OptionalDouble.empty(), OptionalDouble.empty(), true);
    }

    @Override
    public String type() {
        return TYPE;
    }

    /** YaRN's temperature term: 1 for no extension, else {@code 0.1 * m * ln(s) + 1}. */
    static double mscaleOf(double scale, double m) {
        return scale <= 1 ? 1.0 : 0.1 * m * Math.log(scale) + 1.0;
    }

    /** The factor multiplying cos and sin, in double as transformers keeps it. */
    public double resolvedAttentionFactor() {
        if (attentionFactor.isPresent()) return attentionFactor.getAsDouble();
        double m = mscale.orElse(0), all = mscaleAllDim.orElse(0);
        if (m != 0 && all != 0) return mscaleOf(factor, m) / mscaleOf(factor, all);
        return mscaleOf(factor, 1);
    }

    /** The pair index at which a pair makes {@code rotations} turns over the original context (fractional). */
    private double correctionDim(double rotations) {
        return (rotaryDim * Math.log(originalMaxPositionEmbeddings / (rotations * 2 * Math.PI)))
                / (2 * Math.log(theta));
    }

    /**
     * The ramp's ends. The upper clamp is {@code d - 1} although the ramp runs over only d/2 pair indices;
     * transformers clamps that way, and the value matters when beta_slow is small, so it is kept.
     */
    public CorrectionRange correctionRange() {
        double low = correctionDim(betaFast), high = correctionDim(betaSlow);
        if (truncate) { // Python's floor/ceil return ints, which have no negative zero: + 0.0 drops it
            low = Math.floor(low) + 0.0;
            high = Math.ceil(high) + 0.0;
        }
        return new CorrectionRange(Math.max(low, 0), Math.min(high, rotaryDim - 1));
    }

    @Override
    public float[] inverseFrequencies(long seqLen) {
        float[] powers = RopeMath.basePowers(theta, rotaryDim);
        CorrectionRange range = correctionRange();
        double low = range.low(), high = range.high();
        if (low == high) high += 0.001; // transformers' guard against a zero-width ramp
        float rampLow = (float) low, rampWidth = (float) (high - low), f = (float) factor;
        float[] inv = new float[powers.length];
        for (int j = 0; j < inv.length; j++) {
            float extrapolation = 1f / powers[j];
            float interpolation = 1f / (f * powers[j]);
            float ramp = Math.clamp(((float) j - rampLow) / rampWidth, 0f, 1f);
            float keep = 1f - ramp; // weight of the unscaled (extrapolated) frequency
            inv[j] = interpolation * (1f - keep) + extrapolation * keep;
        }
        return inv;
    }

    @Override
    public float attentionScaling() {
        return (float) resolvedAttentionFactor();
    }

    @Override
    public Map<String, Object> toParameters() {
        Map<String, Object> p = RopeMath.parameters(TYPE, theta);
        p.put("factor", factor);
        p.put("original_max_position_embeddings", originalMaxPositionEmbeddings);
        p.put("beta_fast", betaFast);
        p.put("beta_slow", betaSlow);
        attentionFactor.ifPresent(v -> p.put("attention_factor", v));
        mscale.ifPresent(v -> p.put("mscale", v));
        mscaleAllDim.ifPresent(v -> p.put("mscale_all_dim", v));
        if (!truncate) p.put("truncate", false);
        return p;
    }
}
