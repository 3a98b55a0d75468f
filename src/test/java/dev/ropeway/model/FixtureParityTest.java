package dev.ropeway.model;

import dev.ropeway.io.Json;
import dev.ropeway.io.SafeTensors;
import dev.ropeway.io.WeightStore;
import dev.ropeway.tensor.CpuBackend;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Logits and loss of every Hugging Face fixture (computed by transformers in float64), for the 5.x config form and
 * for the same config rewritten into the 4.x form.
 */
class FixtureParityTest {
    static final Path FIXTURES = Path.of("../shared/fixtures");
    static CpuBackend backend;

    @BeforeAll
    static void open() { backend = new CpuBackend(); }

    @AfterAll
    static void close() { backend.close(); }

    static List<Path> cases() throws IOException {
        try (Stream<Path> s = Files.list(FIXTURES)) {
            List<Path> dirs = s.filter(p -> {
                String n = p.getFileName().toString();
                return n.startsWith("llama-") || n.startsWith("qwen2-");
            }).sorted().toList();
            assertTrue(dirs.size() >= 11, "expected the llama-* and qwen2-* fixtures in " + FIXTURES.toAbsolutePath());
            return dirs;
        }
    }

    /** The 5.x config rewritten in the 4.x form: rope_scaling (with "type") plus a top-level rope_theta. */
    static Map<String, Object> legacyForm(Map<String, Object> config) {
        return dev.ropeway.testutil.FixtureFiles.legacyForm(config);
    }

    @TestFactory
    Stream<DynamicTest> logitsAndLossMatchTransformers() throws IOException {
        List<DynamicTest> tests = new ArrayList<>();
        for (Path dir : cases()) {
            Map<String, Object> modern = Json.readObject(dir.resolve("config.json"));
            tests.add(DynamicTest.dynamicTest(dir.getFileName() + " (rope_parameters)", () -> check(dir, modern)));
            tests.add(DynamicTest.dynamicTest(dir.getFileName() + " (rope_scaling + rope_theta)", () -> check(dir, legacyForm(modern))));
        }
        return tests.stream();
    }

    /** Mistral is Llama without biases: the same weights relabelled must give the same logits and loss. */
    @TestFactory
    Stream<DynamicTest> mistralRelabelledLlamaMatches() {
        return Stream.of("llama-default", "llama-gqa-bf16").map(name -> DynamicTest.dynamicTest(name + " as Mistral", () -> {
            Path dir = FIXTURES.resolve(name);
            Map<String, Object> c = Json.readObject(dir.resolve("config.json"));
            c.put("architectures", List.of("MistralForCausalLM"));
            c.put("model_type", "mistral");
            c.put("sliding_window", null);
            check(dir, c);
        }));
    }

    /** A bfloat16 checkpoint keeps its matrices in bfloat16 on the CPU (the logits test above then runs on them). */
    @org.junit.jupiter.api.Test
    void bf16MatricesStayBf16OnTheCpu() {
        Path dir = FIXTURES.resolve("llama-gqa-bf16");
        ModelConfig config = Transformer.loadConfig(dir);
        try (WeightStore store = WeightStore.open(dir); ModelWeights w = ModelWeights.load(backend, config, store)) {
            org.junit.jupiter.api.Assertions.assertInstanceOf(dev.ropeway.tensor.CpuBf16Tensor.class, w.layers().get(0).q());
            org.junit.jupiter.api.Assertions.assertInstanceOf(dev.ropeway.tensor.CpuBf16Tensor.class, w.embedding());
            org.junit.jupiter.api.Assertions.assertInstanceOf(dev.ropeway.tensor.CpuTensor.class, w.finalNorm());
        }
    }

    /** Mistral's sliding window: a window as long as the sequence changes nothing, a shorter one changes the logits. */
    @org.junit.jupiter.api.Test
    void slidingWindowLimitsWhatEachTokenSees() {
        Path dir = FIXTURES.resolve("llama-default");
        Map<String, Object> ref = Json.readObject(dir.resolve("reference.json"));
        @SuppressWarnings("unchecked")
        List<List<Number>> idLists = (List<List<Number>>) ref.get("input_ids");
        int[][] ids = idLists.stream().map(l -> l.stream().mapToInt(Number::intValue).toArray()).toArray(int[][]::new);
        double full = mistralLoss(dir, ids, null), same = mistralLoss(dir, ids, 48), narrow = mistralLoss(dir, ids, 8);
        assertEquals(((Number) ref.get("loss")).doubleValue(), full, 1e-5);
        assertEquals(full, same, 1e-9);
        assertTrue(Math.abs(narrow - full) > 1e-4, "a window of 8 must change the loss: " + narrow + " vs " + full);
    }

    private static double mistralLoss(Path dir, int[][] ids, Integer window) {
        Map<String, Object> c = Json.readObject(dir.resolve("config.json"));
        c.put("architectures", List.of("MistralForCausalLM"));
        c.put("model_type", "mistral");
        c.put("sliding_window", window);
        ModelConfig config = ModelConfig.parse(c, "mistral");
        try (WeightStore store = WeightStore.open(dir);
             Transformer model = new Transformer(backend, config, ModelWeights.load(backend, config, store))) {
            return new Scorer(model).score(TokenBatch.of(ids), config.rope(), false).loss();
        }
    }

    private static void check(Path dir, Map<String, Object> configMap) {
        check(backend, dir, configMap);
    }

    /** Logits and loss of one fixture on {@code backend} against transformers' float64 results. */
    static void check(dev.ropeway.tensor.Backend backend, Path dir, Map<String, Object> configMap) {
        Map<String, Object> ref = Json.readObject(dir.resolve("reference.json"));
        @SuppressWarnings("unchecked")
        List<List<Number>> idLists = (List<List<Number>>) ref.get("input_ids");
        int[][] ids = idLists.stream().map(l -> l.stream().mapToInt(Number::intValue).toArray()).toArray(int[][]::new);
        ModelConfig config = ModelConfig.parse(configMap, dir + "/config.json");
        float[] expected;
        try (SafeTensors refs = SafeTensors.open(dir.resolve("reference.safetensors"))) {
            expected = refs.readFloats("logits");
        }
        Scorer.Score score;
        try (WeightStore store = WeightStore.open(dir);
             Transformer model = new Transformer(backend, config, ModelWeights.load(backend, config, store))) {
            score = new Scorer(model).score(TokenBatch.of(ids), config.rope(), true);
        }
        assertEquals(expected.length, score.logits().length, "logits size");
        double diff = 0, norm = 0;
        for (int i = 0; i < expected.length; i++) {
            double d = score.logits()[i] - expected[i];
            diff += d * d;
            norm += (double) expected[i] * expected[i];
        }
        double rel = Math.sqrt(diff / norm);
        assertTrue(rel < 1e-4, dir.getFileName() + ": logits relative error " + rel);
        double refLoss = ((Number) ref.get("loss")).doubleValue();
        assertEquals(refLoss, score.loss(), 1e-5, dir.getFileName() + ": loss");
        assertEquals((long) ids.length * (ids[0].length - 1), score.tokens());
    }
}
