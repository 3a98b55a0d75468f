package dev.ropeway.model;

import dev.ropeway.rope.ClexRope;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.testutil.FixtureFiles;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The released CLEX checkpoint format: logits and loss of the official layer for every length in the fixture. */
class ClexParityTest {
    static final Path DIR = FixtureFiles.ROOT.resolve("clex-llama");
    static CpuBackend backend;

    @BeforeAll
    static void open() { backend = new CpuBackend(); }

    @AfterAll
    static void close() { backend.close(); }

    @SuppressWarnings("unchecked")
    static List<Map<String, Object>> cases() {
        return (List<Map<String, Object>>) FixtureFiles.readJson(DIR.resolve("reference.json")).get("lengths");
    }

    @TestFactory
    Stream<DynamicTest> logitsAndLossMatchTheOfficialLayer() {
        return cases().stream().map(c -> DynamicTest.dynamicTest("S = " + c.get("S"), () -> {
            @SuppressWarnings("unchecked")
            int[] ids = ((List<Number>) c.get("input_ids")).stream().mapToInt(Number::intValue).toArray();
            int s = ids.length;
            try (Transformer model = Transformer.load(backend, DIR)) {
                ClexRope rope = assertInstanceOf(ClexRope.class, model.config().rope());
                assertNotNull(rope.ode(), "the checkpoint's CLEX layer is loaded");
                assertEquals(((Number) c.get("t")).intValue(), rope.factorFor(s), "t for S = " + s);
                Scorer.Score score = new Scorer(model).score(TokenBatch.of(new int[][]{ids}), rope, true);
                assertEquals(((Number) c.get("loss")).doubleValue(), score.loss(), 1e-5, "loss at S = " + s);
                float[] expected = FixtureFiles.readF32(DIR.resolve("reference.safetensors"), "logits." + s).values();
                GradientParityTest.assertClose(expected, score.logits(), 1e-4, "logits at S = " + s);
            }
        }));
    }

    @Test
    void anUntrainedLayerIsNtkScalingWithAlphaTwoTMinusOne() {
        ClexRope untrained = new ClexRope(10000, 64, 128, 16, 1, "tanh", 0.01, false, null);
        ClexRope zeroDown = untrained.withOde(untrained.newLayer(5));
        for (int t = 1; t <= 16; t++) {
            float[] closed = untrained.frequenciesAt(t), solved = zeroDown.frequenciesAt(t);
            double base = 10000 * Math.pow(2 * t - 1, 64.0 / 62);
            for (int j = 0; j < 32; j++) {
                double ntk = Math.pow(base, -2.0 * j / 64);
                assertEquals(ntk, closed[j], 1e-6 * ntk, "closed form, t " + t + " j " + j);
                assertEquals(ntk, solved[j], 1e-4 * ntk, "solved with W_down = 0, t " + t + " j " + j);
            }
        }
        assertTrue(untrained.factorFor(16 * 128 + 1) == 16 && untrained.factorFor(10 * 16 * 128) == 16,
                "beyond L0 x T the factor stays T");
    }
}
