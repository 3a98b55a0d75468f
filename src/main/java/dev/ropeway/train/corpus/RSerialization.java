package dev.ropeway.train.corpus;

import dev.ropeway.RopewayException;

import java.nio.BufferUnderflowException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.Charset;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads R's XDR serialization format (what {@code saveRDS}, {@code serialize} and lazy-load databases write),
 * versions 2 and 3, so data shipped inside R packages can be used without an R installation. The stream is a
 * header ({@code "X\n"}, version, writer and reader versions, and in version 3 the writer's native encoding) then
 * one item: an int of packed flags (type in the low byte, then object / attribute / tag bits, string encoding in
 * the high bits) followed by the type's payload, all big-endian.
 */
public final class RSerialization {
    // SEXPTYPEs that appear in data.
    static final int SYMSXP = 1, LISTSXP = 2, CLOSXP = 3, ENVSXP = 4, PROMSXP = 5, LANGSXP = 6, SPECIALSXP = 7,
            BUILTINSXP = 8, CHARSXP = 9, LGLSXP = 10, INTSXP = 13, REALSXP = 14, CPLXSXP = 15, STRSXP = 16,
            DOTSXP = 17, VECSXP = 19, EXPRSXP = 20, RAWSXP = 24, S4SXP = 25;
    // Pseudo-types that only exist in the stream.
    static final int REFSXP = 255, NILVALUE_SXP = 254, GLOBALENV_SXP = 253, UNBOUNDVALUE_SXP = 252,
            MISSINGARG_SXP = 251, BASENAMESPACE_SXP = 250, NAMESPACESXP = 249, PACKAGESXP = 248, PERSISTSXP = 247,
            EMPTYENV_SXP = 242, BASEENV_SXP = 241, ALTREP_SXP = 238;
    static final int HAS_ATTR = 1 << 9, HAS_TAG = 1 << 10;
    // CHARSXP encoding bits, within flags >> 12.
    static final int BYTES_MASK = 1 << 1, LATIN1_MASK = 1 << 2, UTF8_MASK = 1 << 3, ASCII_MASK = 1 << 6;

    private final ByteBuffer in;
    private final List<RValue> refs = new ArrayList<>();
    private Charset nativeCharset = StandardCharsets.UTF_8;

    private RSerialization(byte[] bytes) {
        this.in = ByteBuffer.wrap(bytes).order(ByteOrder.BIG_ENDIAN);
    }

    /** The object serialized in {@code bytes} (already decompressed). Malformed or unsupported input is a {@link RopewayException}. */
    public static RValue unserialize(byte[] bytes) {
        RSerialization reader = new RSerialization(bytes);
        try {
            reader.header();
            return reader.item();
        } catch (BufferUnderflowException e) {
            throw new RopewayException("R serialized data ends early (truncated or not R data)");
        }
    }

    private void header() {
        if (in.remaining() < 2) throw new RopewayException("R serialized data is empty");
        byte f0 = in.get(), f1 = in.get();
        if (f1 != '\n' || f0 != 'X') {
            String what = (f0 == 'A' || f0 == 'B') && f1 == '\n' ? "R's " + (f0 == 'A' ? "ASCII" : "native binary")
                    + " serialization format; only the portable XDR format is supported" : "not R XDR serialized data";
            throw new RopewayException("R serialized data: " + what);
        }
        int version = in.getInt();
        in.getInt(); // R version that wrote it
        in.getInt(); // oldest R version that can read it
        if (version == 3) {
            int n = in.getInt();
            if (n < 0 || n > in.remaining()) throw new RopewayException("R serialized data: bad native-encoding header");
            byte[] name = new byte[n];
            in.get(name);
            nativeCharset = charsetOrUtf8(new String(name, StandardCharsets.US_ASCII));
        } else if (version != 2) {
            throw new RopewayException("R serialization version " + version + " is not supported (only 2 and 3)");
        }
    }

    private static Charset charsetOrUtf8(String name) {
        try {
            return Charset.forName(name);
        } catch (IllegalArgumentException e) {
            return StandardCharsets.UTF_8;
        }
    }

    private RValue item() {
        return item(in.getInt());
    }

    private RValue item(int flags) {
        int type = flags & 0xFF;
        return switch (type) {
            case NILVALUE_SXP -> RValue.Null.INSTANCE;
            case GLOBALENV_SXP -> new RValue.Environment("global");
            case EMPTYENV_SXP -> new RValue.Environment("empty");
            case BASEENV_SXP -> new RValue.Environment("base");
            case BASENAMESPACE_SXP -> new RValue.Environment("namespace:base");
            case UNBOUNDVALUE_SXP -> new RValue.Symbol("<unbound>");
            case MISSINGARG_SXP -> new RValue.Symbol("");
            case REFSXP -> {
                int index = flags >>> 8;
                if (index == 0) index = in.getInt();
                if (index < 1 || index > refs.size())
                    throw new RopewayException("R serialized data: reference " + index + " to an unknown object");
                yield refs.get(index - 1);
            }
            case PERSISTSXP -> addRef(new RValue.Environment("persistent:" + String.join(",", stringVector())));
            case PACKAGESXP -> addRef(new RValue.Environment("package:" + String.join(",", stringVector())));
            case NAMESPACESXP -> {
                List<String> spec = stringVector();
                yield addRef(new RValue.Environment("namespace:" + (spec.isEmpty() ? "" : spec.get(0))));
            }
            case SYMSXP -> {
                int charFlags = in.getInt();
                if ((charFlags & 0xFF) != CHARSXP)
                    throw new RopewayException("R serialized data: a symbol whose name is of type " + (charFlags & 0xFF));
                String name = charsxp(charFlags);
                yield addRef(new RValue.Symbol(name == null ? "NA" : name));
            }
            case ENVSXP -> {
                RValue env = addRef(new RValue.Environment("local"));
                in.getInt(); // locked
                item(); // enclosure
                item(); // frame
                item(); // hash table
                item(); // attributes
                yield env;
            }
            case LISTSXP, LANGSXP, CLOSXP, PROMSXP, DOTSXP -> pairList(flags);
            case SPECIALSXP, BUILTINSXP -> {
                int n = in.getInt();
                byte[] name = new byte[n];
                in.get(name);
                yield new RValue.Symbol(new String(name, StandardCharsets.US_ASCII));
            }
            case CHARSXP -> new RValue.Strings(Collections.singletonList(charsxp(flags)), Map.of());
            case ALTREP_SXP -> altrep();
            default -> vector(type, flags);
        };
    }

    private RValue addRef(RValue value) {
        refs.add(value);
        return value;
    }

    private RValue vector(int type, int flags) {
        List<String> strings = null;
        int[] ints = null;
        double[] doubles = null;
        byte[] raw = null;
        List<RValue> items = null;
        switch (type) {
            case LGLSXP, INTSXP -> {
                ints = new int[length()];
                for (int i = 0; i < ints.length; i++) ints[i] = in.getInt();
            }
            case REALSXP -> {
                doubles = new double[length()];
                for (int i = 0; i < doubles.length; i++) doubles[i] = in.getDouble();
            }
            case CPLXSXP -> {
                doubles = new double[Math.multiplyExact(2, length())];
                for (int i = 0; i < doubles.length; i++) doubles[i] = in.getDouble();
            }
            case STRSXP -> {
                int n = length();
                strings = new ArrayList<>(Math.min(n, 1 << 16));
                for (int i = 0; i < n; i++) {
                    int charFlags = in.getInt();
                    if ((charFlags & 0xFF) != CHARSXP)
                        throw new RopewayException("R serialized data: element " + i
                                + " of a character vector has type " + (charFlags & 0xFF));
                    strings.add(charsxp(charFlags));
                }
            }
            case VECSXP, EXPRSXP -> {
                int n = length();
                items = new ArrayList<>(Math.min(n, 1 << 16));
                for (int i = 0; i < n; i++) items.add(item());
            }
            case RAWSXP -> {
                raw = new byte[length()];
                in.get(raw);
            }
            case S4SXP -> items = List.of();
            default -> throw new RopewayException("R serialized data: object type " + type
                    + " is not supported (only data vectors, lists and pairlists are)");
        }
        Map<String, RValue> attrs = (flags & HAS_ATTR) != 0 ? attributes(item()) : Map.of();
        return switch (type) {
            case LGLSXP -> new RValue.Logicals(ints, attrs);
            case INTSXP -> new RValue.Integers(ints, attrs);
            case REALSXP -> new RValue.Doubles(doubles, attrs);
            case CPLXSXP -> new RValue.Complexes(doubles, attrs);
            case STRSXP -> new RValue.Strings(Collections.unmodifiableList(strings), attrs);
            case RAWSXP -> new RValue.Raw(raw, attrs);
            default -> new RValue.ListValue(Collections.unmodifiableList(items), attrs);
        };
    }

    /**
     * A pairlist-shaped node: attributes, tag and CAR, then the CDR. Chains of plain pairlist cells are read in a
     * loop rather than by recursion, since a long argument list or attribute list would otherwise nest deeply.
     */
    private RValue pairList(int flags) {
        int type = flags & 0xFF;
        Map<String, RValue> attrs = Map.of();
        List<String> tags = new ArrayList<>();
        List<RValue> values = new ArrayList<>();
        boolean first = true;
        while (true) {
            Map<String, RValue> cellAttrs = (flags & HAS_ATTR) != 0 ? attributes(item()) : Map.of();
            if (first) attrs = cellAttrs;
            String tag = null;
            if ((flags & HAS_TAG) != 0 && item() instanceof RValue.Symbol s) tag = s.name();
            tags.add(tag);
            values.add(item());
            first = false;
            int next = in.getInt();
            int nextType = next & 0xFF;
            if (nextType == NILVALUE_SXP) break;
            boolean chain = type != CLOSXP && type != PROMSXP && (nextType == LISTSXP || nextType == DOTSXP);
            if (!chain) {
                tags.add(null);
                values.add(item(next));
                break;
            }
            flags = next;
        }
        return new RValue.PairList(type, Collections.unmodifiableList(tags), Collections.unmodifiableList(values), attrs);
    }

    private static Map<String, RValue> attributes(RValue list) {
        if (!(list instanceof RValue.PairList p)) return Map.of();
        Map<String, RValue> attrs = new LinkedHashMap<>();
        for (int i = 0; i < p.values().size(); i++) {
            String tag = p.tags().get(i);
            if (tag != null) attrs.put(tag, p.values().get(i));
        }
        return Collections.unmodifiableMap(attrs);
    }

    /**
     * A compact representation R 3.5+ may write instead of a plain vector (ALTREP): a class descriptor, a state and
     * attributes. The classes base R writes for data are expanded to ordinary vectors.
     */
    private RValue altrep() {
        RValue info = item();
        RValue state = item();
        RValue attrList = item();
        String cls = info instanceof RValue.PairList p && !p.values().isEmpty()
                && p.values().get(0) instanceof RValue.Symbol s ? s.name() : "?";
        Map<String, RValue> attrs = attributes(attrList);
        switch (cls) {
            case "compact_intseq", "compact_realseq" -> {
                if (!(state instanceof RValue.Doubles d) || d.values().length != 3)
                    throw new RopewayException("R serialized data: malformed " + cls);
                long n = (long) d.values()[0];
                if (n < 0 || n > Integer.MAX_VALUE - 8) throw new RopewayException("R serialized data: " + cls + " too long");
                double start = d.values()[1], step = d.values()[2];
                if (cls.equals("compact_intseq")) {
                    int[] v = new int[(int) n];
                    for (int i = 0; i < v.length; i++) v[i] = (int) (start + i * step);
                    return new RValue.Integers(v, attrs);
                }
                double[] v = new double[(int) n];
                for (int i = 0; i < v.length; i++) v[i] = start + i * step;
                return new RValue.Doubles(v, attrs);
            }
            default -> {
                if (cls.startsWith("wrap_") && state instanceof RValue.ListValue l && !l.values().isEmpty())
                    return withAttributes(l.values().get(0), attrs);
                throw new RopewayException("R serialized data: compact vector class " + cls + " is not supported");
            }
        }
    }

    private static RValue withAttributes(RValue v, Map<String, RValue> attrs) {
        if (attrs.isEmpty()) return v;
        return switch (v) {
            case RValue.Strings s -> new RValue.Strings(s.values(), attrs);
            case RValue.Integers s -> new RValue.Integers(s.values(), attrs);
            case RValue.Logicals s -> new RValue.Logicals(s.values(), attrs);
            case RValue.Doubles s -> new RValue.Doubles(s.values(), attrs);
            case RValue.Complexes s -> new RValue.Complexes(s.parts(), attrs);
            case RValue.Raw s -> new RValue.Raw(s.values(), attrs);
            case RValue.ListValue s -> new RValue.ListValue(s.values(), attrs);
            default -> v;
        };
    }

    /** The string vectors that name namespaces and persistent objects: a zero int, a length, then CHARSXP items. */
    private List<String> stringVector() {
        if (in.getInt() != 0) throw new RopewayException("R serialized data: malformed name vector");
        int n = in.getInt();
        List<String> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int flags = in.getInt();
            if ((flags & 0xFF) != CHARSXP) throw new RopewayException("R serialized data: malformed name vector");
            out.add(charsxp(flags));
        }
        return out;
    }

    /** One string: a length (-1 for NA) and its bytes, in the encoding the flags name. */
    private String charsxp(int flags) {
        int n = in.getInt();
        if (n == -1) return null;
        if (n < 0 || n > in.remaining()) throw new RopewayException("R serialized data: bad string length " + n);
        byte[] bytes = new byte[n];
        in.get(bytes);
        int levels = flags >>> 12;
        Charset cs;
        if ((levels & UTF8_MASK) != 0 || (levels & ASCII_MASK) != 0) cs = StandardCharsets.UTF_8;
        else if ((levels & (LATIN1_MASK | BYTES_MASK)) != 0) cs = StandardCharsets.ISO_8859_1;
        else cs = nativeCharset;
        return new String(bytes, cs);
    }

    private int length() {
        int n = in.getInt();
        if (n == -1) {
            long upper = in.getInt() & 0xFFFFFFFFL, lower = in.getInt() & 0xFFFFFFFFL;
            long len = (upper << 32) | lower;
            throw new RopewayException("R serialized data: a vector of " + len + " elements is too long to read");
        }
        if (n < 0) throw new RopewayException("R serialized data: bad vector length " + n);
        return n;
    }

    /** For messages: a short description of a value's type. */
    static String describe(RValue v) {
        return switch (v) {
            case RValue.Strings s -> "a character vector of " + s.values().size();
            case RValue.Integers s -> "an integer vector of " + s.values().length;
            case RValue.Doubles s -> "a numeric vector of " + s.values().length;
            case RValue.Logicals s -> "a logical vector of " + s.values().length;
            case RValue.ListValue s -> "a list of " + s.values().size();
            case RValue.Null n -> "NULL";
            default -> v.getClass().getSimpleName().toLowerCase(java.util.Locale.ROOT);
        };
    }
}
