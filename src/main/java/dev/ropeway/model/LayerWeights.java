package dev.ropeway.model;

import dev.ropeway.tensor.Tensor;

/** The tensors of one decoder layer, in float32 on the backend. Biases are null where the architecture has none. */
public record LayerWeights(
        Tensor inputNorm, Tensor postAttentionNorm,
        Tensor q, Tensor k, Tensor v, Tensor o,
        Tensor qBias, Tensor kBias, Tensor vBias, Tensor oBias,
        Tensor gate, Tensor up, Tensor down,
        Tensor gateBias, Tensor upBias, Tensor downBias) implements AutoCloseable {

    @Override
    public void close() {
        for (Tensor t : new Tensor[]{inputNorm, postAttentionNorm, q, k, v, o, qBias, kBias, vBias, oBias,
                gate, up, down, gateBias, upBias, downBias})
            if (t != null) t.close();
    }
}
