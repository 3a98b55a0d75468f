package dev.ropeway.rope;

import dev.ropeway.RopewayException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.OptionalDouble;

/**
 * Typed reads from a rope_parameters map as JSON leaves it (numbers as Integer, Long, Double or BigDecimal; lists
 * as List of numbers), failing with a message that names the rope_type, the key and what was expected.
 */
final class RopeParameterReader {
    private final String type;
    private final Map<String, Object> parameters;

    RopeParameterReader(String type, Map<String, Object> parameters) {
        this.type = type;
        this.parameters = parameters;
    }

    private Object value(String key) {
        return parameters.get(key);
    }

    /** A number that must be present and > 0. */
    double positive(String key) {
        Object v = value(key);
        if (v == null) throw RopeChecks.needs(type, key, RopeChecks.POSITIVE);
        if (!(v instanceof Number n)) throw RopeChecks.needs(type, key, RopeChecks.POSITIVE, v);
        return RopeChecks.positive(type, key, n.doubleValue());
    }

    /** A number > 0, or the fallback when the key is absent or null. */
    double positive(String key, double fallback) {
        return value(key) == null ? fallback : positive(key);
    }

    /** A number, or empty when the key is absent or null. */
    OptionalDouble optionalNumber(String key) {
        Object v = value(key);
        if (v == null) return OptionalDouble.empty();
        if (!(v instanceof Number n) || !Double.isFinite(n.doubleValue()))
            throw RopeChecks.needs(type, key, "a number", v);
        return OptionalDouble.of(n.doubleValue());
    }

    /** A whole number > 0 (2048 or 2048.0), or the fallback when absent or null. */
    long positiveWhole(String key, long fallback) {
        Object v = value(key);
        if (v == null) return fallback;
        if (v instanceof Number n) {
            double d = n.doubleValue();
            if (d > 0 && d == Math.rint(d) && d <= Long.MAX_VALUE) return n.longValue();
        }
        throw RopeChecks.needs(type, key, RopeChecks.WHOLE, v);
    }

    /** A boolean, or the fallback when absent or null. */
    String string(String key, String fallback) {
        Object v = value(key);
        if (v == null) return fallback;
        if (v instanceof String str) return str;
        throw new RopewayException(type + " RoPE: '" + key + "' must be a string, got " + v);
    }

    boolean flag(String key, boolean fallback) {
        Object v = value(key);
        if (v == null) return fallback;
        if (v instanceof Boolean b) return b;
        throw RopeChecks.needs(type, key, "true or false", v);
    }

    /** A list of numbers, or null when the key is absent or null (the record reports the expected length). */
    List<Double> numbers(String key) {
        Object v = value(key);
        if (v == null) return null;
        if (v instanceof List<?> list) {
            List<Double> out = new ArrayList<>(list.size());
            for (Object item : list) {
                if (!(item instanceof Number n)) throw RopeChecks.needs(type, key, "a list of numbers", v);
                out.add(n.doubleValue());
            }
            return out;
        }
        throw RopeChecks.needs(type, key, "a list of numbers", v);
    }
}
