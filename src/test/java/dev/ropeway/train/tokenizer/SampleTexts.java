package dev.ropeway.train.tokenizer;

import dev.ropeway.io.bpe.*;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/** Varied text for tokenizer tests: prose, code, numbers, accents, CJK, emoji, odd white space. */
public final class SampleTexts {
    private static final String[] WORDS = {
            "the", "rotary", "position", "embedding", "context", "window", "model", "scaling", "train", "token",
            "it's", "we'll", "they're", "I'm", "don't", "you've", "he'd", "THE", "The", "naïve", "café", "résumé",
            "Straße", "über", "año", "日本語", "中文", "한국어", "Привет", "мир", "Ελληνικά", "עברית", "العربية", "🙂",
            "🚀🚀", "👩‍👩‍👧", "e\u0301", "x²", "½", "Ⅻ", "١٢٣", "3.14159", "2024", "1,000,000", "0x7fff", "foo_bar",
            "camelCase", "$HOME", "a+b=c", "(x)", "[1]", "{k: v}", "--flag", "===", "...", "?!", "“quoted”", "'single'",
            "\"double\"", "<s>", "</s>", "<pad>", "<", "s>", "\\n", "\u00A0", "tab\there", "\u3000", "\u2028", "\u0085"};
    private static final String[] GAPS = {" ", " ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", " \n", "\r\n", "\t\t ", ""};

    private SampleTexts() {}

    /** {@code count} documents of about {@code words} words each, the same for the same seed. */
    public static List<String> documents(long seed, int count, int words) {
        Random random = new Random(seed);
        List<String> docs = new ArrayList<>();
        for (int d = 0; d < count; d++) {
            StringBuilder s = new StringBuilder();
            for (int w = 0; w < words; w++) {
                // Skewed choice, so that some words are frequent and BPE has something to learn.
                int i = (int) (WORDS.length * Math.pow(random.nextDouble(), 2.5));
                s.append(WORDS[i]).append(GAPS[random.nextInt(GAPS.length)]);
            }
            docs.add(s.toString());
        }
        return docs;
    }

    /** Random code points over many scripts and controls, including 4-byte UTF-8 and NUL. */
    public static String randomText(Random random, int codePoints) {
        int[][] ranges = {{0x20, 0x7e}, {0x20, 0x7e}, {0x20, 0x7e}, {0, 0x1f}, {0xa0, 0x17f}, {0x300, 0x36f},
                {0x400, 0x4ff}, {0x2000, 0x206f}, {0x3000, 0x303f}, {0x4e00, 0x9fff}, {0x1f300, 0x1f64f},
                {0x10000, 0x1007f}, {0xfff0, 0xfffd}};
        StringBuilder s = new StringBuilder();
        for (int i = 0; i < codePoints; i++) {
            int[] r = ranges[random.nextInt(ranges.length)];
            s.appendCodePoint(r[0] + random.nextInt(r[1] - r[0] + 1));
        }
        return s.toString();
    }
}
