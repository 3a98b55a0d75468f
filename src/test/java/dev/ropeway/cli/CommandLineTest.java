package dev.ropeway.cli;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ropeway.io.Json;
import dev.ropeway.io.SafeTensors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The commands end to end on the fixtures, including the errors a user sees for bad input. */
class CommandLineTest {
    static final Path FIXTURES = Path.of("../shared/fixtures");

    @TempDir
    Path tmp;

    private Path idsFile(Path fixture) throws IOException {
        Map<String, Object> ref = Json.readObject(fixture.resolve("reference.json"));
        Path ids = tmp.resolve(fixture.getFileName() + "-ids.json");
        Files.writeString(ids, Json.mapper().writeValueAsString(ref.get("input_ids")));
        return ids;
    }

    private static double refLoss(Path fixture) {
        return ((Number) Json.readObject(fixture.resolve("reference.json")).get("loss")).doubleValue();
    }

    private Path copyFixture(String name) throws IOException {
        Path dst = tmp.resolve(name);
        Files.createDirectories(dst);
        for (String f : List.of("config.json", "model.safetensors"))
            Files.copy(FIXTURES.resolve(name).resolve(f), dst.resolve(f), StandardCopyOption.REPLACE_EXISTING);
        return dst;
    }

    /**
     * {@code --cpu-weights bf16} holds float32 matrices as bfloat16: the loss is exactly that of the same checkpoint
     * converted to bf16 (its norms are ones, so only the matrices change), not the float32 one; a misspelt value is
     * refused by name.
     */
    @Test
    void cpuWeightsBf16RoundsTheMatricesAsTheyLoad() throws IOException {
        Path f32 = tmp.resolve("f32"), bf16 = tmp.resolve("bf16");
        dev.ropeway.model.CheckpointWriter.writeRandom(f32, dev.ropeway.model.CheckpointWriter.llamaConfig(256, 64, 128, 2,
                4, 2, 16, 128, new dev.ropeway.rope.DefaultRope(10000, 16), false), 5);
        dev.ropeway.model.CheckpointWriter.convertWeights(f32, bf16, dev.ropeway.tensor.DType.BF16);
        Files.copy(f32.resolve("config.json"), bf16.resolve("config.json"));
        java.util.Random rnd = new java.util.Random(3);
        int[][] seqs = new int[2][60];
        for (int[] seq : seqs) for (int i = 0; i < seq.length; i++) seq[i] = rnd.nextInt(256);
        Path ids = tmp.resolve("ids.json");
        Files.writeString(ids, Json.mapper().writeValueAsString(seqs));
        double exact = loss(f32, ids, "auto"), rounded = loss(f32, ids, "bf16"), converted = loss(bf16, ids, "auto");
        assertEquals(converted, rounded, 0.0);
        assertTrue(exact != rounded, "bf16 matrices change the loss");
        assertEquals(exact, rounded, 1e-2);
        assertEquals(converted, loss(bf16, ids, "bf16"), 0.0, "bf16 matrices are kept as they are");
        var bad = CliRunner.run("score", "--model", f32.toString(), "--ids", ids.toString(), "--cpu-weights", "f8");
        assertEquals(1, bad.exitCode());
        assertTrue(bad.err().contains("unknown --cpu-weights 'f8' (auto, f32, bf16, q8_0)"), bad.err());
    }

    /**
     * An f16 checkpoint's matrices stay float16 on the CPU by default, and widen exactly as they are read: the loss is
     * that of {@code --cpu-weights f32}, which widens them at load; bf16 rounds them and moves it.
     */
    @Test
    void cpuWeightsKeepF16MatricesExactly() throws IOException {
        Path f32 = tmp.resolve("f32-for-f16"), f16 = tmp.resolve("f16");
        dev.ropeway.model.CheckpointWriter.writeRandom(f32, dev.ropeway.model.CheckpointWriter.llamaConfig(256, 64, 128, 2,
                4, 2, 16, 128, new dev.ropeway.rope.DefaultRope(10000, 16), false), 6);
        dev.ropeway.model.CheckpointWriter.convertWeights(f32, f16, dev.ropeway.tensor.DType.F16);
        Files.copy(f32.resolve("config.json"), f16.resolve("config.json"));
        java.util.Random rnd = new java.util.Random(4);
        int[][] seqs = new int[2][60];
        for (int[] seq : seqs) for (int i = 0; i < seq.length; i++) seq[i] = rnd.nextInt(256);
        Path ids = tmp.resolve("ids-f16.json");
        Files.writeString(ids, Json.mapper().writeValueAsString(seqs));
        double kept = loss(f16, ids, "auto"), widened = loss(f16, ids, "f32"), rounded = loss(f16, ids, "bf16");
        assertEquals(widened, kept, 1e-6 * Math.abs(widened));
        assertTrue(rounded != kept, "bf16 matrices change the loss");
        assertEquals(kept, rounded, 1e-2);
    }

    /**
     * {@code --cpu-weights q8_0} quantises the matrices as llama.cpp's Q8_0 does: the loss equals, to the last bit, that
     * of the same checkpoint exported to a Q8_0 GGUF file and imported back as float32 (its dequantised values).
     */
    @Test
    void cpuWeightsQ8QuantisesAsAQ8GgufFileHoldsTheWeights() throws IOException {
        Path f32 = tmp.resolve("f32-for-q8"), gguf = tmp.resolve("q8.gguf"), back = tmp.resolve("q8-back");
        Files.createDirectories(f32);
        int vocab = dev.ropeway.testutil.TinyTokenizer.write(f32).vocabSize();   // GGUF export carries a tokenizer
        dev.ropeway.model.CheckpointWriter.writeRandom(f32, dev.ropeway.model.CheckpointWriter.llamaConfig(vocab, 64, 128, 2,
                4, 2, 16, 128, new dev.ropeway.rope.DefaultRope(10000, 16), false), 7);
        var export = CliRunner.run("export", "--model", f32.toString(), "--format", "gguf", "--dtype", "q8_0", "--out",
                gguf.toString());
        assertEquals(0, export.exitCode(), export.err());
        var imported = CliRunner.run("import", "--gguf", gguf.toString(), "--out", back.toString(), "--dtype", "f32");
        assertEquals(0, imported.exitCode(), imported.err());
        java.util.Random rnd = new java.util.Random(5);
        int[][] seqs = new int[2][60];
        for (int[] seq : seqs) for (int i = 0; i < seq.length; i++) seq[i] = rnd.nextInt(vocab);
        Path ids = tmp.resolve("ids-q8.json");
        Files.writeString(ids, Json.mapper().writeValueAsString(seqs));
        double quantised = loss(f32, ids, "q8_0"), exact = loss(f32, ids, "auto");
        assertEquals(loss(back, ids, "auto"), quantised, 0.0);
        assertTrue(quantised != exact, "Q8_0 matrices change the loss");
        assertEquals(exact, quantised, 2e-2);
    }

    private static double loss(Path model, Path ids, String cpuWeights) throws IOException {
        var r = CliRunner.run("score", "--model", model.toString(), "--ids", ids.toString(), "--json", "--device", "cpu",
                "--cpu-weights", cpuWeights);
        assertEquals(0, r.exitCode(), r.err());
        return Json.mapper().readTree(r.out()).get("loss").asDouble();
    }

    @Test
    void scorePrintsLossPerplexityAndTokensAsJson() throws IOException {
        Path fx = FIXTURES.resolve("llama-default");
        var r = CliRunner.run("score", "--model", fx.toString(), "--ids", idsFile(fx).toString(), "--json");
        assertEquals(0, r.exitCode(), r.err());
        JsonNode out = Json.mapper().readTree(r.out());
        assertEquals(refLoss(fx), out.get("loss").asDouble(), 1e-5);
        assertEquals(Math.exp(refLoss(fx)), out.get("perplexity").asDouble(), 1e-3);
        assertEquals(2 * 47, out.get("tokens").asLong());

        var perToken = CliRunner.run("score", "--model", fx.toString(), "--ids", idsFile(fx).toString(), "--json", "--per-token");
        JsonNode lp = Json.mapper().readTree(perToken.out()).get("token_logprobs");
        assertEquals(2, lp.size());
        assertEquals(47, lp.get(1).size());
        double sum = 0;
        for (JsonNode seq : lp) for (JsonNode x : seq) { assertTrue(x.asDouble() < 0); sum -= x.asDouble(); }
        assertEquals(refLoss(fx), sum / 94, 1e-5);
    }

    @Test
    void scoreWritesLogits() throws IOException {
        Path fx = FIXTURES.resolve("qwen2-bias");
        Path logits = tmp.resolve("logits.safetensors");
        var r = CliRunner.run("score", "--model", fx.toString(), "--ids", idsFile(fx).toString(), "--logits", logits.toString());
        assertEquals(0, r.exitCode(), r.err());
        assertTrue(r.out().contains("perplexity"), r.out());
        try (SafeTensors ours = SafeTensors.open(logits); SafeTensors ref = SafeTensors.open(fx.resolve("reference.safetensors"))) {
            assertEquals(List.of(1L, 40L, 256L), java.util.Arrays.stream(ours.info("logits").shape()).boxed().toList());
            float[] a = ours.readFloats("logits"), b = ref.readFloats("logits");
            double d = 0, n = 0;
            for (int i = 0; i < a.length; i++) { d += (a[i] - b[i]) * (a[i] - b[i]); n += b[i] * b[i]; }
            assertTrue(Math.sqrt(d / n) < 1e-4);
        }
    }

    @Test
    void ropeOverrideChangesTheScalingUsed() throws IOException {
        Path fx = FIXTURES.resolve("llama-yarn");
        Path ids = idsFile(fx);
        var same = CliRunner.run("score", "--model", fx.toString(), "--ids", ids.toString(), "--json",
                "--rope", "yarn:factor=8,original_max_position_embeddings=64");
        assertEquals(0, same.exitCode(), same.err());
        assertEquals(refLoss(fx), Json.mapper().readTree(same.out()).get("loss").asDouble(), 1e-5);
        var plain = CliRunner.run("score", "--model", fx.toString(), "--ids", ids.toString(), "--json", "--rope", "default");
        assertEquals(0, plain.exitCode(), plain.err());
        assertTrue(Math.abs(Json.mapper().readTree(plain.out()).get("loss").asDouble() - refLoss(fx)) > 1e-3);
        var bad = CliRunner.run("score", "--model", fx.toString(), "--ids", ids.toString(), "--rope", "warp:factor=2");
        assertEquals(1, bad.exitCode());
        assertTrue(bad.err().contains("warp"), bad.err());
    }

    @Test
    void infoDescribesTheCheckpoint() throws IOException {
        var r = CliRunner.run("info", FIXTURES.resolve("llama-llama3").toString(), "--json");
        assertEquals(0, r.exitCode(), r.err());
        JsonNode out = Json.mapper().readTree(r.out());
        assertEquals("LlamaForCausalLM", out.get("architecture").asText());
        assertEquals("llama3", out.get("rope_type").asText());
        assertEquals(32, out.get("trained_context").asLong());
        assertEquals(256, out.get("claimed_context").asLong());
        assertEquals(1, out.get("kv_heads").asInt());
        assertEquals(out.get("parameters").asLong(), out.get("parameters_from_config").asLong());
        var bf16 = CliRunner.run("info", FIXTURES.resolve("llama-gqa-bf16").toString());
        assertEquals(0, bf16.exitCode(), bf16.err());
        assertTrue(bf16.out().contains("BF16"), bf16.out());
        var tied = CliRunner.run("info", FIXTURES.resolve("llama-tied").toString(), "--json");
        JsonNode t = Json.mapper().readTree(tied.out());
        assertTrue(t.get("tied_embeddings").asBoolean());
        assertEquals(t.get("parameters").asLong(), t.get("parameters_from_config").asLong());
        var named = CliRunner.run("info", "--model", FIXTURES.resolve("llama-tied").toString(), "--json");
        assertEquals(0, named.exitCode(), named.err());
        assertEquals(tied.out(), named.out(), "--model names the folder as the positional argument does");
        assertEquals(2, CliRunner.run("info", "--json").exitCode(), "no checkpoint named");
        var both = CliRunner.run("info", "--model", FIXTURES.resolve("llama-tied").toString(),
                FIXTURES.resolve("llama-default").toString());
        assertEquals(2, both.exitCode());
        assertTrue(both.err().contains("name one checkpoint"), both.err());
    }

    private void assertFailsWith(String expected, String... args) {
        var r = CliRunner.run(args);
        assertEquals(1, r.exitCode(), "exit code; out=" + r.out() + " err=" + r.err());
        assertTrue(r.err().contains(expected), "expected '" + expected + "' in: " + r.err());
        assertFalse(r.err().contains("\tat "), "no stack trace for input errors: " + r.err());
    }

    @Test
    void truncatedWeightsAreReportedClearly() throws IOException {
        Path m = copyFixture("llama-default");
        Path f = m.resolve("model.safetensors");
        try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "rw")) {
            raf.setLength(raf.length() / 2);
        }
        assertFailsWith("model.safetensors", "score", "--model", m.toString(), "--ids", idsFile(FIXTURES.resolve("llama-default")).toString());
    }

    @Test
    void wrongShapeAndMissingTensorAreNamed() throws IOException {
        Path m = copyFixture("llama-default");
        Path ids = idsFile(FIXTURES.resolve("llama-default"));
        Map<String, Object> config = Json.readObject(m.resolve("config.json"));
        config.put("intermediate_size", 161);
        Json.writeAtomic(m.resolve("config.json"), config);
        assertFailsWith("model.layers.0.mlp.gate_proj.weight", "score", "--model", m.toString(), "--ids", ids.toString());

        config.put("intermediate_size", 160);
        config.put("num_hidden_layers", 3);
        Json.writeAtomic(m.resolve("config.json"), config);
        assertFailsWith("model.layers.2.", "score", "--model", m.toString(), "--ids", ids.toString());
    }

    @Test
    void unknownRopeTypeAndArchitectureAreNamed() throws IOException {
        Path m = copyFixture("llama-default");
        Map<String, Object> config = Json.readObject(m.resolve("config.json"));
        config.put("rope_parameters", Map.of("rope_type", "spiral", "rope_theta", 10000.0));
        Json.writeAtomic(m.resolve("config.json"), config);
        assertFailsWith("spiral", "info", m.toString());

        config = Json.readObject(FIXTURES.resolve("llama-default/config.json"));
        config.put("architectures", List.of("GPT2LMHeadModel"));
        Json.writeAtomic(m.resolve("config.json"), config);
        assertFailsWith("GPT2LMHeadModel", "info", m.toString());
    }

    @Test
    void tokenIdsOutsideTheVocabularyAreRejected() throws IOException {
        Path ids = tmp.resolve("ids.json");
        Files.writeString(ids, "[[1, 2, 320, 4]]");
        assertFailsWith("token id 320", "score", "--model", FIXTURES.resolve("llama-default").toString(), "--ids", ids.toString());
        Files.writeString(ids, "[[1, 2, -5, 4]]");
        assertFailsWith("token id -5", "score", "--model", FIXTURES.resolve("llama-default").toString(), "--ids", ids.toString());
        Files.writeString(ids, "[[1, 2], [3, 4, 5]]");
        assertFailsWith("same length", "score", "--model", FIXTURES.resolve("llama-default").toString(), "--ids", ids.toString());
        Files.writeString(ids, "{\"ids\": 3}");
        assertFailsWith("JSON array", "score", "--model", FIXTURES.resolve("llama-default").toString(), "--ids", ids.toString());
    }

    @Test
    void scoresTextThroughTheCheckpointTokenizer() throws IOException {
        Path m = copyFixture("llama-default");
        dev.ropeway.io.ByteLevelBpeFixture.write(m);
        String text = "the weather there: \u00e9t\u00e9 \u2014 hotter than the last";
        var byText = CliRunner.run("score", "--model", m.toString(), "--text", text, "--json");
        assertEquals(0, byText.exitCode(), byText.err());
        int[] ids;
        try (var tok = dev.ropeway.io.HfTokenizer.load(m)) {
            ids = tok.encode(text, true);
        }
        Path idsFile = tmp.resolve("text-ids.json");
        Files.writeString(idsFile, Json.mapper().writeValueAsString(List.of(java.util.Arrays.stream(ids).boxed().toList())));
        var byIds = CliRunner.run("score", "--model", m.toString(), "--ids", idsFile.toString(), "--json");
        JsonNode a = Json.mapper().readTree(byText.out()), b = Json.mapper().readTree(byIds.out());
        assertEquals(ids.length - 1, a.get("tokens").asLong());
        assertEquals(b.get("loss").asDouble(), a.get("loss").asDouble(), 1e-12);
        Path textFile = tmp.resolve("text.txt");
        Files.writeString(textFile, text);
        var byFile = CliRunner.run("score", "--model", m.toString(), "--text-file", textFile.toString(), "--json");
        assertEquals(a.get("loss").asDouble(), Json.mapper().readTree(byFile.out()).get("loss").asDouble(), 1e-12);
    }

    @Test
    void missingFolderAndTokenizerAreReported() {
        assertFailsWith("config.json", "info", tmp.resolve("nowhere").toString());
        assertFailsWith("no tokenizer.json in " + FIXTURES.resolve("llama-default") + " to read the text with; pass token"
                + " ids with --ids instead", "score", "--model", FIXTURES.resolve("llama-default").toString(), "--text", "hello");
        assertFailsWith("no tokenizer.json in " + FIXTURES.resolve("llama-default") + ": text needs the model's tokenizer",
                "generate", "--model", FIXTURES.resolve("llama-default").toString(), "--prompt", "hello");
    }
}
