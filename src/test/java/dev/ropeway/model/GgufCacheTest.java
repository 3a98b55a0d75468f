package dev.ropeway.model;

import dev.ropeway.RopewayException;
import dev.ropeway.io.GgufValue;
import dev.ropeway.io.Json;
import dev.ropeway.io.WeightStore;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.tensor.DType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link GgufCache}: a GGUF file used as a model is imported once, as bfloat16 when quantised, into a folder that
 * later uses read; a changed file (any part of a split one) is imported again; a failed import leaves nothing behind.
 */
class GgufCacheTest {
    @TempDir
    static Path tmp;
    static CpuBackend backend;
    static GgufTestModels models;

    @BeforeAll
    static void setUp() {
        backend = new CpuBackend();
        models = new GgufTestModels(tmp);
    }

    @AfterAll
    static void tearDown() {
        if (backend != null) backend.close();
    }

    private static Path export(Path model, GgufExport.Dtype dtype, Path gguf) {
        GgufExport.write(model, gguf, new GgufExport.Options(Transformer.loadConfig(model).rope(), GgufTestModels.CONTEXT, dtype, "test"));
        return gguf;
    }

    private static float[][] logits(Path model, int[] ids) {
        return GgufTestModels.logits(backend, model, Transformer.loadConfig(model).rope(), ids);
    }

    private static List<Path> folders(Path root) throws IOException {
        try (Stream<Path> s = Files.list(root)) {
            return s.sorted().toList();
        }
    }

    /**
     * A q8_0 file's matrices keep their blocks in the cache (so it takes about the file's size), read back as exactly the
     * f32 import's values, and the CPU computes the f32 import's logits from them bit for bit; a bf16 import rounds
     * each value to the nearest bfloat16.
     */
    @Test
    void aQuantisedFileIsImportedOnceKeepingItsBlocks() throws IOException {
        Path model = models.checkpoint(tmp.resolve("q8"), models.llamaConfig(false), 51, 0.1);
        Path gguf = export(model, GgufExport.Dtype.Q8_0, tmp.resolve("Some Model-Q8_0.gguf"));
        Path root = tmp.resolve("cache-q8");
        List<String> log = new ArrayList<>();
        Path dir = GgufCache.folder(gguf, root, log::add);
        assertEquals(root.resolve(dir.getFileName()), dir);
        assertTrue(dir.getFileName().toString().matches("Some_Model-Q8_0-[0-9a-f]{16}"), dir.toString());
        assertEquals(2, log.size(), log.toString());
        assertTrue(log.getFirst().contains("16 Q8_0") && log.getFirst().contains("Q8_0 kept"), log.toString());
        assertTrue(Files.isRegularFile(dir.resolve("tokenizer.json")));
        long weights = Files.size(dir.resolve("model.safetensors")), file = Files.size(gguf);
        assertTrue(weights < 1.1 * file, "the import takes about the file's size: " + weights + " against " + file);
        Path exact = GgufImport.write(gguf, tmp.resolve("q8-exact"), new GgufImport.Options(DType.F32, false)).dir();
        try (WeightStore kept = WeightStore.open(dir); WeightStore wide = WeightStore.open(exact)) {
            assertEquals(DType.Q8_0, kept.info("model.layers.0.mlp.up_proj.weight").dtype());
            assertArrayEquals(wide.info("model.layers.0.mlp.up_proj.weight").shape(), kept.info("model.layers.0.mlp.up_proj.weight").shape());
            assertEquals(DType.F32, kept.info("model.layers.0.input_layernorm.weight").dtype());
            assertEquals(DType.Q8_0, kept.dominantDtype());
            for (String name : kept.names())
                assertArrayEquals(wide.readFloats(name), kept.readFloats(name), name);
        }
        int[] ids = new java.util.SplittableRandom(5).ints(40, 0, models.vocab).toArray();
        float[][] a = logits(dir, ids), b = logits(exact, ids);
        for (int i = 0; i < a.length; i++) assertArrayEquals(b[i], a[i], "logits at position " + i);

        // Asked for bf16, each matrix value is the q8_0 value rounded to the nearest bfloat16 (ties to even).
        Path narrow = GgufImport.write(gguf, tmp.resolve("q8-bf16"), new GgufImport.Options(DType.BF16, false)).dir();
        try (WeightStore bf16 = WeightStore.open(narrow); WeightStore wide = WeightStore.open(exact)) {
            for (String name : List.of("model.layers.1.mlp.down_proj.weight", "model.layers.0.self_attn.q_proj.weight")) {
                assertEquals(DType.BF16, bf16.info(name).dtype());
                float[] q8 = wide.readFloats(name), rounded = bf16.readFloats(name);
                for (int i = 0; i < q8.length; i++) {
                    int bits = Float.floatToRawIntBits(q8[i]);
                    assertEquals(Float.intBitsToFloat((bits + 0x7FFF + ((bits >>> 16) & 1)) & 0xFFFF0000), rounded[i], name + " value " + i);
                }
            }
        }

        log.clear();
        assertEquals(dir, GgufCache.folder(gguf, root, log::add));
        assertEquals(List.of(), log, "the second use reads the first import");
        assertEquals(List.of(dir), folders(root));
    }

    /** Files of plain floats keep their type: f32 stays f32 (same logits), f16 stays f16. */
    @Test
    void plainFloatFilesKeepTheirType() throws IOException {
        Path model = models.checkpoint(tmp.resolve("plain"), models.llamaConfig(false), 52);
        Path f32 = export(model, GgufExport.Dtype.F32, tmp.resolve("plain-f32.gguf"));
        Path f16 = export(model, GgufExport.Dtype.F16, tmp.resolve("plain-f16.gguf"));
        Path root = tmp.resolve("cache-plain");
        Path a = GgufCache.folder(f32, root, m -> {}), b = GgufCache.folder(f16, root, m -> {});
        assertNotEquals(a, b);
        assertEquals("float32", Json.readObject(a.resolve("config.json")).get("torch_dtype"));
        assertEquals("float16", Json.readObject(b.resolve("config.json")).get("torch_dtype"));
        int[] ids = new java.util.SplittableRandom(6).ints(30, 0, models.vocab).toArray();
        float[][] original = logits(model, ids), back = logits(a, ids);
        assertTrue(GgufTestModels.maxDifference(original, back) <= 1e-5 * GgufTestModels.maxAbs(original));
    }

    /** The key covers every part of a split file; a newer version replaces the older import. */
    @Test
    void aChangedPartIsImportedAgainAndTheOldImportRemoved() throws IOException {
        Path model = models.checkpoint(tmp.resolve("split"), models.llamaConfig(false), 53);
        Path whole = export(model, GgufExport.Dtype.Q8_0, tmp.resolve("split-whole.gguf"));
        Path parts = Files.createDirectories(tmp.resolve("split-parts"));
        Path first = GgufTestModels.split(whole, parts, "model", 3);
        Path root = tmp.resolve("cache-split");
        Path dir = GgufCache.folder(first, root, m -> {});
        assertTrue(dir.getFileName().toString().startsWith("model-"), dir.toString());
        Map<String, Object> source = Json.readObject(dir.resolve("gguf-source.json"));
        assertEquals(3, ((List<?>) source.get("parts")).size());
        assertEquals("bf16", source.get("dtype"));

        Path third = parts.resolve("model-00003-of-00003.gguf");
        Files.setLastModifiedTime(third, FileTime.fromMillis(Files.getLastModifiedTime(third).toMillis() - 120_000));
        List<String> log = new ArrayList<>();
        Path again = GgufCache.folder(first, root, log::add);
        assertNotEquals(dir, again);
        assertEquals(List.of(again), folders(root), "the older import is removed");
        assertTrue(log.stream().anyMatch(m -> m.startsWith("removed ") && m.contains(dir.getFileName().toString())), log.toString());
        assertEquals(Files.readString(dir.getParent().resolve(again.getFileName()).resolve("config.json")),
                Files.readString(again.resolve("config.json")));
    }

    /**
     * An import another Ropeway version wrote (another import format, so another key) is stale, says why, and is
     * replaced, with a message naming the other version rather than a changed file.
     */
    @Test
    void anImportOfAnotherFormatIsStaleAndReplaced() throws IOException {
        Path model = models.checkpoint(tmp.resolve("formats"), models.llamaConfig(false), 59);
        Path file = export(model, GgufExport.Dtype.Q8_0, tmp.resolve("formats.gguf"));
        Path root = tmp.resolve("cache-formats");
        Path dir = GgufCache.folder(file, root, m -> {});
        Path older = dir.resolveSibling("formats-0000000000000000");
        Files.move(dir, older);
        Map<String, Object> source = new java.util.LinkedHashMap<>(Json.readObject(older.resolve("gguf-source.json")));
        source.put("format", "4");
        Json.writeAtomic(older.resolve("gguf-source.json"), source);
        GgufCache.Entry entry = GgufCache.entries(root).getFirst();
        assertEquals("4", entry.format());
        assertFalse(entry.current());
        assertTrue(entry.staleness().contains("another Ropeway version (import format 4"), entry.staleness());

        List<String> log = new ArrayList<>();
        Path again = GgufCache.folder(file, root, log::add);
        assertEquals(dir, again);
        assertEquals(List.of(again), folders(root));
        assertTrue(log.stream().anyMatch(m -> m.startsWith("removed " + older) && m.contains("another Ropeway version (import format 4")),
                log.toString());
        assertTrue(GgufCache.entries(root).getFirst().current());
    }

    /** A file that cannot be imported leaves neither a folder nor a hidden half of one. */
    @Test
    void aFailedImportLeavesNothing() throws IOException {
        Path model = models.checkpoint(tmp.resolve("bad"), models.llamaConfig(false), 54);
        Path good = export(model, GgufExport.Dtype.F32, tmp.resolve("bad-good.gguf"));
        Path bad = tmp.resolve("bad.gguf");
        GgufTestModels.rewrite(good, bad, Map.of("tokenizer.ggml.pre", GgufValue.string("no-such-pre-tokenizer")), Set.of());
        Path root = tmp.resolve("cache-bad");
        RopewayException e = assertThrows(RopewayException.class, () -> GgufCache.folder(bad, root, m -> {}));
        assertTrue(e.getMessage().contains("no-such-pre-tokenizer") && e.getMessage().startsWith("cannot read " + bad)
                && e.getMessage().contains("--no-tokenizer, then --model <dir>"), e.getMessage());
        assertEquals(List.of(), folders(root));
    }

    /** GGUF is recognised by its magic bytes (files without the extension, as some tools store them, count). */
    @Test
    void ggufFilesAreRecognisedByTheirContent() throws IOException {
        Path model = models.checkpoint(tmp.resolve("magic"), models.llamaConfig(false), 55);
        Path gguf = export(model, GgufExport.Dtype.F32, tmp.resolve("magic.gguf"));
        Path blob = Files.copy(gguf, tmp.resolve("sha256-0123abcd"));
        assertTrue(GgufCache.isGguf(gguf));
        assertTrue(GgufCache.isGguf(blob));
        assertFalse(GgufCache.isGguf(model), "a folder");
        assertFalse(GgufCache.isGguf(model.resolve("config.json")));
        assertFalse(GgufCache.isGguf(tmp.resolve("missing.gguf")));
        assertTrue(GgufCache.folder(blob, tmp.resolve("cache-blob"), m -> {}).getFileName().toString().startsWith("sha256-0123abcd-"));

        assertEquals("Qwen2.5-0.5B-Instruct-Q4_K_M", GgufCache.stem("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf"));
        assertEquals("Llama-3-70B", GgufCache.stem("Llama-3-70B-00001-of-00004.GGUF"));
        assertEquals("my_model_v2_", GgufCache.stem("my model v2!.gguf"));
        assertEquals("model.hidden", GgufCache.stem(".hidden.gguf"));

        RopewayException loadError = assertThrows(RopewayException.class, () -> Transformer.loadConfig(gguf));
        assertTrue(loadError.getMessage().contains("GgufCache.folder") && loadError.getMessage().contains("ropeway import"),
                loadError.getMessage());
    }
}
