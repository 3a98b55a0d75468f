package dev.ropeway.model;

import dev.ropeway.io.GgmlType;
import dev.ropeway.io.GgufFile;
import dev.ropeway.io.Json;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.Tokenizers;
import dev.ropeway.io.WeightStore;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.testutil.LlamaCppNative;
import dev.ropeway.train.tokenizer.BpeTrainer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * GGUF exports run by llama.cpp itself ({@code bin/llama-cpp-peer}: its prebuilt CPU library from npm, installed by CI;
 * these tests are skipped where it is not installed): for every architecture and RoPE method the export writes, the
 * logits llama.cpp computes from the file at every position equal Ropeway's from the checkpoint, its greedy tokens
 * equal Ropeway's, and its tokenizer, built from the file's {@code tokenizer.ggml.*} keys, gives the ids of the
 * checkpoint's {@code tokenizer.json}.
 */
class GgufLlamaCppTest {
    private static final int CONTEXT = GgufTestModels.CONTEXT;
    private static final Path PEER = Path.of("bin/llama-cpp-peer").toAbsolutePath();

    @TempDir
    static Path tmp;
    static CpuBackend backend;
    static GgufTestModels models;
    static int vocab;

    @BeforeAll
    static void setUp() throws Exception {
        assumeTrue(installed(), "llama.cpp is not installed for the tests (bin/llama-cpp-peer install)");
        backend = new CpuBackend();
        models = new GgufTestModels(tmp);
        vocab = models.vocab;
    }

    @AfterAll
    static void tearDown() {
        if (backend != null) backend.close();
    }

    private static boolean installed() throws Exception {
        if (!Files.isExecutable(PEER)) return false;
        Process p = new ProcessBuilder(PEER.toString(), "where").redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        return p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0;
    }

    @TestFactory
    Stream<DynamicTest> llamaCppComputesRopewaysLogitsFromEveryExport() throws IOException {
        int[] ids = models.promptIds(100, 5);
        return models.cases().stream().map(k -> DynamicTest.dynamicTest(k.name(), () -> {
            RopeScaling rope = k.resolvedRope();
            Path gguf = tmp.resolve(k.name().replaceAll("[^A-Za-z0-9]+", "-") + ".gguf");
            GgufExport.write(k.model(), gguf, new GgufExport.Options(rope, CONTEXT, k.dtype(), "test"));
            float[][] theirs = peerLogits(gguf, ids);
            float[][] ours = ropewayLogits(k.model(), rope, ids);
            double worst = GgufTestModels.maxDifference(ours, theirs), scale = GgufTestModels.maxAbs(ours);
            assertTrue(scale > 1, "logits of order one (" + scale + ")");
            assertTrue(worst <= 5e-5 * scale, k.name() + ": llama.cpp differs by " + worst + " of logits up to " + scale);
        }));
    }

    /** The comparison sees RoPE: Ropeway's logits under another method differ from llama.cpp's by far more. */
    @Test
    void aWrongRopeMethodIsSeen() throws IOException {
        Path model = models.checkpoint(tmp.resolve("wrong"), models.llamaConfig(false), 31);
        ModelConfig c = Transformer.loadConfig(model);
        RopeScaling yarn = c.ropeOrSpec("yarn:factor=4,original_max_position_embeddings=32");
        Path gguf = tmp.resolve("wrong.gguf");
        GgufExport.write(model, gguf, new GgufExport.Options(yarn, CONTEXT, GgufExport.Dtype.F32, "test"));
        int[] ids = models.promptIds(100, 6);
        float[][] theirs = peerLogits(gguf, ids);
        double right = GgufTestModels.maxDifference(ropewayLogits(model, yarn, ids), theirs);
        double wrong = GgufTestModels.maxDifference(ropewayLogits(model, c.ropeOrSpec("linear:factor=4"), ids), theirs);
        assertTrue(wrong > 1000 * right && wrong > 0.05, "YaRN " + right + ", PI " + wrong);
    }

    /**
     * Narrow types: llama.cpp on f16 and q8_0 weights (q8_0 products also round the activations to 8 bits) stays
     * within their rounding of Ropeway's float32 logits, q8_0 further than f16, and picks the same most likely token.
     */
    @Test
    void f16AndQ8_0ExportsStayWithinTheirRounding() throws IOException {
        Path model = models.checkpoint(tmp.resolve("narrow"), models.llamaConfig(false), 32);
        RopeScaling rope = Transformer.loadConfig(model).rope();
        int[] ids = models.promptIds(60, 7);
        float[][] ours = ropewayLogits(model, rope, ids);
        double scale = GgufTestModels.maxAbs(ours);
        double[] worst = new double[2], rms = new double[2];
        int[] sameTop = new int[2];
        GgufExport.Dtype[] types = {GgufExport.Dtype.F16, GgufExport.Dtype.Q8_0};
        for (int t = 0; t < 2; t++) {
            Path gguf = tmp.resolve("narrow-" + types[t] + ".gguf");
            GgufExport.write(model, gguf, new GgufExport.Options(rope, CONTEXT, types[t], "test"));
            float[][] theirs = peerLogits(gguf, ids);
            worst[t] = GgufTestModels.maxDifference(ours, theirs);
            double sum = 0, n = 0;
            for (int i = 0; i < ids.length; i++) {
                if (GgufTestModels.argmax(ours[i]) == GgufTestModels.argmax(theirs[i])) sameTop[t]++;
                for (int j = 0; j < ours[i].length; j++, n++) sum += Math.pow(ours[i][j] - theirs[i][j], 2);
            }
            rms[t] = Math.sqrt(sum / n);
        }
        String seen = "largest differences " + Arrays.toString(worst) + ", rms " + Arrays.toString(rms) + ", same top token "
                + Arrays.toString(sameTop) + " of " + ids.length + ", logits up to " + scale;
        assertTrue(worst[0] > 1e-6 && worst[0] < 0.01 * scale && sameTop[0] >= ids.length - 2, "f16: " + seen);
        assertTrue(rms[1] > 3 * rms[0] && rms[1] < 0.03 * scale && sameTop[1] >= 0.7 * ids.length, "q8_0: " + seen);
    }

    @Test
    void llamaCppDecodesRopewaysGreedyTokens() throws Exception {
        Path model = models.checkpoint(tmp.resolve("greedy"), models.llamaConfig(false), 33);
        RopeScaling rope = Transformer.loadConfig(model).ropeOrSpec("yarn:factor=4,original_max_position_embeddings=32");
        Path gguf = tmp.resolve("greedy.gguf");
        GgufExport.write(model, gguf, new GgufExport.Options(rope, CONTEXT, GgufExport.Dtype.F32, "test"));
        int[] prompt = models.promptIds(40, 8);
        int n = 24;
        int[] ours = new int[n];
        int[] seq = prompt;
        for (int k = 0; k < n; k++) {
            float[][] logits = ropewayLogits(model, rope, seq);
            ours[k] = GgufTestModels.argmax(logits[logits.length - 1]);
            seq = Arrays.copyOf(seq, seq.length + 1);
            seq[seq.length - 1] = ours[k];
        }
        Map<String, Object> out = peer("generate", "--model", gguf.toString(), "--ids", Arrays.toString(prompt), "--n",
                Integer.toString(n));
        assertArrayEquals(ours, ints(out.get("generated")));
        assertTrue(Arrays.stream(ours).distinct().count() > 3, "a continuation that is not one token repeated");
    }

    @Test
    void llamaCppsTokenizerFromTheFileGivesTheCheckpointsIds() throws Exception {
        Path model = models.checkpoint(tmp.resolve("tok"), models.llamaConfig(false), 34);
        Path gguf = tmp.resolve("tok.gguf");
        GgufExport.write(model, gguf, new GgufExport.Options(Transformer.loadConfig(model).rope(), CONTEXT,
                GgufExport.Dtype.F16, "test"));
        String text = GgufTestModels.SAMPLE + GgufTestModels.SAMPLE.toUpperCase(java.util.Locale.ROOT) + "  leading and trailing  \n\n\n" + "9".repeat(17);
        Path file = tmp.resolve("text.txt");
        Files.writeString(file, text);
        int[] theirs = ints(peer("tokenize", "--model", gguf.toString(), "--text-file", file.toString()).get("ids"));
        try (Tokenizer tok = Tokenizers.open(model)) {
            int[] ours = tok.encode(text, false);
            assertTrue(ours.length > 200, "a text of some length (" + ours.length + " tokens)");
            assertArrayEquals(ours, theirs);
        }
        Map<String, Object> info = peer("info", "--model", gguf.toString());
        assertEquals(vocab, ((Number) info.get("vocab")).intValue());
        assertEquals(BpeTrainer.BOS, ((Number) info.get("bos")).intValue());
        assertEquals(BpeTrainer.EOS, ((Number) info.get("eos")).intValue());
        assertEquals(CONTEXT, ((Number) info.get("trainContextSize")).intValue());
    }

    /**
     * Files quantised by llama.cpp itself ({@code llama_model_quantize}, what {@code llama-quantize} runs), imported:
     * every weight equals ggml's own dequantisation of the file's bytes, bit for bit (the import read with --dtype
     * f32), and Ropeway's logits from the imported checkpoint are within llama.cpp's activation rounding of its logits
     * from the quantised file (llama.cpp rounds activations to 8 bits in quantised products), far closer than the
     * unquantised model's for the 2- to 5-bit types. The model's rows are whole k-quant blocks of 256, so every type
     * applies to every matrix.
     */
    @TestFactory
    Stream<DynamicTest> importedQuantisedFilesHoldLlamaCppsWeights() throws IOException {
        LlamaCppNative llama = LlamaCppNative.load();
        assumeTrue(llama != null, "llama.cpp's libraries are not installed");
        Map<String, Object> wide = CheckpointWriter.llamaConfig(vocab, 256, 512, 2, 4, 2, 64, CONTEXT,
                new DefaultRope(10000, 64), false);
        Path model = models.checkpoint(tmp.resolve("quantised"), wide, 35, 0.06);
        RopeScaling rope = Transformer.loadConfig(model).rope();
        Path f32 = tmp.resolve("quantised-f32.gguf");
        GgufExport.write(model, f32, new GgufExport.Options(rope, CONTEXT, GgufExport.Dtype.F32, "test"));
        int[] ids = models.promptIds(60, 9);
        float[][] exact = ropewayLogits(model, rope, ids);
        double scale = GgufTestModels.maxAbs(exact);
        // llama_ftype ids and the type each puts on most matrices.
        Object[][] types = {{"Q4_0", 2}, {"Q4_1", 3}, {"Q5_0", 8}, {"Q5_1", 9}, {"Q8_0", 7}, {"Q2_K", 10},
                {"Q3_K", 12}, {"Q4_K", 15}, {"Q5_K", 17}, {"Q6_K", 18}, {"IQ4_NL", 25}, {"IQ4_XS", 30},
                {"IQ3_S", 26}, {"TQ1_0", 36}, {"TQ2_0", 37}};
        return Arrays.stream(types).map(t -> DynamicTest.dynamicTest((String) t[0], () -> {
            String type = (String) t[0];
            Path quantised = tmp.resolve("quantised-" + type + ".gguf");
            llama.quantizeModel(f32, quantised, (Integer) t[1]);
            GgufImport.Result r = GgufImport.write(quantised, tmp.resolve("quantised-" + type),
                    new GgufImport.Options(dev.ropeway.tensor.DType.F32, true));
            assertTrue(r.sourceTypes().containsKey(type), "llama.cpp wrote " + type + " tensors: " + r.sourceTypes());
            try (GgufFile g = GgufFile.open(quantised); WeightStore store = WeightStore.open(r.dir())) {
                for (GgufFile.Tensor x : g.tensors().values()) {
                    float[] theirs = llama.dequantize(x.type().id(), g.data(x.name()).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE),
                            (int) x.elements());
                    float[] ours = ggufOrder(store, x.name());
                    assertArrayEquals(theirs, ours, type + " " + x.type() + " " + x.name());
                }
            }
            float[][] theirs = peerLogits(quantised, ids);
            float[][] ours = ropewayLogits(r.dir(), Transformer.loadConfig(r.dir()).rope(), ids);
            double imported = GgufTestModels.maxDifference(ours, theirs), original = GgufTestModels.maxDifference(exact, theirs);
            String seen = type + " " + r.sourceTypes() + ": imported " + imported + ", unquantised " + original + " of logits up to " + scale;
            System.out.println("llama.cpp on " + seen);
            assertTrue(imported < 0.06 * scale, seen);
            if (!type.equals("Q8_0") && !type.equals("Q6_K")) assertTrue(imported < 0.25 * original, seen);
            GgmlType main = GgmlType.valueOf(type);
            if (GgufImport.KEPT.contains(main)) {
                // Kept as blocks (rows of 256 and 512 values: every type as it is), the matrices read back as the f32
                // import's values, and the CPU computes its logits.
                GgufImport.Result k = GgufImport.write(quantised, tmp.resolve("quantised-kept-" + type),
                        new GgufImport.Options(null, true, true));
                try (WeightStore kept = WeightStore.open(k.dir()); WeightStore floats = WeightStore.open(r.dir())) {
                    assertEquals(dev.ropeway.tensor.DType.valueOf(type), kept.info("model.layers.0.mlp.up_proj.weight").dtype());
                    for (String name : kept.names()) assertArrayEquals(floats.readFloats(name), kept.readFloats(name), name);
                }
                float[][] fromBlocks = ropewayLogits(k.dir(), Transformer.loadConfig(k.dir()).rope(), ids);
                for (int i = 0; i < ours.length; i++) assertArrayEquals(ours[i], fromBlocks[i], type + " kept, position " + i);
            }
        }));
    }

    /**
     * Rows that are not whole 256s of values (a hidden size of 64): llama.cpp's Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL
     * matrices keep their blocks, hold the f32 import's values, and give its logits bit for bit.
     */
    @Test
    void smallBlocksInShorterRowsAreKept() throws IOException {
        LlamaCppNative llama = LlamaCppNative.load();
        assumeTrue(llama != null, "llama.cpp's libraries are not installed");
        Path model = models.checkpoint(tmp.resolve("short-rows"), models.llamaConfig(false), 37);
        RopeScaling rope = Transformer.loadConfig(model).rope();
        Path f32 = tmp.resolve("short-rows-f32.gguf");
        GgufExport.write(model, f32, new GgufExport.Options(rope, CONTEXT, GgufExport.Dtype.F32, "test"));
        int[] ids = models.promptIds(40, 11);
        Object[][] types = {{"Q4_0", 2}, {"Q4_1", 3}, {"Q5_0", 8}, {"Q5_1", 9}, {"IQ4_NL", 25}};
        for (Object[] t : types) {
            Path quantised = tmp.resolve("short-rows-" + t[0] + ".gguf");
            llama.quantizeModel(f32, quantised, (Integer) t[1]);
            GgufImport.Result floats = GgufImport.write(quantised, tmp.resolve("short-rows-f32-" + t[0]),
                    new GgufImport.Options(dev.ropeway.tensor.DType.F32, true));
            GgufImport.Result kept = GgufImport.write(quantised, tmp.resolve("short-rows-kept-" + t[0]),
                    new GgufImport.Options(null, true, true));
            assertTrue(kept.sourceTypes().containsKey((String) t[0]), t[0] + ": " + kept.sourceTypes());
            try (WeightStore k = WeightStore.open(kept.dir()); WeightStore f = WeightStore.open(floats.dir())) {
                dev.ropeway.io.TensorInfo up = k.info("model.layers.0.mlp.up_proj.weight");
                assertEquals(t[0], up.dtype().name());
                assertNotEquals(0, up.shape()[1] % 256, "the test wants rows that are not whole 256s");
                for (String name : k.names()) assertArrayEquals(f.readFloats(name), k.readFloats(name), t[0] + " " + name);
            }
            float[][] want = ropewayLogits(floats.dir(), rope, ids), got = ropewayLogits(kept.dir(), rope, ids);
            for (int i = 0; i < want.length; i++) assertArrayEquals(want[i], got[i], t[0] + " position " + i);
        }
    }

    /** An imported tensor back in the file's order: Q and K rows interleaved again (llama architecture). */
    private static float[] ggufOrder(WeightStore store, String gguf) {
        if (gguf.equals("token_embd.weight")) return store.readFloats("model.embed_tokens.weight");
        if (gguf.equals("output.weight")) return store.readFloats("lm_head.weight");
        if (gguf.equals("output_norm.weight")) return store.readFloats("model.norm.weight");
        String[] parts = gguf.split("\\.");
        String p = "model.layers." + parts[1] + ".";
        return switch (parts[2]) {
            case "attn_norm" -> store.readFloats(p + "input_layernorm.weight");
            case "ffn_norm" -> store.readFloats(p + "post_attention_layernorm.weight");
            case "attn_q" -> GgufExport.interleaveRotaryRows(store.readFloats(p + "self_attn.q_proj.weight"), 4, 64, 256);
            case "attn_k" -> GgufExport.interleaveRotaryRows(store.readFloats(p + "self_attn.k_proj.weight"), 2, 64, 256);
            case "attn_v" -> store.readFloats(p + "self_attn.v_proj.weight");
            case "attn_output" -> store.readFloats(p + "self_attn.o_proj.weight");
            case "ffn_gate" -> store.readFloats(p + "mlp.gate_proj.weight");
            case "ffn_up" -> store.readFloats(p + "mlp.up_proj.weight");
            case "ffn_down" -> store.readFloats(p + "mlp.down_proj.weight");
            default -> throw new AssertionError("unexpected tensor " + gguf);
        };
    }

    /**
     * llama.cpp's own phi3 architecture (fused projections, LongRoPE factor tensors) computes Ropeway's logits, so the
     * layout {@link GgufImport} reads phi3 files with is llama.cpp's; and the import computes the same.
     */
    @Test
    void llamaCppsPhi3LayoutIsTheOneImportReads() throws IOException {
        int[] ids = models.promptIds(100, 10);
        int seen = 0;
        for (GgufTestModels.Case k : models.cases()) {
            if (!k.name().startsWith("phi3")) continue;
            Path gguf = GgufTestModels.phi3Gguf(k.model(), tmp.resolve(k.name().replaceAll("[^A-Za-z0-9]+", "-") + "-phi3.gguf"));
            float[][] theirs = peerLogits(gguf, ids);
            float[][] ours = ropewayLogits(k.model(), k.resolvedRope(), ids);
            double worst = GgufTestModels.maxDifference(ours, theirs), scale = GgufTestModels.maxAbs(ours);
            assertTrue(worst <= 5e-5 * scale, k.name() + ": llama.cpp's phi3 differs by " + worst + " of " + scale);
            Path imported = GgufImport.write(gguf, tmp.resolve(gguf.getFileName() + "-imported"), new GgufImport.Options(null, true)).dir();
            assertTrue(GgufTestModels.maxDifference(ropewayLogits(imported, Transformer.loadConfig(imported).rope(), ids), theirs)
                    <= 5e-5 * scale, k.name() + " imported");
            seen++;
        }
        assertEquals(2, seen, "short and LongRoPE Phi-3 cases");
    }

    /** llama.cpp loads the split files the import reads (its gguf-split layout) and computes the whole file's logits. */
    @Test
    void llamaCppReadsTheSplitLayoutImportReads() throws IOException {
        Path model = models.checkpoint(tmp.resolve("split"), models.llamaConfig(false), 37);
        Path whole = tmp.resolve("split-whole.gguf");
        GgufExport.write(model, whole, new GgufExport.Options(Transformer.loadConfig(model).rope(), CONTEXT,
                GgufExport.Dtype.F32, "test"));
        Path first = GgufTestModels.split(whole, Files.createDirectories(tmp.resolve("split-parts")), "m", 3);
        int[] ids = models.promptIds(40, 11);
        assertEquals(0, GgufTestModels.maxDifference(peerLogits(whole, ids), peerLogits(first, ids)));
    }

    /**
     * Every byte-level pre-tokenizer the import knows, by the name llama.cpp gives it: the imported tokenizer.json cuts a
     * text with digits, capitals inside words, contractions, punctuation runs, slashes, tabs, newlines, other scripts,
     * full-width punctuation and letterlike symbols
     * into the words llama.cpp cuts it into, so the ids are llama.cpp's (each family's rules differ on that text from the
     * others', which the last assertion checks).
     */
    @TestFactory
    Stream<DynamicTest> importedPreTokenizersGiveLlamaCppsIds() throws IOException {
        String text = GgufTestModels.SAMPLE + "CamelCase HTTPServer iPhone McDonald's I'M WE'LL they'Re 12345678 a/b//c \uD55C\uAD6D\uC5B4\n"
                + " caf\u00E9\u03BC\u03AD\u03B3\u03B1 \u2126hm \uFF21\uFF22\uFF01\u3002 caf\u00E9\u2019s  trailing\t \n\n\r\n x";
        // A vocabulary trained on the text itself (GPT-2's rules), so that its merges cross the boundaries where the
        // other rules cut: without them, different cuts could still give the same ids.
        List<String> docs = new ArrayList<>();
        for (int i = 0; i < 20; i++) docs.add(text.repeat(1 + i % 3));
        dev.ropeway.io.bpe.BpeModel bpe = BpeTrainer.train(docs, new BpeTrainer.Options(600, 2, 1), BpeTrainer.Progress.NONE).model();
        Map<String, Object> config = models.llamaConfig(false);
        config.put("vocab_size", bpe.vocabSize());
        Path model = models.checkpoint(tmp.resolve("pre"), config, 37);
        dev.ropeway.train.tokenizer.TokenizerFiles.write(model, bpe, CONTEXT);
        Path source = tmp.resolve("pre-source.gguf");
        GgufExport.write(model, source, new GgufExport.Options(Transformer.loadConfig(model).rope(), CONTEXT,
                GgufExport.Dtype.F16, "test"));
        Path file = tmp.resolve("pre-text.txt");
        Files.writeString(file, text);
        Map<String, int[]> seen = new java.util.concurrent.ConcurrentHashMap<>();
        List<String> names = List.of("gpt-2", "smollm", "llama-bpe", "dbrx", "qwen2", "tekken", "gpt-4o", "deepseek-coder",
                "deepseek-llm");
        return names.stream().map(pre -> DynamicTest.dynamicTest(pre, () -> {
            Path gguf = tmp.resolve("pre-" + pre + ".gguf");
            GgufTestModels.rewrite(source, gguf, Map.of("tokenizer.ggml.pre", dev.ropeway.io.GgufValue.string(pre)), java.util.Set.of());
            int[] theirs = ints(peer("tokenize", "--model", gguf.toString(), "--text-file", file.toString()).get("ids"));
            GgufImport.Result r = GgufImport.write(gguf, tmp.resolve("pre-" + pre), new GgufImport.Options(null, true));
            try (Tokenizer tok = Tokenizers.open(r.dir())) {
                int[] ours = tok.encode(text, false);
                assertTrue(ours.length > 100, "a text of some length (" + ours.length + " tokens)");
                assertArrayEquals(theirs, ours, pre);
            }
            // DBRX's rules are Llama 3's without skipping merges for known words, which may well give the same ids.
            if (!pre.equals("dbrx")) seen.put(pre, theirs);
            if (seen.size() == names.size() - 1)
                assertEquals(seen.size(), seen.values().stream().map(Arrays::toString).distinct().count(),
                        "each pre-tokenizer cuts the text its own way");
        }));
    }

    /** llama.cpp's SentencePiece tokenizer, from a "llama" vocabulary in the file, gives the imported tokenizer's ids. */
    @Test
    void anImportedSentencePieceTokenizerGivesLlamaCppsIds() throws Exception {
        Path model = models.checkpoint(tmp.resolve("spm"), models.llamaConfig(false), 36);
        Path source = tmp.resolve("spm-source.gguf");
        GgufExport.write(model, source, new GgufExport.Options(Transformer.loadConfig(model).rope(), CONTEXT,
                GgufExport.Dtype.F16, "test"));
        GgufTestModels.SentencePieceVocab spm = GgufTestModels.SentencePieceVocab.learn(GgufTestModels.SAMPLE, 120, vocab,
                "\u767d\u9be8\uD83D\uDC0B");
        Path gguf = tmp.resolve("spm.gguf");
        GgufTestModels.rewrite(source, gguf, spm.metadata(), java.util.Set.of("tokenizer.ggml.merges", "tokenizer.ggml.pre"));
        GgufImport.Result r = GgufImport.write(gguf, tmp.resolve("spm-imported"), new GgufImport.Options(null, true));
        String text = GgufTestModels.SAMPLE + " and  again:\n" + GgufTestModels.SAMPLE.toLowerCase(java.util.Locale.ROOT);
        Path file = tmp.resolve("spm-text.txt");
        Files.writeString(file, text);
        int[] theirs = ints(peer("tokenize", "--model", gguf.toString(), "--text-file", file.toString()).get("ids"));
        try (Tokenizer tok = Tokenizers.open(r.dir())) {
            int[] ours = tok.encode(text, false);
            assertTrue(ours.length > 100, "a text of some length (" + ours.length + " tokens)");
            assertArrayEquals(theirs, ours);
        }
        assertArrayEquals(theirs, Arrays.copyOfRange(spm.encode(text, true), 1, theirs.length + 1), "SentencePiece's own segmentation");

        // And back: the imported checkpoint exported as GGUF (a 'llama' tokenizer with scores from the merges' ranks)
        // tokenizes in llama.cpp as Ropeway does, for both forms transformers writes such a tokenizer.json in.
        Path prepend = tmp.resolve("spm-exported.gguf");
        GgufExport.write(r.dir(), prepend, new GgufExport.Options(Transformer.loadConfig(r.dir()).rope(), CONTEXT,
                GgufExport.Dtype.F16, "test"));
        assertArrayEquals(theirs, ints(peer("tokenize", "--model", prepend.toString(), "--text-file", file.toString()).get("ids")));
        Path metaspace = GgufTestModels.metaspaceCopy(r.dir(), tmp.resolve("spm-metaspace"));
        Path exported = tmp.resolve("spm-metaspace.gguf");
        GgufExport.write(metaspace, exported, new GgufExport.Options(Transformer.loadConfig(metaspace).rope(), CONTEXT,
                GgufExport.Dtype.F16, "test"));
        try (Tokenizer tok = Tokenizers.open(metaspace)) {
            assertArrayEquals(tok.encode(text, false),
                    ints(peer("tokenize", "--model", exported.toString(), "--text-file", file.toString()).get("ids")));
            assertArrayEquals(theirs, tok.encode(text, false));
        }
    }

    // ---- helpers ----

    static float[][] ropewayLogits(Path model, RopeScaling rope, int[] ids) {
        return GgufTestModels.logits(backend, model, rope, ids);
    }


    static float[][] peerLogits(Path gguf, int[] ids) throws IOException {
        Path idsFile = Files.createTempFile(tmp, "ids", ".json");
        Files.writeString(idsFile, Arrays.toString(ids));
        Map<String, Object> out = peer("logits", "--model", gguf.toString(), "--ids", "@" + idsFile);
        List<?> rows = (List<?>) out.get("logits");
        assertEquals(ids.length, rows.size(), "a row of logits per token");
        float[][] logits = new float[rows.size()][];
        for (int i = 0; i < logits.length; i++) {
            List<?> row = (List<?>) rows.get(i);
            logits[i] = new float[row.size()];
            for (int j = 0; j < row.size(); j++) logits[i][j] = ((Number) row.get(j)).floatValue();
        }
        return logits;
    }

    private static Map<String, Object> peer(String... args) throws IOException {
        List<String> command = new ArrayList<>(List.of(PEER.toString()));
        command.addAll(List.of(args));
        Path out = Files.createTempFile(tmp, "peer", ".json"), err = Files.createTempFile(tmp, "peer", ".err");
        try {
            Process p = new ProcessBuilder(command).redirectOutput(out.toFile()).redirectError(err.toFile()).start();
            if (!p.waitFor(120, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new AssertionError("llama-cpp-peer " + args[0] + " did not finish in 120 s");
            }
            if (p.exitValue() != 0)
                throw new AssertionError("llama-cpp-peer " + String.join(" ", args) + " failed: " + Files.readString(err));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
        return Json.readObject(out);
    }

    private static int[] ints(Object list) {
        return ((List<?>) list).stream().mapToInt(x -> ((Number) x).intValue()).toArray();
    }


}
