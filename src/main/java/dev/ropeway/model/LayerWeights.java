package dev.ropeway.model;

import dev.ropeway.tensor.Tensor;

/**
 * The tensors of one decoder layer, in float32 on the backend. Biases are null where the architecture has none, and so
 * are the per-head query and key norms ({@code qNorm}, {@code kNorm}: head_dim weights) but for Qwen3.
 */
public record LayerWeights(
        Tensor inputNorm, Tensor postAttentionNorm,
        Tensor q, Tensor k, Tensor v, Tensor o,
        Tensor qBias, Tensor kBias, Tensor vBias, Tensor oBias,
        Tensor gate, Tensor up, Tensor down,
        Tensor gateBias, Tensor upBias, Tensor downBias,
        Tensor qNorm, Tensor kNorm) implements AutoCloseable {

    @Override
    public void close() {
        for (Tensor t : new Tensor[]{inputNorm, postAttentionNorm, q, k, v, o, qBias, kBias, vBias, oBias,
                gate, up, down, gateBias, upBias, downBias, qNorm, kNorm})
            if (t != null) t.close();
    }
}
