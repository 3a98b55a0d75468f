package dev.ropeway.cli;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ropeway.io.HfTokenizer;
import dev.ropeway.io.Json;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.OptionalInt;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TokenizerCommandTest {
    private static final String PROSE = "The rotary embedding turns each query and key by an angle that grows with "
            + "the position. Scaling the angles lets a model read past the context it was trained on; we'll see how "
            + "far. Naïve café prices: 3.50 € — 日本語のテキスト 🙂\n\tIndented line.\n\n";

    @TempDir Path tmp;

    private Path corpus(String name, String... docs) throws IOException {
        Path dir = tmp.resolve(name);
        Files.createDirectories(dir);
        for (int i = 0; i < docs.length; i++) Files.writeString(dir.resolve("doc" + i + ".txt"), docs[i]);
        return dir;
    }

    @Test
    void trainsAndWritesATokenizerTheRestOfRopewayLoads() throws IOException {
        Path corpus = corpus("plain", PROSE.repeat(20), PROSE.toUpperCase().repeat(5));
        Path out = tmp.resolve("tok");
        var r = CliRunner.run("tokenizer", "train", "--corpus", corpus.toString(), "--vocab-size", "400",
                "--out", out.toString());
        assertEquals(0, r.exitCode(), r.err());
        assertTrue(r.out().contains("vocabulary 400: <unk> 0, <s> 1 (BOS), </s> 2 (EOS), <pad> 3, bytes 4..259, 140 merges 260..399"), r.out());
        assertTrue(r.out().contains("bytes/token on the 0.0 MB of training text"), r.out());
        assertTrue(r.err().contains("counted ") && r.err().contains("merging: 140 / 140"), r.err());
        try (HfTokenizer t = HfTokenizer.load(out)) {
            assertEquals(400, t.vocabSize());
            assertEquals(OptionalInt.of(1), t.bosId());
            int[] ids = t.encode("The rotary embedding", true);
            assertEquals(1, ids[0]);
            assertTrue(ids.length < 10, "20 bytes, a handful of tokens: " + Arrays.toString(ids));
            assertEquals("The rotary embedding", t.decode(ids, true));
        }
    }

    @Test
    void jsonSummaryAndAPreparedCorpusWhoseHeldOutPartIsNotLearnt() throws IOException {
        Path root = tmp.resolve("prepared");
        corpus("prepared/train", PROSE.repeat(10));
        // A word only the held-out part has, so often that training on it would make it a token.
        corpus("prepared/heldout", "zqxj ".repeat(2000));
        Path out = tmp.resolve("tok");
        var r = CliRunner.run("tokenizer", "train", "--corpus", root.toString(), "--vocab-size", "280",
                "--out", out.toString(), "--json");
        assertEquals(0, r.exitCode(), r.err());
        JsonNode summary = Json.mapper().readTree(r.out());
        assertEquals(280, summary.get("vocab_size").asInt());
        assertEquals(20, summary.get("merges").asInt());
        assertEquals(1, summary.get("bos_token_id").asInt());
        assertEquals(2, summary.get("eos_token_id").asInt());
        assertEquals(0, summary.get("special_tokens").get("<unk>").asInt());
        assertEquals(3, summary.get("special_tokens").get("<pad>").asInt());
        assertEquals(1, summary.get("documents").asInt());
        assertTrue(summary.get("heldout_bytes_per_token").asDouble() >= 1.0);
        String json = Files.readString(out.resolve("tokenizer.json"));
        assertFalse(json.contains("\"zq\"") || json.contains("\"qx\"") || json.contains("\"xj\""), "held-out text was learnt");
        assertTrue(json.contains("\"Ġthe\""), "the training text was");
    }

    @Test
    void maxBytesCapsTheTrainingText() throws IOException {
        Path corpus = corpus("capped", "ab ab ab ab ab é", "cd cd cd cd cd cd cd cd");
        var r = CliRunner.run("tokenizer", "train", "--corpus", corpus.toString(), "--vocab-size", "270",
                "--out", tmp.resolve("tok").toString(), "--max-bytes", "16", "--json");
        assertEquals(0, r.exitCode(), r.err());
        JsonNode summary = Json.mapper().readTree(r.out());
        // "é" would make 17 bytes: it is left out whole, never cut in half, and the last byte comes from the next document.
        assertEquals(16, summary.get("bytes").asLong());
        assertEquals(2, summary.get("documents").asInt());
        assertEquals(262, summary.get("vocab_size").asInt(), "only 'a b' and 'Ġ ab' occur twice or more");

        var bad = CliRunner.run("tokenizer", "train", "--corpus", corpus.toString(), "--vocab-size", "270",
                "--out", tmp.resolve("tok").toString(), "--max-bytes", "lots");
        assertNotEquals(0, bad.exitCode());
        assertTrue(bad.err().contains("'lots' is not a size such as 20000000, 20M or 1.5G"), bad.err());
    }

    @Test
    void sizesTakeSiSuffixes() {
        var size = new TokenizerCommand.ByteSize();
        assertEquals(20_000_000L, size.convert("20M"));
        assertEquals(1_500_000_000L, size.convert("1.5G"));
        assertEquals(500_000L, size.convert("500kB"));
        assertEquals(123L, size.convert("123"));
        assertEquals("ab", TokenizerCommand.prefixWithin("abé", 3));
        assertEquals("abé", TokenizerCommand.prefixWithin("abé", 4));
        assertEquals("", TokenizerCommand.prefixWithin("🙂", 3));
    }

    @Test
    void userErrorsAreOneLine() throws IOException {
        Path corpus = corpus("errors", PROSE);
        var small = CliRunner.run("tokenizer", "train", "--corpus", corpus.toString(), "--vocab-size", "100",
                "--out", tmp.resolve("tok").toString());
        assertEquals(1, small.exitCode());
        assertEquals("error: vocabulary size 100 is too small: a byte-level BPE needs at least 260 ids (4 special "
                + "tokens <unk> <s> </s> <pad> and 256 byte tokens) before any merge", small.err().trim());

        Path empty = corpus("empty", "", "");
        var none = CliRunner.run("tokenizer", "train", "--corpus", empty.toString(), "--vocab-size", "300",
                "--out", tmp.resolve("tok").toString());
        assertEquals(1, none.exitCode());
        assertTrue(none.err().endsWith("error: the corpus holds no text to train on\n"), none.err());
        assertFalse(Files.exists(tmp.resolve("tok")), "nothing is written on failure");

        var missing = CliRunner.run("tokenizer", "train", "--corpus", tmp.resolve("nowhere").toString(),
                "--vocab-size", "300", "--out", tmp.resolve("tok").toString());
        assertEquals(1, missing.exitCode());
        assertTrue(missing.err().startsWith("error: corpus folder "), missing.err());
    }

    @Test
    void benchComparesThePureJavaEncoderWithDjl() throws IOException {
        Path corpus = corpus("bench", PROSE.repeat(3), "x y z 123 <s> tail  ");
        Path out = tmp.resolve("tok");
        assertEquals(0, CliRunner.run("tokenizer", "train", "--corpus", corpus.toString(), "--vocab-size", "290",
                "--out", out.toString()).exitCode());
        var r = CliRunner.run("tokenizer", "bench", "--tokenizer", out.toString(), "--corpus", corpus.toString(), "--json");
        assertEquals(0, r.exitCode(), r.err());
        JsonNode summary = Json.mapper().readTree(r.out());
        assertEquals(0, summary.get("documents_with_different_ids").asInt());
        assertEquals(2, summary.get("documents").asInt());
        assertEquals(4, summary.get("runs").size());
        assertTrue(summary.get("bytes_per_token").asDouble() > 1.0);
    }

    @Test
    void helpListsTheTrainCommand() {
        var r = CliRunner.run("tokenizer");
        assertEquals(0, r.exitCode());
        assertTrue(r.out().contains("train") && r.out().contains("bench"), r.out());
    }
}
