package dev.ropeway.io.bpe;

import dev.ropeway.train.tokenizer.*;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;

class GptPreTokenizerTest {
    /** GPT-2's pattern; UNICODE_CHARACTER_CLASS makes Java's \s the Unicode White_Space property, as Oniguruma's is. */
    private static final Pattern GPT2 = Pattern.compile(
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
            Pattern.UNICODE_CHARACTER_CLASS);

    private static List<String> regexPieces(String text) {
        List<String> out = new ArrayList<>();
        Matcher m = GPT2.matcher(text);
        int end = 0;
        while (m.find()) {
            assertEquals(end, m.start(), "the regex covers every char");
            out.add(m.group());
            end = m.end();
        }
        assertEquals(text.length(), end);
        return out;
    }

    @Test
    void splitsLikeGpt2() {
        assertEquals(List.of("Hello", " world", "'s", " ", " end", "\n"), BpeTrainerTest.pieces("Hello world's  end\n"));
        assertEquals(List.of("I", "'ll", " pay", " $", "12", ".", "50", "!!"), BpeTrainerTest.pieces("I'll pay $12.50!!"));
        assertEquals(List.of("x", "  ", "\t", "y", "   "), BpeTrainerTest.pieces("x  \ty   "));
        assertEquals(List.of(" ", " 日本語", "?'", "s", "'", "S"), BpeTrainerTest.pieces("  日本語?'s'S"));
        assertEquals(List.of("\u00A0", " a", "\u3000"), BpeTrainerTest.pieces("\u00A0 a\u3000"));
    }

    @Test
    void agreesWithTheRegexOnRandomText() {
        Random random = new Random(3);
        String alphabet = "ab1 '\t\n\u00A0\u3000.,;sdtmlrev-日😀\u0301";
        for (int i = 0; i < 2000; i++) {
            StringBuilder s = new StringBuilder();
            int n = random.nextInt(30);
            for (int k = 0; k < n; k++) s.appendCodePoint(alphabet.codePointAt(alphabet.offsetByCodePoints(0, random.nextInt(alphabet.codePointCount(0, alphabet.length())))));
            String text = s.toString();
            assertEquals(regexPieces(text), BpeTrainerTest.pieces(text), text);
        }
        for (int i = 0; i < 200; i++) {
            String text = SampleTexts.randomText(random, random.nextInt(100));
            assertEquals(regexPieces(text), BpeTrainerTest.pieces(text));
        }
    }
}
