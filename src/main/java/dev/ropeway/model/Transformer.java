package dev.ropeway.model;

import dev.ropeway.io.Json;
import dev.ropeway.io.WeightStore;
import dev.ropeway.rope.RopePlan;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.tensor.AttentionShape;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.RotaryTable;
import dev.ropeway.tensor.Tensor;

import java.nio.file.Path;

/**
 * The decoder forward pass, written once against {@link Backend}: embedding, then per layer
 * RMSNorm, q/k/v projections, rotary embedding (from the {@link RopePlan} of the active RoPE method), causal
 * grouped-query attention (within a sliding window where the config sets one), output projection, residual, RMSNorm, SwiGLU MLP, residual; final RMSNorm and the
 * vocabulary projection, streamed to a {@link LogitsSink} in blocks of rows.
 *
 * <p>Activation memory is linear in the number of tokens: attention is tiled, and logits are produced in blocks.
 */
public final class Transformer implements AutoCloseable {

    /** Upper bound on floats in one block of logits (rows x vocab). */
    private static final long LOGITS_BLOCK_FLOATS = 1L << 23;

    private final Backend backend;
    private final ModelConfig config;
    private final ModelWeights weights;

    public Transformer(Backend backend, ModelConfig config, ModelWeights weights) {
        this.backend = backend;
        this.config = config;
        this.weights = weights;
    }

    /** Loads a Hugging Face checkpoint folder (config.json plus safetensors weights). */
    public static Transformer load(Backend backend, Path dir) {
        ModelConfig config = loadConfig(dir);
        try (WeightStore store = WeightStore.open(dir)) {
            config = ClexLayer.attach(config, store);
            return new Transformer(backend, config, ModelWeights.load(backend, config, store));
        }
    }

    public static ModelConfig loadConfig(Path dir) {
        Path file = dir.resolve("config.json");
        return ModelConfig.parse(Json.readObject(file), file.toString());
    }

    public ModelConfig config() { return config; }

    public Backend backend() { return backend; }

    /** Runs the model over a batch with the checkpoint's own RoPE method. */
    public void forward(TokenBatch in, LogitsSink sink) {
        forward(in, config.rope(), sink);
    }

    /** Runs the model over a batch with the given RoPE method. */
    public void forward(TokenBatch in, RopeScaling rope, LogitsSink sink) {
        in.checkVocabulary(config.vocabSize());
        ModelConfig c = config;
        long rows = in.rows();
        int h = c.hiddenSize(), qd = c.qDim(), kvd = c.kvDim(), ffn = c.intermediateSize();
        RopePlan plan = rope.plan(in.positions(), in.ropeLength());
        AttentionShape shape = AttentionShape.selfAttention(in.batch(), in.seq(), c.numHeads(), c.numKvHeads(), c.headDim())
                .withWindow(c.slidingWindow());
        try (Tensor x = backend.allocate(rows * h);
             Tensor hs = backend.allocate(rows * h);
             Tensor q = backend.allocate(rows * qd);
             Tensor k = backend.allocate(rows * kvd);
             Tensor v = backend.allocate(rows * kvd);
             Tensor att = backend.allocate(rows * qd);
             Tensor gate = backend.allocate(rows * ffn);
             Tensor up = backend.allocate(rows * ffn);
             RotaryTable table = backend.rotaryTable(plan.positions(), plan.invFreq(), plan.attentionScale())) {
            backend.embedding(x, weights.embedding(), in.ids(), h);
            for (LayerWeights w : weights.layers()) {
                backend.rmsNorm(hs, x, w.inputNorm(), rows, h, c.rmsNormEps());
                backend.linear(q, hs, w.q(), w.qBias(), rows, h, qd);
                backend.linear(k, hs, w.k(), w.kBias(), rows, h, kvd);
                backend.linear(v, hs, w.v(), w.vBias(), rows, h, kvd);
                backend.rotary(q, table, rows, c.numHeads(), c.headDim());
                backend.rotary(k, table, rows, c.numKvHeads(), c.headDim());
                backend.attention(att, q, k, v, null, shape);
                backend.linear(hs, att, w.o(), w.oBias(), rows, qd, h);
                backend.addInPlace(x, hs, rows * h);

                backend.rmsNorm(hs, x, w.postAttentionNorm(), rows, h, c.rmsNormEps());
                backend.linear(gate, hs, w.gate(), w.gateBias(), rows, h, ffn);
                backend.linear(up, hs, w.up(), w.upBias(), rows, h, ffn);
                backend.swiglu(gate, gate, up, rows * ffn);
                backend.linear(hs, gate, w.down(), w.downBias(), rows, ffn, h);
                backend.addInPlace(x, hs, rows * h);
            }
            backend.rmsNorm(hs, x, weights.finalNorm(), rows, h, c.rmsNormEps());
            emitLogits(hs, rows, sink);
        }
    }

    private void emitLogits(Tensor hidden, long rows, LogitsSink sink) {
        int h = config.hiddenSize(), vocab = config.vocabSize();
        int block = (int) Math.max(1, Math.min(rows, LOGITS_BLOCK_FLOATS / vocab));
        try (Tensor logits = backend.allocate((long) block * vocab)) {
            for (long r = 0; r < rows; r += block) {
                int n = (int) Math.min(block, rows - r);
                backend.gemm(false, true, n, vocab, h, 1f, hidden, r * h, h, weights.lmHead(), 0, h, 0f, logits, 0, vocab);
                sink.accept(r, n, logits);
            }
        }
    }

    @Override
    public void close() {
        weights.close();
    }
}
