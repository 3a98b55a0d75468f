package dev.ropeway.model;

import dev.ropeway.RopewayException;
import dev.ropeway.io.CheckpointException;
import dev.ropeway.io.GgmlType;
import dev.ropeway.io.GgufFile;
import dev.ropeway.io.GgufValue;
import dev.ropeway.io.GgufVocabulary;
import dev.ropeway.io.Json;
import dev.ropeway.io.SafeTensorsWriter;
import dev.ropeway.io.WeightStore;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.rope.LinearRope;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.io.bpe.BpeModel;
import dev.ropeway.train.tokenizer.BpeTrainer;
import dev.ropeway.testutil.TinyTokenizer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class GgufExportTest {
    private static final int HIDDEN = 64, FFN = 96, LAYERS = 2, HEADS = 4, KV_HEADS = 2, HEAD_DIM = 16;

    static BpeModel tokenizer(Path dir) {
        return TinyTokenizer.write(dir);
    }

    /** A random Llama checkpoint with a trained tokenizer, {@code vocabExtra} embedding rows past the tokenizer's. */
    static Path llama(Path dir, RopeScaling rope, boolean tied, int vocabExtra) {
        BpeModel tok = tokenizer(dir);
        CheckpointWriter.writeRandom(dir, CheckpointWriter.llamaConfig(tok.vocabSize() + vocabExtra, HIDDEN, FFN, LAYERS,
                HEADS, KV_HEADS, HEAD_DIM, 128, rope, tied), 11);
        return dir;
    }

    private static GgufExport.Result export(Path model, Path out, GgufExport.Dtype dtype) {
        RopeScaling rope = Transformer.loadConfig(model).rope();
        return GgufExport.write(model, out, new GgufExport.Options(rope, 128, dtype, "tiny"));
    }

    /** Undoes the interleaving from its definition: interleaved row 2i is row i, row 2i+1 is row i + d/2. */
    private static float[] deinterleave(float[] w, int heads, int headDim, int cols) {
        float[] out = new float[w.length];
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < headDim / 2; i++)
                for (int c = 0; c < cols; c++) {
                    out[(h * headDim + i) * cols + c] = w[(h * headDim + 2 * i) * cols + c];
                    out[(h * headDim + i + headDim / 2) * cols + c] = w[(h * headDim + 2 * i + 1) * cols + c];
                }
        return out;
    }

    /** GGUF name -> Hugging Face name for every tensor of the test model. */
    private static Map<String, String> names(boolean tied, boolean biases) {
        Map<String, String> n = new LinkedHashMap<>();
        n.put("token_embd.weight", "model.embed_tokens.weight");
        for (int i = 0; i < LAYERS; i++) {
            String p = "model.layers." + i + ".", b = "blk." + i + ".";
            n.put(b + "attn_norm.weight", p + "input_layernorm.weight");
            n.put(b + "attn_q.weight", p + "self_attn.q_proj.weight");
            n.put(b + "attn_k.weight", p + "self_attn.k_proj.weight");
            n.put(b + "attn_v.weight", p + "self_attn.v_proj.weight");
            n.put(b + "attn_output.weight", p + "self_attn.o_proj.weight");
            if (biases) {
                n.put(b + "attn_q.bias", p + "self_attn.q_proj.bias");
                n.put(b + "attn_k.bias", p + "self_attn.k_proj.bias");
                n.put(b + "attn_v.bias", p + "self_attn.v_proj.bias");
            }
            n.put(b + "ffn_norm.weight", p + "post_attention_layernorm.weight");
            n.put(b + "ffn_gate.weight", p + "mlp.gate_proj.weight");
            n.put(b + "ffn_up.weight", p + "mlp.up_proj.weight");
            n.put(b + "ffn_down.weight", p + "mlp.down_proj.weight");
        }
        n.put("output_norm.weight", "model.norm.weight");
        if (!tied) n.put("output.weight", "lm_head.weight");
        return n;
    }

    @Test
    void aLlamaExportCarriesEveryKeyAndGivesBackEveryWeightExactlyInF32(@TempDir Path tmp) {
        Path model = llama(tmp.resolve("m"), new DefaultRope(10000, HEAD_DIM), false, 0);
        Path out = tmp.resolve("m.gguf");
        GgufExport.Result r = export(model, out, GgufExport.Dtype.F32);
        assertEquals("llama", r.architecture());
        try (GgufFile g = GgufFile.open(out); WeightStore hf = WeightStore.open(model)) {
            int vocab = Transformer.loadConfig(model).vocabSize();
            Map<String, Object> expected = new LinkedHashMap<>();
            expected.put("general.alignment", 32L);
            expected.put("general.architecture", "llama");
            expected.put("general.name", "tiny");
            expected.put("general.file_type", 0L);
            expected.put("general.quantization_version", 2L);
            expected.put("llama.vocab_size", (long) vocab);
            expected.put("llama.context_length", 128L);
            expected.put("llama.embedding_length", (long) HIDDEN);
            expected.put("llama.block_count", (long) LAYERS);
            expected.put("llama.feed_forward_length", (long) FFN);
            expected.put("llama.attention.head_count", (long) HEADS);
            expected.put("llama.attention.head_count_kv", (long) KV_HEADS);
            expected.put("llama.attention.layer_norm_rms_epsilon", 1e-5f);
            expected.put("llama.rope.dimension_count", (long) HEAD_DIM);
            expected.put("llama.rope.freq_base", 10000f);
            List<String> tokenizerKeys = List.of("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                    "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
                    "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
                    "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token");
            List<String> keys = new ArrayList<>(expected.keySet());
            keys.addAll(tokenizerKeys);
            assertEquals(keys, List.copyOf(g.metadata().keySet()));
            expected.forEach((k, v) -> assertEquals(v, g.value(k).value(), k));
            assertEquals(GgufValue.Type.UINT32, g.value("llama.context_length").type());
            assertEquals(GgufValue.Type.FLOAT32, g.value("llama.rope.freq_base").type());

            Map<String, String> names = names(false, false);
            assertEquals(List.copyOf(names.keySet()), List.copyOf(g.tensors().keySet()));
            for (Map.Entry<String, String> e : names.entrySet()) {
                GgufFile.Tensor t = g.tensor(e.getKey());
                assertArrayEquals(hf.info(e.getValue()).shape(), t.shape(), e.getKey());
                assertEquals(GgmlType.F32, t.type(), e.getKey());
                float[] back = g.floats(e.getKey());
                if (e.getKey().endsWith("attn_q.weight")) back = deinterleave(back, HEADS, HEAD_DIM, HIDDEN);
                if (e.getKey().endsWith("attn_k.weight")) back = deinterleave(back, KV_HEADS, HEAD_DIM, HIDDEN);
                assertArrayEquals(hf.readFloats(e.getValue()), back, e.getKey());
            }
            // The permutation really moved rows: the stored q rows are not the Hugging Face order.
            assertFalse(java.util.Arrays.equals(hf.readFloats("model.layers.0.self_attn.q_proj.weight"),
                    g.floats("blk.0.attn_q.weight")));
            assertArrayEquals(new long[]{HIDDEN, vocab}, g.tensor("token_embd.weight").ne());
        }
    }

    @Test
    void f16AndQ8_0StayWithinTheirRoundingAndKeepNormsInF32(@TempDir Path tmp) {
        Path model = llama(tmp.resolve("m"), new DefaultRope(10000, HEAD_DIM), false, 0);
        for (GgufExport.Dtype dtype : List.of(GgufExport.Dtype.F16, GgufExport.Dtype.Q8_0)) {
            Path out = tmp.resolve(dtype + ".gguf");
            export(model, out, dtype);
            try (GgufFile g = GgufFile.open(out); WeightStore hf = WeightStore.open(model)) {
                assertEquals(dtype == GgufExport.Dtype.F16 ? 1L : 7L, g.value("general.file_type").asLong());
                for (Map.Entry<String, String> e : names(false, false).entrySet()) {
                    GgufFile.Tensor t = g.tensor(e.getKey());
                    float[] want = hf.readFloats(e.getValue());
                    float[] back = g.floats(e.getKey());
                    if (e.getKey().endsWith("attn_q.weight")) back = deinterleave(back, HEADS, HEAD_DIM, HIDDEN);
                    if (e.getKey().endsWith("attn_k.weight")) back = deinterleave(back, KV_HEADS, HEAD_DIM, HIDDEN);
                    if (t.ne().length == 1) {
                        assertEquals(GgmlType.F32, t.type(), e.getKey());
                        assertArrayEquals(want, back, e.getKey());
                        continue;
                    }
                    if (dtype == GgufExport.Dtype.F16) {
                        assertEquals(GgmlType.F16, t.type());
                        for (int i = 0; i < want.length; i++)
                            assertTrue(Math.abs(back[i] - want[i]) <= Math.abs(want[i]) * 0x1p-11f + 0x1p-25f, e.getKey() + "[" + i + "]");
                    } else {
                        assertEquals(GgmlType.Q8_0, t.type());
                        // Max |x| of these 0.02-std weights is ~0.1: half a step of 0.1/127 bounds the error.
                        double worst = 0;
                        for (int i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(back[i] - want[i]));
                        assertTrue(worst < 0.5 * 0.12 / 127, e.getKey() + ": worst error " + worst);
                        assertTrue(worst > 0, "Q8_0 is lossy: the comparison is live");
                    }
                }
            }
        }
    }

    @Test
    void interleavedRotationOfThePermutedWeightsGivesTheSameQueryKeyProducts(@TempDir Path tmp) {
        Path model = llama(tmp.resolve("m"), new DefaultRope(10000, HEAD_DIM), false, 0);
        Path out = tmp.resolve("m.gguf");
        export(model, out, GgufExport.Dtype.F32);
        RopeScaling rope = Transformer.loadConfig(model).ropeOrSpec("yarn:factor=4,original_max_position_embeddings=32");
        float[] inv = rope.inverseFrequencies(128);
        Random r = new Random(3);
        double[] xm = new double[HIDDEN], xn = new double[HIDDEN];
        for (int i = 0; i < HIDDEN; i++) { xm[i] = r.nextGaussian(); xn[i] = r.nextGaussian(); }
        int m = 97, n = 5;
        try (GgufFile g = GgufFile.open(out); WeightStore hf = WeightStore.open(model)) {
            for (int layer = 0; layer < LAYERS; layer++) {
                String p = "model.layers." + layer + ".self_attn.", b = "blk." + layer + ".";
                double[] qHf = rotateHalf(project(hf.readFloats(p + "q_proj.weight"), xm), HEADS, inv, m);
                double[] kHf = rotateHalf(project(hf.readFloats(p + "k_proj.weight"), xn), KV_HEADS, inv, n);
                double[] qG = rotateInterleaved(project(g.floats(b + "attn_q.weight"), xm), HEADS, inv, m);
                double[] kG = rotateInterleaved(project(g.floats(b + "attn_k.weight"), xn), KV_HEADS, inv, n);
                // The wrong pairing on the original weights: what a conversion without the permutation would run.
                double[] qWrong = rotateInterleaved(project(hf.readFloats(p + "q_proj.weight"), xm), HEADS, inv, m);
                double[] kWrong = rotateInterleaved(project(hf.readFloats(p + "k_proj.weight"), xn), KV_HEADS, inv, n);
                double wrongest = 0;
                for (int h = 0; h < HEADS; h++) {
                    int kv = h / (HEADS / KV_HEADS);
                    double want = dot(qHf, h, kHf, kv), got = dot(qG, h, kG, kv);
                    assertEquals(want, got, 1e-12 * (1 + Math.abs(want)), "layer " + layer + " head " + h);
                    wrongest = Math.max(wrongest, Math.abs(dot(qWrong, h, kWrong, kv) - want));
                }
                assertTrue(wrongest > 1e-4, "without the permutation the products differ (" + wrongest + ")");
            }
        }
    }

    private static double[] project(float[] w, double[] x) {
        double[] y = new double[w.length / x.length];
        for (int row = 0; row < y.length; row++)
            for (int c = 0; c < x.length; c++) y[row] += w[row * x.length + c] * x[c];
        return y;
    }

    private static double[] rotateHalf(double[] v, int heads, float[] inv, int pos) {
        double[] out = v.clone();
        int half = HEAD_DIM / 2;
        for (int h = 0; h < heads; h++)
            for (int j = 0; j < half; j++) {
                double a = (double) pos * inv[j], c = Math.cos(a), s = Math.sin(a);
                double x0 = v[h * HEAD_DIM + j], x1 = v[h * HEAD_DIM + j + half];
                out[h * HEAD_DIM + j] = x0 * c - x1 * s;
                out[h * HEAD_DIM + j + half] = x1 * c + x0 * s;
            }
        return out;
    }

    private static double[] rotateInterleaved(double[] v, int heads, float[] inv, int pos) {
        double[] out = v.clone();
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < HEAD_DIM / 2; i++) {
                double a = (double) pos * inv[i], c = Math.cos(a), s = Math.sin(a);
                double x0 = v[h * HEAD_DIM + 2 * i], x1 = v[h * HEAD_DIM + 2 * i + 1];
                out[h * HEAD_DIM + 2 * i] = x0 * c - x1 * s;
                out[h * HEAD_DIM + 2 * i + 1] = x0 * s + x1 * c;
            }
        return out;
    }

    private static double dot(double[] q, int qHead, double[] k, int kHead) {
        double s = 0;
        for (int d = 0; d < HEAD_DIM; d++) s += q[qHead * HEAD_DIM + d] * k[kHead * HEAD_DIM + d];
        return s;
    }

    @Test
    void theTokenizerTravelsWithItsTypesMergesAndSpecialIds(@TempDir Path tmp) {
        Path model = llama(tmp.resolve("m"), new DefaultRope(10000, HEAD_DIM), false, 0);
        BpeModel tok = BpeModel.read(model);
        Path out = tmp.resolve("m.gguf");
        export(model, out, GgufExport.Dtype.F16);
        try (GgufFile g = GgufFile.open(out)) {
            assertEquals("gpt2", g.value("tokenizer.ggml.model").asString());
            assertEquals("gpt-2", g.value("tokenizer.ggml.pre").asString(), "the trainer's regex is GPT-2's");
            List<String> tokens = g.value("tokenizer.ggml.tokens").asStrings();
            assertEquals(tok.vocabSize(), tokens.size());
            for (int id = 0; id < tokens.size(); id++) assertEquals(tok.token(id), tokens.get(id), "token " + id);
            List<?> types = g.value("tokenizer.ggml.token_type").asList();
            for (int id = 0; id < types.size(); id++)
                assertEquals(id < 4 ? (long) GgufVocabulary.CONTROL : (long) GgufVocabulary.NORMAL, types.get(id), "type of " + id);
            List<String> merges = g.value("tokenizer.ggml.merges").asStrings();
            assertEquals(tok.mergeCount(), merges.size());
            for (int rank = 0; rank < merges.size(); rank++)
                assertEquals(tok.token(tok.mergeLeft(rank)) + " " + tok.token(tok.mergeRight(rank)), merges.get(rank));
            assertEquals((long) BpeTrainer.BOS, g.value("tokenizer.ggml.bos_token_id").asLong());
            assertEquals((long) BpeTrainer.EOS, g.value("tokenizer.ggml.eos_token_id").asLong());
            assertEquals((long) BpeTrainer.UNK, g.value("tokenizer.ggml.unknown_token_id").asLong());
            assertEquals((long) BpeTrainer.PAD, g.value("tokenizer.ggml.padding_token_id").asLong());
            assertTrue(g.value("tokenizer.ggml.add_bos_token").asBool());
            assertFalse(g.value("tokenizer.ggml.add_eos_token").asBool());
        }
    }

    @Test
    void aLargerEmbeddingIsPaddedWithUnusedTokensAndASmallerOneRefused(@TempDir Path tmp) throws Exception {
        Path model = llama(tmp.resolve("m"), new DefaultRope(10000, HEAD_DIM), true, 20);
        Path out = tmp.resolve("m.gguf");
        GgufExport.Result r = export(model, out, GgufExport.Dtype.F32);
        int vocab = Transformer.loadConfig(model).vocabSize();
        try (GgufFile g = GgufFile.open(out)) {
            List<String> tokens = g.value("tokenizer.ggml.tokens").asStrings();
            assertEquals(vocab, tokens.size());
            assertEquals("[PAD" + (vocab - 1) + "]", tokens.get(vocab - 1));
            assertEquals((long) GgufVocabulary.UNUSED, g.value("tokenizer.ggml.token_type").asList().get(vocab - 1));
            assertFalse(g.tensors().containsKey("output.weight"), "a tied head is token_embd.weight");
            assertEquals(names(true, false).size(), r.tensors());
        }
        Map<String, Object> config = Json.readObject(model.resolve("config.json"));
        config.put("vocab_size", vocab - 40);
        Path small = tmp.resolve("small");
        CheckpointWriter.writeRandom(small, config, 1);
        Files.copy(model.resolve("tokenizer.json"), small.resolve("tokenizer.json"));
        CheckpointException e = assertThrows(CheckpointException.class, () -> export(small, tmp.resolve("s.gguf"), GgufExport.Dtype.F16));
        assertTrue(e.getMessage().contains("the tokenizer has " + (vocab - 20) + " tokens"), e.getMessage());
    }

    /** A random Qwen2 checkpoint (q/k/v biases) with a trained tokenizer. */
    private static Path qwen2(Path model) {
        BpeModel tok = tokenizer(model);
        Map<String, Object> config = CheckpointWriter.llamaConfig(tok.vocabSize(), HIDDEN, FFN, LAYERS, HEADS, KV_HEADS,
                HEAD_DIM, 128, new DefaultRope(1e6, HEAD_DIM), false);
        config.put("architectures", List.of("Qwen2ForCausalLM"));
        config.put("model_type", "qwen2");
        writeWithBiases(model, config);
        return model;
    }

    @Test
    void qwen2KeepsItsLayoutAndItsBiases(@TempDir Path tmp) {
        Path model = qwen2(tmp.resolve("q"));
        Path out = tmp.resolve("q.gguf");
        assertEquals("qwen2", export(model, out, GgufExport.Dtype.F32).architecture());
        try (GgufFile g = GgufFile.open(out); WeightStore hf = WeightStore.open(model)) {
            assertEquals("qwen2", g.value("general.architecture").asString());
            assertEquals(LAYERS, g.value("qwen2.block_count").asLong());
            assertEquals(1e6f, (float) g.value("qwen2.rope.freq_base").asDouble());
            Map<String, String> names = names(false, true);
            assertEquals(names.keySet(), g.tensors().keySet());
            // llama.cpp runs qwen2 with NEOX (rotate_half) rotation: nothing is reordered.
            for (Map.Entry<String, String> e : names.entrySet())
                assertArrayEquals(hf.readFloats(e.getValue()), g.floats(e.getKey()), e.getKey());
        }
    }

    @Test
    void aLlamaWithAttentionBiasesPermutesThemLikeTheirRows(@TempDir Path tmp) {
        Path model = tmp.resolve("b");
        BpeModel tok = tokenizer(model);
        Map<String, Object> config = CheckpointWriter.llamaConfig(tok.vocabSize(), HIDDEN, FFN, LAYERS, HEADS, KV_HEADS,
                HEAD_DIM, 128, new DefaultRope(10000, HEAD_DIM), false);
        config.put("attention_bias", true);
        writeWithBiases(model, config);
        Path out = tmp.resolve("b.gguf");
        export(model, out, GgufExport.Dtype.F16);
        try (GgufFile g = GgufFile.open(out); WeightStore hf = WeightStore.open(model)) {
            assertEquals(GgmlType.F32, g.tensor("blk.1.attn_q.bias").type());
            assertArrayEquals(hf.readFloats("model.layers.1.self_attn.q_proj.bias"),
                    deinterleave(g.floats("blk.1.attn_q.bias"), HEADS, HEAD_DIM, 1));
            assertArrayEquals(hf.readFloats("model.layers.1.self_attn.k_proj.bias"),
                    deinterleave(g.floats("blk.1.attn_k.bias"), KV_HEADS, HEAD_DIM, 1));
            assertArrayEquals(hf.readFloats("model.layers.1.self_attn.v_proj.bias"), g.floats("blk.1.attn_v.bias"));
            assertArrayEquals(hf.readFloats("model.layers.1.self_attn.o_proj.bias"), g.floats("blk.1.attn_output.bias"));
        }
    }

    /** A random checkpoint of {@code config} with every bias its architecture has. */
    private static void writeWithBiases(Path dir, Map<String, Object> config) {
        ModelConfig c = ModelConfig.parse(config, "test config");
        Path plain = dir.resolveSibling(dir.getFileName() + "-plain");
        CheckpointWriter.writeRandom(plain, config, 5);
        SafeTensorsWriter w = new SafeTensorsWriter();
        Random r = new Random(6);
        try (WeightStore store = WeightStore.open(plain)) {
            for (String name : store.names()) {
                if (!name.endsWith(".bias")) w.add(name, store.readFloats(name), store.info(name).shape());   // drawn below
            }
        }
        for (int i = 0; i < c.numLayers(); i++) {
            String a = "model.layers." + i + ".self_attn.";
            if (c.qkvBias()) {
                w.add(a + "q_proj.bias", gaussian(r, c.qDim()), c.qDim());
                w.add(a + "k_proj.bias", gaussian(r, c.kvDim()), c.kvDim());
                w.add(a + "v_proj.bias", gaussian(r, c.kvDim()), c.kvDim());
            }
            if (c.outputBias()) w.add(a + "o_proj.bias", gaussian(r, c.hiddenSize()), c.hiddenSize());
        }
        w.write(dir.resolve("model.safetensors"));
        Json.writeAtomic(dir.resolve("config.json"), config);
    }

    private static float[] gaussian(Random r, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float) r.nextGaussian();
        return x;
    }

    @Test
    void fixedRopeMethodsBecomeGgufRopeKeys(@TempDir Path tmp) {
        Path model = llama(tmp.resolve("m"), new DefaultRope(10000, HEAD_DIM), false, 0);
        ModelConfig c = Transformer.loadConfig(model);

        try (GgufFile g = write(model, tmp.resolve("lin.gguf"), new LinearRope(10000, HEAD_DIM, 4))) {
            assertEquals("linear", g.value("llama.rope.scaling.type").asString());
            assertEquals(4f, (float) g.value("llama.rope.scaling.factor").asDouble());
        }
        try (GgufFile g = write(model, tmp.resolve("yarn.gguf"), c.ropeOrSpec("yarn:factor=4,original_max_position_embeddings=32"))) {
            assertEquals("yarn", g.value("llama.rope.scaling.type").asString());
            assertEquals(4f, (float) g.value("llama.rope.scaling.factor").asDouble());
            assertEquals(32L, g.value("llama.rope.scaling.original_context_length").asLong());
            // The default attention factor 0.1 ln 4 + 1 is what GGUF engines apply by themselves.
            assertFalse(g.metadata().containsKey("llama.rope.scaling.attn_factor"));
            assertFalse(g.metadata().containsKey("llama.rope.scaling.yarn_beta_fast"));
        }
        try (GgufFile g = write(model, tmp.resolve("yarn2.gguf"),
                c.ropeOrSpec("yarn:factor=4,original_max_position_embeddings=32,attention_factor=1.5"))) {
            assertEquals(1.5 / (1 + 0.1 * Math.log(4)), g.value("llama.rope.scaling.attn_factor").asDouble(), 1e-6);
        }
        // llama.cpp runs llama, qwen2 and qwen3 with the default betas whatever the file says.
        RopewayException betas = assertThrows(RopewayException.class, () -> write(model, tmp.resolve("yarn3.gguf"),
                c.ropeOrSpec("yarn:factor=4,original_max_position_embeddings=32,beta_fast=16")));
        assertTrue(betas.getMessage().contains("beta_fast 16 and beta_slow 1 has no GGUF form for the llama architecture")
                && betas.getMessage().contains("--rope yarn:factor=4,original_max_position_embeddings=32"), betas.getMessage());
        try (GgufFile g = write(model, tmp.resolve("ntk.gguf"), c.ropeOrSpec("ntk:factor=4"))) {
            assertEquals((float) (10000 * Math.pow(4, 16.0 / 14)), (float) g.value("llama.rope.freq_base").asDouble());
            assertFalse(g.metadata().containsKey("llama.rope.scaling.type"));
        }
        RopeScaling llama3 = c.ropeOrSpec("llama3:factor=8,low_freq_factor=1,high_freq_factor=4,original_max_position_embeddings=64");
        try (GgufFile g = write(model, tmp.resolve("l3.gguf"), llama3)) {
            float[] divisors = g.floats("rope_freqs.weight");
            assertEquals(HEAD_DIM / 2, divisors.length);
            float[] plain = new DefaultRope(10000, HEAD_DIM).inverseFrequencies(0), scaled = llama3.inverseFrequencies(0);
            for (int j = 0; j < divisors.length; j++) assertEquals(scaled[j], plain[j] / divisors[j], 1e-6 * plain[j], "pair " + j);
            assertEquals(1f, divisors[0], "the fastest pair is kept");
            assertEquals(8f, divisors[divisors.length - 1], 1e-5f, "the slowest pair is divided by the factor");
        }
    }

    @Test
    void perPairFactorsAreRefusedForQwenArchitectures(@TempDir Path tmp) {
        Path model = qwen2(tmp.resolve("q"));
        ModelConfig c = Transformer.loadConfig(model);
        for (String spec : List.of("llama3:factor=8,low_freq_factor=1,high_freq_factor=4,original_max_position_embeddings=32",
                "longrope:short_factor=1;1;1;1;1;1;1;1,long_factor=2;2;2;2;2;2;2;2,original_max_position_embeddings=32")) {
            Path out = tmp.resolve("x.gguf");
            RopewayException e = assertThrows(RopewayException.class,
                    () -> GgufExport.write(model, out, new GgufExport.Options(c.ropeOrSpec(spec), 128, GgufExport.Dtype.F16, "x")));
            assertTrue(e.getMessage().contains("has no GGUF form for the qwen2 architecture")
                    && e.getMessage().contains("rope_freqs.weight"), e.getMessage());
            assertFalse(Files.exists(out));
        }
    }

    @Test
    void longRopeKeepsTheFactorSetItsContextUses(@TempDir Path tmp) {
        Path model = llama(tmp.resolve("m"), new DefaultRope(10000, HEAD_DIM), false, 0);
        ModelConfig c = Transformer.loadConfig(model);
        RopeScaling longRope = c.ropeOrSpec("longrope:short_factor=1;1.5;2;2.5;3;3.5;4;4.5,"
                + "long_factor=2;3;4;5;6;7;8;9,original_max_position_embeddings=32,factor=4");
        // Past the original 32 positions the long factors, and the attention factor sqrt(1 + ln 4 / ln 32).
        GgufExport.Result r = GgufExport.write(model, tmp.resolve("long.gguf"),
                new GgufExport.Options(longRope, 128, GgufExport.Dtype.F16, "x"));
        try (GgufFile g = GgufFile.open(tmp.resolve("long.gguf"))) {
            float[] divisors = g.floats("rope_freqs.weight");
            for (int j = 0; j < divisors.length; j++) assertEquals(2 + j, divisors[j], 1e-5, "pair " + j);
            assertEquals(Math.sqrt(1 + Math.log(4) / Math.log(32)), g.value("llama.rope.scaling.attn_factor").asDouble(), 1e-6);
            assertFalse(g.metadata().containsKey("llama.rope.scaling.type"));
        }
        assertTrue(r.notes().stream().anyMatch(n -> n.startsWith("LongRoPE written with its long factors for every length")
                && n.contains("short factors for sequences of up to 32 tokens")), r.notes().toString());
        // Within them the short ones.
        GgufExport.Result s = GgufExport.write(model, tmp.resolve("short.gguf"),
                new GgufExport.Options(longRope, 32, GgufExport.Dtype.F16, "x"));
        try (GgufFile g = GgufFile.open(tmp.resolve("short.gguf"))) {
            float[] divisors = g.floats("rope_freqs.weight");
            for (int j = 0; j < divisors.length; j++) assertEquals(1 + 0.5 * j, divisors[j], 1e-5, "pair " + j);
        }
        assertTrue(s.notes().stream().anyMatch(n -> n.contains("its short factors")), s.notes().toString());
    }

    private static GgufFile write(Path model, Path out, RopeScaling rope) {
        GgufExport.write(model, out, new GgufExport.Options(rope, 128, GgufExport.Dtype.F16, "tiny"));
        return GgufFile.open(out);
    }

    @Test
    void methodsWithoutAGgufFormAreRefusedWithTheReason(@TempDir Path tmp) {
        Path model = llama(tmp.resolve("m"), new DefaultRope(10000, HEAD_DIM), false, 0);
        ModelConfig c = Transformer.loadConfig(model);
        Map<String, String> refusals = Map.of(
                "dynamic:factor=2", "dynamic NTK has no GGUF form",
                "clex:max_factor=4", "CLEX has no GGUF equivalent",
                "e2", "an e2 RoPE has no GGUF form");
        refusals.forEach((spec, message) -> {
            Path out = tmp.resolve("x.gguf");
            RopewayException e = assertThrows(RopewayException.class,
                    () -> GgufExport.write(model, out, new GgufExport.Options(c.ropeOrSpec(spec), 128, GgufExport.Dtype.F16, "x")));
            assertTrue(e.getMessage().contains(message), spec + ": " + e.getMessage());
            assertFalse(Files.exists(out));
        });
    }

    @Test
    void shapesGgufCannotExpressAreRefused(@TempDir Path tmp) throws Exception {
        Path partial = llama(tmp.resolve("p"), new DefaultRope(10000, HEAD_DIM), false, 0);
        Map<String, Object> config = Json.readObject(partial.resolve("config.json"));
        config.put("partial_rotary_factor", 0.5);
        Json.writeAtomic(partial.resolve("config.json"), config);
        RopewayException e = assertThrows(RopewayException.class, () -> export(partial, tmp.resolve("p.gguf"), GgufExport.Dtype.F16));
        assertTrue(e.getMessage().contains("partial rotary"), e.getMessage());

        Path mistral = llama(tmp.resolve("w"), new DefaultRope(10000, HEAD_DIM), false, 0);
        config = Json.readObject(mistral.resolve("config.json"));
        config.put("architectures", List.of("MistralForCausalLM"));
        config.put("model_type", "mistral");
        config.put("sliding_window", 64);
        Json.writeAtomic(mistral.resolve("config.json"), config);
        e = assertThrows(RopewayException.class, () -> export(mistral, tmp.resolve("w.gguf"), GgufExport.Dtype.F16));
        assertTrue(e.getMessage().contains("sliding-window attention over 64 tokens"), e.getMessage());
        GgufExport.write(mistral, tmp.resolve("w64.gguf"), new GgufExport.Options(new DefaultRope(10000, HEAD_DIM), 64,
                GgufExport.Dtype.F16, "w"));
        try (GgufFile g = GgufFile.open(tmp.resolve("w64.gguf"))) {
            assertEquals("llama", g.value("general.architecture").asString(), "Mistral runs as GGUF llama");
        }
    }

    @Test
    void tokenizersWithoutAGgufNameAreRefused(@TempDir Path tmp) throws Exception {
        Path model = llama(tmp.resolve("m"), new DefaultRope(10000, HEAD_DIM), false, 0);
        Path json = model.resolve("tokenizer.json");
        Map<String, Object> original = Json.readObject(json);

        Map<String, Object> sentencePiece = new LinkedHashMap<>(original);
        Map<String, Object> bpe = new LinkedHashMap<>(cast(original.get("model")));
        bpe.put("byte_fallback", true);
        sentencePiece.put("model", bpe);
        // SentencePiece-style tokenizers GGUF's 'llama' tokenizer would segment differently: a Metaspace that splits
        // (its default), a vocabulary without the byte tokens the fallback needs.
        sentencePiece.put("pre_tokenizer", Map.of("type", "Metaspace", "replacement", "\u2581", "prepend_scheme", "first"));
        Json.writeAtomic(json, sentencePiece);
        CheckpointException e = assertThrows(CheckpointException.class, () -> export(model, tmp.resolve("a.gguf"), GgufExport.Dtype.F16));
        assertTrue(e.getMessage().contains("split: false"), e.getMessage());
        sentencePiece.put("pre_tokenizer", Map.of("type", "Metaspace", "replacement", "\u2581", "prepend_scheme", "first", "split", false));
        Json.writeAtomic(json, sentencePiece);
        e = assertThrows(CheckpointException.class, () -> export(model, tmp.resolve("a.gguf"), GgufExport.Dtype.F16));
        assertTrue(e.getMessage().contains("needs all 256 byte tokens"), e.getMessage());
        sentencePiece.put("pre_tokenizer", null);
        sentencePiece.put("normalizer", Map.of("type", "NFKC"));
        Json.writeAtomic(json, sentencePiece);
        e = assertThrows(CheckpointException.class, () -> export(model, tmp.resolve("a.gguf"), GgufExport.Dtype.F16));
        assertTrue(e.getMessage().contains("does not apply") && e.getMessage().contains("NFKC"), e.getMessage());

        Map<String, Object> whitespace = new LinkedHashMap<>(original);
        whitespace.put("pre_tokenizer", Map.of("type", "Whitespace"));
        Json.writeAtomic(json, whitespace);
        e = assertThrows(CheckpointException.class, () -> export(model, tmp.resolve("b.gguf"), GgufExport.Dtype.F16));
        assertTrue(e.getMessage().contains("pre-tokenizer GGUF has no name for"), e.getMessage());

        Map<String, Object> llama3 = new LinkedHashMap<>(original);
        llama3.put("pre_tokenizer", Map.of("type", "Sequence", "pretokenizers", List.of(
                Map.of("type", "Split", "pattern", Map.of("Regex",
                        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"),
                        "behavior", "Isolated", "invert", false),
                Map.of("type", "ByteLevel", "add_prefix_space", false, "trim_offsets", true, "use_regex", false))));
        Json.writeAtomic(json, llama3);
        try (GgufFile g = write(model, tmp.resolve("c.gguf"), new DefaultRope(10000, HEAD_DIM))) {
            assertEquals("llama-bpe", g.value("tokenizer.ggml.pre").asString());
        }

        Files.delete(json);
        e = assertThrows(CheckpointException.class, () -> export(model, tmp.resolve("d.gguf"), GgufExport.Dtype.F16));
        assertTrue(e.getMessage().contains("no tokenizer.json"), e.getMessage());
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> cast(Object o) {
        assertNotNull(o);
        return (Map<String, Object>) o;
    }

    @Test
    void interleavingMovesRowIToTwoIAndRowIPlusHalfToTwoIPlusOne() {
        // Two heads of 4 rows, 2 columns: rows named by value.
        float[] w = {0, 0, 1, 1, 2, 2, 3, 3, 10, 10, 11, 11, 12, 12, 13, 13};
        assertArrayEquals(new float[]{0, 0, 2, 2, 1, 1, 3, 3, 10, 10, 12, 12, 11, 11, 13, 13},
                GgufExport.interleaveRotaryRows(w, 2, 4, 2));
        assertArrayEquals(new float[]{0, 4, 1, 5, 2, 6, 3, 7}, GgufExport.interleaveRotaryRows(new float[]{0, 1, 2, 3, 4, 5, 6, 7}, 1, 8, 1));
        assertThrows(IllegalArgumentException.class, () -> GgufExport.interleaveRotaryRows(new float[7], 1, 8, 1));
    }
}
