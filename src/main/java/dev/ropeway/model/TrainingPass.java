package dev.ropeway.model;

import dev.ropeway.rope.RopePlan;
import dev.ropeway.tensor.AttentionShape;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.DType;
import dev.ropeway.tensor.RotaryTable;
import dev.ropeway.tensor.Tensor;

import java.util.ArrayList;
import java.util.List;

/**
 * The decoder's forward and backward pass for training, written once against {@link Backend} in the llm.c manner:
 * each op's backward called explicitly in reverse order, no autograd. The forward is the same computation as
 * {@link Transformer#forward}, but it keeps what the backward needs.
 *
 * <p>Activation memory is planned once for a batch shape and reused by every step. Without recomputation every
 * layer keeps its activations (about {@code 5 h + 2 (qd + kvd) + 3 ffn} floats per token and layer); with
 * recomputation a layer keeps only its input, and the backward runs that layer's forward again into one shared
 * set of buffers just before differentiating it, which trades a third more compute for activation memory that no
 * longer grows with depth.
 *
 * <p>Gradients are ADDED into the gradient tensors (so micro-batches accumulate); the caller zeroes them per
 * optimizer step.
 *
 * <p>With bfloat16 operands (mixed precision, {@link Backend#trainingOperandType}), every matrix product reads
 * bfloat16: copies of the matrices, refreshed from the float32 master weights at each pass, and the activations that
 * products read (both norms' outputs, the attention output (which its backward reads so too), the MLP's activation,
 * the final norm's output, and each gradient a product takes back), rounded once where they are made; so are the
 * gate and up projections (the largest activations), when they have no biases. Gradients, the residual stream and
 * the other element-wise values stay float32, as do the optimiser's weights and state.
 *
 * <p>Where the backend's attention rounds its operands anyway ({@link Backend#attentionOperandType}: float16 for the
 * GPU's tensor-core kernels, bfloat16 for cuDNN's), each layer keeps its rotated queries, keys and values in that
 * type, written once by the rotary and a copy from one layer's worth of float32 products, and read as they are by the
 * attention forward, its backward and the frequencies' gradient: half their memory, and no conversion in either pass.
 */
public final class TrainingPass implements AutoCloseable {

    /** Summed loss over the counted target tokens of one pass. */
    public record Loss(double sum, long tokens) {
        public double mean() {
            return tokens == 0 ? Double.NaN : sum / tokens;
        }
    }

    private final Backend backend;
    private final ModelConfig c;
    private final ModelWeights weights, grads;
    private final int batch, seq;
    private final long rows;
    private final boolean recompute;
    private final List<Tensor> owned = new ArrayList<>();

    /** Per-layer saved state: every activation, or (recomputing) only {@code xIn}, the others shared. */
    private final LayerActivations[] layers;
    private final Tensor xFinal, normFinal, logits;
    // Backward scratch, one layer's worth.
    private final Tensor dx, dNorm, dq, dk, dv, dAtt, dGate, dUp, dAct;
    private final int logitRows;
    /** Mixed precision: bfloat16 copies of the matrices, and scratch for a product's incoming gradient; else null. */
    private final boolean mixed;
    private final List<Matrices> matrices16 = new ArrayList<>();
    private final Tensor lmHead16, dY16, logits16;
    /** Mixed precision: the residual stream's gradient rounded to bfloat16 where it is made (by the norms' backward). */
    private final Tensor dx16;
    /**
     * Mixed precision with no gate or up biases: the gate and up activations are kept in bfloat16 (rounded once by
     * their products; the largest activations of a layer), and the SwiGLU backward writes its gradients as bfloat16
     * operands.
     */
    private final boolean mlp16;
    /**
     * The type the layers keep attention's operands in: F32 (q, k and v are the products' own outputs, rotated in
     * place), or F16 / BF16, rounded from {@code qLin}, {@code kLin}, {@code vLin} (float32, one layer's worth; v is
     * written rounded by its product instead where products write bfloat16 and that is the type: {@code vLin} null).
     */
    private final DType attentionType;
    private final Tensor qLin, kLin, vLin;

    /** A layer's matrices (bfloat16 copies in mixed precision). */
    private record Matrices(Tensor q, Tensor k, Tensor v, Tensor o, Tensor gate, Tensor up, Tensor down) {
        static Matrices of(LayerWeights w) {
            return new Matrices(w.q(), w.k(), w.v(), w.o(), w.gate(), w.up(), w.down());
        }

        static Matrices of(List<Tensor> t) {
            return new Matrices(t.get(0), t.get(1), t.get(2), t.get(3), t.get(4), t.get(5), t.get(6));
        }

        List<Tensor> all() {
            return List.of(q, k, v, o, gate, up, down);
        }
    }

    private final class LayerActivations {
        final Tensor xIn, norm1, q, k, v, att, lse, xMid, norm2, gate, up, act;
        /** Qwen3: the query and key products before their per-head norm (the norms' backward reads them); else null. */
        final Tensor qPre, kPre;

        LayerActivations(Tensor xIn, LayerActivations shared) {
            this.xIn = xIn;
            if (shared != null) {
                norm1 = shared.norm1; q = shared.q; k = shared.k; v = shared.v; att = shared.att;
                lse = shared.lse;
                xMid = shared.xMid; norm2 = shared.norm2; gate = shared.gate; up = shared.up; act = shared.act;
                qPre = shared.qPre; kPre = shared.kPre;
                return;
            }
            int h = c.hiddenSize(), qd = c.qDim(), kvd = c.kvDim(), ffn = c.intermediateSize();
            norm1 = operand(rows * h);
            q = attentionOperand(rows * qd);
            k = attentionOperand(rows * kvd);
            v = attentionOperand(rows * kvd);
            // Mixed precision: attention writes its output rounded (the output projection's operand; the backward
            // reads it so too).
            att = operand(rows * qd);
            lse = alloc(rows * c.numHeads());
            xMid = alloc(rows * h);
            norm2 = operand(rows * h);
            gate = mlp16 ? operand(rows * ffn) : alloc(rows * ffn);
            up = mlp16 ? operand(rows * ffn) : alloc(rows * ffn);
            act = operand(rows * ffn);
            qPre = c.qkNorm() ? alloc(rows * qd) : null;
            kPre = c.qkNorm() ? alloc(rows * kvd) : null;
        }
    }

    /**
     * Plans the buffers for batches of {@code batch} sequences of {@code seq} tokens. {@code weights} and
     * {@code grads} have the same structure (see {@link ParameterLayout#views}).
     */
    public TrainingPass(Backend backend, ModelConfig config, ModelWeights weights, ModelWeights grads, int batch, int seq,
                        boolean recompute) {
        this(backend, config, weights, grads, batch, seq, recompute, backend.trainingOperandType());
    }

    /** As above, with matrix-product operands in {@code operands}: F32, or BF16 (mixed precision). */
    public TrainingPass(Backend backend, ModelConfig config, ModelWeights weights, ModelWeights grads, int batch, int seq,
                        boolean recompute, DType operands) {
        this(backend, config, weights, grads, batch, seq, recompute, operands, backend.attentionOperandType(config.headDim()));
    }

    /**
     * As above, with attention's queries, keys and values kept in {@code attention}: F32, or the backend's
     * {@link Backend#attentionOperandType} (F16 or BF16).
     */
    public TrainingPass(Backend backend, ModelConfig config, ModelWeights weights, ModelWeights grads, int batch, int seq,
                        boolean recompute, DType operands, DType attention) {
        if (operands != DType.F32 && operands != DType.BF16)
            throw new IllegalArgumentException("training keeps matrix-product operands in F32 or BF16, not " + operands);
        if (attention != DType.F32 && attention != DType.F16 && attention != DType.BF16)
            throw new IllegalArgumentException("training keeps attention's operands in F32, F16 or BF16, not " + attention);
        this.attentionType = attention;
        this.mixed = operands == DType.BF16;
        this.backend = backend;
        this.c = config;
        this.weights = weights;
        this.grads = grads;
        this.batch = batch;
        this.seq = seq;
        this.rows = (long) batch * seq;
        this.recompute = recompute;
        if (rows > Integer.MAX_VALUE) throw new IllegalArgumentException("a training batch of " + rows + " tokens is too large");
        int h = c.hiddenSize(), qd = c.qDim(), kvd = c.kvDim(), ffn = c.intermediateSize();
        mlp16 = mixed && weights.layers().stream().allMatch(w -> w.gateBias() == null && w.upBias() == null);
        try {
            boolean narrow = attention != DType.F32;
            qLin = narrow ? alloc(rows * qd) : null;
            kLin = narrow ? alloc(rows * kvd) : null;
            vLin = narrow && !(mixed && attention == DType.BF16) ? alloc(rows * kvd) : null;
            layers = new LayerActivations[c.numLayers()];
            LayerActivations shared = recompute ? new LayerActivations(alloc(rows * h), null) : null;
            for (int i = 0; i < layers.length; i++)
                layers[i] = new LayerActivations(i == 0 && shared != null ? shared.xIn : alloc(rows * h), shared);
            xFinal = alloc(rows * h);
            normFinal = operand(rows * h);
            logitRows = (int) Math.max(1, Math.min(rows, backend.blockFloats() / c.vocabSize()));
            logits = alloc((long) logitRows * c.vocabSize());
            if (mixed) {
                for (LayerWeights w : weights.layers()) {
                    matrices16.add(Matrices.of(Matrices.of(w).all().stream().map(t -> operand(t.size())).toList()));
                }
                lmHead16 = operand(weights.lmHead().size());
                dY16 = operand(rows * Math.max(Math.max(qd, kvd), mlp16 ? 0 : ffn));
                dx16 = operand(rows * h);
                logits16 = operand((long) logitRows * c.vocabSize());
            } else {
                for (LayerWeights w : weights.layers()) matrices16.add(Matrices.of(w));
                lmHead16 = weights.lmHead();
                dY16 = null;
                dx16 = null;
                logits16 = null;
            }
            dx = alloc(rows * h);
            dNorm = alloc(rows * h);
            dq = alloc(rows * qd);
            dAtt = alloc(rows * qd);
            dk = alloc(rows * kvd);
            dv = alloc(rows * kvd);
            dGate = mlp16 ? operand(rows * ffn) : alloc(rows * ffn);
            dUp = mlp16 ? operand(rows * ffn) : alloc(rows * ffn);
            dAct = alloc(rows * ffn);
        } catch (RuntimeException e) {
            close();
            throw e;
        }
    }

    /**
     * The bytes of the buffers a pass allocates for {@code batch} sequences of {@code seq} tokens, keeping every
     * layer's activations and recomputing them; the backend's short-lived scratch inside ops is not counted.
     */
    public record Memory(long keeping, long recomputing) {

        /** For a pass on {@code backend}, with its mixed-precision setting, attention operands and logits block size. */
        public static Memory of(Backend backend, ModelConfig c, int batch, int seq) {
            return of(c, batch, seq, backend.trainingOperandType(), backend.attentionOperandType(c.headDim()),
                    backend.blockFloats());
        }

        /** As a pass with float32 attention operands allocates. */
        public static Memory of(ModelConfig c, int batch, int seq, DType operands, long blockFloats) {
            return of(c, batch, seq, operands, DType.F32, blockFloats);
        }

        /** The sizes the constructor allocates, counted: one layer's set, the shared buffers, the backward's scratch. */
        public static Memory of(ModelConfig c, int batch, int seq, DType operands, DType attention, long blockFloats) {
            boolean mixed = operands == DType.BF16, mlp16 = mixed && !c.mlpBias(), narrow = attention != DType.F32;
            long rows = (long) batch * seq, h = c.hiddenSize(), qd = c.qDim(), kvd = c.kvDim(), ffn = c.intermediateSize();
            long vocab = c.vocabSize(), op = mixed ? 2 : 4, mlp = mlp16 ? 2 : 4, at = attention.bytes();
            long layerInput = 4 * rows * h;
            long layerSet = rows * (op * h + at * (qd + 2 * kvd) + op * qd + 4L * c.numHeads()
                    + 4 * h + op * h + 2 * mlp * ffn + op * ffn + (c.qkNorm() ? 4 * (qd + kvd) : 0));
            long logitRows = Math.max(1, Math.min(rows, blockFloats / vocab));
            long shared = rows * (4 * h + op * h) + 4 * logitRows * vocab
                    + rows * (8 * h + 8 * qd + 8 * kvd + 2 * mlp * ffn + 4 * ffn)
                    + (narrow ? 4 * rows * (qd + kvd + (mixed && attention == DType.BF16 ? 0 : kvd)) : 0);
            if (mixed) {
                long matrices = h * qd + 2 * h * kvd + qd * h + 3 * h * ffn;
                shared += 2 * (c.numLayers() * matrices + vocab * h) + 2 * rows * Math.max(Math.max(qd, kvd), mlp16 ? 0 : ffn)
                        + 2 * rows * h + 2 * logitRows * vocab;
            }
            long layers = c.numLayers();
            return new Memory(shared + layers * (layerInput + layerSet), shared + layers * layerInput + layerSet);
        }

        /**
         * Whether to recompute, and why: {@code mode} unless it is {@link Recompute#AUTO}, which keeps the activations
         * when they fit in {@code available} bytes (unknown: keep them) with a sixteenth and 256 MiB to spare for the
         * ops' scratch, and recomputes otherwise.
         */
        public Decision decide(Recompute mode, java.util.OptionalLong available) {
            String free = available.isPresent() ? " (" + gib(available.getAsLong()) + " available)" : "";
            return switch (mode) {
                case ON -> new Decision(true, "recomputing activations in the backward: " + gib(recomputing)
                        + " of training buffers" + free);
                case OFF -> new Decision(false, "keeping all activations: " + gib(keeping) + " of training buffers" + free);
                case AUTO -> {
                    if (available.isEmpty() || keeping + reserve(available.getAsLong()) <= available.getAsLong())
                        yield new Decision(false, "keeping all activations: " + gib(keeping) + " of training buffers" + free);
                    long a = available.getAsLong();
                    String note = recomputing + reserve(a) <= a ? ""
                            : "; that is still more than is free: fewer sequences per micro-batch (and more micro-batches"
                              + " per step) would fit";
                    yield new Decision(true, "recomputing activations in the backward: keeping them all would take "
                            + gib(keeping) + " with " + gib(a) + " available; recomputing takes " + gib(recomputing) + note);
                }
            };
        }

        private static long reserve(long available) {
            return available / 16 + (256L << 20);
        }

        private static String gib(long bytes) {
            return String.format(java.util.Locale.ROOT, "%.2f GiB", bytes / (double) (1L << 30));
        }
    }

    /** A recomputation choice and the sentence that explains it. */
    public record Decision(boolean recompute, String explanation) {}

    /**
     * Whether a pass on {@code backend} of {@code batch} sequences of {@code seq} tokens recomputes: {@code mode}, with
     * {@link Recompute#AUTO} decided from this shape's {@link Memory} and the memory the backend has left now.
     */
    public static Decision recomputation(Backend backend, ModelConfig c, int batch, int seq, Recompute mode) {
        return Memory.of(backend, c, batch, seq).decide(mode, backend.memoryAvailable());
    }

    private Tensor alloc(long size) {
        Tensor t = backend.allocate(size);
        owned.add(t);
        return t;
    }

    /** A buffer of attention's operands as the layers keep them. */
    private Tensor attentionOperand(long size) {
        if (attentionType == DType.F32) return alloc(size);
        Tensor t = backend.allocate(size, attentionType);
        owned.add(t);
        return t;
    }

    /** A buffer that matrix products read: bfloat16 in mixed precision. */
    private Tensor operand(long size) {
        if (!mixed) return alloc(size);
        Tensor t = backend.allocate(size, DType.BF16);
        owned.add(t);
        return t;
    }

    /** Whether products read bfloat16 copies (mixed precision). */
    public boolean mixedPrecision() {
        return mixed;
    }

    public int batch() {
        return batch;
    }

    public int seq() {
        return seq;
    }

    /**
     * Forward and backward over one micro-batch. {@code ids} are {@code batch * seq} input tokens; {@code targets}
     * the token each row should predict (below 0: not scored). Gradients of {@code gradScale * sum of token losses}
     * are added to the gradient tensors, and, when {@code dInvFreq} is not null, d(that)/d(inverse frequency) to it.
     */
    public Loss run(int[] ids, int[] targets, RopePlan plan, float gradScale, double[] dInvFreq) {
        if (ids.length != rows || targets.length != rows)
            throw new IllegalArgumentException("expected " + rows + " ids and targets, got " + ids.length + " and " + targets.length);
        if (plan.positions().length != rows)
            throw new IllegalArgumentException("RoPE plan has " + plan.positions().length + " positions for " + rows + " rows");
        for (int i = 0; i < rows; i++)
            if (ids[i] < 0 || ids[i] >= c.vocabSize() || targets[i] >= c.vocabSize())
                throw new IllegalArgumentException("token id outside the vocabulary at row " + i);
        int h = c.hiddenSize();
        float eps = c.rmsNormEps();
        AttentionShape shape = AttentionShape.selfAttention(batch, seq, c.numHeads(), c.numKvHeads(), c.headDim())
                .withWindow(c.slidingWindow());
        if (mixed) refreshMatrices();
        try (RotaryTable table = backend.rotaryTable(plan.positions(), plan.invFreq(), plan.attentionScale())) {
            backend.embedding(layers[0].xIn, weights.embedding(), ids, h);
            inputNorm(0);
            for (int l = 0; l < layers.length; l++) {
                // Each layer's last residual add is fused with the norm that reads its result (the next layer's
                // input norm, or the final norm).
                boolean last = l + 1 == layers.length;
                layerForward(l, table, shape, last ? xFinal : layers[l + 1].xIn, last ? normFinal : layers[l + 1].norm1,
                        last ? weights.finalNorm() : weights.layers().get(l + 1).inputNorm());
            }
            Loss loss = headForwardBackward(targets, gradScale);
            backend.rmsNormBackward(dx, grads.finalNorm(), dNorm, xFinal, weights.finalNorm(), rows, h, eps);
            if (mixed) backend.copy(dx16, 0, dx, 0, rows * h);
            for (int l = layers.length - 1; l >= 0; l--) {
                // Recomputing: the shared buffers still hold the last layer's activations; the others are redone, up
                // to the MLP's activation (the layer's output is already saved as the next layer's input).
                if (recompute && l < layers.length - 1) {
                    inputNorm(l);
                    layerForward(l, table, shape, null, null, null);
                }
                layerBackward(l, table, shape, plan.positions(), dInvFreq);
            }
            backend.embeddingBackward(grads.embedding(), dx, ids, h);
            return loss;
        }
    }

    /** The bfloat16 copies of the matrices, from the master weights as they are now (after the last optimizer step). */
    private void refreshMatrices() {
        for (int l = 0; l < matrices16.size(); l++) {
            List<Tensor> from = Matrices.of(weights.layers().get(l)).all(), to = matrices16.get(l).all();
            for (int i = 0; i < from.size(); i++) backend.copy(to.get(i), 0, from.get(i), 0, from.get(i).size());
        }
        backend.copy(lmHead16, 0, weights.lmHead(), 0, weights.lmHead().size());
    }

    /** Layer {@code l}'s input norm into its {@code norm1} (the other layers' come fused with the add before them). */
    private void inputNorm(int l) {
        backend.rmsNorm(layers[l].norm1, layers[l].xIn, weights.layers().get(l).inputNorm(), rows, c.hiddenSize(),
                c.rmsNormEps());
    }

    /**
     * Layer {@code l}: from {@code layers[l].xIn}, whose input norm is already in {@code norm1}, to {@code out},
     * keeping the activations; when {@code nextNorm} is not null it also receives {@code out} normed with
     * {@code nextWeight}. A null {@code out} stops after the MLP's activation (all a recomputing backward needs).
     */
    private void layerForward(int l, RotaryTable table, AttentionShape shape, Tensor out, Tensor nextNorm,
                              Tensor nextWeight) {
        LayerWeights w = weights.layers().get(l);
        Matrices m = matrices16.get(l);
        LayerActivations a = layers[l];
        int h = c.hiddenSize(), qd = c.qDim(), kvd = c.kvDim(), ffn = c.intermediateSize();
        float eps = c.rmsNormEps();
        if (attentionType == DType.F32) {
            queriesAndKeys(l, a.q, a.k);
            backend.linear(a.v, a.norm1, m.v(), w.vBias(), rows, h, kvd);
            backend.rotary(a.q, table, rows, c.numHeads(), c.headDim());
            backend.rotary(a.k, table, rows, c.numKvHeads(), c.headDim());
        } else {
            // The products in float32, rotated and rounded into the layer's narrow copies in one pass each.
            queriesAndKeys(l, qLin, kLin);
            backend.rotary(a.q, qLin, table, rows, c.numHeads(), c.headDim());
            backend.rotary(a.k, kLin, table, rows, c.numKvHeads(), c.headDim());
            if (vLin == null) {
                backend.linear(a.v, a.norm1, m.v(), w.vBias(), rows, h, kvd);
            } else {
                backend.linear(vLin, a.norm1, m.v(), w.vBias(), rows, h, kvd);
                backend.copy(a.v, 0, vLin, 0, rows * kvd);
            }
        }
        backend.attention(a.att, a.q, a.k, a.v, a.lse, shape);
        backend.linear(a.xMid, a.att, m.o(), w.oBias(), rows, qd, h);
        backend.addRmsNorm(a.norm2, a.xMid, a.xMid, a.xIn, w.postAttentionNorm(), rows, h, eps);
        backend.linear(a.gate, a.norm2, m.gate(), w.gateBias(), rows, h, ffn);
        backend.linear(a.up, a.norm2, m.up(), w.upBias(), rows, h, ffn);
        backend.swiglu(a.act, a.gate, a.up, rows * ffn);
        if (out == null) return;
        backend.linear(out, a.act, m.down(), w.downBias(), rows, ffn, h);
        if (nextNorm != null) backend.addRmsNorm(nextNorm, out, out, a.xMid, nextWeight, rows, h, eps);
        else backend.addInPlace(out, a.xMid, rows * h);
    }

    /**
     * Layer {@code l}'s unrotated queries and keys into {@code q} and {@code k}: the products of its normed input, and
     * for Qwen3 each head's RMSNorm of them (the products kept in {@code qPre} and {@code kPre} for the backward).
     */
    private void queriesAndKeys(int l, Tensor q, Tensor k) {
        LayerWeights w = weights.layers().get(l);
        Matrices m = matrices16.get(l);
        LayerActivations a = layers[l];
        int h = c.hiddenSize(), qd = c.qDim(), kvd = c.kvDim();
        if (!c.qkNorm()) {
            backend.linear(q, a.norm1, m.q(), w.qBias(), rows, h, qd);
            backend.linear(k, a.norm1, m.k(), w.kBias(), rows, h, kvd);
            return;
        }
        backend.linear(a.qPre, a.norm1, m.q(), w.qBias(), rows, h, qd);
        backend.linear(a.kPre, a.norm1, m.k(), w.kBias(), rows, h, kvd);
        backend.rmsNorm(q, a.qPre, w.qNorm(), rows * c.numHeads(), c.headDim(), c.rmsNormEps());
        backend.rmsNorm(k, a.kPre, w.kNorm(), rows * c.numKvHeads(), c.headDim(), c.rmsNormEps());
    }

    /**
     * Logits in blocks of rows, each turned into d loss / d logits by the fused cross-entropy, then into
     * {@code dNorm} (gradient of the final norm's output) and the head's gradient.
     */
    private Loss headForwardBackward(int[] targets, float gradScale) {
        int h = c.hiddenSize(), vocab = c.vocabSize();
        double sum = 0;
        long counted = 0;
        int[] blockTargets = new int[logitRows];
        for (long r = 0; r < rows; r += logitRows) {
            int n = (int) Math.min(logitRows, rows - r);
            if (blockTargets.length != n) blockTargets = new int[n];
            System.arraycopy(targets, (int) r, blockTargets, 0, n);
            backend.gemm(false, true, n, vocab, h, 1f, normFinal, r * h, h, lmHead16, 0, h, 0f, logits, 0, vocab);
            Tensor dLogits = mixed ? logits16 : logits;
            double[] losses = backend.crossEntropyBackward(logits, dLogits, blockTargets, n, vocab, gradScale);
            for (int i = 0; i < n; i++)
                if (blockTargets[i] >= 0) {
                    sum += losses[i];
                    counted++;
                }
            backend.gemm(false, false, n, h, vocab, 1f, dLogits, 0, vocab, lmHead16, 0, h, 0f, dNorm, r * h, h);
            backend.gemm(true, false, vocab, h, n, 1f, dLogits, 0, vocab, normFinal, r * h, h, 1f, grads.lmHead(), 0, h);
        }
        return new Loss(sum, counted);
    }

    /** On entry {@code dx} = d loss / d (layer l's output); on exit d loss / d (layer l's input). */
    private void layerBackward(int l, RotaryTable table, AttentionShape shape, float[] positions, double[] dInvFreq) {
        LayerWeights w = weights.layers().get(l), g = grads.layers().get(l);
        Matrices m = matrices16.get(l);
        LayerActivations a = layers[l];
        int h = c.hiddenSize(), qd = c.qDim(), kvd = c.kvDim(), ffn = c.intermediateSize();
        float eps = c.rmsNormEps();

        // MLP branch: out = xMid + down(swiglu(gate(norm2), up(norm2))). In mixed precision dx16 holds dx rounded.
        linearBackward(dAct, g.down(), g.downBias(), dx, dx16, a.act, m.down(), ffn, h, false);
        backend.swigluBackward(dGate, dUp, dAct, a.gate, a.up, rows * ffn);
        Tensor dGate16 = mlp16 ? dGate : null, dUp16 = mlp16 ? dUp : null;
        linearBackward(dNorm, g.gate(), g.gateBias(), dGate, dGate16, a.norm2, m.gate(), h, ffn, false);
        linearBackward(dNorm, g.up(), g.upBias(), dUp, dUp16, a.norm2, m.up(), h, ffn, true);
        backend.rmsNormBackwardAdd(dx, dx16, g.postAttentionNorm(), dNorm, a.xMid, w.postAttentionNorm(), rows, h, eps);

        // Attention branch: xMid = xIn + o(attention(rotary(q(norm1)), rotary(k(norm1)), v(norm1))).
        linearBackward(dAtt, g.o(), g.oBias(), dx, dx16, a.att, m.o(), qd, h, false);
        backend.attentionBackward(dq, dk, dv, dAtt, a.q, a.k, a.v, a.att, a.lse, shape);
        // The rotated q and k are still in a.q / a.k: the frequency gradient reads them. In mixed precision each
        // un-rotated gradient is also rounded, in the same pass, into the operand its products read.
        // With Qwen3's per-head norms between the products and the rotation, their backward comes in between, and the
        // products' gradient is rounded after it.
        boolean normed = c.qkNorm();
        Tensor rounded = mixed && !normed ? dY16 : null;
        backend.rotaryBackward(dq, rounded, dInvFreq == null ? null : a.q, table, positions, dInvFreq, rows, c.numHeads(),
                c.headDim());
        if (normed)
            backend.rmsNormBackward(dq, g.qNorm(), dq, a.qPre, w.qNorm(), rows * c.numHeads(), c.headDim(), eps);
        linearBackward(dNorm, g.q(), g.qBias(), dq, rounded, a.norm1, m.q(), h, qd, false);
        backend.rotaryBackward(dk, rounded, dInvFreq == null ? null : a.k, table, positions, dInvFreq, rows,
                c.numKvHeads(), c.headDim());
        if (normed)
            backend.rmsNormBackward(dk, g.kNorm(), dk, a.kPre, w.kNorm(), rows * c.numKvHeads(), c.headDim(), eps);
        linearBackward(dNorm, g.k(), g.kBias(), dk, rounded, a.norm1, m.k(), h, kvd, true);
        linearBackward(dNorm, g.v(), g.vBias(), dv, null, a.norm1, m.v(), h, kvd, true);
        backend.rmsNormBackwardAdd(dx, dx16, g.inputNorm(), dNorm, a.xIn, w.inputNorm(), rows, h, eps);
    }

    /**
     * Backward of {@code y[rows, out] = x[rows, in] w[out, in]^T + b}: {@code dX (+)= dY w}, {@code dW += dY^T x},
     * {@code dB += column sums of dY}. With {@code accumulate}, dX is added to rather than overwritten. In mixed
     * precision both products read dY rounded to bfloat16: {@code dYRounded} when its producer already rounded it
     * (null otherwise: it is rounded here, once).
     */
    private void linearBackward(Tensor dX, Tensor dW, Tensor dB, Tensor dY, Tensor dYRounded, Tensor x, Tensor w,
                                int in, int out, boolean accumulate) {
        int n = (int) rows;
        Tensor dYp = dY;
        if (mixed) {
            dYp = dYRounded;
            if (dYp == null) {
                backend.copy(dY16, 0, dY, 0, rows * out);
                dYp = dY16;
            }
        }
        backend.gemm(false, false, n, in, out, 1f, dYp, 0, out, w, 0, in, accumulate ? 1f : 0f, dX, 0, in);
        backend.gemm(true, false, out, in, n, 1f, dYp, 0, out, x, 0, in, 1f, dW, 0, in);
        if (dB != null) backend.sumRows(dB, dY, rows, out);
    }

    @Override
    public void close() {
        for (Tensor t : owned) t.close();
        owned.clear();
    }
}
