package dev.ropeway.tensor;

/**
 * Cosines and sines for the rotary embedding of {@code rows} tokens, {@code half} pairs each:
 * {@code cos[r * half + j] = cos(position[r] * invFreq[j]) * attentionScale} (angle computed in float32, as
 * Hugging Face does), same for {@code sin}. Built once per forward and shared by every layer.
 */
public record RotaryTable(Tensor cos, Tensor sin, long rows, int half) implements AutoCloseable {
    @Override
    public void close() {
        cos.close();
        sin.close();
    }
}
