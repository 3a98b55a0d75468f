package dev.ropeway.rope;

/**
 * The float32 building blocks every RoPE method shares, in the order of operations transformers uses, so that
 * results agree with its tables to the last bit wherever the platform's pow agrees.
 */
final class RopeMath {
    private RopeMath() {
    }

    /**
     * The exponent 2j/d of pair j. transformers builds it as {@code arange(0, d, 2).float() / d}: the even index
     * and d are float32 and the quotient is rounded to float32.
     */
    static float exponent(int pair, int rotaryDim) {
        return (float) (2 * pair) / (float) rotaryDim;
    }

    /**
     * {@code base ** (2j/d)} for every pair. torch wraps a Python-float base as a float32 operand before the
     * power, so the base is rounded to float32 first; the double pow rounded to float is the correctly rounded
     * float32 power.
     */
    static float[] basePowers(double base, int rotaryDim) {
        float b = (float) base;
        float[] powers = new float[rotaryDim / 2];
        for (int j = 0; j < powers.length; j++) powers[j] = (float) Math.pow(b, exponent(j, rotaryDim));
        return powers;
    }

    /** Plain RoPE: {@code 1 / base ** (2j/d)} in float32 (torch's {@code 1.0 / t} is a float32 reciprocal). */
    static float[] standardInverseFrequencies(double base, int rotaryDim) {
        float[] inv = basePowers(base, rotaryDim);
        for (int j = 0; j < inv.length; j++) inv[j] = 1f / inv[j];
        return inv;
    }

    /** The start of every {@code rope_parameters} map: the method's name and its base. */
    static java.util.Map<String, Object> parameters(String type, double theta) {
        java.util.Map<String, Object> p = new java.util.LinkedHashMap<>();
        p.put("rope_type", type);
        p.put("rope_theta", theta);
        return p;
    }
}
