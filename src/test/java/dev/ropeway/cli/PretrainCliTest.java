package dev.ropeway.cli;

import dev.ropeway.io.ByteLevelBpeFixture;
import dev.ropeway.io.Json;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code ropeway pretrain} end to end on a tiny corpus: a fresh run, a refused rerun, a resumed run, then scoring. */
class PretrainCliTest {

    @Test
    void pretrainsResumesAndTheResultScores(@TempDir Path tmp) throws Exception {
        Path corpus = corpus(tmp), tok = tokenizer(tmp);
        Path out = tmp.resolve("run");
        String[] common = {"pretrain", "--corpus", corpus.toString(), "--tokenizer", tok.toString(), "--out", out.toString(),
                "--preset", "tiny", "--hidden", "32", "--ffn", "64", "--layers", "2", "--heads", "2", "--seq", "32",
                "--batch", "4", "--checkpoint-every", "3", "--eval-every", "3", "--eval-sequences", "2", "--warmup", "2",
                "--lr", "3e-3", "--json"};

        CliRunner.Result first = CliRunner.run(concat(common, "--steps", "6"));
        assertEquals(0, first.exitCode(), first.err());
        Map<?, ?> result = Json.mapper().readValue(first.out(), Map.class);
        assertEquals(6, ((Number) result.get("steps")).intValue());
        assertTrue(Double.isFinite(((Number) result.get("heldout_loss")).doubleValue()));
        for (String f : new String[]{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "metrics.jsonl", "checkpoint-6/optimizer.safetensors", "checkpoint-6/training_state.json"})
            assertTrue(Files.isRegularFile(out.resolve(f)), f);

        CliRunner.Result again = CliRunner.run(concat(common, "--steps", "6"));
        assertEquals(1, again.exitCode());
        assertTrue(again.err().contains("--resume"), again.err());

        CliRunner.Result resumed = CliRunner.run(concat(common, "--steps", "9", "--resume"));
        assertEquals(0, resumed.exitCode(), resumed.err());
        assertEquals(9, ((Number) Json.mapper().readValue(resumed.out(), Map.class).get("steps")).intValue());
        long lossLines = Files.readAllLines(out.resolve("metrics.jsonl")).stream().filter(l -> l.contains("\"loss\"")).count();
        assertEquals(9, lossLines);

        CliRunner.Result score = CliRunner.run("score", "--model", out.toString(), "--text", "the cat sat on the mat", "--json");
        assertEquals(0, score.exitCode(), score.err());
        assertTrue(score.out().contains("loss"), score.out());
    }

    /** A tiny corpus folder: a text file and a JSON-lines file of repetitive sentences. */
    static Path corpus(Path tmp) throws java.io.IOException {
        Path corpus = Files.createDirectories(tmp.resolve("corpus"));
        StringBuilder text = new StringBuilder();
        for (int i = 0; i < 400; i++) text.append("the cat sat on the mat number ").append(i % 7).append(".\n");
        Files.writeString(corpus.resolve("a.txt"), text);
        Files.writeString(corpus.resolve("b.jsonl"), "{\"text\": \"" + "the other dog ran. ".repeat(200) + "\"}\n");
        return corpus;
    }

    /** The test byte-level BPE with BOS and EOS tokens declared (training packs documents with BOS between them). */
    static Path tokenizer(Path tmp) throws java.io.IOException {
        Path tok = Files.createDirectories(tmp.resolve("tok"));
        ByteLevelBpeFixture.write(tok);
        Json.writeAtomic(tok.resolve("tokenizer_config.json"), Map.of("bos_token", "<s>", "eos_token", "</s>"));
        return tok;
    }

    private static String[] concat(String[] a, String... b) {
        String[] r = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, r, a.length, b.length);
        return r;
    }
}
