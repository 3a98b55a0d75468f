package dev.ropeway.model;

import dev.ropeway.RopewayException;
import dev.ropeway.io.GgufFile;
import dev.ropeway.io.Json;
import dev.ropeway.io.WeightStore;
import dev.ropeway.rope.E2Rope;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.tensor.DType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Qwen3 (per-head RMSNorm of queries and keys before RoPE) against its definition computed in float64: logits, loss
 * and every parameter's gradient (finite differences) of a tiny checkpoint, then the KV-cached decoder against whole
 * forwards, with the cached keys re-rotated when E²'s scale changes (they are kept normed, unrotated).
 */
class Qwen3Test {
    @TempDir
    static Path tmp;
    static CpuBackend backend;
    static Path untied, tied;

    @BeforeAll
    static void write() {
        backend = new CpuBackend();
        untied = Qwen3Reference.write(tmp.resolve("qwen3"), false, 2, 12, 5);
        tied = Qwen3Reference.write(tmp.resolve("qwen3-tied"), true, 1, 10, 6);
    }

    @AfterAll
    static void close() { backend.close(); }

    @Test
    void logitsAndLossMatchTheDefinition() {
        for (Path dir : List.of(untied, tied)) {
            Map<String, Object> config = Json.readObject(dir.resolve("config.json"));
            ModelConfig c = ModelConfig.parse(config, "qwen3");
            assertEquals(Architecture.QWEN3, c.architecture());
            assertTrue(c.qkNorm());
            try (WeightStore store = WeightStore.open(dir)) {
                assertEquals(store.totalElements(), c.parameterCount(), "the parameter count counts the head norms");
            }
            FixtureParityTest.check(backend, dir, config);
        }
    }

    @Test
    void gradientsMatchFiniteDifferences() {
        for (Path dir : List.of(untied, tied)) {
            GradientParityTest.check(backend, dir, false);
            GradientParityTest.check(backend, dir, true);
        }
        GradientParityTest.check(backend, untied, false, DType.BF16);
    }

    /** The same checkpoint read as a Llama (no q_norm, k_norm) computes something else: the norms are not a no-op. */
    @Test
    void withoutItsNormsTheModelDiffers() {
        Map<String, Object> config = Json.readObject(untied.resolve("config.json"));
        config.put("architectures", List.of("LlamaForCausalLM"));
        config.put("model_type", "llama");
        AssertionError e = assertThrows(AssertionError.class, () -> FixtureParityTest.check(backend, untied, config));
        assertTrue(e.getMessage().contains("logits relative error"), e.getMessage());
    }

    /**
     * E²'s g = ceil(S / 8) changes at 9, 17 and 25. Recomputing the prefix equals whole forwards at any depth; with one
     * layer re-rotating the cached keys does too (keys there depend on the embeddings alone), which holds only if the
     * cache keeps them normed before the rotation. Batched and recorded steps give each sequence its own steps' logits
     * (to a float's last bits: at these widths, 16, a Llama's batched steps differ from lone ones there too).
     */
    @Test
    void cachedDecodingEqualsWholeForwards() {
        E2Rope e2 = new E2Rope(Qwen3Reference.THETA, Qwen3Reference.HEAD_DIM, 8, 0, 4);
        try (Transformer two = Transformer.load(backend, Qwen3Reference.writeModel(tmp.resolve("decode-2"), DecoderTest.VOCAB, 2, false, 8));
             Transformer one = Transformer.load(backend, Qwen3Reference.writeModel(tmp.resolve("decode-1"), DecoderTest.VOCAB, 1, true, 9))) {
            DecoderTest.checkGreedyAgainstFullForward(two, two.config().rope(), Decoder.RopeChange.REROTATE, 5, 12);
            assertEquals(3, DecoderTest.checkGreedyAgainstFullForward(two, e2, Decoder.RopeChange.RECOMPUTE, 5, 24));
            assertEquals(3, DecoderTest.checkGreedyAgainstFullForward(one, e2, Decoder.RopeChange.REROTATE, 5, 24));
            assertEquals(7, DecoderTest.compareBatchedSteps(two, e2, new Decoder.RopeChange[]{Decoder.RopeChange.REROTATE,
                    Decoder.RopeChange.RECOMPUTE, Decoder.RopeChange.REROTATE}, new int[]{5, 7, 12}, 24, 1e-5, true));
        }
    }

    @Test
    void slidingWindowsFollowTheLayerTypes() {
        Map<String, Object> config = Qwen3Reference.config(32, 2, false);
        assertEquals(0, ModelConfig.parse(config, "x").slidingWindow());
        config.put("use_sliding_window", true);
        config.put("sliding_window", 16);
        config.put("max_window_layers", 0);
        assertEquals(16, ModelConfig.parse(config, "x").slidingWindow(), "every layer from 0 on slides");
        config.put("max_window_layers", 2);
        assertEquals(0, ModelConfig.parse(config, "x").slidingWindow(), "no layer from max_window_layers on");
        config.put("max_window_layers", 1);
        RopewayException mixed = assertThrows(RopewayException.class, () -> ModelConfig.parse(config, "x"));
        assertTrue(mixed.getMessage().contains("1 of 2 layers use sliding-window attention"), mixed.getMessage());
        config.put("layer_types", List.of("sliding_attention", "sliding_attention"));
        assertEquals(16, ModelConfig.parse(config, "x").slidingWindow(), "layer_types, when listed, decide");
    }

    @Test
    void ggufExportCarriesTheHeadNorms(@TempDir Path dir) {
        Path model = dir.resolve("m");
        int vocab = dev.ropeway.testutil.TinyTokenizer.write(model).vocabSize();
        Map<String, Object> config = Qwen3Reference.config(32, 2, false);
        config.put("vocab_size", vocab);
        ModelConfig c = ModelConfig.parse(config, "qwen3");
        try (TrainableModel m = TrainableModel.random(backend, c, 3)) {
            m.save(model, config);
        }
        Path out = dir.resolve("q.gguf");
        GgufExport.Result r = GgufExport.write(model, out, new GgufExport.Options(c.rope(), 64, GgufExport.Dtype.F32, "q"));
        assertEquals("qwen3", r.architecture());
        try (GgufFile g = GgufFile.open(out); WeightStore hf = WeightStore.open(model)) {
            assertEquals("qwen3", g.value("general.architecture").value());
            for (int i = 0; i < 2; i++) {
                String a = "model.layers." + i + ".self_attn.", b = "blk." + i + ".";
                assertArrayEquals(hf.readFloats(a + "q_norm.weight"), g.floats(b + "attn_q_norm.weight"));
                assertArrayEquals(hf.readFloats(a + "k_norm.weight"), g.floats(b + "attn_k_norm.weight"));
                // Qwen3's GGUF architecture rotates j with j + d/2, as Hugging Face does: q_proj is written as it is.
                assertArrayEquals(hf.readFloats(a + "q_proj.weight"), g.floats(b + "attn_q.weight"));
            }
        }
    }
}
