package dev.ropeway.model;

import dev.ropeway.io.Json;
import dev.ropeway.io.WeightStore;
import dev.ropeway.rope.RopePlan;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.tensor.AttentionShape;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.DecodeStep;
import dev.ropeway.tensor.RotaryTable;
import dev.ropeway.tensor.Tensor;

import java.nio.file.Path;
import java.util.List;

/**
 * The decoder forward pass, written once against {@link Backend}: embedding, then per layer RMSNorm, q/k/v
 * projections (each head's queries and keys RMS-normed where the architecture does so), rotary embedding (from the
 * {@link RopePlan} of the active RoPE method), causal grouped-query attention (within a sliding window where the config
 * sets one), output projection, residual, RMSNorm, SwiGLU MLP, residual; final RMSNorm and the vocabulary projection,
 * streamed to a {@link LogitsSink} in blocks of rows.
 *
 * <p>Activation memory is linear in the number of tokens: attention is tiled, and logits are produced in blocks.
 */
public final class Transformer implements AutoCloseable {

    private final Backend backend;
    private final ModelConfig config;
    private final ModelWeights weights;
    private final RecordedBatches recordedBatches = new RecordedBatches(this);

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
        if (java.nio.file.Files.isRegularFile(dir) && dir.getFileName().toString().toLowerCase(java.util.Locale.ROOT).endsWith(".gguf"))
            throw new dev.ropeway.RopewayException(dir + " is a GGUF file; models load from checkpoint folders. Read it "
                    + "through its cached import, GgufCache.folder(file, log), as --model does on the command line, or "
                    + "convert it once with: ropeway import --gguf " + dir + " --out <dir>");
        Path file = dir.resolve("config.json");
        return ModelConfig.parse(Json.readObject(file), file.toString());
    }

    public ModelConfig config() { return config; }

    public Backend backend() { return backend; }

    ModelWeights weights() { return weights; }

    /** The recorded batched decode steps of this model's decoders. */
    RecordedBatches recordedBatches() { return recordedBatches; }

    /** Runs the model over a batch with the checkpoint's own RoPE method. */
    public void forward(TokenBatch in, LogitsSink sink) {
        forward(in, config.rope(), sink);
    }

    /** Runs the model over a batch with the given RoPE method. */
    public void forward(TokenBatch in, RopeScaling rope, LogitsSink sink) {
        in.checkVocabulary(config.vocabSize());
        ModelConfig c = config;
        long rows = in.rows();
        RopePlan plan = rope.plan(in.positions(), in.ropeLength());
        AttentionShape shape = AttentionShape.selfAttention(in.batch(), in.seq(), c.numHeads(), c.numKvHeads(), c.headDim())
                .withWindow(c.slidingWindow());
        try (Tensor x = backend.allocate(rows * c.hiddenSize());
             Tensor k = backend.allocate(rows * c.kvDim());
             Tensor v = backend.allocate(rows * c.kvDim());
             RotaryTable table = backend.rotaryTable(plan.positions(), plan.invFreq(), plan.attentionScale())) {
            backend.embedding(x, weights.embedding(), in.ids(), c.hiddenSize());
            layers(x, rows, shape, table, table, layer -> new LayerKv(k, v, null, k, v, null));
            finalNorm(x, x, rows);
            emitLogits(x, 0, rows, sink);
        }
    }

    /**
     * Where a layer's attention finds its keys and values: the new rows are computed into {@code newKeys},
     * {@code newValues} (and {@code rawKeys}, unrotated), and attention reads {@code keys} and {@code values}. For a
     * narrow KV cache, or one laid out head by head, the new rows are float32 scratch, stored after rotation
     * ({@link dev.ropeway.tensor.Backend#storeKv}, at the attention shape's new positions) into the whole caches that
     * {@code stored} names as {@code keys}, {@code values} and {@code rawKeys}.
     */
    record LayerKv(Tensor newKeys, Tensor newValues, Tensor rawKeys, Tensor keys, Tensor values, LayerKv stored) {}

    /**
     * The decoder stack over {@code rows} embedded tokens in {@code x}, the residual stream, updated in place. Queries
     * are rotated with {@code queryTable} and new keys with {@code keyTable} (the same table for a plain forward).
     */
    void layers(Tensor x, long rows, AttentionShape shape, RotaryTable queryTable, RotaryTable keyTable,
                  java.util.function.IntFunction<LayerKv> kvOf) {
        layers(x, rows, shape, queryTable, keyTable, kvOf, null);
    }

    /**
     * As above; with a {@code step}, one token whose position the backend reads from the step when the ops run (a
     * recorded decode step): each layer's {@code stored} names its whole caches (keys, values and unrotated keys, or
     * null), the new rows are stored at the step's position, and attention runs at it ({@code shape} covering the cache).
     */
    void layers(Tensor x, long rows, AttentionShape shape, RotaryTable queryTable, RotaryTable keyTable,
                java.util.function.IntFunction<LayerKv> kvOf, DecodeStep step) {
        if (step != null && rows != 1) throw new IllegalArgumentException("a decode step runs one token, got " + rows);
        ModelConfig c = config;
        int h = c.hiddenSize(), kvd = c.kvDim();
        stack(x, rows, (l, w, hs, q, att) -> {
            LayerKv kv = kvOf.apply(l);
            if (kv.rawKeys() != null) {
                keys(kv.rawKeys(), hs, w, rows);
                backend.copy(kv.newKeys(), 0, kv.rawKeys(), 0, rows * kvd);
            } else {
                keys(kv.newKeys(), hs, w, rows);
            }
            backend.linear(kv.newValues(), hs, w.v(), w.vBias(), rows, h, kvd);
            backend.rotary(q, queryTable, rows, c.numHeads(), c.headDim());
            backend.rotary(kv.newKeys(), keyTable, rows, c.numKvHeads(), c.headDim());
            if (step != null) {
                LayerKv to = kv.stored();
                backend.storeKv(to.keys(), kv.newKeys(), shape, step);
                backend.storeKv(to.values(), kv.newValues(), shape, step);
                if (to.rawKeys() != null) backend.storeKv(to.rawKeys(), kv.rawKeys(), shape, step);
            } else if (kv.stored() != null) {
                LayerKv to = kv.stored();
                backend.storeKv(to.keys(), kv.newKeys(), shape);
                backend.storeKv(to.values(), kv.newValues(), shape);
                if (to.rawKeys() != null) backend.storeKv(to.rawKeys(), kv.rawKeys(), shape);
            }
            if (step != null) backend.attention(att, q, kv.keys(), kv.values(), shape, step);
            else backend.attention(att, q, kv.keys(), kv.values(), null, shape);
        });
    }

    /**
     * One new token of each of several sequences, each with its own KV cache: row i of {@code x} is sequence i's
     * token. Its queries and keys are rotated with its own tables, its new key and value are stored in its cache
     * ({@code kvOf} of a layer names the whole caches as {@code newKeys}, {@code newValues} and, when the cache keeps
     * them, {@code rawKeys}, where {@link dev.ropeway.tensor.Backend#storeKv} puts the row at the shape's position, and
     * as {@code keys}, {@code values}), and attention reads its cache alone; every matrix product runs once over all the
     * rows, so the weights are read once for the whole batch. With a {@code step} (a recorded batched step) the
     * sequence's token position is read from it when the ops run: the new rows are stored at the step's position, and
     * attention runs at it ({@code shape} covering the cache).
     */
    record SequenceRow(RotaryTable queries, RotaryTable keys, AttentionShape shape,
                       java.util.function.IntFunction<LayerKv> kvOf, DecodeStep step) {
        SequenceRow(RotaryTable queries, RotaryTable keys, AttentionShape shape, java.util.function.IntFunction<LayerKv> kvOf) {
            this(queries, keys, shape, kvOf, null);
        }
    }

    void layers(Tensor x, List<SequenceRow> sequences) {
        ModelConfig c = config;
        int rows = sequences.size(), h = c.hiddenSize(), qd = c.qDim(), kvd = c.kvDim();
        try (Tensor newKeys = backend.allocate((long) rows * kvd);
             Tensor newValues = backend.allocate((long) rows * kvd);
             Tensor rawKeys = backend.allocate((long) rows * kvd)) {
            stack(x, rows, (l, w, hs, q, att) -> {
                List<LayerKv> kvs = new java.util.ArrayList<>(rows);
                boolean anyRaw = false;
                for (SequenceRow s : sequences) {
                    LayerKv kv = s.kvOf().apply(l);
                    kvs.add(kv);
                    anyRaw |= kv.rawKeys() != null;
                }
                if (anyRaw) {
                    keys(rawKeys, hs, w, rows);
                    backend.copy(newKeys, 0, rawKeys, 0, (long) rows * kvd);
                } else {
                    keys(newKeys, hs, w, rows);
                }
                backend.linear(newValues, hs, w.v(), w.vBias(), rows, h, kvd);
                for (int i = 0; i < rows; i++) {
                    SequenceRow s = sequences.get(i);
                    LayerKv kv = kvs.get(i);
                    Tensor qi = backend.view(q, (long) i * qd, qd), ki = backend.view(newKeys, (long) i * kvd, kvd);
                    Tensor vi = backend.view(newValues, (long) i * kvd, kvd), ai = backend.view(att, (long) i * qd, qd);
                    backend.rotary(qi, s.queries(), 1, c.numHeads(), c.headDim());
                    backend.rotary(ki, s.keys(), 1, c.numKvHeads(), c.headDim());
                    Tensor ri = kv.rawKeys() == null ? null : backend.view(rawKeys, (long) i * kvd, kvd);
                    if (s.step() != null) {
                        backend.storeKv(kv.newKeys(), ki, s.shape(), s.step());
                        backend.storeKv(kv.newValues(), vi, s.shape(), s.step());
                        if (ri != null) backend.storeKv(kv.rawKeys(), ri, s.shape(), s.step());
                        backend.attention(ai, qi, kv.keys(), kv.values(), s.shape(), s.step());
                    } else {
                        backend.storeKv(kv.newKeys(), ki, s.shape());
                        backend.storeKv(kv.newValues(), vi, s.shape());
                        if (ri != null) backend.storeKv(kv.rawKeys(), ri, s.shape());
                        backend.attention(ai, qi, kv.keys(), kv.values(), null, s.shape());
                    }
                }
            });
        }
    }

    /** A layer's unrotated keys of {@code rows} normed rows {@code hs}: the product, and Qwen3's per-head norm. */
    private void keys(Tensor out, Tensor hs, LayerWeights w, long rows) {
        ModelConfig c = config;
        backend.linear(out, hs, w.k(), w.kBias(), rows, c.hiddenSize(), c.kvDim());
        if (w.kNorm() != null) backend.rmsNorm(out, out, w.kNorm(), rows * c.numKvHeads(), c.headDim(), c.rmsNormEps());
    }

    /**
     * The part of a layer between its queries' product (and norm) and the output projection: rotation, keys, values,
     * attention.
     */
    @FunctionalInterface
    private interface AttentionPart {
        /** From the layer's normed input {@code hs} and its unrotated queries {@code q}, the attention output {@code att}. */
        void run(int layer, LayerWeights w, Tensor hs, Tensor q, Tensor att);
    }

    /** The decoder stack over {@code rows} rows of the residual stream {@code x} (updated in place). */
    private void stack(Tensor x, long rows, AttentionPart attention) {
        ModelConfig c = config;
        int h = c.hiddenSize(), qd = c.qDim(), ffn = c.intermediateSize();
        try (Tensor hs = backend.allocate(rows * h);
             Tensor q = backend.allocate(rows * qd);
             Tensor att = backend.allocate(rows * qd);
             Tensor gate = backend.allocate(rows * ffn);
             Tensor up = backend.allocate(rows * ffn)) {
            List<LayerWeights> all = weights.layers();
            for (int l = 0; l < all.size(); l++) {
                LayerWeights w = all.get(l);
                // The previous layer's MLP output (in hs) is added to the stream by the fused add + norm.
                if (l == 0) backend.rmsNorm(hs, x, w.inputNorm(), rows, h, c.rmsNormEps());
                else backend.addRmsNorm(hs, x, x, hs, w.inputNorm(), rows, h, c.rmsNormEps());
                backend.linear(q, hs, w.q(), w.qBias(), rows, h, qd);
                if (w.qNorm() != null) backend.rmsNorm(q, q, w.qNorm(), rows * c.numHeads(), c.headDim(), c.rmsNormEps());
                attention.run(l, w, hs, q, att);
                backend.linear(hs, att, w.o(), w.oBias(), rows, qd, h);
                backend.addRmsNorm(hs, x, x, hs, w.postAttentionNorm(), rows, h, c.rmsNormEps());
                backend.linear(gate, hs, w.gate(), w.gateBias(), rows, h, ffn);
                backend.linear(up, hs, w.up(), w.upBias(), rows, h, ffn);
                backend.swiglu(gate, gate, up, rows * ffn);
                backend.linear(hs, gate, w.down(), w.downBias(), rows, ffn, h);
            }
            if (!all.isEmpty()) backend.addInPlace(x, hs, rows * h);
        }
    }

    /** The final RMSNorm of {@code rows} rows of the residual stream {@code x} into {@code out}. */
    void finalNorm(Tensor out, Tensor x, long rows) {
        backend.rmsNorm(out, x, weights.finalNorm(), rows, config.hiddenSize(), config.rmsNormEps());
    }

    /** The logits of {@code rows} hidden rows into {@code out} (rows × vocabulary). */
    void logits(Tensor hidden, int rows, Tensor out) {
        int h = config.hiddenSize(), vocab = config.vocabSize();
        backend.gemm(false, true, rows, vocab, h, 1f, hidden, 0, h, weights.lmHead(), 0, h, 0f, out, 0, vocab);
    }

    /** Logits of hidden rows {@code [from, rows)}, streamed to the sink in blocks (row numbers counted from {@code from}). */
    void emitLogits(Tensor hidden, long from, long rows, LogitsSink sink) {
        int h = config.hiddenSize(), vocab = config.vocabSize();
        long count = rows - from;
        int block = (int) Math.max(1, Math.min(count, 2 * backend.blockFloats() / vocab));
        try (Tensor logits = backend.allocate((long) block * vocab)) {
            for (long r = 0; r < count; r += block) {
                int n = (int) Math.min(block, count - r);
                backend.gemm(false, true, n, vocab, h, 1f, hidden, (from + r) * h, h, weights.lmHead(), 0, h, 0f, logits, 0, vocab);
                sink.accept(r, n, logits);
            }
        }
    }

    @Override
    public void close() {
        recordedBatches.close();
        weights.close();
    }
}
