package dev.ropeway.cli;

import dev.ropeway.io.Json;
import dev.ropeway.io.UserCache;
import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.testutil.TinyTokenizer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
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

        // --model takes the GGUF file itself: imported once into the cache, then read from there.
        Path cache = tmp.resolve("cache");
        String before = System.getProperty(UserCache.PROPERTY);
        System.setProperty(UserCache.PROPERTY, cache.toString());
        try {
            double c = loss(CliRunner.run("score", "--model", gguf.toString(), "--ids", idsFile.toString(), "--json"));
            assertEquals(a, c, 1e-12);
            List<Path> imports = folders(cache.resolve("gguf"));
            assertEquals(1, imports.size(), imports.toString());
            assertTrue(imports.getFirst().getFileName().toString().startsWith("m-"), imports.toString());
            long written = Files.getLastModifiedTime(imports.getFirst().resolve("model.safetensors")).toMillis();
            CliRunner.Result gen = CliRunner.run("generate", "--model", gguf.toString(), "--prompt", "the sea",
                    "--max-tokens", "4", "--greedy", "--ignore-eos", "--json");
            assertEquals(0, gen.exitCode(), gen.err());
            assertEquals(imports, folders(cache.resolve("gguf")), "the second use reads the first import");
            assertEquals(written, Files.getLastModifiedTime(imports.getFirst().resolve("model.safetensors")).toMillis());
            // A new version of the file (here only its time) is imported again and the old import removed.
            Files.setLastModifiedTime(gguf, java.nio.file.attribute.FileTime.fromMillis(written - 60_000));
            assertEquals(a, loss(CliRunner.run("score", "--model", gguf.toString(), "--ids", idsFile.toString(), "--json")), 1e-12);
            List<Path> after = folders(cache.resolve("gguf"));
            assertEquals(1, after.size(), after.toString());
            assertTrue(!after.equals(imports), after.toString());
            // ropeway cache: a second file's import goes stale when the file is deleted; --clean removes only that one,
            // --clear the rest.
            Path other = tmp.resolve("other.gguf");
            Files.copy(gguf, other);
            assertEquals(a, loss(CliRunner.run("score", "--model", other.toString(), "--ids", idsFile.toString(), "--json")), 1e-12);
            Files.delete(other);
            CliRunner.Result list = CliRunner.run("cache", "--json");
            assertEquals(0, list.exitCode(), list.err());
            List<?> entries = (List<?>) Json.mapper().readValue(list.out(), Map.class).get("gguf_imports");
            assertEquals(2, entries.size(), list.out());
            long stale = entries.stream().filter(e -> Boolean.FALSE.equals(((Map<?, ?>) e).get("current"))).count();
            assertEquals(1, stale, list.out());
            assertTrue(CliRunner.run("cache").out().contains("[stale"), "the listing marks it");
            CliRunner.Result clean = CliRunner.run("cache", "--clean");
            assertTrue(clean.out().contains("1 folder removed"), clean.out());
            assertEquals(after, folders(cache.resolve("gguf")), "the current import stays");
            assertTrue(CliRunner.run("cache", "--clear").out().contains("1 folder removed"));
            assertEquals(List.of(), folders(cache.resolve("gguf")));
            // serve's default model id: the file's name without .gguf, a folder's name as it is.
            assertEquals("m", ModelFolders.name(gguf));
            assertEquals("back", ModelFolders.name(back));
        } finally {
            if (before == null) System.clearProperty(UserCache.PROPERTY);
            else System.setProperty(UserCache.PROPERTY, before);
        }

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

    private static List<Path> folders(Path dir) throws java.io.IOException {
        try (var s = Files.list(dir)) {
            return s.sorted().toList();
        }
    }

    private static double loss(CliRunner.Result r) throws Exception {
        assertEquals(0, r.exitCode(), r.err());
        return ((Number) Json.mapper().readValue(r.out(), Map.class).get("loss")).doubleValue();
    }
}
