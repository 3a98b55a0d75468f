package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;

/**
 * The compute contract every backend implements (CPU now, CUDA later). Each op is explicit, llm.c-style:
 * the caller owns the buffers and passes the dimensions. Buffers hold float32 (a KV cache and the operands of
 * mixed-precision products may be narrower: see {@link #allocateKv} and {@link #allocate(long, DType)}). Matrices are
 * row-major.
 *
 * <p>Memory use must stay linear in the sequence length: in particular {@link #attention} never allocates
 * a seq x seq buffer.
 */
public interface Backend extends AutoCloseable {

    String name();

    /** A zero-filled buffer of {@code size} floats. */
    Tensor allocate(long size);

    /**
     * A zero-filled buffer of {@code size} elements of {@code dtype}: F32 (what {@link #allocate(long)} makes), F16 or
     * BF16 where {@link #attentionOperandType} names it (attention's operands as a training pass keeps them: written by
     * {@link #rotary(Tensor, Tensor, RotaryTable, long, int, int)} and {@link #copy}, read by {@link #attention},
     * {@link #attentionBackward} and {@link #rotaryBackward} as {@code rotated}), or BF16,
     * the storage of matrix-product operands in mixed-precision training (see {@link #trainingOperandType}). A
     * bfloat16 tensor is written by {@link #copy} (which rounds float32 to nearest even), as the {@code out} of
     * {@link #rmsNorm}, {@link #swiglu} and {@link #attention}, and as the {@code y} of {@link #linear} (the float32
     * result rounded once; its operands then bfloat16 too); it is read by {@link #gemm} and {@link #linear} as an
     * operand (never as {@link #gemm}'s result; a backend may ask for both operands of one product in the same type),
     * by {@link #swiglu} and {@link #swigluBackward} as {@code gate} and {@code up} (both, widened exactly), by
     * {@link #attentionBackward} as {@code out}, by {@link #copy} and by {@link #download}. Other ops refuse it. A backend that cannot store {@code dtype} says so.
     */
    default Tensor allocate(long size, DType dtype) {
        if (dtype == DType.F32) return allocate(size);
        throw new IllegalArgumentException("allocate: the " + name() + " backend does not store " + dtype + " tensors");
    }

    /**
     * The type training keeps its matrix-product operands in: F32, or BF16 where products run on bfloat16 anyway (the
     * GPU backend with bfloat16 matmul precision). With BF16, training keeps float32 master weights, gradients and
     * optimiser state, and bfloat16 copies of the matrices and of the activations that products read.
     */
    default DType trainingOperandType() {
        return DType.F32;
    }

    /**
     * The type a training pass keeps attention's rotated queries, keys and values in, for heads of {@code headDim}
     * features: F32, or F16 / BF16 where this backend's attention rounds them to that type anyway (the GPU's
     * tensor-core kernels read float16, cuDNN's training graphs bfloat16). Kept that way, they take half the memory,
     * and neither the forward nor the backward converts them again; the results are those of float32 operands.
     * {@link #attention} and {@link #attentionBackward} take q, k and v of this type (k and v of one type), and
     * {@link #rotaryBackward} its {@code rotated}.
     */
    default DType attentionOperandType(int headDim) {
        return DType.F32;
    }

    /**
     * A tensor sharing {@code size} floats of {@code base} from element {@code offset} (no copy). Closing the view
     * frees nothing; it must not be used after {@code base} is closed. Lets all parameters (and all gradients)
     * live in one buffer, so the optimizer, clipping and zeroing each take one call.
     */
    Tensor view(Tensor base, long offset, long size);

    /**
     * Memory for {@code size} cached keys or values (a KV cache). A backend may store them narrower than float32 (the
     * GPU backend's float16 cache halves what a long-context decode step reads); such a tensor is written only by
     * {@link #copy} (which converts from float32), read by {@link #attention} as {@code k} and {@code v}, by
     * {@link #copy} and by {@link #download}, and viewed with {@link #view}. By default it is {@link #allocate}.
     */
    default Tensor allocateKv(long size) {
        return allocate(size);
    }

    /** Bytes per element of an {@link #allocateKv} tensor. */
    default int kvBytesPerElement() {
        return Float.BYTES;
    }

    /**
     * Whether this backend's KV caches are laid out head by head ({@link AttentionShape#kvHeadMajor}:
     * {@code [kvHeads][capacity][headDim]}, the CPU backend's, so a decode step streams each head's keys in order) or
     * row by row ({@code [capacity][kvHeads][headDim]}, as the layers compute them). A head-by-head cache is written
     * only by {@link #storeKv}; by default caches are row by row.
     */
    default boolean kvHeadMajor() {
        return false;
    }

    /**
     * Stores {@code shape.seqQ()} new rows of keys or values ({@code rows}: float32, {@code [seqQ][kvHeads][headDim]})
     * at positions {@code [qStart, qStart + seqQ)} of {@code cache}, a one-sequence KV cache of {@code kvRowsPerBatch}
     * rows in the shape's layout (a narrow cache rounds them as {@link #copy} does).
     */
    default void storeKv(Tensor cache, Tensor rows, AttentionShape shape) {
        long width = (long) shape.kvHeads() * shape.headDim();
        if (!shape.kvHeadMajor()) {
            copy(cache, shape.qStart() * width, rows, 0, shape.seqQ() * width);
            return;
        }
        int dim = shape.headDim();
        for (int h = 0; h < shape.kvHeads(); h++)
            for (long r = 0; r < shape.seqQ(); r++)
                copy(cache, shape.kvHeadOffset(0, h) + (shape.qStart() + r) * dim, rows, r * width + (long) h * dim, dim);
    }

    /**
     * {@link #storeKv(Tensor, Tensor, AttentionShape)} of one row at the step's position (read when the op runs;
     * {@code shape}'s own position is ignored).
     */
    default void storeKv(Tensor cache, Tensor row, AttentionShape shape, DecodeStep step) {
        int width = shape.kvHeads() * shape.headDim();
        if (!shape.kvHeadMajor()) storeRow(cache, row, step, width);
        else storeKv(cache, row, shape.atPosition(step.position()));
    }

    /** Copies host floats into a new buffer. */
    Tensor upload(float[] data);

    /**
     * Converts {@code count} elements of type {@code dtype} (F32, F16, BF16 or F64, little-endian, or whole blocks of
     * ggml's blocks ({@link DType#isQuantised()}), dequantised as ggml does) starting at {@code src} into a new float32 buffer. {@code src}
     * may be a memory-mapped file region.
     */
    Tensor upload(MemorySegment src, DType dtype, long count);

    /**
     * A read-only weight matrix for inference ({@link #linear}'s {@code w}, {@link #gemm}'s transposed {@code b},
     * {@link #embedding}'s table, {@link #download}). A backend may keep it in a narrower type when every op that reads
     * it computes exactly what it would on the float32 copy (the CPU backend keeps bfloat16 as bfloat16: half the
     * memory, half the bytes a decode step reads); by default it is {@link #upload(MemorySegment, DType, long)}.
     */
    default Tensor uploadWeights(MemorySegment src, DType dtype, long count) {
        return upload(src, dtype, count);
    }

    /**
     * {@link #uploadWeights(MemorySegment, DType, long)} for a matrix of {@code rows} x {@code cols}, for backends whose
     * narrower forms depend on the row length (the CPU backend's Q8_0 blocks of 32 values along a row).
     */
    default Tensor uploadWeights(MemorySegment src, DType dtype, long rows, long cols) {
        return uploadWeights(src, dtype, OpChecks.product("uploadWeights", rows, cols));
    }

    /** Copies {@code length} floats starting at element {@code offset} of {@code src} into {@code dst[dstOffset..]}. */
    void download(Tensor src, long offset, float[] dst, int dstOffset, int length);

    /** Copies {@code length} floats from {@code src[srcOffset..]} to {@code dst[dstOffset..]}. */
    void copy(Tensor dst, long dstOffset, Tensor src, long srcOffset, long length);

    /**
     * General matrix multiply, BLAS semantics on row-major matrices:
     * {@code C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C}, where op transposes when asked.
     * Offsets are in elements; leading dimensions are row strides.
     */
    void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
              Tensor a, long aOffset, int lda, Tensor b, long bOffset, int ldb,
              float beta, Tensor c, long cOffset, int ldc);

    /**
     * A linear layer as Hugging Face stores it: {@code y[rows, out] = x[rows, in] * w[out, in]^T + bias[out]}.
     * {@code bias} may be null. {@code rows} may exceed int range (long sequences); the backend splits the call.
     */
    void linear(Tensor y, Tensor x, Tensor w, Tensor bias, long rows, int in, int out);

    /** {@code out[r, :] = table[ids[r], :]}; ids must already be validated against the vocabulary. */
    void embedding(Tensor out, Tensor table, int[] ids, int dim);

    /** {@code out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight} (computed in float32, like HF). */
    void rmsNorm(Tensor out, Tensor x, Tensor weight, long rows, int dim, float eps);

    /**
     * Builds the rotary table for {@code positions.length} rows: angle = (float) positions[r] * invFreq[j] in
     * float32, then cos and sin (each multiplied by {@code attentionScale}).
     */
    RotaryTable rotaryTable(float[] positions, float[] invFreq, float attentionScale);

    /**
     * Rotates, in place, the first {@code 2 * table.half()} features of every head of {@code x[rows, heads * headDim]}
     * with the Hugging Face pairing (feature j with j + half, "rotate_half").
     */
    void rotary(Tensor x, RotaryTable table, long rows, int heads, int headDim);

    /**
     * {@link #rotary} out of place: {@code out} = {@code x} rotated (the features past {@code 2 * table.half()}
     * copied), {@code x} unchanged; {@code out} may be of {@link #attentionOperandType} (the float32 result rounded
     * once). {@code out} and {@code x} do not overlap unless they are the same tensor.
     */
    default void rotary(Tensor out, Tensor x, RotaryTable table, long rows, int heads, int headDim) {
        if (out != x) copy(out, 0, x, 0, OpChecks.product("rotary", rows, (long) heads * headDim));
        rotary(out, table, rows, heads, headDim);
    }

    /**
     * Causal attention with grouped-query heads, computed in tiles with an online softmax.
     * Writes {@code out[batch * seqQ, heads * headDim]} (float32, or bfloat16 where the backend stores it: the result
     * rounded once, the output projection's operand in mixed precision). If {@code lse} is not null it receives the log-sum-exp of the
     * scaled scores for each (row, head), {@code lse[row * heads + h]}, which the backward pass needs.
     */
    void attention(Tensor out, Tensor q, Tensor k, Tensor v, Tensor lse, AttentionShape shape);

    /** {@code out[i] = silu(gate[i]) * up[i]} for i in [0, n); gate and up may both be bfloat16, out may be too. */
    void swiglu(Tensor out, Tensor gate, Tensor up, long n);

    // ---- one-token decode steps that can be recorded (see DecodeStep and Recording) ----

    /** Inputs of a decode step for rotary tables of {@code half} frequencies, kept where this backend's ops read them. */
    default DecodeStep decodeStep(int half) {
        return new DecodeStep(half);
    }

    /** Embeds the step's token into {@code out[0, dim)}, as {@link #embedding(Tensor, Tensor, int[], int)} would. */
    default void embedding(Tensor out, Tensor table, DecodeStep step, int dim) {
        embedding(out, table, new int[] {step.token()}, dim);
    }

    /**
     * Fills the one-row {@code table} with the cosines and sines of the step's position and frequencies times
     * {@code attentionScale}, as {@link #rotaryTable(float[], float[], float)} computes them.
     */
    default void rotaryTable(RotaryTable table, DecodeStep step, float attentionScale) {
        if (table == null || table.half() != step.half())
            throw new IllegalArgumentException("rotaryTable: the table must have half = " + step.half() + " frequencies");
        try (RotaryTable t = rotaryTable(new float[] {step.position()}, step.invFreq(), attentionScale)) {
            copy(table.cos(), 0, t.cos(), 0, step.half());
            copy(table.sin(), 0, t.sin(), 0, step.half());
        }
    }

    /**
     * Copies {@code width} float32 values of {@code row} into row {@code step.position()} of {@code cache} (rows of
     * {@code width}; a narrow cache rounds them as {@link #copy} does).
     */
    default void storeRow(Tensor cache, Tensor row, DecodeStep step, int width) {
        copy(cache, step.position() * width, row, 0, width);
    }

    /**
     * Attention of one query at the step's position over keys and values {@code [0, position]} (within the window):
     * {@code shape} gives everything but the position (its {@code qStart} and {@code seqKv} are ignored and must
     * cover the longest sequence the step will see, {@code kvRowsPerBatch} being the cache's capacity).
     */
    default void attention(Tensor out, Tensor q, Tensor k, Tensor v, AttentionShape shape, DecodeStep step) {
        attention(out, q, k, v, null, shape.atPosition(step.position()));
    }

    /**
     * Records {@code ops} (calls to this backend's ops on fixed tensors, reading what changes from tensors and
     * {@link DecodeStep}s) for {@link Recording#replay}. Host values computed inside {@code ops} are frozen at the
     * recording: whatever must change between replays goes through a {@link DecodeStep}. By default every replay runs
     * {@code ops} again.
     */
    default Recording record(Runnable ops) {
        return ops::run;
    }

    /** Whether {@link #record} makes replays cheaper than running the ops (a GPU's graphs); decoders record steps then. */
    default boolean recordingPays() {
        return false;
    }

    /** {@code y[i] += x[i]} for i in [0, n). */
    void addInPlace(Tensor y, Tensor x, long n);

    /**
     * A residual add and the RMSNorm after it: {@code sum = a + b} over {@code rows * dim} values, then
     * {@code out = rmsNorm(sum)}. {@code sum} may be {@code a} or {@code b}; {@code out} may be {@code a} or {@code b}
     * but not {@code sum}, and may be bfloat16 where {@link #rmsNorm}'s may. The numbers are those of
     * {@link #addInPlace} then {@link #rmsNorm}; a backend may do both in one pass over the rows.
     */
    default void addRmsNorm(Tensor out, Tensor sum, Tensor a, Tensor b, Tensor weight, long rows, int dim, float eps) {
        long n = OpChecks.addRmsNorm("addRmsNorm", out, sum, rows, dim);
        if (sum == a) {
            addInPlace(sum, b, n);
        } else if (sum == b) {
            addInPlace(sum, a, n);
        } else {
            copy(sum, 0, a, 0, n);
            addInPlace(sum, b, n);
        }
        rmsNorm(out, sum, weight, rows, dim, eps);
    }

    /**
     * Softmax cross-entropy of each row of {@code logits[rows, vocab]} against {@code targets[r]}; a target below 0 is
     * ignored (loss 0, not counted). Returns per-row losses (-log p[target]) in double.
     */
    double[] crossEntropy(Tensor logits, int[] targets, long rows, int vocab);

    /** Number of worker threads the backend uses. */
    int threads();

    /**
     * Waits until every op issued so far has finished. Ops on an accelerator run asynchronously (results that come
     * back to the host wait by themselves); timing code calls this. The CPU backend's ops are synchronous.
     */
    default void synchronize() {}

    /**
     * How many floats a block of per-row work (logits and their gradient, for example) should hold: small on a CPU,
     * so the block stays in cache, large on a GPU, where each block costs launches and a round trip to the host.
     */
    default long blockFloats() {
        return 1L << 22;
    }

    /**
     * Prompt tokens per forward when a prompt is prefilled in chunks: small on a CPU (a chunk's activations stay in
     * cache), large on a GPU (fewer launches, larger products). A chunk's activations are a few rows of the model's
     * widths each, its attention never more than linear in the cached length.
     */
    default int prefillChunk() {
        return 512;
    }

    /**
     * About how many more bytes of tensors this backend can allocate now (the memory its tensors live in: the host's
     * for the CPU, the device's for a GPU), or empty where that is unknown. Planning only: another process may take
     * memory before the bytes are asked for.
     */
    default java.util.OptionalLong memoryAvailable() {
        return java.util.OptionalLong.empty();
    }

    @Override
    void close();

    // ---- Backward ops and the optimizer step, for training (each explicit, llm.c-style; no autograd) ----

    /**
     * Backward of {@link #rmsNorm}: writes {@code dx} (which may be the same tensor as {@code dOut}) and ADDS into
     * {@code dWeight}. {@code x} and {@code weight} are the forward inputs.
     */
    void rmsNormBackward(Tensor dx, Tensor dWeight, Tensor dOut, Tensor x, Tensor weight, long rows, int dim, float eps);

    /**
     * {@link #rmsNormBackward} for a norm on a residual stream: d loss / d x is ADDED to {@code dResidual} (the
     * stream's gradient) rather than written to a tensor of its own, and, when {@code rounded} is not null, the new
     * {@code dResidual} is also copied into it (rounded when it is bfloat16: the operand the next product's backward
     * reads). ADDS into {@code dWeight}. {@code dOut} may be overwritten. The numbers are those of rmsNormBackward,
     * addInPlace and copy; a backend may do all three in one pass.
     */
    default void rmsNormBackwardAdd(Tensor dResidual, Tensor rounded, Tensor dWeight, Tensor dOut, Tensor x,
                                    Tensor weight, long rows, int dim, float eps) {
        long n = OpChecks.rmsNormBackwardAdd("rmsNormBackwardAdd", dResidual, rounded, dOut, x, rows, dim);
        rmsNormBackward(dOut, dWeight, dOut, x, weight, rows, dim, eps);
        addInPlace(dResidual, dOut, n);
        if (rounded != null) copy(rounded, 0, dResidual, 0, n);
    }

    /**
     * Backward of {@link #rotary}, in place: on entry {@code d} holds dL/dy for y = rotary(x), on exit dL/dx (the
     * inverse rotation with the same table, which includes the attention scale). If {@code dInvFreq} is not null,
     * also ADDS {@code dL/dinvFreq[j] = sum over rows r and heads of positions[r] * dL/dangle[r][j]}, where
     * {@code dL/dangle = -dy[j]*y[j+half] + dy[j+half]*y[j]} (y = the rotated forward output, passed as
     * {@code rotated}; accumulated in double). {@code rotated} may be null when {@code dInvFreq} is null.
     */
    void rotaryBackward(Tensor d, Tensor rotated, RotaryTable table, float[] positions, double[] dInvFreq,
                        long rows, int heads, int headDim);

    /**
     * {@link #rotaryBackward}, and when {@code rounded} is not null the result (dL/dx) also copied into it, rounded
     * when it is bfloat16 (the operand the next products' backward reads), as {@link #copy} would. The numbers are
     * those of rotaryBackward and copy; a backend may do both in one pass.
     */
    default void rotaryBackward(Tensor d, Tensor rounded, Tensor rotated, RotaryTable table, float[] positions,
                                double[] dInvFreq, long rows, int heads, int headDim) {
        if (rounded == d) throw new IllegalArgumentException("rotaryBackward: rounded and d must be different tensors");
        rotaryBackward(d, rotated, table, positions, dInvFreq, rows, heads, headDim);
        if (rounded != null) copy(rounded, 0, d, 0, OpChecks.product("rotaryBackward", rows, (long) heads * headDim));
    }

    /**
     * Backward of {@link #attention} (FlashAttention-2 style: scores and probabilities recomputed tile by tile from
     * {@code q}, {@code k} and the forward's {@code lse}; never a seq x seq buffer). Inputs: the forward's
     * {@code q}, {@code k}, {@code v}, its output {@code out} (bfloat16 where the forward wrote it so) and {@code lse},
     * and {@code dOut} (same layout as
     * {@code out}). OVERWRITES {@code dq} (layout of {@code q}) and, for every sequence, rows {@code [0, seqKv)} of
     * {@code dk} and {@code dv} (layout of {@code k} / {@code v}); with grouped-query attention the gradients of the
     * query heads sharing a key/value head are summed into it. Same shape rules as the forward, window included.
     */
    void attentionBackward(Tensor dq, Tensor dk, Tensor dv, Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor out,
                           Tensor lse, AttentionShape shape);

    /**
     * Backward of {@link #swiglu} ({@code out = silu(gate) * up}): writes {@code dGate} and {@code dUp}, both float32
     * or both bfloat16 (rounded once: the operands of the products' backward, when they need no bias gradient);
     * {@code gate} and {@code up} may both be bfloat16 (the forward's inputs as mixed precision keeps them).
     */
    void swigluBackward(Tensor dGate, Tensor dUp, Tensor dOut, Tensor gate, Tensor up, long n);

    /**
     * Backward of {@link #embedding}: ADDS row r of {@code dOut} into row {@code ids[r]} of {@code dTable} (repeated
     * ids accumulate, in id order, so the result is deterministic).
     */
    void embeddingBackward(Tensor dTable, Tensor dOut, int[] ids, int dim);

    /**
     * Fused softmax + cross-entropy forward and backward: returns the per-row losses (as {@link #crossEntropy} does)
     * and overwrites {@code logits} with {@code gradScale * (softmax(logits) - onehot(target))}; rows whose target
     * is below 0 get zero gradient and loss 0.
     */
    double[] crossEntropyBackward(Tensor logits, int[] targets, long rows, int vocab, float gradScale);

    /**
     * {@link #crossEntropyBackward} with the gradient written to {@code dLogits} (which may be {@code logits}, or a
     * bfloat16 tensor: the operand the head's backward products read) instead of over the logits; {@code logits} may
     * be overwritten all the same. Returns the per-row losses.
     */
    default double[] crossEntropyBackward(Tensor logits, Tensor dLogits, int[] targets, long rows, int vocab,
                                          float gradScale) {
        double[] losses = crossEntropyBackward(logits, targets, rows, vocab, gradScale);
        if (dLogits != logits) copy(dLogits, 0, logits, 0, OpChecks.product("crossEntropyBackward", rows, vocab));
        return losses;
    }

    /** ADDS the column sums of {@code x[rows, cols]} into {@code out[cols]} (bias gradients). */
    void sumRows(Tensor out, Tensor x, long rows, int cols);

    /**
     * {@code y[i] = a * y[i]} for i in [0, n) (e.g. zeroing or scaling gradients). A factor of exactly 0 writes
     * zeros, even over infinities and NaNs.
     */
    void scale(Tensor y, float a, long n);

    /** Sum of squares of {@code x[0, n)}, in double (for global gradient-norm clipping). */
    double sumOfSquares(Tensor x, long n);

    /**
     * One decoupled-weight-decay Adam step (AdamW, with bias correction) on n parameters:
     * {@code m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; mhat = m/(1-b1^t); vhat = v/(1-b2^t);
     * p -= lr * (mhat / (sqrt(vhat) + eps) + weightDecay * p)}, where t = {@code step} (from 1). {@code gradScale}
     * multiplies g first (clipping, accumulation).
     */
    void adamW(Tensor param, Tensor grad, Tensor m, Tensor v, long n, float lr, float beta1, float beta2, float eps,
               float weightDecay, float gradScale, long step);
}
