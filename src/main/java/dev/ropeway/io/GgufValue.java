package dev.ropeway.io;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Objects;

/**
 * One GGUF metadata value with its declared type. Integers of every width are held as {@code Long} (unsigned ones
 * read as their unsigned value), FLOAT32 as {@code Float}, FLOAT64 as {@code Double}, BOOL as {@code Boolean},
 * STRING as {@code String}; an ARRAY holds a list of such values, all of {@link #elementType}.
 */
public record GgufValue(Type type, Object value, Type elementType) {

    /** The metadata value types of GGUF, by their id in the file. */
    public enum Type {
        UINT8(0, 1), INT8(1, 1), UINT16(2, 2), INT16(3, 2), UINT32(4, 4), INT32(5, 4), FLOAT32(6, 4), BOOL(7, 1),
        STRING(8, 0), ARRAY(9, 0), UINT64(10, 8), INT64(11, 8), FLOAT64(12, 8);

        private final int id;
        private final int bytes;

        Type(int id, int bytes) {
            this.id = id;
            this.bytes = bytes;
        }

        public int id() { return id; }

        /** Bytes of a fixed-size value, 0 for STRING and ARRAY. */
        int bytes() { return bytes; }

        public boolean isInteger() {
            return this == UINT8 || this == INT8 || this == UINT16 || this == INT16 || this == UINT32 || this == INT32
                    || this == UINT64 || this == INT64;
        }

        static Type byId(long id) {
            for (Type t : values()) if (t.id == id) return t;
            return null;
        }
    }

    public GgufValue {
        Objects.requireNonNull(type, "type");
        Objects.requireNonNull(value, "value");
        if (type == Type.ARRAY) {
            Objects.requireNonNull(elementType, "elementType");
            if (elementType == Type.ARRAY) throw new IllegalArgumentException("nested GGUF arrays are not supported");
            value = Collections.unmodifiableList(new ArrayList<>((List<?>) value));
        } else if (elementType != null) {
            throw new IllegalArgumentException("only an ARRAY has an element type");
        }
    }

    public static GgufValue string(String s) { return new GgufValue(Type.STRING, s, null); }

    public static GgufValue uint32(long v) {
        if (v < 0 || v > 0xFFFF_FFFFL) throw new IllegalArgumentException("UINT32 value out of range: " + v);
        return new GgufValue(Type.UINT32, v, null);
    }

    public static GgufValue int32(int v) { return new GgufValue(Type.INT32, (long) v, null); }

    public static GgufValue uint64(long v) { return new GgufValue(Type.UINT64, v, null); }

    public static GgufValue float32(float v) { return new GgufValue(Type.FLOAT32, v, null); }

    public static GgufValue bool(boolean v) { return new GgufValue(Type.BOOL, v, null); }

    public static GgufValue strings(List<String> values) { return new GgufValue(Type.ARRAY, values, Type.STRING); }

    public static GgufValue int32s(int[] values) {
        List<Long> list = new ArrayList<>(values.length);
        for (int v : values) list.add((long) v);
        return new GgufValue(Type.ARRAY, list, Type.INT32);
    }

    public static GgufValue float32s(float[] values) {
        List<Float> list = new ArrayList<>(values.length);
        for (float v : values) list.add(v);
        return new GgufValue(Type.ARRAY, list, Type.FLOAT32);
    }

    /** The value of an integer type. */
    public long asLong() {
        if (!type.isInteger()) throw new IllegalStateException("a " + type + " value is not an integer");
        return (Long) value;
    }

    /** The value of a FLOAT32 or FLOAT64. */
    public double asDouble() {
        if (type == Type.FLOAT32) return (Float) value;
        if (type == Type.FLOAT64) return (Double) value;
        throw new IllegalStateException("a " + type + " value is not a float");
    }

    public String asString() {
        if (type != Type.STRING) throw new IllegalStateException("a " + type + " value is not a string");
        return (String) value;
    }

    public boolean asBool() {
        if (type != Type.BOOL) throw new IllegalStateException("a " + type + " value is not a bool");
        return (Boolean) value;
    }

    /** The elements of an ARRAY. */
    public List<?> asList() {
        if (type != Type.ARRAY) throw new IllegalStateException("a " + type + " value is not an array");
        return (List<?>) value;
    }

    /** The elements of an array of strings. */
    @SuppressWarnings("unchecked")
    public List<String> asStrings() {
        if (type != Type.ARRAY || elementType != Type.STRING)
            throw new IllegalStateException("a " + describe() + " value is not an array of strings");
        return (List<String>) value;
    }

    /** "UINT32", "ARRAY[STRING]" and so on. */
    public String describe() {
        return type == Type.ARRAY ? "ARRAY[" + elementType + "]" : type.toString();
    }
}
