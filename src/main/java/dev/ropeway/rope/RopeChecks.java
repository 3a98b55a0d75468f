package dev.ropeway.rope;

import dev.ropeway.RopewayException;

/**
 * Validation shared by the RoPE records and the parameter reader, so every message has the same shape:
 * {@code rope_type 'yarn' needs 'factor' (a number > 0), got -1}.
 */
final class RopeChecks {
    static final String POSITIVE = "a number > 0";
    static final String WHOLE = "a whole number > 0";

    private RopeChecks() {
    }

    static RopewayException needs(String type, String key, String expected) {
        return new RopewayException("rope_type '" + type + "' needs '" + key + "' (" + expected + ")");
    }

    static RopewayException needs(String type, String key, String expected, Object got) {
        String shown = got instanceof String s ? "'" + s + "'" : String.valueOf(got);
        return new RopewayException("rope_type '" + type + "' needs '" + key + "' (" + expected + "), got " + shown);
    }

    static double positive(String type, String key, double value) {
        if (!(value > 0) || Double.isInfinite(value)) throw needs(type, key, POSITIVE, value);
        return value;
    }

    static long positiveWhole(String type, String key, long value) {
        if (value <= 0) throw needs(type, key, WHOLE, value);
        return value;
    }

    static double theta(String type, double theta) {
        return positive(type, "rope_theta", theta);
    }

    /** d must be even (pairs) and, for the NTK formulas' exponent d/(d-2), larger than 2. */
    static int rotaryDim(String type, int rotaryDim, int atLeast) {
        if (rotaryDim < atLeast || rotaryDim % 2 != 0)
            throw new RopewayException("rope_type '" + type + "' needs an even rotary dimension >= " + atLeast
                    + ", got " + rotaryDim);
        return rotaryDim;
    }
}
