package dev.ropeway.train.corpus;

import java.util.List;
import java.util.Map;

/**
 * An R object read from R's serialization format: the subset of R types that data sets saved in packages use
 * (vectors, lists, pairlists, symbols) plus opaque environments, so that a stream holding one can still be walked.
 * Attributes keep their serialized order; NA strings are {@code null}, NA integers and logicals are
 * {@link #NA_INTEGER}.
 */
public sealed interface RValue {
    /** R's integer NA (also the logical NA). */
    int NA_INTEGER = Integer.MIN_VALUE;

    /** The object's attributes by name ({@code names}, {@code class}, ...); empty when it has none. */
    default Map<String, RValue> attributes() {
        return Map.of();
    }

    /** The {@code names} attribute as strings, or an empty list. */
    default List<String> names() {
        return attributes().get("names") instanceof Strings s ? s.values() : List.of();
    }

    /** {@code NULL}. */
    record Null() implements RValue {
        public static final Null INSTANCE = new Null();
    }

    record Symbol(String name) implements RValue {}

    /** A character vector (STRSXP). */
    record Strings(List<String> values, Map<String, RValue> attributes) implements RValue {}

    record Logicals(int[] values, Map<String, RValue> attributes) implements RValue {}

    record Integers(int[] values, Map<String, RValue> attributes) implements RValue {}

    record Doubles(double[] values, Map<String, RValue> attributes) implements RValue {}

    /** Complex numbers as interleaved real and imaginary parts. */
    record Complexes(double[] parts, Map<String, RValue> attributes) implements RValue {}

    record Raw(byte[] values, Map<String, RValue> attributes) implements RValue {}

    /** A generic vector: R's {@code list()} (VECSXP) or an expression vector. */
    record ListValue(List<RValue> values, Map<String, RValue> attributes) implements RValue {
        /** The element called {@code name} (by the {@code names} attribute), or null. */
        public RValue get(String name) {
            int i = names().indexOf(name);
            return i < 0 || i >= values.size() ? null : values.get(i);
        }
    }

    /**
     * A pairlist or a node of the same shape (a call, a closure): elements with optional tags. {@code type} is the
     * R SEXPTYPE, 2 for a plain pairlist.
     */
    record PairList(int type, List<String> tags, List<RValue> values, Map<String, RValue> attributes)
            implements RValue {}

    /**
     * An environment. Its contents are kept only for completeness: data sets that are plain vectors never need
     * them. {@code kind} is {@code "global"}, {@code "base"}, {@code "empty"}, {@code "namespace:<name>"},
     * {@code "package:<name>"}, {@code "persistent:<name>"} or {@code "local"} for a serialized one.
     */
    record Environment(String kind) implements RValue {}
}
