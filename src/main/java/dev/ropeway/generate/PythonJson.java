package dev.ropeway.generate;

import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.lib.filter.Filter;

import java.math.BigDecimal;
import java.util.Map;
import java.util.TreeMap;

/**
 * The {@code tojson} filter as transformers defines it for chat templates: Python's
 * {@code json.dumps(x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)}, byte for
 * byte. Tool definitions reach the prompt through it, so its spacing (", " and ": ", or a newline and the indent
 * per level) and its number forms are part of what the model was trained on.
 */
final class PythonJson implements Filter {

    @Override
    public String getName() {
        return "tojson";
    }

    @Override
    public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
        return dumps(var, false, -1, null, null, false);
    }

    @Override
    public Object filter(Object var, JinjavaInterpreter interpreter, Object[] args, Map<String, Object> kwargs) {
        // Positional order of transformers' tojson: ensure_ascii, indent, separators, sort_keys.
        Object ensureAscii = args.length > 0 ? args[0] : kwargs.get("ensure_ascii");
        Object indent = args.length > 1 ? args[1] : kwargs.get("indent");
        Object separators = args.length > 2 ? args[2] : kwargs.get("separators");
        Object sortKeys = args.length > 3 ? args[3] : kwargs.get("sort_keys");
        String itemSeparator = null, keySeparator = null;
        if (separators instanceof java.util.List<?> pair && pair.size() == 2) {
            itemSeparator = String.valueOf(pair.get(0));
            keySeparator = String.valueOf(pair.get(1));
        }
        int indentWidth = indent instanceof Number n ? n.intValue() : -1;
        return dumps(var, Boolean.TRUE.equals(ensureAscii), indentWidth, itemSeparator, keySeparator, Boolean.TRUE.equals(sortKeys));
    }

    /** {@code json.dumps}; an indent below 0 means none (one line), and null separators mean Python's defaults. */
    static String dumps(Object value, boolean ensureAscii, int indent, String itemSeparator, String keySeparator, boolean sortKeys) {
        String items = itemSeparator != null ? itemSeparator : indent >= 0 ? "," : ", ";
        String keys = keySeparator != null ? keySeparator : ": ";
        StringBuilder out = new StringBuilder();
        new Writer(out, ensureAscii, indent, items, keys, sortKeys).write(value, 0);
        return out.toString();
    }

    private record Writer(StringBuilder out, boolean ensureAscii, int indent, String items, String keys, boolean sortKeys) {

        void write(Object value, int depth) {
            switch (value) {
                case null -> out.append("null");
                case Boolean b -> out.append(b ? "true" : "false");
                case Double d -> out.append(pythonFloat(d));
                case Float f -> out.append(pythonFloat(f.doubleValue()));
                case BigDecimal d -> out.append(pythonFloat(d.doubleValue()));
                case Number n -> out.append(n);
                case CharSequence s -> string(s.toString());
                case Map<?, ?> map -> object(map, depth);
                case Iterable<?> list -> array(list, depth);
                case Object[] array -> array(java.util.Arrays.asList(array), depth);
                default -> string(value.toString());
            }
        }

        private void object(Map<?, ?> map, int depth) {
            if (map.isEmpty()) {
                out.append("{}");
                return;
            }
            Map<?, ?> entries = sortKeys ? new TreeMap<>(map) : map;
            out.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : entries.entrySet()) {
                if (!first) out.append(items);
                first = false;
                newline(depth + 1);
                string(key(e.getKey()));
                out.append(keys);
                write(e.getValue(), depth + 1);
            }
            newline(depth);
            out.append('}');
        }

        private void array(Iterable<?> list, int depth) {
            if (!list.iterator().hasNext()) {
                out.append("[]");
                return;
            }
            out.append('[');
            boolean first = true;
            for (Object item : list) {
                if (!first) out.append(items);
                first = false;
                newline(depth + 1);
                write(item, depth + 1);
            }
            newline(depth);
            out.append(']');
        }

        private void newline(int depth) {
            if (indent < 0) return;
            out.append('\n');
            out.repeat(' ', indent * depth);
        }

        /** Python turns keys into strings: True is "true", None is "null", numbers as they print. */
        private static String key(Object k) {
            if (k == null) return "null";
            if (k instanceof Boolean b) return b ? "true" : "false";
            if (k instanceof Double || k instanceof Float) return pythonFloat(((Number) k).doubleValue());
            return k.toString();
        }

        private void string(String s) {
            out.append('"');
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                switch (c) {
                    case '"' -> out.append("\\\"");
                    case '\\' -> out.append("\\\\");
                    case '\n' -> out.append("\\n");
                    case '\r' -> out.append("\\r");
                    case '\t' -> out.append("\\t");
                    case '\b' -> out.append("\\b");
                    case '\f' -> out.append("\\f");
                    default -> {
                        if (c < 0x20 || (ensureAscii && c > 0x7e)) out.append(String.format("\\u%04x", (int) c));
                        else out.append(c);
                    }
                }
            }
            out.append('"');
        }
    }

    /**
     * Python's {@code repr} of a float: the shortest digits that read back to it, positional from 1e-4 to below
     * 1e16 (with ".0" when whole), otherwise like 1e-05 or 1.5e+16.
     */
    static String pythonFloat(double d) {
        if (Double.isNaN(d)) return "NaN";
        if (Double.isInfinite(d)) return d > 0 ? "Infinity" : "-Infinity";
        if (d == 0) return (1 / d < 0) ? "-0.0" : "0.0";
        BigDecimal shortest = new BigDecimal(Double.toString(Math.abs(d))).stripTrailingZeros();
        String digits = shortest.unscaledValue().toString();
        int exponent = digits.length() - 1 - shortest.scale();
        String sign = d < 0 ? "-" : "";
        if (exponent >= -4 && exponent < 16) {
            String plain = shortest.toPlainString();
            return sign + (plain.contains(".") ? plain : plain + ".0");
        }
        String mantissa = digits.length() == 1 ? digits : digits.charAt(0) + "." + digits.substring(1);
        int abs = Math.abs(exponent);
        return sign + mantissa + "e" + (exponent < 0 ? "-" : "+") + (abs < 10 ? "0" : "") + abs;
    }
}
