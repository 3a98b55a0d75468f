package dev.ropeway.rope;

import java.util.Map;

/** Plain RoPE, {@code inv_freq[j] = 1 / theta^(2j/d)}: transformers' "default" rope_type. */
public record DefaultRope(double theta, int rotaryDim) implements RopeScaling {
    public static final String TYPE = "default";

    public DefaultRope {
        RopeChecks.theta(TYPE, theta);
        RopeChecks.rotaryDim(TYPE, rotaryDim, 2);
    }

    @Override
    public String type() {
        return TYPE;
    }

    @Override
    public float[] inverseFrequencies(long seqLen) {
        return RopeMath.standardInverseFrequencies(theta, rotaryDim);
    }

    @Override
    public Map<String, Object> toParameters() {
        Map<String, Object> p = RopeMath.parameters(TYPE, theta);
        return p;
    }
}
