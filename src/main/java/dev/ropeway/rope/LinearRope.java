package dev.ropeway.rope;

import java.util.Map;

/**
 * Position interpolation (transformers' "linear"): every inverse frequency divided by {@code factor}, which is the
 * same as dividing positions by it. E²-LLM's inference-time scale g is this method with factor g.
 */
public record LinearRope(double theta, int rotaryDim, double factor) implements RopeScaling {
    public static final String TYPE = "linear";

    public LinearRope {
        RopeChecks.theta(TYPE, theta);
        RopeChecks.rotaryDim(TYPE, rotaryDim, 2);
        RopeChecks.positive(TYPE, "factor", factor);
    }

    @Override
    public String type() {
        return TYPE;
    }

    /** transformers divides the float32 table in place by the factor (a float32 division, not a reciprocal multiply). */
    @Override
    public float[] inverseFrequencies(long seqLen) {
        float[] inv = RopeMath.standardInverseFrequencies(theta, rotaryDim);
        float f = (float) factor;
        for (int j = 0; j < inv.length; j++) inv[j] = inv[j] / f;
        return inv;
    }

    @Override
    public Map<String, Object> toParameters() {
        Map<String, Object> p = RopeMath.parameters(TYPE, theta);
        p.put("factor", factor);
        return p;
    }
}
