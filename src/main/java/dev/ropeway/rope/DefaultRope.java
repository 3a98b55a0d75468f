package dev.ropeway.rope;

import java.util.LinkedHashMap;
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
    public float attentionScaling() {
        return 1f;
    }

    @Override
    public Map<String, Object> toParameters() {
        Map<String, Object> p = new LinkedHashMap<>();
        p.put("rope_type", TYPE);
        p.put("rope_theta", theta);
        return p;
    }
}
