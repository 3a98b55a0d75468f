package dev.ropeway.io;

import dev.ropeway.RopewayException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.Random;

import static dev.ropeway.io.ByteLevelBpeFixture.BOS;
import static dev.ropeway.io.ByteLevelBpeFixture.EOS;
import static dev.ropeway.io.ByteLevelBpeFixture.HE;
import static dev.ropeway.io.ByteLevelBpeFixture.SPACE_THE;
import static dev.ropeway.io.ByteLevelBpeFixture.byteId;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class HfTokenizerTest {
    @TempDir Path dir;

    private HfTokenizer load() {
        ByteLevelBpeFixture.write(dir);
        return HfTokenizer.load(dir);
    }

    /** Random text over many scripts and controls, including 4-byte UTF-8 (emoji) and NUL. */
    private static String randomText(Random random, int codePoints) {
        int[][] ranges = {{0x20, 0x7e}, {0x20, 0x7e}, {0, 0x1f}, {0xa0, 0x17f}, {0x400, 0x4ff}, {0x4e00, 0x9fff},
                {0x1f300, 0x1f64f}, {0x10000, 0x1007f}};
        StringBuilder s = new StringBuilder();
        for (int i = 0; i < codePoints; i++) {
            int[] r = ranges[random.nextInt(ranges.length)];
            s.appendCodePoint(r[0] + random.nextInt(r[1] - r[0] + 1));
        }
        return s.toString();
    }

    /** The bytes of {@code ids}' tokens, joined. */
    private static byte[] joined(Tokenizer t, int[] ids) {
        java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
        for (int id : ids) out.writeBytes(t.tokenBytes(id).orElseThrow());
        return out.toByteArray();
    }

    @Test
    void tokensBytesJoinIntoTheTextEvenWhereATokenSplitsACharacter() {
        Random random = new Random(7);
        ByteLevelBpeFixture.write(dir);
        try (Tokenizer hf = HfTokenizer.load(dir); Tokenizer java = Tokenizers.open(dir)) {
            assertTrue(java instanceof dev.ropeway.io.bpe.BpeEncoder, "the pure-Java encoder reads this file");
            for (int i = 0; i < 50; i++) {
                String text = randomText(random, 1 + random.nextInt(30));
                int[] ids = java.encode(text, false);
                assertArrayEquals(text.getBytes(StandardCharsets.UTF_8), joined(java, ids), text);
                assertArrayEquals(text.getBytes(StandardCharsets.UTF_8), joined(hf, ids), text);
            }
            // "é" is two byte tokens here: each decodes to U+FFFD alone, and its bytes are half the character.
            int[] e = java.encode("é", false);
            assertEquals(2, e.length);
            assertArrayEquals(new byte[]{(byte) 0xC3}, java.tokenBytes(e[0]).orElseThrow());
            assertEquals("\uFFFD", java.decode(new int[]{e[0]}, false));
            assertArrayEquals("<s>".getBytes(StandardCharsets.UTF_8), hf.tokenBytes(BOS).orElseThrow());
            assertThrows(RopewayException.class, () -> java.tokenBytes(ByteLevelBpeFixture.VOCAB_SIZE));
            assertThrows(RopewayException.class, () -> hf.tokenBytes(-1));
        }
    }

    @Test
    void sentencePiecePiecesAreSpacesAndFallbackBytes() throws IOException {
        // A Llama-2-style tokenizer.json: '▁' for spaces, <0xNN> pieces for bytes no piece covers.
        Map<String, Integer> vocab = new java.util.LinkedHashMap<>();
        vocab.put("<unk>", 0);
        vocab.put("<s>", 1);
        vocab.put("</s>", 2);
        for (int b = 0; b < 256; b++) vocab.put(String.format("<0x%02X>", b), 3 + b);
        for (String p : List.of("\u2581", "a", "b", "\u2581a", "\u2581b")) vocab.put(p, vocab.size());
        Map<String, Object> json = new java.util.LinkedHashMap<>();
        json.put("version", "1.0");
        json.put("added_tokens", List.of(
                Map.of("id", 0, "content", "<unk>", "single_word", false, "lstrip", false, "rstrip", false, "normalized", false, "special", true),
                Map.of("id", 1, "content", "<s>", "single_word", false, "lstrip", false, "rstrip", false, "normalized", false, "special", true),
                Map.of("id", 2, "content", "</s>", "single_word", false, "lstrip", false, "rstrip", false, "normalized", false, "special", true)));
        json.put("normalizer", Map.of("type", "Sequence", "normalizers", List.of(
                Map.of("type", "Prepend", "prepend", "\u2581"),
                Map.of("type", "Replace", "pattern", Map.of("String", " "), "content", "\u2581"))));
        json.put("pre_tokenizer", null);
        json.put("post_processor", null);
        json.put("decoder", Map.of("type", "Sequence", "decoders", List.of(
                Map.of("type", "Replace", "pattern", Map.of("String", "\u2581"), "content", " "),
                Map.of("type", "ByteFallback"), Map.of("type", "Fuse"),
                Map.of("type", "Strip", "content", " ", "start", 1, "stop", 0))));
        Map<String, Object> model = new java.util.LinkedHashMap<>();
        model.put("type", "BPE");
        model.put("dropout", null);
        model.put("unk_token", "<unk>");
        model.put("continuing_subword_prefix", null);
        model.put("end_of_word_suffix", null);
        model.put("fuse_unk", true);
        model.put("byte_fallback", true);
        model.put("vocab", vocab);
        model.put("merges", List.of("\u2581 a", "\u2581 b"));
        json.put("model", model);
        Path sp = Files.createDirectories(dir.resolve("sp"));
        Json.writeAtomic(sp.resolve("tokenizer.json"), json);
        try (Tokenizer t = Tokenizers.open(sp)) {
            assertTrue(t instanceof HfTokenizer, "the tokenizers library reads a SentencePiece-style file");
            String text = "a bé ab";
            int[] ids = t.encode(text, false);
            assertEquals(text, t.decode(ids, true));
            assertTrue(Arrays.stream(ids).anyMatch(id -> id == 3 + 0xC3), "é falls back to its bytes: " + Arrays.toString(ids));
            // The text's bytes, with the space the normalizer put in front (the decoder strips it from the text).
            assertArrayEquals((" " + text).getBytes(StandardCharsets.UTF_8), joined(t, ids));
            assertArrayEquals(new byte[]{' ', 'a'}, t.tokenBytes(vocab.get("\u2581a")).orElseThrow());
            assertArrayEquals(new byte[]{(byte) 0xA9}, t.tokenBytes(3 + 0xA9).orElseThrow());
        }
    }

    @Test
    void appliesTheMergesOfTheModel() {
        try (Tokenizer t = load()) {
            int[] ids = t.encode("the the", false);
            assertArrayEquals(new int[] {byteId('t'), HE, SPACE_THE}, ids);
            assertEquals(ByteLevelBpeFixture.VOCAB_SIZE, t.vocabSize());
        }
    }

    @Test
    void anyTextRoundTripsByteForByte() {
        Random random = new Random(42);
        try (Tokenizer t = load()) {
            List<String> texts = new java.util.ArrayList<>(List.of("", " ", "Hello, world!", "naïve café — 日本語 🙂\t\n\r\n\u0000",
                    "  leading and trailing  ", "<s", "s>", "\uFEFFbom"));
            for (int i = 0; i < 100; i++) texts.add(randomText(random, 1 + random.nextInt(60)));
            for (String text : texts) {
                int[] ids = t.encode(text, false);
                for (int id : ids) assertTrue(id >= 0 && id < t.vocabSize());
                String back = t.decode(ids, false);
                assertArrayEquals(text.getBytes(StandardCharsets.UTF_8), back.getBytes(StandardCharsets.UTF_8),
                        () -> "round trip of " + text.codePoints().mapToObj(Integer::toHexString).toList());
            }
            // Byte-level: a text of n UTF-8 bytes never needs more than n tokens.
            String multiByte = "日本語🙂";
            assertEquals(multiByte.getBytes(StandardCharsets.UTF_8).length, t.encode(multiByte, false).length);
        }
    }

    @Test
    void unpairedSurrogatesBecomeOneReplacementCharacter() {
        assertEquals("a\uFFFDb\uFFFD", HfTokenizer.wellFormed("a\uD800b\uDC00"));
        String emoji = "x\uD83D\uDE42y";
        assertTrue(emoji == HfTokenizer.wellFormed(emoji), "well-formed text is passed through untouched");
        assertEquals("\uD83D\uDE42\uFFFD", HfTokenizer.wellFormed("\uD83D\uDE42\uD83D"));
        try (Tokenizer t = load()) {
            assertArrayEquals(t.encode("a\uFFFDb", false), t.encode("a\uD800b", false));
            assertEquals("\uD83D\uDE42\uFFFD", t.decode(t.encode("\uD83D\uDE42\uD83D", false), false));
        }
    }

    @Test
    void longTextIsNeverTruncated() {
        try (Tokenizer t = load()) {
            String text = " the".repeat(2500);
            int[] ids = t.encode(text, false);
            assertEquals(2500, ids.length);
            assertTrue(Arrays.stream(ids).allMatch(id -> id == SPACE_THE));
            int[] withBos = t.encode(text, true);
            assertEquals(2501, withBos.length);
            assertEquals(text, t.decode(withBos, true));
            String random = randomText(new Random(3), 5000);
            assertEquals(random, t.decode(t.encode(random, false), false));
            assertTrue(t.encode(random, false).length > 2000);
        }
    }

    @Test
    void specialTokensAreAddedAndSkippedOnRequest() {
        try (Tokenizer t = load()) {
            int[] plain = t.encode("hi", false);
            int[] withSpecial = t.encode("hi", true);
            assertArrayEquals(new int[] {byteId('h'), byteId('i')}, plain);
            assertArrayEquals(new int[] {BOS, byteId('h'), byteId('i')}, withSpecial);
            assertEquals("<s>hi", t.decode(withSpecial, false));
            assertEquals("hi", t.decode(withSpecial, true));
            // Special tokens written in the text are recognised as such.
            int[] literal = t.encode("<s>hi</s>", false);
            assertArrayEquals(new int[] {BOS, byteId('h'), byteId('i'), EOS}, literal);
            assertEquals("hi", t.decode(literal, true));
        }
    }

    @Test
    void idsOutsideTheVocabularyAreRefused() {
        try (Tokenizer t = load()) {
            RopewayException high = assertThrows(RopewayException.class, () -> t.decode(new int[] {5, 262}, false));
            assertEquals("token id 262 is outside the vocabulary (0..261)", high.getMessage());
            assertThrows(RopewayException.class, () -> t.decode(new int[] {-1}, false));
        }
    }

    @Test
    void bosAndEosComeFromTheTokenizerConfigByText() throws IOException {
        Files.writeString(dir.resolve("tokenizer_config.json"),
                "{\"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"</s>\", \"lstrip\": false}}");
        // The tokenizer config wins over the model config.
        Files.writeString(dir.resolve("config.json"), "{\"bos_token_id\": 7, \"eos_token_id\": 8}");
        try (Tokenizer t = load()) {
            assertEquals(OptionalInt.of(BOS), t.bosId());
            assertEquals(OptionalInt.of(EOS), t.eosId());
        }
    }

    @Test
    void bosAndEosFallBackToTheModelConfig() throws IOException {
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"bos_token\": null, \"eos_token\": \"<|unknown|>\"}");
        Files.writeString(dir.resolve("config.json"), "{\"bos_token_id\": 0, \"eos_token_id\": [1, 5]}");
        try (Tokenizer t = load()) {
            assertEquals(OptionalInt.of(0), t.bosId());
            assertEquals(OptionalInt.of(1), t.eosId(), "the first of several end tokens");
        }
    }

    @Test
    void bosAndEosMayBeAbsent() throws IOException {
        try (Tokenizer t = load()) {
            assertEquals(OptionalInt.empty(), t.bosId());
            assertEquals(OptionalInt.empty(), t.eosId());
        }
        Files.writeString(dir.resolve("config.json"), "{\"bos_token_id\": null, \"eos_token_id\": \"x\"}");
        try (Tokenizer t = HfTokenizer.load(dir)) {
            assertEquals(OptionalInt.empty(), t.bosId());
            assertEquals(OptionalInt.empty(), t.eosId());
        }
    }

    @Test
    void loadsFromTheTokenizerFileItself() throws IOException {
        Path file = ByteLevelBpeFixture.write(dir);
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"eos_token\": \"</s>\"}");
        try (Tokenizer t = HfTokenizer.load(file)) {
            assertArrayEquals(new int[] {BOS, byteId('a')}, t.encode("a", true));
            assertEquals(OptionalInt.of(EOS), t.eosId(), "settings beside the file are used");
        }
    }

    @Test
    void missingTokenizerSaysWhatIsMissing() {
        CheckpointException e = assertThrows(CheckpointException.class, () -> HfTokenizer.load(dir));
        assertEquals("no tokenizer.json in " + dir + ": text needs the model's tokenizer (the Hugging Face tokenizer.json"
                + " saved with it)", e.getMessage());
        Path file = dir.resolve("other.json");
        CheckpointException missingFile = assertThrows(CheckpointException.class, () -> HfTokenizer.load(file));
        assertEquals("no such folder or file: " + file, missingFile.getMessage());
    }

    @Test
    void brokenTokenizerFilesAreCheckpointErrors() throws IOException {
        Path file = dir.resolve("tokenizer.json");
        Files.writeString(file, "{\"model\": {\"vocab\": {\"a\": 0,}}}");
        CheckpointException bad = assertThrows(CheckpointException.class, () -> HfTokenizer.load(dir));
        assertTrue(bad.getMessage().contains("is not valid JSON") && bad.getMessage().contains("line 1"), bad.getMessage());
        // Valid JSON that the native library cannot build a tokenizer from.
        Files.writeString(file, "{\"model\": {\"type\": \"NoSuchModel\", \"vocab\": {\"a\": 0}}}");
        CheckpointException unusable = assertThrows(CheckpointException.class, () -> HfTokenizer.load(dir));
        assertTrue(unusable.getMessage().startsWith("cannot load tokenizer " + file), unusable.getMessage());
        Files.writeString(file, "{\"model\": {\"type\": \"BPE\"}}");
        CheckpointException noVocab = assertThrows(CheckpointException.class, () -> HfTokenizer.load(dir));
        assertTrue(noVocab.getMessage().contains("has no model.vocab"), noVocab.getMessage());
    }

    @Test
    void unigramVocabulariesAreNumberedByPosition() throws IOException {
        Path file = dir.resolve("unigram.json");
        Json.writeAtomic(file, Map.of(
                "model", Map.of("type", "Unigram", "unk_id", 0, "vocab", List.of(List.of("<unk>", 0.0), List.of("▁a", -1.5), List.of("b", -2.0))),
                "added_tokens", List.of(Map.of("id", 3, "content", "<eos>", "special", true))));
        TokenizerVocabulary vocabulary = TokenizerVocabulary.read(file);
        assertEquals(4, vocabulary.size());
        assertEquals(OptionalInt.of(1), vocabulary.idOf("▁a"));
        assertEquals(OptionalInt.of(3), vocabulary.idOf("<eos>"));
        assertEquals(OptionalInt.empty(), vocabulary.idOf("c"));
    }

    @Test
    void djlIsKeptOffline() {
        try (Tokenizer t = load()) {
            assertEquals("true", System.getProperty("ai.djl.offline"));
            assertEquals(1, t.encode("a", false).length);
        }
    }
}
