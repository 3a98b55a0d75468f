package dev.ropeway.rope;

/**
 * What a RoPE method needs to know about the model it scales: the rotary dimension (head_dim times
 * partial_rotary_factor), the checkpoint's max_position_embeddings, and its top-level
 * original_max_position_embeddings if the config has one (Phi-3 style; 0 when absent), and the model's rope_theta
 * (from rope_parameters in the 5.x form, else the top-level key, else 10000), used when parameters do not name one.
 */
public record RopeContext(int rotaryDim, long maxPositionEmbeddings, long topLevelOriginalMax, double defaultTheta) {
    public RopeContext {
        if (rotaryDim <= 0 || rotaryDim % 2 != 0)
            throw new IllegalArgumentException("rotary dimension must be positive and even, got " + rotaryDim);
        if (maxPositionEmbeddings <= 0)
            throw new IllegalArgumentException("max_position_embeddings must be positive, got " + maxPositionEmbeddings);
    }
}
