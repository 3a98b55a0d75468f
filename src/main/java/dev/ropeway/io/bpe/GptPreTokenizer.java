package dev.ropeway.io.bpe;

/**
 * Splits text into the pieces GPT-2's pre-tokenizer regex finds,
 * {@code 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+}, the one Hugging Face's ByteLevel
 * pre-tokenizer runs with {@code use_regex: true}. Written out as a scanner rather than a {@link java.util.regex}
 * pattern because Java's {@code \s} is ASCII-only without a flag, and because the scanner is several times faster;
 * BPE never merges across the pieces, so they decide the tokens as much as the merges do.
 *
 * <p>{@code \s} here is the Unicode White_Space property, as in Oniguruma (the regex engine of the tokenizers
 * library); letters and numbers are the general categories L* and N*.
 */
public final class GptPreTokenizer {
    static final byte LETTER = 0, NUMBER = 1, SPACE = 2, OTHER = 3;
    private static final byte[] BMP_CLASS = new byte[0x10000];

    static {
        for (int c = 0; c < BMP_CLASS.length; c++) BMP_CLASS[c] = computeClass(c);
    }

    /** Receives the pieces of a text in order, as {@code [start, end)} char offsets. */
    @FunctionalInterface
    public interface PieceSink {
        void piece(int start, int end);
    }

    private GptPreTokenizer() {}

    /** Splits {@code text[from, to)}; every char of it lands in exactly one piece. */
    public static void split(CharSequence text, int from, int to, PieceSink sink) {
        int i = from;
        while (i < to) {
            int end = pieceEnd(text, i, to);
            sink.piece(i, end);
            i = end;
        }
    }

    /** The end of the piece starting at {@code i}: the alternatives of the regex tried in its order. */
    public static int pieceEnd(CharSequence text, int i, int to) {
        char c = text.charAt(i);
        if (c == '\'' && i + 1 < to) {
            char n = text.charAt(i + 1);
            if (n == 's' || n == 't' || n == 'm' || n == 'd') return i + 2;
            if (i + 2 < to) {
                char n2 = text.charAt(i + 2);
                if ((n == 'r' && n2 == 'e') || (n == 'v' && n2 == 'e') || (n == 'l' && n2 == 'l')) return i + 3;
            }
        }
        int cls = classAt(text, i, to);
        if (c == ' ' && i + 1 < to) {
            int next = classAt(text, i + 1, to);
            // " ?\p{L}+", " ?\p{N}+" and " ?[^\s\p{L}\p{N}]+" take one leading space along.
            if (next != SPACE) return runEnd(text, i + 1, to, next);
        }
        if (cls != SPACE) return runEnd(text, i, to, cls);
        int end = runEnd(text, i, to, SPACE);
        // "\s+(?!\S)" backs off one char so that the last space can lead the next word; a lone space before a
        // non-space is left to "\s+". White space is all in the BMP, so one char is one code point here.
        if (end < to && end - i >= 2) return end - 1;
        return end;
    }

    /** The end of the run of class {@code cls} starting at {@code i}. */
    private static int runEnd(CharSequence text, int i, int to, int cls) {
        while (i < to) {
            char c = text.charAt(i);
            if (!Character.isSurrogate(c)) {
                if (BMP_CLASS[c] != cls) return i;
                i++;
            } else {
                int width = Character.isHighSurrogate(c) && i + 1 < to && Character.isLowSurrogate(text.charAt(i + 1)) ? 2 : 1;
                if (classAt(text, i, to) != cls) return i;
                i += width;
            }
        }
        return to;
    }

    /** The class of the code point at {@code i}; an unpaired surrogate counts as a symbol. */
    static int classAt(CharSequence text, int i, int to) {
        char c = text.charAt(i);
        if (!Character.isSurrogate(c)) return BMP_CLASS[c];
        if (Character.isHighSurrogate(c) && i + 1 < to && Character.isLowSurrogate(text.charAt(i + 1)))
            return computeClass(Character.toCodePoint(c, text.charAt(i + 1)));
        return OTHER;
    }

    private static byte computeClass(int cp) {
        if (isWhiteSpace(cp)) return SPACE;
        return switch (Character.getType(cp)) {
            case Character.UPPERCASE_LETTER, Character.LOWERCASE_LETTER, Character.TITLECASE_LETTER,
                 Character.MODIFIER_LETTER, Character.OTHER_LETTER -> LETTER;
            case Character.DECIMAL_DIGIT_NUMBER, Character.LETTER_NUMBER, Character.OTHER_NUMBER -> NUMBER;
            default -> OTHER;
        };
    }

    /** Unicode's White_Space property; {@link Character#isWhitespace} differs (no NBSP, but U+001C..U+001F). */
    public static boolean isWhiteSpace(int cp) {
        return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680
                || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F
                || cp == 0x3000;
    }
}
