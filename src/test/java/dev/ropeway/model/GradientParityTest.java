package dev.ropeway.model;

import dev.ropeway.rope.RopePlan;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.tensor.DType;
import dev.ropeway.testutil.FixtureFiles;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every parameter gradient of the training pass against the fixtures' {@code grad.*} tensors (d mean loss / d
 * parameter, computed by transformers in float64), with and without activation recomputation.
 */
class GradientParityTest {
    static CpuBackend backend;

    @BeforeAll
    static void open() { backend = new CpuBackend(); }

    @AfterAll
    static void close() { backend.close(); }

    @TestFactory
    Stream<DynamicTest> gradientsMatchTransformers() {
        return Stream.of("llama-default", "llama-tied", "llama-linear", "qwen2-bias")
                .flatMap(name -> Stream.of(false, true).map(recompute -> DynamicTest.dynamicTest(
                        name + (recompute ? " (recomputed activations)" : ""), () -> check(FixtureFiles.ROOT.resolve(name), recompute))));
    }

    /**
     * Mixed precision (bfloat16 copies of the matrices and of the activations products read, float32 everywhere else):
     * the same gradients within bfloat16's rounding (8 significant bits, about 4e-3 per rounding).
     */
    @TestFactory
    Stream<DynamicTest> mixedPrecisionGradientsMatchTransformers() {
        return Stream.of("llama-default", "llama-tied", "qwen2-bias")
                .flatMap(name -> Stream.of(false, true).map(recompute -> DynamicTest.dynamicTest(
                        name + (recompute ? " (recomputed activations)" : ""),
                        () -> check(backend, FixtureFiles.ROOT.resolve(name), recompute, DType.BF16))));
    }

    static int[][] inputIds(Path dir) {
        Map<String, Object> ref = FixtureFiles.readJson(dir.resolve("reference.json"));
        @SuppressWarnings("unchecked")
        List<List<Number>> idLists = (List<List<Number>>) ref.get("input_ids");
        return idLists.stream().map(l -> l.stream().mapToInt(Number::intValue).toArray()).toArray(int[][]::new);
    }

    /** Next-token targets within each sequence; the last token of a sequence predicts nothing. */
    static int[] shiftedTargets(int[] ids, int batch, int seq) {
        int[] t = new int[ids.length];
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < seq; i++) t[b * seq + i] = i + 1 < seq ? ids[b * seq + i + 1] : -1;
        return t;
    }

    private static void check(Path dir, boolean recompute) {
        check(backend, dir, recompute);
    }

    /** Loss and every parameter's gradient of one fixture on {@code backend} against transformers' float64 results. */
    static void check(dev.ropeway.tensor.Backend backend, Path dir, boolean recompute) {
        check(backend, dir, recompute, DType.F32);
    }

    /** The same with matrix-product operands in {@code operands} (bfloat16: looser tolerances). */
    static void check(dev.ropeway.tensor.Backend backend, Path dir, boolean recompute, DType operands) {
        boolean mixed = operands == DType.BF16;
        int[][] seqs = inputIds(dir);
        TokenBatch batch = TokenBatch.of(seqs);
        int[] targets = shiftedTargets(batch.ids(), batch.batch(), batch.seq());
        double expectedLoss = ((Number) FixtureFiles.readJson(dir.resolve("reference.json")).get("loss")).doubleValue();
        Path refFile = dir.resolve("reference.safetensors");
        try (TrainableModel model = TrainableModel.load(backend, dir);
             TrainingPass pass = new TrainingPass(backend, model.config(), model.weights(), model.gradientViews(),
                     batch.batch(), batch.seq(), recompute, operands)) {
            assertEquals(mixed, pass.mixedPrecision());
            RopePlan plan = model.config().rope().plan(batch.positions(), batch.ropeLength());
            long counted = batch.batch() * (batch.seq() - 1L);
            TrainingPass.Loss loss = pass.run(batch.ids(), targets, plan, (float) (1.0 / counted), null);
            assertEquals(counted, loss.tokens());
            assertEquals(expectedLoss, loss.mean(), mixed ? 2e-3 * expectedLoss : 1e-5, "loss");
            int checked = 0;
            for (ParameterLayout.Entry e : model.layout().entries()) {
                float[] expected = FixtureFiles.readF32(refFile, "grad." + e.name()).values();
                float[] got = model.read(e.name(), true);
                assertClose(expected, got, mixed ? 3e-2 : 1e-4, dir.getFileName() + " grad." + e.name());
                checked++;
            }
            assertTrue(checked >= 10, "checked " + checked + " gradients");
        }
    }

    /** Relative error of the whole tensor: ||got - expected|| / ||expected||. */
    static void assertClose(float[] expected, float[] got, double tolerance, String what) {
        assertEquals(expected.length, got.length, what + " size");
        double diff = 0, norm = 0;
        for (int i = 0; i < expected.length; i++) {
            double d = (double) got[i] - expected[i];
            diff += d * d;
            norm += (double) expected[i] * expected[i];
        }
        double rel = Math.sqrt(diff) / Math.max(Math.sqrt(norm), 1e-30);
        assertTrue(rel < tolerance, what + ": relative error " + rel + " (norm " + Math.sqrt(norm) + ")");
    }
}
