package dev.ropeway.rope;

/**
 * Everything the rotary kernel needs for one forward pass: the inverse frequency of each rotary pair, the
 * (possibly fractional) position of each token row, and the attention scale that multiplies cos and sin
 * (YaRN / LongRoPE mscale). Every RoPE method reduces to producing one of these.
 */
public record RopePlan(float[] invFreq, float[] positions, float attentionScale) {
    public RopePlan {
        if (invFreq.length == 0) throw new IllegalArgumentException("a RoPE plan needs at least one frequency");
    }
}
