package dev.ropeway.model;

import dev.ropeway.RopewayException;

import java.util.List;
import java.util.Map;

/** Typed, validated access to a parsed config.json, with errors that name the file and the key. */
final class ConfigReader {
    private final Map<String, Object> map;
    private final String source;

    ConfigReader(Map<String, Object> map, String source) {
        this.map = map;
        this.source = source;
    }

    boolean has(String key) {
        return map.get(key) != null;
    }

    Object raw(String key) {
        return map.get(key);
    }

    int positiveInt(String key) {
        long v = positiveLong(key);
        if (v > Integer.MAX_VALUE) throw bad(key, "an integer below 2^31", map.get(key));
        return (int) v;
    }

    int positiveInt(String key, int fallback) {
        return has(key) ? positiveInt(key) : fallback;
    }

    long positiveLong(String key) {
        Object v = map.get(key);
        if (v == null) throw new RopewayException(source + ": missing required key '" + key + "'");
        if (!(v instanceof Number n) || n.doubleValue() != Math.rint(n.doubleValue()) || n.doubleValue() <= 0)
            throw bad(key, "a positive integer", v);
        return n.longValue();
    }

    double positiveDouble(String key, double fallback) {
        Object v = map.get(key);
        if (v == null) return fallback;
        if (!(v instanceof Number n) || !(n.doubleValue() > 0) || Double.isInfinite(n.doubleValue()))
            throw bad(key, "a positive number", v);
        return n.doubleValue();
    }

    boolean bool(String key, boolean fallback) {
        Object v = map.get(key);
        if (v == null) return fallback;
        if (!(v instanceof Boolean b)) throw bad(key, "true or false", v);
        return b;
    }

    String string(String key, String fallback) {
        Object v = map.get(key);
        if (v == null) return fallback;
        if (!(v instanceof String s)) throw bad(key, "a string", v);
        return s;
    }

    /** A token id that may be an integer, a list of integers (first one wins) or absent. */
    Integer optionalTokenId(String key) {
        Object v = map.get(key);
        if (v instanceof List<?> list) v = list.isEmpty() ? null : list.getFirst();
        if (v == null) return null;
        if (!(v instanceof Number n) || n.doubleValue() != Math.rint(n.doubleValue()) || n.longValue() < 0)
            throw bad(key, "a non-negative integer token id", v);
        return n.intValue();
    }

    String firstString(String key) {
        Object v = map.get(key);
        if (v instanceof List<?> list && !list.isEmpty() && list.getFirst() instanceof String s) return s;
        if (v instanceof String s) return s;
        return null;
    }

    private RopewayException bad(String key, String expected, Object got) {
        return new RopewayException(source + ": '" + key + "' must be " + expected + ", got " + render(got));
    }

    private static String render(Object v) {
        return v instanceof String s ? "\"" + s + "\"" : String.valueOf(v);
    }
}
