package dev.ropeway.model;

import dev.ropeway.RopewayException;
import dev.ropeway.io.CheckpointException;
import dev.ropeway.io.GgmlType;
import dev.ropeway.io.GgufFile;
import dev.ropeway.io.GgufVocabulary;
import dev.ropeway.io.GgufValue;
import dev.ropeway.io.GgufWriter;
import dev.ropeway.io.Json;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.Tokenizers;
import dev.ropeway.io.WeightStore;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.rope.Llama3Rope;
import dev.ropeway.rope.LongRope;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.rope.StaticNtkRope;
import dev.ropeway.rope.YarnRope;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.tensor.DType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link GgufImport} as the inverse of {@link GgufExport}: every export case comes back as a checkpoint whose logits
 * are the original's, with its RoPE method recognised; the tokenizer comes back with the same ids; quantised files
 * come back within their storage type; a SentencePiece vocabulary becomes a tokenizer that segments as SentencePiece
 * does; and what cannot be imported is refused by name.
 */
class GgufImportTest {
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

    private static GgufImport.Result importFile(Path gguf, String name) {
        return GgufImport.write(gguf, tmp.resolve("imported-" + name), new GgufImport.Options(null, true));
    }

    private static Path export(GgufTestModels.Case k, String name) {
        Path gguf = tmp.resolve(name + ".gguf");
        GgufExport.write(k.model(), gguf, new GgufExport.Options(k.resolvedRope(), GgufTestModels.CONTEXT, k.dtype(), "test"));
        return gguf;
    }

    @TestFactory
    Stream<DynamicTest> everyExportComesBackWithTheSameLogits() throws IOException {
        int[] ids = models.promptIds(100, 5);
        return models.cases().stream().map(k -> DynamicTest.dynamicTest(k.name(), () -> {
            String name = k.name().replaceAll("[^A-Za-z0-9]+", "-");
            GgufImport.Result r = importFile(export(k, name), name);
            ModelConfig c = Transformer.loadConfig(r.dir());
            RopeScaling expected = k.resolvedRope();
            float[][] original = GgufTestModels.logits(backend, k.model(), expected, ids);
            float[][] back = GgufTestModels.logits(backend, r.dir(), c.rope(), ids);
            double worst = GgufTestModels.maxDifference(original, back), scale = GgufTestModels.maxAbs(original);
            assertTrue(worst <= 1e-5 * scale, k.name() + ": imported logits differ by " + worst + " of " + scale);
            assertEquals(DType.F32, r.dtype(), "an F32 file stays F32");
            // The method itself comes back, not only its frequencies.
            switch (expected) {
                case Llama3Rope l -> assertEquals(l, c.rope());
                case YarnRope y -> {
                    YarnRope got = assertInstanceOf(YarnRope.class, c.rope());
                    assertEquals(y.factor(), got.factor());
                    assertEquals(y.originalMaxPositionEmbeddings(), got.originalMaxPositionEmbeddings());
                    assertEquals(y.resolvedAttentionFactor(), got.resolvedAttentionFactor(), 1e-6);
                }
                case DefaultRope d -> assertEquals(d.theta(), c.rope().theta(), 1e-3);
                // Static NTK is a larger base, which is how GGUF carries it.
                case StaticNtkRope n -> assertEquals(n.base(), assertInstanceOf(DefaultRope.class, c.rope()).theta(), 1e-3 * n.base());
                default -> assertEquals(expected.type(), c.rope().type(), "RoPE type");
            }
        }));
    }

    @Test
    void theTokenizerComesBackWithTheSameIds() throws IOException {
        Path model = models.checkpoint(tmp.resolve("tok"), models.llamaConfig(false), 41);
        GgufImport.Result r = importFile(export(new GgufTestModels.Case("tok", model, null, GgufExport.Dtype.F16), "tok"), "tok");
        assertEquals("gpt2", r.tokenizer().model());
        String text = GgufTestModels.SAMPLE + GgufTestModels.SAMPLE.toUpperCase(java.util.Locale.ROOT) + "  x  \n\n" + "7".repeat(11);
        try (Tokenizer a = Tokenizers.open(model); Tokenizer b = Tokenizers.open(r.dir())) {
            int[] ours = a.encode(text, true);
            assertTrue(ours.length > 200);
            assertArrayEquals(ours, b.encode(text, true));
            assertEquals(text, b.decode(b.encode(text, false), true));
        }
        Map<String, Object> config = Json.readObject(r.dir().resolve("tokenizer_config.json"));
        assertEquals(true, config.get("add_bos_token"));
        assertEquals(Json.readObject(model.resolve("tokenizer_config.json")).get("eos_token"), config.get("eos_token"));
        assertEquals(DType.F16, r.dtype(), "an F16 file stays F16");
    }

    /** Llama 3's and Qwen2's split patterns come back as the same pre-tokenizer; Llama 3's skips merges for known words. */
    @Test
    void splitPatternTokenizersComeBackWithTheSameIds() throws IOException {
        for (String pre : List.of("llama-bpe", "qwen2")) {
            Path model = models.checkpoint(tmp.resolve("split-" + pre), models.llamaConfig(false), 42);
            Map<String, Object> json = Json.readObject(model.resolve("tokenizer.json"));
            String pattern = null;
            for (Map.Entry<String, String> e : dev.ropeway.io.GgufVocabulary.SPLIT_PATTERNS.entrySet())
                if (e.getValue().equals(pre)) pattern = e.getKey();
            json.put("pre_tokenizer", Map.of("type", "Sequence", "pretokenizers", List.of(
                    Map.of("type", "Split", "pattern", Map.of("Regex", pattern), "behavior", "Isolated", "invert", false),
                    Map.of("type", "ByteLevel", "add_prefix_space", false, "trim_offsets", true, "use_regex", false))));
            @SuppressWarnings("unchecked")
            Map<String, Object> bpe = (Map<String, Object>) json.get("model");
            bpe.put("ignore_merges", pre.equals("llama-bpe"));
            Json.writeAtomic(model.resolve("tokenizer.json"), json);
            GgufImport.Result r = importFile(export(new GgufTestModels.Case(pre, model, null, GgufExport.Dtype.F16), "split-" + pre), "split-" + pre);
            String text = GgufTestModels.SAMPLE + " 12345 and 'LL 'S  \n\n x";
            try (Tokenizer a = Tokenizers.open(model); Tokenizer b = Tokenizers.open(r.dir())) {
                assertArrayEquals(a.encode(text, false), b.encode(text, false), pre);
            }
            Map<String, Object> back = Json.readObject(r.dir().resolve("tokenizer.json"));
            assertTrue(back.get("pre_tokenizer").toString().contains(pattern), pre + " pattern written");
        }
    }

    /** Q8_0 matrices come back as F16 within F16's rounding of llama.cpp's values; norms stay exact F32. */
    @Test
    void aQuantisedFileComesBackWithinItsStorageType() throws IOException {
        Path model = models.checkpoint(tmp.resolve("q8"), models.llamaConfig(false), 43);
        Path gguf = export(new GgufTestModels.Case("q8", model, null, GgufExport.Dtype.Q8_0), "q8");
        GgufImport.Result r = importFile(gguf, "q8");
        assertEquals(DType.F16, r.dtype());
        assertEquals(Map.of("F32", 5, "Q8_0", 16), r.sourceTypes());
        try (GgufFile g = GgufFile.open(gguf); WeightStore store = WeightStore.open(r.dir())) {
            float[] q8 = g.floats("blk.1.ffn_down.weight"), back = store.readFloats("model.layers.1.mlp.down_proj.weight");
            assertEquals(DType.F16, store.info("model.layers.1.mlp.down_proj.weight").dtype());
            for (int i = 0; i < q8.length; i++) assertEquals(q8[i], back[i], Math.abs(q8[i]) * 0x1p-11, "value " + i);
            assertArrayEquals(g.floats("blk.1.ffn_norm.weight"), store.readFloats("model.layers.1.post_attention_layernorm.weight"));
        }
        // The same file asked for f32 keeps llama.cpp's values exactly.
        GgufImport.Result exact = GgufImport.write(gguf, tmp.resolve("q8-f32"), new GgufImport.Options(DType.F32, false));
        try (GgufFile g = GgufFile.open(gguf); WeightStore store = WeightStore.open(exact.dir())) {
            assertArrayEquals(g.floats("blk.0.ffn_up.weight"), store.readFloats("model.layers.0.mlp.up_proj.weight"));
        }
        assertTrue(!Files.exists(exact.dir().resolve("tokenizer.json")), "no tokenizer asked for");
    }

    /**
     * A SentencePiece vocabulary (scores, byte pieces, no merges) becomes a tokenizer.json whose ids are
     * SentencePiece's: best-scoring pair first, byte fallback for characters it lacks, a prefix space, BOS.
     */
    @Test
    void aSentencePieceVocabularyTokenizesAsSentencePieceDoes() throws IOException {
        Path model = models.checkpoint(tmp.resolve("spm"), models.llamaConfig(false), 45);
        Path gguf = export(new GgufTestModels.Case("spm", model, null, GgufExport.Dtype.F16), "spm-source");
        GgufTestModels.SentencePieceVocab spm = GgufTestModels.SentencePieceVocab.learn(GgufTestModels.SAMPLE, 120,
                models.vocab, "\u767d\u9be8\uD83D\uDC0B");
        Path file = tmp.resolve("spm.gguf");
        GgufTestModels.rewrite(gguf, file, spm.metadata(), Set.of("tokenizer.ggml.merges", "tokenizer.ggml.pre"));
        GgufImport.Result r = importFile(file, "spm");
        assertEquals("llama", r.tokenizer().model());
        assertTrue(r.tokenizer().merges() >= 120, "every learnt piece has a merge (" + r.tokenizer().merges() + ")");
        List<String> texts = new ArrayList<>(List.of(GgufTestModels.SAMPLE.split("\n")));
        texts.add(GgufTestModels.SAMPLE);
        texts.add("  two leading spaces, and a trailing one ");
        int fallbacks = 0;
        try (Tokenizer t = Tokenizers.open(r.dir())) {
            for (String text : texts) {
                int[] expected = spm.encode(text, true);
                assertArrayEquals(expected, t.encode(text, true), text);
                assertEquals(text, t.decode(t.encode(text, false), true), "decodes back: " + text);
                for (int id : expected) if (id >= 3 && id < 259) fallbacks++;
            }
        }
        assertTrue(fallbacks > 8, "withheld characters took the byte fallback (" + fallbacks + " byte pieces)");

        // Exported again, the tokenizer is GGUF's 'llama' one (scores from the merges' ranks, byte tokens typed as
        // bytes, no merges), and imported from there it gives the same ids.
        Path again = tmp.resolve("spm-again.gguf");
        GgufExport.write(r.dir(), again, new GgufExport.Options(Transformer.loadConfig(r.dir()).rope(),
                GgufTestModels.CONTEXT, GgufExport.Dtype.F16, "test"));
        try (GgufFile g = GgufFile.open(again)) {
            assertEquals("llama", g.value("tokenizer.ggml.model").asString());
            assertTrue(g.value("tokenizer.ggml.add_space_prefix").asBool());
            assertTrue(!g.metadata().containsKey("tokenizer.ggml.merges") && !g.metadata().containsKey("tokenizer.ggml.pre"));
            List<String> tokens = g.value("tokenizer.ggml.tokens").asStrings();
            List<?> types = g.value("tokenizer.ggml.token_type").asList();
            assertEquals((long) GgufVocabulary.UNKNOWN, types.get(0), tokens.get(0));
            assertEquals((long) GgufVocabulary.CONTROL, types.get(1), tokens.get(1));
            for (int b = 0; b < 256; b++) {
                assertEquals(String.format("<0x%02X>", b), tokens.get(3 + b));
                assertEquals((long) GgufVocabulary.BYTE, types.get(3 + b), tokens.get(3 + b));
            }
            // The learnt pieces keep SentencePiece's order: each scores below the one learnt before it.
            float[] exported = new float[tokens.size()];
            List<?> scores = g.value("tokenizer.ggml.scores").asList();
            for (int id = 0; id < exported.length; id++) exported[id] = ((Number) scores.get(id)).floatValue();
            for (int id = 260; id < 259 + 120; id++) assertTrue(exported[id] < exported[id - 1], "piece " + id + " " + tokens.get(id));
        }
        GgufImport.Result back = importFile(again, "spm-again");
        try (Tokenizer a = Tokenizers.open(r.dir()); Tokenizer b = Tokenizers.open(back.dir())) {
            for (String text : texts) assertArrayEquals(a.encode(text, true), b.encode(text, true), text);
        }
    }

    /** llama.cpp's phi3 layout (fused projections, LongRoPE factor tensors) comes back as Phi-3 with the same logits. */
    @Test
    void phi3FilesComeBackAsPhi3() throws IOException {
        int[] ids = models.promptIds(100, 7);
        for (GgufTestModels.Case k : models.cases()) {
            if (!k.name().startsWith("phi3")) continue;
            String name = k.name().replaceAll("[^A-Za-z0-9]+", "-");
            GgufImport.Result r = importFile(GgufTestModels.phi3Gguf(k.model(), tmp.resolve(name + "-phi3.gguf")), name + "-phi3");
            assertEquals("Phi3ForCausalLM", r.hfArchitecture());
            ModelConfig c = Transformer.loadConfig(r.dir());
            assertEquals(Transformer.loadConfig(k.model()).rope(), c.rope(), k.name());
            float[][] original = GgufTestModels.logits(backend, k.model(), k.resolvedRope(), ids);
            float[][] back = GgufTestModels.logits(backend, r.dir(), c.rope(), ids);
            assertEquals(0, GgufTestModels.maxDifference(original, back), k.name());
            try (WeightStore store = WeightStore.open(r.dir())) {
                assertTrue(store.names().contains("model.layers.0.self_attn.qkv_proj.weight"), "stacked as Hugging Face stacks Phi-3");
            }
            assertEquals("llama", r.tokenizer().model());
            assertEquals(List.of(models.vocab - 2, models.vocab - 1), Json.readObject(r.dir().resolve("generation_config.json"))
                    .get("eos_token_id"), "<|endoftext|> and <|end|> end a generation");
        }
    }

    /** A model split over three files (gguf-split's layout) imports to the same bytes as the single file. */
    @Test
    void aSplitFileImportsAsTheWholeOne() throws IOException {
        Path model = models.checkpoint(tmp.resolve("split"), models.llamaConfig(false), 46);
        Path whole = export(new GgufTestModels.Case("split", model, null, GgufExport.Dtype.Q8_0), "split-whole");
        Path parts = Files.createDirectories(tmp.resolve("split-parts"));
        Path first = GgufTestModels.split(whole, parts, "model", 3);
        GgufImport.Result a = importFile(whole, "split-whole"), b = importFile(first, "split-parts");
        assertTrue(b.notes().contains("read from the 3 parts of a split file"), b.notes().toString());
        assertArrayEquals(Files.readAllBytes(a.dir().resolve("model.safetensors")), Files.readAllBytes(b.dir().resolve("model.safetensors")));
        assertEquals(Files.readString(a.dir().resolve("config.json")), Files.readString(b.dir().resolve("config.json")));

        CheckpointException e = assertThrows(CheckpointException.class,
                () -> importFile(parts.resolve("model-00002-of-00003.gguf"), "split-second"));
        assertTrue(e.getMessage().contains("part 2 of 3") && e.getMessage().contains("model-00001-of-00003.gguf"), e.getMessage());
        Files.delete(parts.resolve("model-00003-of-00003.gguf"));
        e = assertThrows(CheckpointException.class, () -> importFile(first, "split-missing"));
        assertTrue(e.getMessage().contains("part 3, model-00003-of-00003.gguf, is missing"), e.getMessage());
    }

    @Test
    void llama3DivisorsAreRecognisedAndOthersKeptExactly() {
        Llama3Rope llama31 = new Llama3Rope(500000, 128, 8, 1, 4, 8192);
        float[] plain = new DefaultRope(500000, 128).inverseFrequencies(0), scaled = llama31.inverseFrequencies(0);
        float[] divisors = new float[plain.length];
        for (int j = 0; j < plain.length; j++) divisors[j] = plain[j] / scaled[j];
        List<String> notes = new ArrayList<>();
        assertEquals(llama31, GgufImport.fromDivisors(500000, 128, divisors, 131072, 1.0, notes));
        Llama3Rope llama32 = new Llama3Rope(500000, 64, 32, 1, 4, 8192);
        plain = new DefaultRope(500000, 64).inverseFrequencies(0);
        scaled = llama32.inverseFrequencies(0);
        divisors = new float[plain.length];
        for (int j = 0; j < plain.length; j++) divisors[j] = plain[j] / scaled[j];
        assertEquals(llama32, GgufImport.fromDivisors(500000, 64, divisors, 131072, 1.0, notes));
        assertTrue(notes.isEmpty());

        float[] other = new float[8];
        for (int j = 0; j < 8; j++) other[j] = 1 + j * j * 0.37f;
        LongRope kept = assertInstanceOf(LongRope.class, GgufImport.fromDivisors(10000, 16, other, 4096, 1.2, notes));
        assertEquals(1.2, kept.attentionFactor().getAsDouble());
        float[] inv = kept.inverseFrequencies(100000), base = new DefaultRope(10000, 16).inverseFrequencies(0);
        for (int j = 0; j < 8; j++) assertEquals(base[j] / other[j], inv[j], 1e-6 * base[j]);
        assertEquals(1, notes.size());
    }

    @Test
    void deinterleavingUndoesTheExportsRowOrder() {
        float[] w = new float[3 * 8 * 5];
        for (int i = 0; i < w.length; i++) w[i] = i;
        assertArrayEquals(w, GgufImport.deinterleaveRotaryRows(GgufExport.interleaveRotaryRows(w, 3, 8, 5), 3, 8, 5));
    }

    @Test
    void whatCannotBeImportedIsRefusedByName() throws IOException {
        Path model = models.checkpoint(tmp.resolve("bad"), models.llamaConfig(false), 44);
        Path gguf = export(new GgufTestModels.Case("bad", model, null, GgufExport.Dtype.F32), "bad");

        Path gemma = tmp.resolve("gemma.gguf");
        GgufTestModels.rewrite(gguf, gemma, Map.of("general.architecture", GgufValue.string("gemma")), Set.of());
        RopewayException e = assertThrows(RopewayException.class, () -> importFile(gemma, "gemma"));
        assertTrue(e.getMessage().contains("'gemma' model") && e.getMessage().contains("qwen3"), e.getMessage());

        Path noEps = tmp.resolve("no-eps.gguf");
        GgufTestModels.rewrite(gguf, noEps, Map.of(), Set.of("llama.attention.layer_norm_rms_epsilon"));
        e = assertThrows(CheckpointException.class, () -> importFile(noEps, "no-eps"));
        assertTrue(e.getMessage().contains("layer_norm_rms_epsilon"), e.getMessage());

        Path wrongHeads = tmp.resolve("heads.gguf");
        GgufTestModels.rewrite(gguf, wrongHeads, Map.of("llama.feed_forward_length", GgufValue.uint32(100)), Set.of());
        e = assertThrows(CheckpointException.class, () -> importFile(wrongHeads, "heads"));
        assertTrue(e.getMessage().contains("blk.0.ffn_gate.weight is [96, 64] where the hyperparameters give [100, 64]"), e.getMessage());

        Path tokenizerless = tmp.resolve("pre.gguf");
        GgufTestModels.rewrite(gguf, tokenizerless, Map.of("tokenizer.ggml.pre", GgufValue.string("command-r")), Set.of());
        e = assertThrows(CheckpointException.class, () -> importFile(tokenizerless, "pre"));
        assertTrue(e.getMessage().contains("'command-r'") && e.getMessage().contains("--no-tokenizer"), e.getMessage());
        assertTrue(GgufImport.write(tokenizerless, tmp.resolve("pre-weights"), new GgufImport.Options(null, false)).parameters() > 0,
                "the weights import without the tokenizer");

        // A type ggml has but this reader does not convert: named, with what to do.
        Path q81 = tmp.resolve("q8_1.gguf");
        Files.write(q81, withTensorType(Files.readAllBytes(gguf), "blk.0.attn_v.weight", GgmlType.Q8_1));
        e = assertThrows(CheckpointException.class, () -> importFile(q81, "q81"));
        assertTrue(e.getMessage().contains("blk.0.attn_v.weight") && e.getMessage().contains("Q8_1"), e.getMessage());

        GgufImport.Result ok = importFile(gguf, "twice");
        e = assertThrows(RopewayException.class, () -> importFile(gguf, "twice"));
        assertTrue(e.getMessage().contains("already holds a checkpoint"), e.getMessage());
        assertTrue(Files.isRegularFile(ok.dir().resolve("model.safetensors")), "the first import is untouched");
    }

    /** The file with one tensor's type id changed in its header (its data then reads as the smaller type). */
    private static byte[] withTensorType(byte[] file, String tensor, GgmlType type) {
        byte[] name = tensor.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.wrap(file).order(ByteOrder.LITTLE_ENDIAN);
        for (int at = 8; at + 8 + name.length < file.length; at++) {
            if (b.getLong(at) != name.length || !java.util.Arrays.equals(file, at + 8, at + 8 + name.length, name, 0, name.length))
                continue;
            int p = at + 8 + name.length;
            int dims = b.getInt(p);
            b.putInt(p + 4 + 8 * dims, type.id());
            return file;
        }
        throw new AssertionError(tensor + " not found");
    }
}
