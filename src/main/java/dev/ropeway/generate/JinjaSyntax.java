package dev.ropeway.generate;

/**
 * Rewrites the two pieces of Jinja syntax that Jinjava's expression grammar reads differently, before parsing:
 * <ul>
 * <li>slices with a step, {@code messages[::-1]}, which it does not parse, become calls of
 *     {@link TemplateFunctions#slice}: {@code __slice__(messages, none, none, -1)};</li>
 * <li>the value of a named argument is put in parentheses, {@code namespace(last=(messages|length - 1))}: Jinjava
 *     binds {@code name=value} tighter than arithmetic and would compute {@code (last=messages|length) - 1};</li>
 * <li>a test after {@code not} is put in parentheses, {@code not (tools is defined)}: in Jinja a test binds
 *     tighter than {@code not}, in Jinjava looser, which turns {@code not tools is defined} into
 *     {@code (not tools) is defined}, always true.</li>
 * </ul>
 * Only the inside of {@code {{ }}} and {@code {% %}} is touched, and never a quoted string.
 */
final class JinjaSyntax {
    static final String SLICE_FUNCTION = "__slice__";

    private JinjaSyntax() {}

    static String rewrite(String template) {
        StringBuilder out = new StringBuilder(template.length());
        int i = 0;
        while (i < template.length()) {
            int open = nextTagOpen(template, i);
            if (open < 0) {
                out.append(template, i, template.length());
                break;
            }
            boolean comment = template.charAt(open + 1) == '#';
            String close = template.charAt(open + 1) == '{' ? "}}" : comment ? "#}" : "%}";
            int end = comment ? template.indexOf(close, open + 2) : tagEnd(template, open + 2, close);
            if (end < 0) {
                out.append(template, i, template.length());
                break;
            }
            out.append(template, i, open + 2);
            String inside = template.substring(open + 2, end);
            // A macro's parameter defaults are read by the macro tag itself, not as an expression.
            boolean macro = inside.stripLeading().replaceFirst("^-", "").stripLeading().startsWith("macro ");
            String expression = notTests(stepSlices(inside));
            out.append(comment ? inside : macro ? expression : namedArguments(expression));
            out.append(close);
            i = end + 2;
        }
        return out.toString();
    }

    /**
     * The filters ({@code x|name}) and tests ({@code x is [not] name}) a template uses, as "filter name" and
     * "test name": Jinjava ignores an unknown one silently, where Jinja refuses the template.
     */
    static java.util.Set<String> filtersAndTests(String template) {
        java.util.Set<String> names = new java.util.LinkedHashSet<>();
        int i = 0;
        while (true) {
            int open = nextTagOpen(template, i);
            if (open < 0) return names;
            if (template.charAt(open + 1) == '#') {
                int end = template.indexOf("#}", open + 2);
                if (end < 0) return names;
                i = end + 2;
                continue;
            }
            String close = template.charAt(open + 1) == '{' ? "}}" : "%}";
            int end = tagEnd(template, open + 2, close);
            if (end < 0) return names;
            collectNames(template.substring(open + 2, end), names);
            i = end + 2;
        }
    }

    private static void collectNames(String e, java.util.Set<String> names) {
        for (int i = 0; i < e.length(); i++) {
            int quoted = quotedEnd(e, i);
            if (quoted != i) {
                i = quoted;
                continue;
            }
            char c = e.charAt(i);
            if (c == '|' && (i + 1 >= e.length() || e.charAt(i + 1) != '|') && (i == 0 || e.charAt(i - 1) != '|')) {
                String name = nameAt(e, skipSpace(e, i + 1));
                if (!name.isEmpty()) names.add("filter " + name);
            } else if (wordAt(e, i, "is")) {
                int at = skipSpace(e, i + 2);
                if (wordAt(e, at, "not")) at = skipSpace(e, at + 3);
                String name = nameAt(e, at);
                if (!name.isEmpty()) names.add("test " + name);
            }
        }
    }

    private static String nameAt(String e, int at) {
        int end = at;
        while (end < e.length() && isNameChar(e.charAt(end))) end++;
        return e.substring(at, end);
    }

    private static int nextTagOpen(String s, int from) {
        for (int i = s.indexOf('{', from); i >= 0 && i + 1 < s.length(); i = s.indexOf('{', i + 1)) {
            char c = s.charAt(i + 1);
            if (c == '{' || c == '%' || c == '#') return i;
        }
        return -1;
    }

    /**
     * Where a quoted string that starts at {@code i} ends (its closing quote; the last index when it is not closed,
     * a backslash escaping the character after it), or {@code i} itself when no string starts there.
     */
    static int quotedEnd(CharSequence s, int i) {
        char quote = s.charAt(i);
        if (quote != '\'' && quote != '"') return i;
        for (int j = i + 1; j < s.length(); j++) {
            char c = s.charAt(j);
            if (c == '\\') j++;
            else if (c == quote) return j;
        }
        return s.length() - 1;
    }

    /** The index of {@code close} ending the tag, skipping quoted strings. */
    private static int tagEnd(String s, int from, String close) {
        for (int i = from; i + 1 < s.length(); i++) {
            int quoted = quotedEnd(s, i);
            if (quoted != i) {
                i = quoted;
                continue;
            }
            if (s.startsWith(close, i)) return i;
        }
        return -1;
    }

    /** Puts {@code OPERAND is [not] TEST [ARGUMENT]} after a {@code not} in parentheses. */
    static String notTests(String e) {
        StringBuilder out = new StringBuilder(e);
        for (int i = 0; i < out.length(); i++) {
            int quoted = quotedEnd(out, i);
            if (quoted != i) {
                i = quoted;
                continue;
            }
            char c = out.charAt(i);
            if (!wordAt(out, i, "not") || previousWord(out, i).equals("is")) continue;
            int operand = skipSpace(out, i + 3);
            int operandEnd = operandEnd(out, operand);
            if (operandEnd <= operand) continue;
            int is = skipSpace(out, operandEnd);
            if (!wordAt(out, is, "is")) continue;
            int end = testEnd(out, is + 2);
            out.insert(end, ')');
            out.insert(operand, '(');
        }
        return out.toString();
    }

    private static boolean isNameChar(char c) {
        return Character.isLetterOrDigit(c) || c == '_';
    }

    /** Whether {@code word} stands at {@code at} as a whole word. */
    private static boolean wordAt(CharSequence e, int at, String word) {
        if (at < 0 || at + word.length() > e.length()) return false;
        for (int k = 0; k < word.length(); k++) if (e.charAt(at + k) != word.charAt(k)) return false;
        boolean startsWord = at == 0 || !isNameChar(e.charAt(at - 1));
        boolean endsWord = at + word.length() == e.length() || !isNameChar(e.charAt(at + word.length()));
        return startsWord && endsWord;
    }

    private static String previousWord(CharSequence e, int at) {
        int end = at;
        while (end > 0 && Character.isWhitespace(e.charAt(end - 1))) end--;
        int start = end;
        while (start > 0 && isNameChar(e.charAt(start - 1))) start--;
        return e.subSequence(start, end).toString();
    }

    private static int skipSpace(CharSequence e, int at) {
        while (at < e.length() && Character.isWhitespace(e.charAt(at))) at++;
        return at;
    }

    /** The end of a primary expression: a name with attributes, calls and subscripts, a literal, or a group. */
    private static int operandEnd(CharSequence e, int at) {
        int i = at;
        while (i < e.length()) {
            char c = e.charAt(i);
            if (isNameChar(c) || c == '.') {
                i++;
            } else if (c == '(' || c == '[') {
                int close = matching(e.toString(), i);
                if (close < 0) return at;
                i = close + 1;
            } else if ((c == '\'' || c == '"') && i == at) {
                int close = e.toString().indexOf(c, i + 1);
                if (close < 0) return at;
                i = close + 1;
            } else {
                break;
            }
        }
        return i;
    }

    /** Where the test after "is" ends: at "and", "or", "if", "else", a closing bracket or comma, or the end. */
    private static int testEnd(CharSequence e, int from) {
        int depth = 0;
        int end = e.length();
        for (int i = from; i < e.length(); i++) {
            int quoted = quotedEnd(e, i);
            if (quoted != i) {
                i = quoted;
                continue;
            }
            char c = e.charAt(i);
            if (c == '(' || c == '[' || c == '{') {
                depth++;
            } else if (c == ')' || c == ']' || c == '}' || (c == ',' && depth == 0)) {
                if (depth == 0) {
                    end = i;
                    break;
                }
                if (c != ',') depth--;
            } else if (depth == 0 && (wordAt(e, i, "and") || wordAt(e, i, "or") || wordAt(e, i, "if") || wordAt(e, i, "else"))) {
                end = i;
                break;
            }
        }
        while (end > from && Character.isWhitespace(e.charAt(end - 1))) end--;
        return end;
    }

    /** Wraps the value of every named argument of a call in parentheses. */
    static String namedArguments(String e) {
        StringBuilder out = new StringBuilder(e);
        for (int i = 0; i < out.length(); i++) {
            int quoted = quotedEnd(out, i);
            if (quoted != i) {
                i = quoted;
                continue;
            }
            char c = out.charAt(i);
            if (c != '=' || i == 0) continue;
            char before = out.charAt(i - 1), after = i + 1 < out.length() ? out.charAt(i + 1) : ' ';
            if (after == '=' || before == '=' || before == '!' || before == '<' || before == '>') continue;
            if (!isArgumentName(out, i)) continue;
            int valueStart = i + 1;
            int valueEnd = argumentEnd(out, valueStart);
            if (valueEnd < 0) continue;
            out.insert(valueEnd, ')');
            out.insert(valueStart, '(');
        }
        return out.toString();
    }

    /** Whether the '=' at {@code at} follows a bare name that opens an argument: after "(" or ",". */
    private static boolean isArgumentName(CharSequence e, int at) {
        int i = at - 1;
        while (i >= 0 && Character.isWhitespace(e.charAt(i))) i--;
        int end = i;
        while (i >= 0 && (Character.isLetterOrDigit(e.charAt(i)) || e.charAt(i) == '_')) i--;
        if (i == end) return false;
        while (i >= 0 && Character.isWhitespace(e.charAt(i))) i--;
        return i >= 0 && (e.charAt(i) == '(' || e.charAt(i) == ',');
    }

    /** Where an argument value starting at {@code from} ends: the "," or ")" closing it at its own depth. */
    private static int argumentEnd(CharSequence e, int from) {
        int depth = 0;
        for (int i = from; i < e.length(); i++) {
            int quoted = quotedEnd(e, i);
            if (quoted != i) {
                i = quoted;
                continue;
            }
            char c = e.charAt(i);
            if (c == '(' || c == '[' || c == '{') {
                depth++;
            } else if (c == ')' || c == ']' || c == '}') {
                if (depth == 0) return c == ')' ? i : -1;
                depth--;
            } else if (c == ',' && depth == 0) {
                return i;
            }
        }
        return -1;
    }

    /** Rewrites every step slice in one tag's expression, innermost first. */
    static String stepSlices(String e) {
        while (true) {
            int[] slice = findStepSlice(e);
            if (slice == null) return e;
            int open = slice[0], close = slice[1];
            int start = operandStart(e, open);
            String operand = e.substring(start, open);
            String[] bounds = splitTopLevel(e.substring(open + 1, close));
            StringBuilder call = new StringBuilder(SLICE_FUNCTION).append('(').append(operand);
            for (String b : bounds) call.append(", ").append(b.isBlank() ? "none" : b.strip());
            call.append(')');
            e = e.substring(0, start) + call + e.substring(close + 1);
        }
    }

    /** The brackets of the first subscript with two top-level colons, or null. */
    private static int[] findStepSlice(String e) {
        for (int i = 0; i < e.length(); i++) {
            int quoted = quotedEnd(e, i);
            if (quoted != i) {
                i = quoted;
                continue;
            }
            char c = e.charAt(i);
            if (c != '[') continue;
            int close = matching(e, i);
            if (close < 0) return null;
            String inner = e.substring(i + 1, close);
            if (splitTopLevel(inner).length == 3 && operandStart(e, i) < i) {
                // An inner step slice goes first, so that the operand found is whole.
                int[] nested = findStepSlice(inner);
                if (nested != null) return new int[] {nested[0] + i + 1, nested[1] + i + 1};
                return new int[] {i, close};
            }
        }
        return null;
    }

    private static int matching(String e, int open) {
        int depth = 0;
        for (int i = open; i < e.length(); i++) {
            int quoted = quotedEnd(e, i);
            if (quoted != i) {
                i = quoted;
                continue;
            }
            char c = e.charAt(i);
            if (c == '[' || c == '(' || c == '{') {
                depth++;
            } else if (c == ']' || c == ')' || c == '}') {
                if (--depth == 0) return i;
            }
        }
        return -1;
    }

    /** The parts between colons at depth zero. */
    private static String[] splitTopLevel(String inner) {
        java.util.List<String> parts = new java.util.ArrayList<>();
        int depth = 0, last = 0;
        for (int i = 0; i < inner.length(); i++) {
            int quoted = quotedEnd(inner, i);
            if (quoted != i) {
                i = quoted;
                continue;
            }
            char c = inner.charAt(i);
            if (c == '[' || c == '(' || c == '{') {
                depth++;
            } else if (c == ']' || c == ')' || c == '}') {
                depth--;
            } else if (c == ':' && depth == 0) {
                parts.add(inner.substring(last, i));
                last = i + 1;
            }
        }
        parts.add(inner.substring(last));
        return parts.toArray(String[]::new);
    }

    /** Where the operand before a subscript begins: a name with attributes, calls and subscripts, or a literal. */
    private static int operandStart(String e, int bracket) {
        int i = bracket;
        while (i > 0) {
            char c = e.charAt(i - 1);
            if (c == ']' || c == ')') {
                i = opening(e, i - 1);
                if (i < 0) return bracket;
            } else if (c == '\'' || c == '"') {
                int q = e.lastIndexOf(c, i - 2);
                if (q < 0) return bracket;
                i = q;
            } else if (Character.isLetterOrDigit(c) || c == '_' || c == '.') {
                i--;
            } else {
                break;
            }
        }
        return i;
    }

    private static int opening(String e, int close) {
        int depth = 0;
        for (int i = close; i >= 0; i--) {
            char c = e.charAt(i);
            if (c == ']' || c == ')') depth++;
            else if ((c == '[' || c == '(') && --depth == 0) return i;
        }
        return -1;
    }
}
