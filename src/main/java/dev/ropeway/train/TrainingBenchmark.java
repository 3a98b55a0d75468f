package dev.ropeway.train;

import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.model.ModelConfig;
import dev.ropeway.model.ModelPreset;
import dev.ropeway.model.Recompute;
import dev.ropeway.model.TrainableModel;
import dev.ropeway.model.TrainingPass;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.rope.RopePlan;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.Tensor;

import java.util.Arrays;
import java.util.SplittableRandom;

/** Measures whole training steps and counts the model FLOPs they do, for {@code ropeway bench train}. */
public final class TrainingBenchmark {

    /** A case's median step; {@code memory} says whether activations were recomputed, and why. */
    public record Result(long parameters, int batch, double stepSeconds, double tokensPerSecond, double modelGflops,
                         TrainingPass.Decision memory) {}

    private TrainingBenchmark() {}

    /** The backend's SGEMM rate on a large square product (median of 5), in GFLOP/s. */
    public static double sgemmGflops(Backend backend) {
        int n = 2048;
        try (Tensor a = backend.allocate((long) n * n); Tensor b = backend.allocate((long) n * n);
             Tensor c = backend.allocate((long) n * n)) {
            float[] data = new float[n * n];
            SplittableRandom r = new SplittableRandom(1);
            for (int i = 0; i < data.length; i++) data[i] = (float) r.nextDouble(-1, 1);
            try (Tensor t = backend.upload(data)) {
                backend.copy(a, 0, t, 0, data.length);
                backend.copy(b, 0, t, 0, data.length);
            }
            double[] secs = new double[6];
            for (int i = 0; i < secs.length; i++) {
                long s = System.nanoTime();
                backend.gemm(false, true, n, n, n, 1f, a, 0, n, b, 0, n, 0f, c, 0, n);
                backend.synchronize();
                secs[i] = (System.nanoTime() - s) / 1e9;
            }
            double[] timed = Arrays.copyOfRange(secs, 1, secs.length);
            Arrays.sort(timed);
            return 2.0 * n * n * n / timed[timed.length / 2] / 1e9;
        }
    }

    /**
     * Model FLOPs of one training token: three times the forward's matrix products (the backward does two per
     * forward one), counting causal attention at its average of seq/2 keys; recomputation is not counted, as MFU
     * conventionally does not.
     */
    public static double flopsPerToken(ModelConfig c, int seq) {
        double h = c.hiddenSize(), qd = c.qDim(), kvd = c.kvDim(), ffn = c.intermediateSize();
        double perLayer = 2 * (h * qd + 2 * h * kvd + qd * h + 3 * h * ffn) + 2 * 2 * (seq / 2.0) * qd;
        double forward = c.numLayers() * perLayer + 2 * h * c.vocabSize();
        return 3 * forward;
    }

    public static Result run(Backend backend, ModelPreset p, int seq, int batch, int steps, Recompute recompute) {
        ModelConfig c = ModelConfig.parse(CheckpointWriter.llamaConfig(p.vocab, p.hidden, p.ffn, p.layers, p.heads,
                p.kvHeads, p.headDim, seq, new DefaultRope(10000, p.headDim), false), "benchmark model");
        int rows = batch * seq;
        SplittableRandom r = new SplittableRandom(3);
        int[] ids = r.ints(rows, 0, c.vocabSize()).toArray(), targets = r.ints(rows, 0, c.vocabSize()).toArray();
        RopePlan plan = TrainingRope.fixed(c.rope()).plan(batch, seq, null);
        try (TrainableModel model = TrainableModel.random(backend, c, 1);
             Optimizer optimizer = new Optimizer(model, OptimizerSettings.defaults(1e-4, 0, steps + 2))) {
            TrainingPass.Decision memory = TrainingPass.recomputation(backend, c, batch, seq, recompute);
            try (TrainingPass pass = new TrainingPass(backend, c, model.weights(), model.gradientViews(), batch, seq,
                    memory.recompute())) {
                double[] secs = new double[steps + 1];
                for (int i = 0; i < secs.length; i++) {
                    long s = System.nanoTime();
                    backend.scale(model.gradients(), 0f, model.layout().totalSize());
                    pass.run(ids, targets, plan, 1f / rows, null);
                    optimizer.step(model, i + 1);
                    backend.synchronize();
                    secs[i] = (System.nanoTime() - s) / 1e9;
                }
                double[] timed = Arrays.copyOfRange(secs, 1, secs.length);  // the first step warms up
                Arrays.sort(timed);
                double median = timed[timed.length / 2];
                return new Result(model.layout().parameterCount(), batch, median, rows / median,
                        rows / median * flopsPerToken(c, seq) / 1e9, memory);
            }
        }
    }
}
