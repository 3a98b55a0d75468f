package dev.ropeway.generate;

import jinjava.javax.el.ELContext;
import jinjava.javax.el.ELResolver;

import java.beans.FeatureDescriptor;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;

/**
 * The methods of Python's {@code str} that chat templates call ({@code content.strip()},
 * {@code text.split('</think>')[-1].lstrip('\n')}, {@code role.startswith('tool')}...). Jinja runs templates in
 * Python, where strings have them; Jinjava would otherwise look for Java methods of those names, and Java's
 * {@code split} even takes a regular expression. Placed before Jinjava's own resolver, it answers only for a
 * string receiver and a name listed here.
 */
final class PythonStringMethods extends ELResolver {
    private static final Object UNKNOWN = new Object();

    @Override
    public Object invoke(ELContext context, Object base, Object method, Class<?>[] paramTypes, Object[] params) {
        if (!(base instanceof CharSequence sequence) || !(method instanceof String name)) return null;
        Object result = call(sequence.toString(), name, params == null ? new Object[0] : params);
        if (result == UNKNOWN) return null;
        context.setPropertyResolved(true);
        return result;
    }

    private static Object call(String s, String name, Object[] args) {
        return switch (name) {
            case "strip" -> strip(s, chars(args, name), true, true);
            case "lstrip" -> strip(s, chars(args, name), true, false);
            case "rstrip" -> strip(s, chars(args, name), false, true);
            case "split" -> split(s, args, false);
            case "rsplit" -> split(s, args, true);
            case "splitlines" -> s.lines().toList();
            case "startswith" -> matchesAny(s, arg(args, 0, name), true);
            case "endswith" -> matchesAny(s, arg(args, 0, name), false);
            case "upper" -> s.toUpperCase(Locale.ROOT);
            case "lower" -> s.toLowerCase(Locale.ROOT);
            case "title" -> title(s);
            case "capitalize" -> s.isEmpty() ? s : s.substring(0, 1).toUpperCase(Locale.ROOT) + s.substring(1).toLowerCase(Locale.ROOT);
            case "replace" -> replace(s, text(arg(args, 0, name)), text(arg(args, 1, name)), args.length > 2 ? toInt(args[2]) : -1);
            case "count" -> count(s, text(arg(args, 0, name)));
            case "find" -> s.indexOf(text(arg(args, 0, name)));
            case "rfind" -> s.lastIndexOf(text(arg(args, 0, name)));
            case "join" -> join(s, arg(args, 0, name));
            case "isdigit" -> !s.isEmpty() && s.chars().allMatch(Character::isDigit);
            case "isalpha" -> !s.isEmpty() && s.chars().allMatch(Character::isLetter);
            case "isspace" -> !s.isEmpty() && s.chars().allMatch(Character::isWhitespace);
            case "isupper" -> s.chars().anyMatch(Character::isLetter) && s.equals(s.toUpperCase(Locale.ROOT));
            case "islower" -> s.chars().anyMatch(Character::isLetter) && s.equals(s.toLowerCase(Locale.ROOT));
            default -> UNKNOWN;
        };
    }

    private static Object arg(Object[] args, int i, String method) {
        if (i >= args.length) throw new IllegalArgumentException("str." + method + "() needs argument " + (i + 1));
        return args[i];
    }

    private static String text(Object o) {
        return o == null ? "None" : o.toString();
    }

    private static int toInt(Object o) {
        if (o instanceof Number n) return n.intValue();
        throw new IllegalArgumentException("expected an integer, got " + o);
    }

    /** The characters to strip, or null for white space ({@code strip()} and {@code strip(None)}). */
    private static String chars(Object[] args, String method) {
        if (args.length == 0 || args[0] == null) return null;
        return args[0].toString();
    }

    private static boolean stripped(int c, String chars) {
        return chars == null ? Character.isWhitespace(c) || Character.isSpaceChar(c) : chars.indexOf(c) >= 0;
    }

    private static String strip(String s, String chars, boolean left, boolean right) {
        int from = 0, to = s.length();
        if (left) while (from < to && stripped(s.charAt(from), chars)) from++;
        if (right) while (to > from && stripped(s.charAt(to - 1), chars)) to--;
        return s.substring(from, to);
    }

    /** Python's split: a literal separator, or runs of white space when there is none; maxsplit counts splits. */
    private static List<String> split(String s, Object[] args, boolean fromRight) {
        String sep = args.length > 0 && args[0] != null ? args[0].toString() : null;
        int max = args.length > 1 ? toInt(args[1]) : -1;
        if (sep != null && sep.isEmpty()) throw new IllegalArgumentException("empty separator");
        if (sep == null) return splitOnWhiteSpace(s, max, fromRight);
        List<String> parts = new ArrayList<>();
        if (!fromRight) {
            int at = 0;
            while (max < 0 || parts.size() < max) {
                int next = s.indexOf(sep, at);
                if (next < 0) break;
                parts.add(s.substring(at, next));
                at = next + sep.length();
            }
            parts.add(s.substring(at));
            return parts;
        }
        int end = s.length();
        List<String> reversed = new ArrayList<>();
        while (max < 0 || reversed.size() < max) {
            int next = s.lastIndexOf(sep, end - sep.length());
            if (next < 0) break;
            reversed.add(s.substring(next + sep.length(), end));
            end = next;
        }
        reversed.add(s.substring(0, end));
        return reversed.reversed();
    }

    /** Runs of white space separate; with a limit, the unsplit rest keeps its white space on the far side. */
    private static List<String> splitOnWhiteSpace(String s, int max, boolean fromRight) {
        List<int[]> words = new ArrayList<>();
        for (int i = 0; i < s.length(); ) {
            if (Character.isWhitespace(s.charAt(i))) {
                i++;
                continue;
            }
            int start = i;
            while (i < s.length() && !Character.isWhitespace(s.charAt(i))) i++;
            words.add(new int[] {start, i});
        }
        int n = words.size();
        List<String> parts = new ArrayList<>();
        if (max < 0 || n <= max) {
            for (int[] w : words) parts.add(s.substring(w[0], w[1]));
        } else if (!fromRight) {
            for (int i = 0; i < max; i++) parts.add(s.substring(words.get(i)[0], words.get(i)[1]));
            parts.add(s.substring(words.get(max)[0]));
        } else {
            parts.add(s.substring(0, words.get(n - max - 1)[1]));
            for (int i = n - max; i < n; i++) parts.add(s.substring(words.get(i)[0], words.get(i)[1]));
        }
        return parts;
    }

    private static boolean matchesAny(String s, Object what, boolean start) {
        if (what instanceof Collection<?> options) {
            for (Object o : options) if (start ? s.startsWith(text(o)) : s.endsWith(text(o))) return true;
            return false;
        }
        return start ? s.startsWith(text(what)) : s.endsWith(text(what));
    }

    private static String title(String s) {
        StringBuilder out = new StringBuilder(s.length());
        boolean previousCased = false;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            out.append(previousCased ? Character.toLowerCase(c) : Character.toUpperCase(c));
            previousCased = Character.isLetter(c);
        }
        return out.toString();
    }

    private static String replace(String s, String old, String replacement, int count) {
        if (count < 0) return s.replace(old, replacement);
        StringBuilder out = new StringBuilder();
        int at = 0;
        for (int done = 0; done < count; done++) {
            int next = s.indexOf(old, at);
            if (next < 0) break;
            out.append(s, at, next).append(replacement);
            at = next + old.length();
            if (old.isEmpty()) {
                if (at < s.length()) out.append(s.charAt(at));
                at++;
                if (at > s.length()) break;
            }
        }
        if (at <= s.length()) out.append(s, at, s.length());
        return out.toString();
    }

    private static int count(String s, String sub) {
        if (sub.isEmpty()) return s.length() + 1;
        int n = 0;
        for (int at = s.indexOf(sub); at >= 0; at = s.indexOf(sub, at + sub.length())) n++;
        return n;
    }

    private static String join(String separator, Object items) {
        if (!(items instanceof Iterable<?> iterable)) throw new IllegalArgumentException("str.join() needs a list, got " + items);
        List<String> parts = new ArrayList<>();
        for (Object o : iterable) parts.add(text(o));
        return String.join(separator, parts);
    }

    /** {@code s[i]}: one character, counted from the end when negative (Python indexes code points). */
    @Override
    public Object getValue(ELContext context, Object base, Object property) {
        if (!(base instanceof CharSequence sequence)) return null;
        // Jinjava hands integer subscripts over as text ("0", "-1").
        Integer position = property instanceof Integer || property instanceof Long ? Integer.valueOf(((Number) property).intValue())
                : property instanceof String p && p.matches("-?\\d{1,9}") ? Integer.valueOf(p) : null;
        if (position == null) return null;
        String s = sequence.toString();
        int count = s.codePointCount(0, s.length());
        int index = position < 0 ? position + count : position;
        context.setPropertyResolved(true);
        if (index < 0 || index >= count) return null;
        int at = s.offsetByCodePoints(0, index);
        return s.substring(at, s.offsetByCodePoints(at, 1));
    }

    // The rest is left to the resolvers after this one.

    @Override
    public Class<?> getType(ELContext context, Object base, Object property) {
        return null;
    }

    @Override
    public void setValue(ELContext context, Object base, Object property, Object value) {}

    @Override
    public boolean isReadOnly(ELContext context, Object base, Object property) {
        return false;
    }

    @Override
    public Iterator<FeatureDescriptor> getFeatureDescriptors(ELContext context, Object base) {
        return null;
    }

    @Override
    public Class<?> getCommonPropertyType(ELContext context, Object base) {
        return null;
    }
}
