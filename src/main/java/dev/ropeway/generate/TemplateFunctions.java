package dev.ropeway.generate;

import java.time.ZonedDateTime;
import java.time.format.TextStyle;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The globals transformers adds to the Jinja environment of chat templates ({@code raise_exception},
 * {@code strftime_now}), and the Python slice with a step that Jinjava's grammar lacks. Public static methods,
 * as Jinjava calls functions by reflection.
 */
public final class TemplateFunctions {
    private TemplateFunctions() {}

    /** What {@code raise_exception} throws: the template's own message, meant for the user. */
    static final class Raised extends RuntimeException {
        Raised(String message) {
            super(message);
        }
    }

    /** {@code raise_exception(message)}: the template refuses the conversation. */
    public static Object raiseException(Object message) {
        throw new Raised(String.valueOf(message));
    }

    /** {@code strftime_now(format)}: the local date and time, formatted as Python's strftime does. */
    public static String strftimeNow(String format) {
        return strftime(format, ZonedDateTime.now());
    }

    /** Python's (glibc's) strftime for the directives templates use; {@code %-d} and the like drop the padding. */
    static String strftime(String format, ZonedDateTime t) {
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < format.length(); i++) {
            char c = format.charAt(i);
            if (c != '%' || i + 1 == format.length()) {
                out.append(c);
                continue;
            }
            char d = format.charAt(++i);
            boolean pad = true;
            if (d == '-' && i + 1 < format.length()) {
                pad = false;
                d = format.charAt(++i);
            }
            switch (d) {
                case 'Y' -> out.append(t.getYear());
                case 'y' -> number(out, t.getYear() % 100, 2, pad);
                case 'm' -> number(out, t.getMonthValue(), 2, pad);
                case 'd' -> number(out, t.getDayOfMonth(), 2, pad);
                case 'e' -> out.append(pad && t.getDayOfMonth() < 10 ? " " : "").append(t.getDayOfMonth());
                case 'j' -> number(out, t.getDayOfYear(), 3, pad);
                case 'H' -> number(out, t.getHour(), 2, pad);
                case 'I' -> number(out, (t.getHour() + 11) % 12 + 1, 2, pad);
                case 'M' -> number(out, t.getMinute(), 2, pad);
                case 'S' -> number(out, t.getSecond(), 2, pad);
                case 'f' -> number(out, t.getNano() / 1000, 6, true);
                case 'p' -> out.append(t.getHour() < 12 ? "AM" : "PM");
                case 'b', 'h' -> out.append(t.getMonth().getDisplayName(TextStyle.SHORT, Locale.ENGLISH));
                case 'B' -> out.append(t.getMonth().getDisplayName(TextStyle.FULL, Locale.ENGLISH));
                case 'a' -> out.append(t.getDayOfWeek().getDisplayName(TextStyle.SHORT, Locale.ENGLISH));
                case 'A' -> out.append(t.getDayOfWeek().getDisplayName(TextStyle.FULL, Locale.ENGLISH));
                case 'w' -> out.append(t.getDayOfWeek().getValue() % 7);
                case 'u' -> out.append(t.getDayOfWeek().getValue());
                case 'Z' -> out.append(t.getZone().getDisplayName(TextStyle.SHORT, Locale.ENGLISH));
                case 'z' -> {
                    int seconds = t.getOffset().getTotalSeconds();
                    out.append(seconds < 0 ? '-' : '+');
                    number(out, Math.abs(seconds) / 3600, 2, true);
                    number(out, Math.abs(seconds) / 60 % 60, 2, true);
                }
                case 'F' -> out.append(strftime("%Y-%m-%d", t));
                case 'T' -> out.append(strftime("%H:%M:%S", t));
                case 'D' -> out.append(strftime("%m/%d/%y", t));
                case '%' -> out.append('%');
                default -> out.append('%').append(pad ? "" : "-").append(d);
            }
        }
        return out.toString();
    }

    private static void number(StringBuilder out, int value, int width, boolean pad) {
        String s = Integer.toString(value);
        if (pad) out.repeat('0', Math.max(0, width - s.length()));
        out.append(s);
    }

    /**
     * Python's {@code x[start:stop:step]} of a list or a string, any bound None; what a step slice in a template
     * is rewritten to call.
     */
    public static Object slice(Object sequence, Object start, Object stop, Object step) {
        int stride = step == null ? 1 : ((Number) step).intValue();
        if (stride == 0) throw new IllegalArgumentException("slice step cannot be zero");
        List<?> items;
        if (sequence instanceof CharSequence s) {
            items = s.toString().codePoints().mapToObj(Character::toString).toList();
        } else if (sequence instanceof List<?> list) {
            items = list;
        } else if (sequence instanceof Iterable<?> iterable) {
            List<Object> copy = new ArrayList<>();
            iterable.forEach(copy::add);
            items = copy;
        } else {
            throw new IllegalArgumentException("cannot slice " + (sequence == null ? "None" : sequence.getClass().getSimpleName()));
        }
        int n = items.size();
        int from, to;
        if (stride > 0) {
            from = start == null ? 0 : clamp(((Number) start).intValue(), n, 0, n);
            to = stop == null ? n : clamp(((Number) stop).intValue(), n, 0, n);
        } else {
            from = start == null ? n - 1 : clamp(((Number) start).intValue(), n, -1, n - 1);
            to = stop == null ? -1 : clamp(((Number) stop).intValue(), n, -1, n - 1);
        }
        List<Object> out = new ArrayList<>();
        for (int i = from; stride > 0 ? i < to : i > to; i += stride) out.add(items.get(i));
        if (sequence instanceof CharSequence) {
            StringBuilder s = new StringBuilder();
            out.forEach(s::append);
            return s.toString();
        }
        return out;
    }

    /** A slice bound: negative counts from the end, then clamped to [low, high]. */
    private static int clamp(int index, int n, int low, int high) {
        if (index < 0) index += n;
        return Math.max(low, Math.min(high, index));
    }
}
