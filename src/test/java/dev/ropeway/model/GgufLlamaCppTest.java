package dev.ropeway.model;

import dev.ropeway.io.Json;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.Tokenizers;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.tensor.CpuBackend;
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
