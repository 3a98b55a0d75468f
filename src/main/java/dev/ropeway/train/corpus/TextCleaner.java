package dev.ropeway.train.corpus;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;

/**
 * Normalises raw corpus text so every source looks alike to a tokenizer: LF line endings, no byte-order mark, no
 * Project Gutenberg header, footer or licence, no trailing spaces, at most two blank lines in a row, and exactly one
 * final newline. The steps are pure functions of the text, so a corpus prepared twice is byte-identical.
 */
public final class TextCleaner {
    private static final Pattern START = Pattern.compile(
            "^\\*{3}\\s*START OF (THE|THIS) PROJECT GUTENBERG E-?BOOK.*$", Pattern.CASE_INSENSITIVE);
    private static final Pattern END = Pattern.compile(
            "^\\*{3}\\s*END OF (THE|THIS) PROJECT GUTENBERG E-?BOOK.*$", Pattern.CASE_INSENSITIVE);
    /** Older Gutenberg files end their licence header with this line instead of a START marker. */
    private static final Pattern SMALL_PRINT_END = Pattern.compile(
            "^\\*END\\*\\s*THE SMALL PRINT!.*$", Pattern.CASE_INSENSITIVE);
    /** The sign-off just before the END marker, e.g. "End of Project Gutenberg's Moby Dick, by ...". */
    private static final Pattern SIGN_OFF = Pattern.compile(
            "^\\s*End of (the )?Project Gutenberg('s)?\\b.*$", Pattern.CASE_INSENSITIVE);
    private static final Pattern PRODUCED_BY = Pattern.compile("^\\s*Produced by\\b.*$", Pattern.CASE_INSENSITIVE);

    private TextCleaner() {}

    /** All cleaning steps, in order. */
    public static String clean(String text) {
        List<String> lines = lines(normalizeLineEndings(stripByteOrderMark(text)));
        lines = stripGutenberg(lines);
        return joinCollapsed(lines);
    }

    /** CRLF and lone CR become LF. */
    public static String normalizeLineEndings(String text) {
        return text.replace("\r\n", "\n").replace('\r', '\n');
    }

    static String stripByteOrderMark(String text) {
        return text.startsWith("\uFEFF") ? text.substring(1) : text;
    }

    /**
     * Removes Project Gutenberg boilerplate when the text carries its markers: everything up to and including the
     * {@code *** START OF ...} line (or the older {@code *END*THE SMALL PRINT!} line), the producer credit right
     * after it, and everything from the {@code End of Project Gutenberg's ...} sign-off or the {@code *** END OF ...}
     * line on, which takes the licence with it. Text without markers is returned unchanged.
     */
    public static String stripGutenberg(String text) {
        return String.join("\n", stripGutenberg(lines(normalizeLineEndings(stripByteOrderMark(text)))));
    }

    private static List<String> stripGutenberg(List<String> lines) {
        int start = indexOf(lines, START, 0);
        if (start < 0) start = indexOf(lines, SMALL_PRINT_END, 0);
        int end = indexOf(lines, END, Math.max(start, 0));
        if (start < 0 && end < 0) return lines;
        int from = start + 1, to = end < 0 ? lines.size() : end;
        if (start >= 0) from = skipProducerCredit(lines, from, to);
        // The sign-off sits just above the END marker; only look there, so a sentence in the book is never cut.
        int k = to - 1;
        while (k >= from && lines.get(k).isBlank()) k--;
        if (k >= from && SIGN_OFF.matcher(lines.get(k)).matches()) to = k;
        return new ArrayList<>(lines.subList(from, Math.max(from, to)));
    }

    /** Skips blank lines and a "Produced by ..." paragraph at {@code from}, if there is one. */
    private static int skipProducerCredit(List<String> lines, int from, int to) {
        int i = from;
        while (i < to && lines.get(i).isBlank()) i++;
        if (i >= to || !PRODUCED_BY.matcher(lines.get(i)).matches()) return from;
        while (i < to && !lines.get(i).isBlank()) i++;
        return i;
    }

    private static int indexOf(List<String> lines, Pattern p, int from) {
        for (int i = from; i < lines.size(); i++)
            if (p.matcher(lines.get(i)).matches()) return i;
        return -1;
    }

    private static List<String> lines(String text) {
        List<String> out = new ArrayList<>();
        int pos = 0;
        while (pos <= text.length()) {
            int nl = text.indexOf('\n', pos);
            if (nl < 0) {
                out.add(text.substring(pos));
                break;
            }
            out.add(text.substring(pos, nl));
            pos = nl + 1;
        }
        return out;
    }

    /**
     * Strips trailing whitespace from every line, drops blank lines at the start and end, and shortens runs of three
     * or more blank lines to two (keeping a visible section break). The result ends with one newline, or is empty.
     */
    private static String joinCollapsed(List<String> lines) {
        StringBuilder out = new StringBuilder();
        int blanks = 0;
        boolean started = false;
        for (String line : lines) {
            String s = stripTrailing(line);
            if (s.isEmpty()) {
                blanks++;
                continue;
            }
            if (started) out.append("\n".repeat(Math.min(blanks, 2) + 1));
            out.append(s);
            started = true;
            blanks = 0;
        }
        if (started) out.append('\n');
        return out.toString();
    }

    private static String stripTrailing(String line) {
        int end = line.length();
        while (end > 0 && isTrailingSpace(line.charAt(end - 1))) end--;
        return line.substring(0, end);
    }

    private static boolean isTrailingSpace(char c) {
        return Character.isWhitespace(c) || c == '\u00A0';
    }
}
