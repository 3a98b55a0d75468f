package dev.ropeway.model;

import dev.ropeway.io.Json;
import dev.ropeway.io.SafeTensorsWriter;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.Tokenizers;
import dev.ropeway.io.WeightStore;
import dev.ropeway.io.bpe.BpeModel;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.testutil.Phi3Checkpoints;
import dev.ropeway.train.tokenizer.BpeTrainer;
import dev.ropeway.train.tokenizer.TokenizerFiles;
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
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
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
    private static final int HIDDEN = 64, FFN = 96, LAYERS = 2, HEADS = 4, KV_HEADS = 2, HEAD_DIM = 16, CONTEXT = 128;
    private static final Path PEER = Path.of("bin/llama-cpp-peer").toAbsolutePath();

    @TempDir
    static Path tmp;
    static CpuBackend backend;
    static Path tokenizer;
    static int vocab;

    @BeforeAll
    static void setUp() throws Exception {
        assumeTrue(installed(), "llama.cpp is not installed for the tests (bin/llama-cpp-peer install)");
        backend = new CpuBackend();
        tokenizer = tmp.resolve("tokenizer");
        vocab = writeTokenizer(tokenizer).vocabSize();
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

    /** Text with what pre-tokenisers split differently: digits, contractions, runs of spaces, newlines, accents, CJK. */
    static final String SAMPLE = """
            Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse,
            I thought I'd sail about a little and see the watery part of the world. It's 1851; the Pequod's crew
              numbers 30 (or 31?) men --   "whale-ships" ain't cheap: $4,000.50 each!\t\tTabs,\r\nCRLF and   spaces.
            Café, naïve, façade; Ахав; 白鯨; emoji 🐋🐋 and mixed123numbers 1234567 x.y.z ... ok?!
            """;

    private static BpeModel writeTokenizer(Path dir) {
        List<String> docs = new ArrayList<>();
        for (int i = 0; i < 20; i++) docs.add(SAMPLE.repeat(1 + i % 3));
        BpeModel model = BpeTrainer.train(docs, new BpeTrainer.Options(600, 2, 1), BpeTrainer.Progress.NONE).model();
        TokenizerFiles.write(dir, model, CONTEXT);
        return model;
    }

    /**
     * A random checkpoint of {@code config} whose weights make every part of the model count: matrices of standard
     * deviation 0.3 (scores and logits of order one and more, so a wrong rotation shows), norm weights around 1 and
     * every bias the architecture has; with the test tokenizer.
     */
    static Path checkpoint(Path dir, Map<String, Object> config, long seed) throws IOException {
        ModelConfig c = ModelConfig.parse(config, "test config");
        Path plain = dir.resolveSibling(dir.getFileName() + "-plain");
        CheckpointWriter.writeRandom(plain, config, seed);
        SafeTensorsWriter w = new SafeTensorsWriter();
        Random r = new Random(seed + 1);
        try (WeightStore store = WeightStore.open(plain)) {
            for (String name : store.names()) {
                float[] x = store.readFloats(name);
                boolean norm = store.info(name).shape().length == 1;
                for (int i = 0; i < x.length; i++) x[i] = norm ? (float) (1 + 0.3 * r.nextGaussian()) : 15 * x[i];
                w.add(name, x, store.info(name).shape());
            }
        }
        for (int i = 0; i < c.numLayers(); i++) {
            String a = "model.layers." + i + ".self_attn.";
            if (c.qkvBias()) {
                w.add(a + "q_proj.bias", gaussian(r, c.qDim(), 0.5), c.qDim());
                w.add(a + "k_proj.bias", gaussian(r, c.kvDim(), 0.5), c.kvDim());
                w.add(a + "v_proj.bias", gaussian(r, c.kvDim(), 0.5), c.kvDim());
            }
            if (c.outputBias()) w.add(a + "o_proj.bias", gaussian(r, c.hiddenSize(), 0.5), c.hiddenSize());
            if (c.qkNorm()) {
                w.add(a + "q_norm.weight", around1(r, c.headDim()), c.headDim());
                w.add(a + "k_norm.weight", around1(r, c.headDim()), c.headDim());
            }
        }
        Files.createDirectories(dir);
        w.write(dir.resolve("model.safetensors"));
        Json.writeAtomic(dir.resolve("config.json"), config);
        for (String f : List.of(TokenizerFiles.TOKENIZER_JSON, TokenizerFiles.TOKENIZER_CONFIG))
            Files.copy(tokenizer.resolve(f), dir.resolve(f));
        return dir;
    }

    private static float[] gaussian(Random r, int n, double std) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float) (std * r.nextGaussian());
        return x;
    }

    private static float[] around1(Random r, int n) {
        float[] x = gaussian(r, n, 0.3);
        for (int i = 0; i < n; i++) x[i] += 1;
        return x;
    }

    static Map<String, Object> llamaConfig(boolean tied) {
        return CheckpointWriter.llamaConfig(vocab, HIDDEN, FFN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, CONTEXT,
                new DefaultRope(10000, HEAD_DIM), tied);
    }

    /** One export: a checkpoint, the RoPE spec written into the file (null: the checkpoint's own) and the GGUF type. */
    record Case(String name, Path model, String rope, GgufExport.Dtype dtype) {
        RopeScaling resolvedRope() {
            ModelConfig c = Transformer.loadConfig(model);
            return rope == null ? c.rope() : c.ropeOrSpec(rope);
        }
    }

    private static List<Case> cases() throws IOException {
        List<Case> cases = new ArrayList<>();
        Path llama = checkpoint(tmp.resolve("llama"), llamaConfig(false), 21);
        cases.add(new Case("llama", llama, null, GgufExport.Dtype.F32));
        cases.add(new Case("llama, linear x4", llama, "linear:factor=4", GgufExport.Dtype.F32));
        cases.add(new Case("llama, static NTK x4", llama, "ntk:factor=4", GgufExport.Dtype.F32));
        // From 1024 positions YaRN's ramp spans pairs 1 to 5 of the 8: interpolated, blended and kept pairs.
        cases.add(new Case("llama, YaRN x4 from 1024", llama, "yarn:factor=4,original_max_position_embeddings=1024",
                GgufExport.Dtype.F32));
        cases.add(new Case("llama, YaRN x4 from 1024, attention factor 1.3", llama,
                "yarn:factor=4,original_max_position_embeddings=1024,attention_factor=1.3", GgufExport.Dtype.F32));
        cases.add(new Case("llama, Llama 3 x8 from 32", llama,
                "llama3:factor=8,low_freq_factor=1,high_freq_factor=4,original_max_position_embeddings=32", GgufExport.Dtype.F32));
        String longRope = "longrope:short_factor=1;1.2;1.5;2;3;4;6;8,long_factor=1;1.5;2;4;6;9;12;16,"
                + "original_max_position_embeddings=32,factor=4";
        cases.add(new Case("llama, LongRoPE from 32 (long factors)", llama, longRope, GgufExport.Dtype.F32));
        cases.add(new Case("llama, theta 500000", llama, "default:rope_theta=500000", GgufExport.Dtype.F32));
        cases.add(new Case("llama tied", checkpoint(tmp.resolve("tied"), llamaConfig(true), 22), null, GgufExport.Dtype.F32));

        Map<String, Object> biased = llamaConfig(false);
        biased.put("attention_bias", true);
        cases.add(new Case("llama with attention biases", checkpoint(tmp.resolve("biased"), biased, 23), null, GgufExport.Dtype.F32));

        Map<String, Object> wideHeads = CheckpointWriter.llamaConfig(vocab, HIDDEN, FFN, LAYERS, HEADS, KV_HEADS, 24,
                CONTEXT, new DefaultRope(10000, 24), false);
        cases.add(new Case("llama, head_dim 24 beside hidden 64", checkpoint(tmp.resolve("heads"), wideHeads, 24), null,
                GgufExport.Dtype.F32));

        Map<String, Object> mistral = llamaConfig(false);
        mistral.put("architectures", List.of("MistralForCausalLM"));
        mistral.put("model_type", "mistral");
        mistral.put("sliding_window", 4096);
        cases.add(new Case("mistral", checkpoint(tmp.resolve("mistral"), mistral, 25), null, GgufExport.Dtype.F32));

        Map<String, Object> qwen2 = CheckpointWriter.llamaConfig(vocab, HIDDEN, FFN, LAYERS, HEADS, KV_HEADS, HEAD_DIM,
                CONTEXT, new DefaultRope(1e6, HEAD_DIM), false);
        qwen2.put("architectures", List.of("Qwen2ForCausalLM"));
        qwen2.put("model_type", "qwen2");
        Path qwen2Dir = checkpoint(tmp.resolve("qwen2"), qwen2, 26);
        cases.add(new Case("qwen2 (biases)", qwen2Dir, null, GgufExport.Dtype.F32));
        cases.add(new Case("qwen2, YaRN x4 from 1024", qwen2Dir, "yarn:factor=4,original_max_position_embeddings=1024",
                GgufExport.Dtype.F32));

        Map<String, Object> qwen3 = llamaConfig(false);
        qwen3.put("architectures", List.of("Qwen3ForCausalLM"));
        qwen3.put("model_type", "qwen3");
        qwen3.put("rms_norm_eps", 1e-6);
        Path qwen3Dir = checkpoint(tmp.resolve("qwen3"), qwen3, 27);
        cases.add(new Case("qwen3 (query and key norms)", qwen3Dir, null, GgufExport.Dtype.F32));
        cases.add(new Case("qwen3, YaRN x4 from 1024", qwen3Dir, "yarn:factor=4,original_max_position_embeddings=1024",
                GgufExport.Dtype.F32));

        Path phi3 = Phi3Checkpoints.write(checkpoint(tmp.resolve("phi3-llama"), llamaConfig(false), 28), tmp.resolve("phi3"));
        cases.add(new Case("phi3 (stacked projections)", phi3, null, GgufExport.Dtype.F32));
        // Phi-3's 128k form: LongRoPE from its config, original context at the top level.
        Map<String, Object> longLlama = CheckpointWriter.withRope(llamaConfig(false),
                Transformer.loadConfig(llama).ropeOrSpec(longRope), CONTEXT);
        Path phi3Long = Phi3Checkpoints.write(checkpoint(tmp.resolve("phi3-long-llama"), longLlama, 29), tmp.resolve("phi3-long"));
        cases.add(new Case("phi3, LongRoPE from its config", phi3Long, null, GgufExport.Dtype.F32));
        return cases;
    }

    @TestFactory
    Stream<DynamicTest> llamaCppComputesRopewaysLogitsFromEveryExport() throws IOException {
        int[] ids = promptIds(100, 5);
        return cases().stream().map(k -> DynamicTest.dynamicTest(k.name(), () -> {
            RopeScaling rope = k.resolvedRope();
            Path gguf = tmp.resolve(k.name().replaceAll("[^A-Za-z0-9]+", "-") + ".gguf");
            GgufExport.write(k.model(), gguf, new GgufExport.Options(rope, CONTEXT, k.dtype(), "test"));
            float[][] theirs = peerLogits(gguf, ids);
            float[][] ours = ropewayLogits(k.model(), rope, ids);
            double worst = maxDifference(ours, theirs), scale = maxAbs(ours);
            assertTrue(scale > 1, "logits of order one (" + scale + ")");
            assertTrue(worst <= 5e-5 * scale, k.name() + ": llama.cpp differs by " + worst + " of logits up to " + scale);
        }));
    }

    /** The comparison sees RoPE: Ropeway's logits under another method differ from llama.cpp's by far more. */
    @Test
    void aWrongRopeMethodIsSeen() throws IOException {
        Path model = checkpoint(tmp.resolve("wrong"), llamaConfig(false), 31);
        ModelConfig c = Transformer.loadConfig(model);
        RopeScaling yarn = c.ropeOrSpec("yarn:factor=4,original_max_position_embeddings=32");
        Path gguf = tmp.resolve("wrong.gguf");
        GgufExport.write(model, gguf, new GgufExport.Options(yarn, CONTEXT, GgufExport.Dtype.F32, "test"));
        int[] ids = promptIds(100, 6);
        float[][] theirs = peerLogits(gguf, ids);
        double right = maxDifference(ropewayLogits(model, yarn, ids), theirs);
        double wrong = maxDifference(ropewayLogits(model, c.ropeOrSpec("linear:factor=4"), ids), theirs);
        assertTrue(wrong > 1000 * right && wrong > 0.05, "YaRN " + right + ", PI " + wrong);
    }

    /**
     * Narrow types: llama.cpp on f16 and q8_0 weights (q8_0 products also round the activations to 8 bits) stays
     * within their rounding of Ropeway's float32 logits, q8_0 further than f16, and picks the same most likely token.
     */
    @Test
    void f16AndQ8_0ExportsStayWithinTheirRounding() throws IOException {
        Path model = checkpoint(tmp.resolve("narrow"), llamaConfig(false), 32);
        RopeScaling rope = Transformer.loadConfig(model).rope();
        int[] ids = promptIds(60, 7);
        float[][] ours = ropewayLogits(model, rope, ids);
        double scale = maxAbs(ours);
        double[] worst = new double[2], rms = new double[2];
        int[] sameTop = new int[2];
        GgufExport.Dtype[] types = {GgufExport.Dtype.F16, GgufExport.Dtype.Q8_0};
        for (int t = 0; t < 2; t++) {
            Path gguf = tmp.resolve("narrow-" + types[t] + ".gguf");
            GgufExport.write(model, gguf, new GgufExport.Options(rope, CONTEXT, types[t], "test"));
            float[][] theirs = peerLogits(gguf, ids);
            worst[t] = maxDifference(ours, theirs);
            double sum = 0, n = 0;
            for (int i = 0; i < ids.length; i++) {
                if (argmax(ours[i]) == argmax(theirs[i])) sameTop[t]++;
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
        Path model = checkpoint(tmp.resolve("greedy"), llamaConfig(false), 33);
        RopeScaling rope = Transformer.loadConfig(model).ropeOrSpec("yarn:factor=4,original_max_position_embeddings=32");
        Path gguf = tmp.resolve("greedy.gguf");
        GgufExport.write(model, gguf, new GgufExport.Options(rope, CONTEXT, GgufExport.Dtype.F32, "test"));
        int[] prompt = promptIds(40, 8);
        int n = 24;
        int[] ours = new int[n];
        int[] seq = prompt;
        for (int k = 0; k < n; k++) {
            float[][] logits = ropewayLogits(model, rope, seq);
            ours[k] = argmax(logits[logits.length - 1]);
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
        Path model = checkpoint(tmp.resolve("tok"), llamaConfig(false), 34);
        Path gguf = tmp.resolve("tok.gguf");
        GgufExport.write(model, gguf, new GgufExport.Options(Transformer.loadConfig(model).rope(), CONTEXT,
                GgufExport.Dtype.F16, "test"));
        String text = SAMPLE + SAMPLE.toUpperCase(java.util.Locale.ROOT) + "  leading and trailing  \n\n\n" + "9".repeat(17);
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

    // ---- helpers ----

    /** BOS, then random ids from the whole vocabulary but its special tokens. */
    private static int[] promptIds(int n, long seed) {
        Random r = new Random(seed);
        int[] ids = new int[n];
        ids[0] = BpeTrainer.BOS;
        for (int i = 1; i < n; i++) ids[i] = BpeTrainer.FIRST_BYTE + r.nextInt(vocab - BpeTrainer.FIRST_BYTE);
        return ids;
    }

    static float[][] ropewayLogits(Path model, RopeScaling rope, int[] ids) {
        try (Transformer t = Transformer.load(backend, model)) {
            float[] flat = new Scorer(t).score(TokenBatch.of(new int[][]{ids}), rope, true).logits();
            int v = flat.length / ids.length;
            float[][] rows = new float[ids.length][];
            for (int i = 0; i < ids.length; i++) rows[i] = Arrays.copyOfRange(flat, i * v, (i + 1) * v);
            return rows;
        }
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

    private static int argmax(float[] x) {
        int best = 0;
        for (int i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    private static double maxDifference(float[][] a, float[][] b) {
        assertEquals(a.length, b.length, "rows");
        double worst = 0;
        for (int i = 0; i < a.length; i++) {
            assertEquals(a[i].length, b[i].length, "row " + i + " length");
            for (int j = 0; j < a[i].length; j++) worst = Math.max(worst, Math.abs(a[i][j] - b[i][j]));
        }
        return worst;
    }

    private static double maxAbs(float[][] a) {
        double m = 0;
        for (float[] row : a) for (float x : row) m = Math.max(m, Math.abs(x));
        return m;
    }
}
