package dev.ropeway.cli;

import dev.ropeway.io.Json;
import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.testutil.TinyTokenizer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ImportCliTest {

    /** export --format gguf, then import: the checkpoint that comes back scores what the original scores. */
    @Test
    void anExportedFileImportsAndScoresTheSame(@TempDir Path tmp) throws Exception {
        Path m = tmp.resolve("m"), gguf = tmp.resolve("m.gguf"), back = tmp.resolve("back");
        int vocab = TinyTokenizer.write(m).vocabSize();
        CheckpointWriter.writeRandom(m, CheckpointWriter.llamaConfig(vocab, 32, 64, 2, 4, 2, 8, 64,
                new DefaultRope(10000, 8), false), 5);
        assertEquals(0, CliRunner.run("export", "--model", m.toString(), "--format", "gguf", "--out", gguf.toString(),
                "--dtype", "f32").exitCode());
        CliRunner.Result r = CliRunner.run("import", "--gguf", gguf.toString(), "--out", back.toString(), "--json");
        assertEquals(0, r.exitCode(), r.err());
        Map<String, Object> out = Json.mapper().readValue(r.out(), Map.class);
        assertEquals("LlamaForCausalLM", out.get("hf_architecture"));
        assertEquals("f32", out.get("dtype"));
        assertTrue(Files.isRegularFile(back.resolve("model.safetensors")) && Files.isRegularFile(back.resolve("config.json")));
        CliRunner.Result text = CliRunner.run("score", "--model", back.toString(), "--text", "the white whale and the sea", "--json");
        assertEquals(0, text.exitCode(), text.err());

        int[] ids = new SplittableRandom(2).ints(48, 0, vocab).toArray();
        Path idsFile = tmp.resolve("ids.json");
        Files.writeString(idsFile, Json.mapper().writeValueAsString(new int[][]{ids}));
        double a = loss(CliRunner.run("score", "--model", m.toString(), "--ids", idsFile.toString(), "--json"));
        double b = loss(CliRunner.run("score", "--model", back.toString(), "--ids", idsFile.toString(), "--json"));
        assertEquals(a, b, 1e-12);

        r = CliRunner.run("score", "--model", gguf.toString(), "--text", "the sea");
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("is a GGUF file") && r.err().contains("ropeway import --gguf"), r.err());

        r = CliRunner.run("import", "--gguf", gguf.toString(), "--out", back.toString());
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("already holds a checkpoint"), r.err());
        r = CliRunner.run("import", "--gguf", tmp.resolve("missing.gguf").toString(), "--out", tmp.resolve("x").toString());
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("is not a file"), r.err());
        r = CliRunner.run("import", "--gguf", gguf.toString(), "--out", tmp.resolve("y").toString(), "--dtype", "q4");
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("unknown --dtype 'q4'"), r.err());
        Files.writeString(tmp.resolve("junk.gguf"), "not a gguf file at all");
        r = CliRunner.run("import", "--gguf", tmp.resolve("junk.gguf").toString(), "--out", tmp.resolve("z").toString());
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("junk.gguf"), r.err());
    }

    private static double loss(CliRunner.Result r) throws Exception {
        assertEquals(0, r.exitCode(), r.err());
        return ((Number) Json.mapper().readValue(r.out(), Map.class).get("loss")).doubleValue();
    }
}
