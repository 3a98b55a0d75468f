package dev.ropeway.model;

import dev.ropeway.cuda.CudaBackend;
import dev.ropeway.cuda.MatmulPrecision;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.rope.E2Rope;
import dev.ropeway.rope.RopePlan;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.tensor.AttentionShape;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.tensor.DType;
import dev.ropeway.testutil.FixtureFiles;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The model on the GPU against Hugging Face's float64 results (the same fixtures and tolerances as the CPU backend's
 * parity tests), plus a short training run whose losses track the CPU's. Skipped where no NVIDIA GPU is present.
 */
class CudaParityTest {
    static CudaBackend gpu;

    @BeforeAll
    static void open() {
        assumeTrue(CudaBackend.isAvailable(), "no NVIDIA GPU here");
        gpu = new CudaBackend(0, MatmulPrecision.FP32);
    }

    @AfterAll
    static void close() {
        if (gpu != null) gpu.close();
    }

    @TestFactory
    Stream<DynamicTest> logitsAndLossMatchTransformers() {
        List<DynamicTest> tests = new ArrayList<>();
        for (Path dir : FixtureFiles.caseFolders("llama-", "qwen2-"))
            tests.add(DynamicTest.dynamicTest(dir.getFileName().toString(), () -> checkLogits(dir)));
        return tests.stream();
    }

    private static void checkLogits(Path dir) {
        FixtureParityTest.check(gpu, dir, dev.ropeway.io.Json.readObject(dir.resolve("config.json")));
    }

    @TestFactory
    Stream<DynamicTest> gradientsMatchTransformers() {
        return Stream.of("llama-default", "llama-tied", "llama-linear", "qwen2-bias")
                .flatMap(name -> Stream.of(false, true).map(recompute -> DynamicTest.dynamicTest(
                        name + (recompute ? " (recomputed activations)" : ""), () -> checkGradients(FixtureFiles.ROOT.resolve(name), recompute))));
    }

    private static void checkGradients(Path dir, boolean recompute) {
        GradientParityTest.check(gpu, dir, recompute);
    }

    /** Qwen3's per-head query and key norms: logits, loss and gradients against the model's float64 definition. */
    @Test
    void qwen3MatchesItsDefinition(@TempDir Path tmp) {
        Path dir = Qwen3Reference.write(tmp.resolve("qwen3"), false, 2, 12, 5);
        FixtureParityTest.check(gpu, dir, dev.ropeway.io.Json.readObject(dir.resolve("config.json")));
        GradientParityTest.check(gpu, dir, false);
        GradientParityTest.check(gpu, dir, true);
    }

    /**
     * Cached decoding on the GPU against whole-sequence forwards, with the float16 KV cache (keys and values rounded
     * to 11 bits) and the float32 one: chunked prefill, greedy steps, E²-LLM's g changing three times, both by
     * recomputing the prefix and by re-rotating the cached keys (one layer, where re-rotation is exact).
     */
    @Test
    void cachedDecodingTracksWholeForwards(@TempDir Path tmp) {
        E2Rope e2 = new E2Rope(10000, 8, 8, 0, 4);
        for (int layers : new int[]{1, 2}) {
            Map<String, Object> json = CheckpointWriter.withRope(CheckpointWriter.llamaConfig(DecoderTest.VOCAB, 32, 64,
                    layers, 4, 2, 8, 64, new DefaultRope(10000, 8), false), e2, 64);
            try (CpuBackend cpu = new CpuBackend(); TrainableModel m = TrainableModel.random(cpu, ModelConfig.parse(json, "e2"), 7)) {
                m.save(tmp.resolve("l" + layers), json);
            }
        }
        for (boolean half : new boolean[]{true, false})
            try (CudaBackend b = new CudaBackend(0, MatmulPrecision.FP32, half)) {
                assertEquals(half ? 2 : 4, b.kvBytesPerElement());
                double tol = half ? 5e-3 : 1e-4;
                try (Transformer t = Transformer.load(b, tmp.resolve("l2"))) {
                    // Several sequences per step (serve's batched slots) against each one's own steps: recorded
                    // as graphs per group of sequences (the GPU's default), and op by op.
                    assertEquals(7, DecoderTest.compareBatchedSteps(t, e2, new Decoder.RopeChange[]{Decoder.RopeChange.REROTATE,
                            Decoder.RopeChange.RECOMPUTE, Decoder.RopeChange.REROTATE}, new int[]{5, 7, 12}, 24, tol));
                    if (half)
                        assertEquals(7, DecoderTest.compareBatchedSteps(t, e2, new Decoder.RopeChange[]{Decoder.RopeChange.REROTATE,
                                Decoder.RopeChange.RECOMPUTE, Decoder.RopeChange.REROTATE}, new int[]{5, 7, 12}, 24, tol, false));
                    assertEquals(3, DecoderTest.checkGreedyAgainstFullForward(t, e2, Decoder.RopeChange.RECOMPUTE, 5, 24, tol));
                    assertEquals(0, DecoderTest.checkGreedyAgainstFullForward(t, new DefaultRope(10000, 8),
                            Decoder.RopeChange.REROTATE, 7, 20, tol));
                    // A prefix copied from another decoder's cache (serve's shared system prompts): what a fresh
                    // decoder computes, bit for bit (the same chunks run either way).
                    for (int held : new int[]{-1, 0, 12})
                        DecoderTest.checkCopiedPrefix(t, new DefaultRope(10000, 8), Decoder.RopeChange.REROTATE, 12, 20, held);
                    assertTrue(DecoderTest.checkCopiedPrefix(t, e2, Decoder.RopeChange.RECOMPUTE, 12, 30, -1) >= 1);
                }
                try (Transformer t = Transformer.load(b, tmp.resolve("l1"))) {
                    assertEquals(3, DecoderTest.checkGreedyAgainstFullForward(t, e2, Decoder.RopeChange.REROTATE, 5, 24, tol));
                }
            }
    }

    /**
     * A bfloat16 or float16 checkpoint stays so on the GPU (half the weight memory) and gives the CPU's logits on the
     * same file: whole forwards (cuBLAS on widened weights) and cached decoding, op by op and recorded as graphs (the
     * narrow-weight kernel), tied and untied heads.
     */
    @Test
    void narrowCheckpointsStayNarrowAndMatchTheCpu(@TempDir Path tmp) throws Exception {
        for (DType type : new DType[]{DType.BF16, DType.F16})
            for (boolean tied : new boolean[]{false, true})
                checkNarrowCheckpoint(tmp.resolve(type + "-" + tied), type, tied);
    }

    private static void checkNarrowCheckpoint(Path tmp, DType type, boolean tied) throws Exception {
        Map<String, Object> json = CheckpointWriter.llamaConfig(DecoderTest.VOCAB, 32, 64, 2, 4, 2, 8, 128,
                new DefaultRope(10000, 8), tied);
        Path f32 = tmp.resolve("f32"), narrow = tmp.resolve("narrow");
        try (CpuBackend cpu = new CpuBackend(); TrainableModel m = TrainableModel.random(cpu, ModelConfig.parse(json, "narrow"), 7)) {
            m.save(f32, json);
        }
        CheckpointWriter.convertWeights(f32, narrow, type);
        dev.ropeway.io.Json.writeAtomic(narrow.resolve("config.json"), json);
        int[] ids = DecoderTest.randomTokens(40, 5);
        Scorer.Score want;
        try (CpuBackend cpu = new CpuBackend(); Transformer t = Transformer.load(cpu, narrow)) {
            want = new Scorer(t).score(TokenBatch.of(new int[][]{ids}), t.config().rope(), true);
        }
        try (CudaBackend b = new CudaBackend(0, MatmulPrecision.FP32, false); Transformer t = Transformer.load(b, narrow)) {
            String what = type + (tied ? ", tied" : "") + ": ";
            String suffix = " " + type.name().toLowerCase(java.util.Locale.ROOT) + "]";
            assertTrue(t.weights().layers().get(0).q().toString().endsWith(suffix), what + t.weights().layers().get(0).q());
            assertTrue(t.weights().lmHead().toString().endsWith(suffix), what + "lm head " + t.weights().lmHead());
            Scorer.Score got = new Scorer(t).score(TokenBatch.of(new int[][]{ids}), t.config().rope(), true);
            double diff = 0, norm = 0;
            for (int i = 0; i < want.logits().length; i++) {
                diff += Math.pow(got.logits()[i] - want.logits()[i], 2);
                norm += Math.pow(want.logits()[i], 2);
            }
            assertTrue(Math.sqrt(diff / norm) < 1e-5, what + "logits relative error " + Math.sqrt(diff / norm));
            assertEquals(want.loss(), got.loss(), 1e-5, what + "loss");
            DecoderTest.checkGreedyAgainstFullForward(t, new DefaultRope(10000, 8), Decoder.RopeChange.REROTATE, 9, 12, 1e-4);
            DecoderTest.compareRecordedSteps(t, new DefaultRope(10000, 8), 20, 8, 0.0);
        }
    }

    /**
     * Recorded decode steps run as CUDA graphs: one capture per range of key splits (the 256th key starts a new one),
     * every one-token step a graph launch, and the logits equal op-by-op steps (the same kernels at these lengths), on
     * the float16 and the float32 cache, with re-rotated raw keys, and with YaRN's scale (a second table) and a window.
     */
    @Test
    void recordedStepsRunAsCudaGraphs(@TempDir Path tmp) {
        E2Rope e2 = new E2Rope(10000, 8, 8, 0, 4);
        Map<String, Object> json = CheckpointWriter.withRope(CheckpointWriter.llamaConfig(DecoderTest.VOCAB, 32, 64,
                2, 4, 2, 8, 512, new DefaultRope(10000, 8), false), e2, 512);
        json.put("sliding_window", 300);
        try (CpuBackend cpu = new CpuBackend(); TrainableModel m = TrainableModel.random(cpu, ModelConfig.parse(json, "graphs"), 7)) {
            m.save(tmp.resolve("m"), json);
        }
        for (boolean half : new boolean[]{true, false})
            try (CudaBackend b = new CudaBackend(0, MatmulPrecision.FP32, half);
                 Transformer t = Transformer.load(b, tmp.resolve("m"))) {
                long[] before = b.graphCounts();
                DecoderTest.compareRecordedSteps(t, new DefaultRope(10000, 8), 250, 12, 0.0);
                long[] after = b.graphCounts();
                assertEquals(12, after[0] - before[0], "every step after the prompt is one graph launch");
                assertEquals(2, after[1] - before[1], "captured below 256 keys and again above");
                assertEquals(3, DecoderTest.compareRecordedSteps(t, e2, 5, 24, 0.0), "E2's g changes, keys re-rotated");
                RopeScaling yarn = t.config().ropeOrSpec("yarn:factor=4,original_max_position_embeddings=16");
                DecoderTest.compareRecordedSteps(t, yarn, 290, 20, 0.0);
            }
    }

    /** Ten AdamW steps from the same weights on both backends: losses and d loss / d inverse frequency track. */
    @Test
    void shortTrainingRunTracksTheCpu() {
        trainingRunTracksTheCpu(gpu, 1e-4);
    }

    /** The same with TF32 products and tensor-core attention: inputs rounded to 10 mantissa bits. */
    @Test
    void shortTf32TrainingRunTracksTheCpu() {
        try (CudaBackend tf32 = new CudaBackend(0, MatmulPrecision.TF32)) {
            trainingRunTracksTheCpu(tf32, 3e-3);
        }
    }

    /**
     * Mixed precision (bfloat16 operands, float32 master weights) on both backends: the GPU run tracks the CPU's, and
     * both track the float32 run within bfloat16's rounding.
     */
    @Test
    void shortMixedPrecisionTrainingRunTracksTheCpu() {
        try (CudaBackend bf16 = new CudaBackend(0, MatmulPrecision.BF16)) {
            double[] mixed = trainingRunTracksTheCpu(bf16, 1e-2, DType.BF16);
            double[] exact = trainingRunTracksTheCpu(gpu, 1e-4, DType.F32);
            for (int i = 0; i < mixed.length; i++)
                assertEquals(exact[i], mixed[i], 3e-2 * Math.abs(exact[i]), "mixed against float32 at step " + (i + 1));
        }
    }

    /** Mixed precision with cuDNN's fused attention forward and backward (bfloat16 inside it) tracks the CPU too. */
    @Test
    void shortTrainingRunWithCudnnAttentionTracksTheCpu() {
        org.junit.jupiter.api.Assumptions.assumeTrue(dev.ropeway.cuda.CudaDevices.probe().cudnn() != null,
                "cuDNN is not installed here");
        try (CudaBackend bf16 = new CudaBackend(0, MatmulPrecision.BF16)) {
            assertTrue(bf16.cudnnAttention(true), "cuDNN attention switched on");
            trainingRunTracksTheCpu(bf16, 1e-2, DType.BF16);
            long[] counts = bf16.cudnnAttentionCounts();
            // The fixture's 48-token sequences: cuDNN up to 9.15 would need a padding mask in the backward, which then
            // runs on the kernels.
            ModelConfig c = Transformer.loadConfig(FixtureFiles.ROOT.resolve("llama-default"));
            AttentionShape shape = AttentionShape.selfAttention(2, 48, c.numHeads(), c.numKvHeads(), c.headDim());
            boolean backward = bf16.cudnnRunsBackward(shape);
            assertTrue(counts[0] >= 10 && (backward ? counts[1] >= 10 : counts[1] == 0),
                    "cuDNN ran the attention (backward too: " + backward + "): " + java.util.Arrays.toString(counts));
        }
    }

    private static void trainingRunTracksTheCpu(CudaBackend gpu, double tolerance) {
        trainingRunTracksTheCpu(gpu, tolerance, DType.F32);
    }

    /** Ten AdamW steps on the CPU and on {@code gpu}; returns the GPU's losses. */
    private static double[] trainingRunTracksTheCpu(CudaBackend gpu, double tolerance, DType operands) {
        Path dir = FixtureFiles.ROOT.resolve("llama-default");
        TokenBatch batch = TokenBatch.of(GradientParityTest.inputIds(dir));
        int[] targets = GradientParityTest.shiftedTargets(batch.ids(), batch.batch(), batch.seq());
        double[][] losses = new double[2][], freqGrads = new double[2][];
        try (CpuBackend cpu = new CpuBackend()) {
            Backend[] backends = {cpu, gpu};
            for (int bi = 0; bi < 2; bi++) {
                Backend b = backends[bi];
                try (TrainableModel model = TrainableModel.load(b, dir);
                     TrainingPass pass = new TrainingPass(b, model.config(), model.weights(), model.gradientViews(),
                             batch.batch(), batch.seq(), false, operands)) {
                    long n = model.parameters().size();
                    var m = b.allocate(n);
                    var v = b.allocate(n);
                    RopePlan plan = model.config().rope().plan(batch.positions(), batch.ropeLength());
                    losses[bi] = new double[10];
                    for (int step = 1; step <= 10; step++) {
                        b.scale(model.gradients(), 0f, n);
                        double[] dInvFreq = step == 1 ? new double[plan.invFreq().length] : null;
                        TrainingPass.Loss loss = pass.run(batch.ids(), targets, plan, 1f / 62, dInvFreq);
                        if (dInvFreq != null) freqGrads[bi] = dInvFreq;
                        losses[bi][step - 1] = loss.mean();
                        double norm = Math.sqrt(b.sumOfSquares(model.gradients(), n));
                        float clip = (float) Math.min(1, 1 / norm);
                        b.adamW(model.parameters(), model.gradients(), m, v, n, 3e-3f, 0.9f, 0.95f, 1e-8f, 0.01f, clip, step);
                    }
                    m.close();
                    v.close();
                }
            }
        }
        for (int i = 0; i < 10; i++)
            assertEquals(losses[0][i], losses[1][i], tolerance * Math.abs(losses[0][i]), "loss at step " + (i + 1));
        assertTrue(losses[1][9] < losses[1][0] - 0.1, "the GPU run learns: " + losses[1][0] + " -> " + losses[1][9]);
        // Exact paths agree per component. Under narrow operands each component is a sum of terms rounded to the
        // operands' precision, so its error scales with the largest components, not with what is left after they cancel.
        double largest = java.util.Arrays.stream(freqGrads[0]).map(Math::abs).max().orElse(0);
        for (int j = 0; j < freqGrads[0].length; j++) {
            double g = Math.abs(freqGrads[0][j]);
            double allowed = tolerance <= 1e-4 ? tolerance * (1e-3 + g) : 10 * tolerance * (g + 0.1 * largest);
            assertEquals(freqGrads[0][j], freqGrads[1][j], allowed, "dInvFreq[" + j + "] of " + java.util.Arrays.toString(freqGrads[0]));
        }
        return losses[1];
    }
}
