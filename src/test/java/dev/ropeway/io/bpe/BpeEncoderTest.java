package dev.ropeway.io.bpe;

import dev.ropeway.train.tokenizer.*;
import dev.ropeway.RopewayException;
import dev.ropeway.io.ByteLevelBpeFixture;
import dev.ropeway.io.HfTokenizer;
import dev.ropeway.io.Json;
import dev.ropeway.io.Tokenizer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A trained tokenizer, written to disk, run by the tokenizers library (through DJL) and by {@link BpeEncoder}. */
class BpeEncoderTest {
    @TempDir static Path dir;
    static BpeModel model;
    static HfTokenizer djl;
    static BpeEncoder java;

    @BeforeAll
    static void trainAndLoad() {
        List<String> docs = SampleTexts.documents(1, 60, 200);
        model = BpeTrainer.train(docs, new BpeTrainer.Options(640, 2, 2), BpeTrainer.Progress.NONE).model();
        TokenizerFiles.write(dir, model, 2048);
        djl = HfTokenizer.load(dir);
        java = BpeEncoder.load(dir);
    }

    @AfterAll
    static void close() {
        djl.close();
    }

    /** A few KB of the training kind of text, text the merges never saw, and random code points. */
    private static List<String> texts() {
        List<String> texts = new ArrayList<>(SampleTexts.documents(99, 12, 60));
        texts.addAll(List.of("", " ", "  ", "\n", "Hello, world!", "naïve café — 日本語 🙂\t\n\r\n\u0000",
                "  leading and trailing  ", "a<s>b</s> <pad>c<unk>", "<s", "s>", "<<s>>", "\uFEFFbom", "\uFFFD\uFFFD",
                "Ã©Ã¨ mojibake", "it's 'twas I'M we'LL 's", "x    y\t\t\tz\n\n\n  w", "  \u00A0\u3000\u2028 end  ",
                "e\u0301\u0301\u0301", "🏳️‍🌈👍🏽", "\\xC3\\x28 \\uD800", "a".repeat(300), " ".repeat(100) + "x",
                "=".repeat(1000), "ab".repeat(500)));
        Random random = new Random(5);
        for (int i = 0; i < 60; i++) texts.add(SampleTexts.randomText(random, 1 + random.nextInt(80)));
        return texts;
    }

    @Test
    void djlLoadsTheWrittenTokenizerWithItsSpecialTokens() {
        assertEquals(640, djl.vocabSize());
        assertEquals(OptionalInt.of(BpeTrainer.BOS), djl.bosId());
        assertEquals(OptionalInt.of(BpeTrainer.EOS), djl.eosId());
        assertEquals(OptionalInt.of(BpeTrainer.BOS), java.bosId());
        assertEquals(OptionalInt.of(BpeTrainer.EOS), java.eosId());
        assertEquals(640, java.vocabSize());
        Map<String, Object> config = Json.readObject(dir.resolve(TokenizerFiles.TOKENIZER_CONFIG));
        assertEquals("<s>", config.get("bos_token"));
        assertEquals(2048, config.get("model_max_length"));
        assertEquals("PreTrainedTokenizerFast", config.get("tokenizer_class"));
        assertEquals(true, config.get("add_bos_token"));
    }

    @Test
    void specialTokensMeanABosInFront() {
        for (Tokenizer t : List.of(djl, java)) {
            int[] plain = t.encode("the model", false);
            int[] withBos = t.encode("the model", true);
            assertEquals(BpeTrainer.BOS, withBos[0]);
            assertArrayEquals(plain, Arrays.copyOfRange(withBos, 1, withBos.length));
            assertEquals("the model", t.decode(withBos, true));
            assertEquals("<s>the model", t.decode(withBos, false));
            assertArrayEquals(new int[] {BpeTrainer.BOS}, t.encode("", true));
        }
    }

    @Test
    void theMergesAreUsed() {
        int[] ids = java.encode(" the context window", false);
        assertTrue(ids.length < " the context window".length() / 2, Arrays.toString(ids));
        for (int id : ids) assertTrue(id >= BpeTrainer.MIN_VOCAB_SIZE, "every word of the corpus is one token: " + id);
    }

    @Test
    void pureJavaIdsEqualDjlIds() {
        int bytes = 0;
        for (String text : texts()) {
            bytes += text.getBytes(StandardCharsets.UTF_8).length;
            for (boolean special : new boolean[] {false, true})
                assertArrayEquals(djl.encode(text, special), java.encode(text, special), () -> "ids of " + escape(text));
        }
        assertTrue(bytes > 8000, "compared on " + bytes + " bytes");
        // Unpaired surrogates are read as U+FFFD by both.
        assertArrayEquals(djl.encode("a\uD800b\uDC00", false), java.encode("a\uD800b\uDC00", false));
    }

    @Test
    void everyTextRoundTripsByteForByte() {
        for (String text : texts()) {
            for (Tokenizer t : List.of(djl, java)) {
                String back = t.decode(t.encode(text, false), false);
                assertArrayEquals(text.getBytes(StandardCharsets.UTF_8), back.getBytes(StandardCharsets.UTF_8),
                        () -> t.getClass().getSimpleName() + " round trip of " + escape(text));
            }
        }
    }

    @Test
    void decodingAnyIdsMatchesDjl() {
        // Arbitrary ids cut UTF-8 sequences apart, so this also compares how malformed bytes become U+FFFD.
        Random random = new Random(11);
        for (int i = 0; i < 300; i++) {
            int[] ids = new int[1 + random.nextInt(12)];
            for (int k = 0; k < ids.length; k++) ids[k] = random.nextInt(java.vocabSize());
            for (boolean skip : new boolean[] {false, true})
                assertEquals(djl.decode(ids, skip), java.decode(ids, skip), Arrays.toString(ids));
        }
        assertThrows(RopewayException.class, () -> java.decode(new int[] {640}, false));
    }

    /**
     * Code-point classes (letter, number, white space, other) as the regex engine of the tokenizers library sees
     * them. The model merges a letter, a digit, a symbol, a space or a byte with anything next to it, so a piece
     * boundary that falls elsewhere in Java shows up as different ids.
     */
    @Test
    void preTokenizerClassesMatchTheNativeLibrary(@TempDir Path diagnostic) {
        List<String> vocab = new ArrayList<>();
        for (int b = 0; b < 256; b++) vocab.add(String.valueOf(ByteAlphabet.symbol(b)));
        java.util.Set<String> known = new java.util.HashSet<>(vocab);
        List<int[]> merges = new ArrayList<>();
        for (char lead : new char[] {'a', '1', '!', ' '}) {
            for (int b = 0; b < 256; b++) merges.add(new int[] {lead, b});
        }
        for (int b = 0; b < 256; b++) merges.add(new int[] {b, 'z'});
        int[] left = new int[merges.size()], right = new int[merges.size()];
        for (int m = 0; m < merges.size(); m++) {
            left[m] = merges.get(m)[0];
            right[m] = merges.get(m)[1];
            String joined = vocab.get(left[m]) + vocab.get(right[m]);
            if (known.add(joined)) vocab.add(joined);
        }
        BpeModel probe = new BpeModel(vocab.toArray(String[]::new), left, right, List.of(), new int[0], new int[0]);
        Json.writeAtomic(diagnostic.resolve("tokenizer.json"), probe.toJson());
        List<Integer> codePoints = new ArrayList<>();
        for (int cp = 0; cp < 0x800; cp++) codePoints.add(cp);
        for (int cp = 0x800; cp < 0x110000; cp += 211) if (cp < 0xD800 || cp > 0xDFFF) codePoints.add(cp);
        for (int cp : new int[] {0x85, 0xA0, 0x1680, 0x180E, 0x2000, 0x200A, 0x200B, 0x2028, 0x2029, 0x202F, 0x205F,
                0x2060, 0x3000, 0xFEFF, 0x1C, 0x1F}) codePoints.add(cp);
        StringBuilder text = new StringBuilder();
        for (int cp : codePoints) {
            String c = Character.toString(cp);
            text.append('a').append(c).append('.').append('1').append(c).append('.').append('!').append(c).append('.')
                    .append(' ').append(c).append('.').append(c).append("z.").append(c).append(c).append("z.")
                    .append(c).append(c).append(c).append(" \n");
        }
        try (HfTokenizer native_ = HfTokenizer.load(diagnostic)) {
            BpeEncoder encoder = new BpeEncoder(probe);
            int[] expected = native_.encode(text.toString(), false), actual = encoder.encode(text.toString(), false);
            if (!Arrays.equals(expected, actual)) {
                for (int cp : codePoints) {
                    String c = Character.toString(cp);
                    String one = "a" + c + ".1" + c + ".!" + c + ". " + c + "." + c + "z." + c + c + "z." + c + c + c + " \n";
                    assertArrayEquals(native_.encode(one, false), encoder.encode(one, false), "U+" + Integer.toHexString(cp));
                }
                assertArrayEquals(expected, actual);
            }
            // The probe tells the classes apart: a letter joins "a", a symbol does not; a symbol joins "!".
            assertEquals(2, native_.encode("a\u00e9", false).length);
            assertEquals(3, native_.encode("a\u00d7", false).length);
            assertEquals(2, native_.encode("!\u00d7", false).length);
        }
    }

    @Test
    void matchesDjlOnAHandWrittenTokenizerToo(@TempDir Path other) {
        Path file = ByteLevelBpeFixture.write(other);
        BpeEncoder encoder = BpeEncoder.load(file);
        try (HfTokenizer native_ = HfTokenizer.load(file)) {
            for (String text : texts()) {
                for (boolean special : new boolean[] {false, true})
                    assertArrayEquals(native_.encode(text, special), encoder.encode(text, special), () -> escape(text));
            }
        }
    }

    @Test
    void refusesTokenizersItCannotReproduce(@TempDir Path other) throws Exception {
        Path file = ByteLevelBpeFixture.write(other);
        String json = Files.readString(file).replace("\"normalizer\" : null", "\"normalizer\" : {\"type\": \"NFC\"}");
        Files.writeString(file, json);
        RopewayException e = assertThrows(RopewayException.class, () -> BpeEncoder.load(file));
        assertEquals(file + " is not a byte-level BPE tokenizer this encoder supports: it has a normalizer", e.getMessage());
        RopewayException missing = assertThrows(RopewayException.class, () -> BpeEncoder.load(other.resolve("nope")));
        assertTrue(missing.getMessage().startsWith("no tokenizer file"), missing.getMessage());
    }

    private static String escape(String s) {
        StringBuilder out = new StringBuilder();
        s.codePoints().forEach(cp -> out.append(cp >= 0x20 && cp < 0x7f ? Character.toString(cp) : "\\u{" + Integer.toHexString(cp) + "}"));
        return out.toString();
    }
}
