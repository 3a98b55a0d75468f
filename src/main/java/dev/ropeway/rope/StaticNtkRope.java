package dev.ropeway.rope;

import java.util.Map;

/**
 * Static NTK-aware scaling ("ntk", not a transformers 5.x type): plain RoPE with the base raised once to
 * {@code theta * factor^(d/(d-2))}, computed in double as older transformers releases did, positions unchanged.
 */
public record StaticNtkRope(double theta, int rotaryDim, double factor) implements RopeScaling {
    public static final String TYPE = "ntk";

    public StaticNtkRope {
        RopeChecks.theta(TYPE, theta);
        RopeChecks.rotaryDim(TYPE, rotaryDim, 4);
        RopeChecks.positive(TYPE, "factor", factor);
    }

    @Override
    public String type() {
        return TYPE;
    }

    /** The enlarged base {@code theta * factor^(d/(d-2))}. */
    public double base() {
        return theta * Math.pow(factor, rotaryDim / (double) (rotaryDim - 2));
    }

    @Override
    public float[] inverseFrequencies(long seqLen) {
        return RopeMath.standardInverseFrequencies(base(), rotaryDim);
    }

    @Override
    public Map<String, Object> toParameters() {
        Map<String, Object> p = RopeMath.parameters(TYPE, theta);
        p.put("factor", factor);
        return p;
    }
}
