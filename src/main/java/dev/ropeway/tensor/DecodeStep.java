package dev.ropeway.tensor;

import java.util.Arrays;

/**
 * The inputs of a one-token decode step that change from token to token: the token, its position and the RoPE
 * inverse frequencies. The step ops of {@link Backend} ({@link Backend#embedding(Tensor, Tensor, DecodeStep, int)},
 * {@link Backend#rotaryTable(RotaryTable, DecodeStep, float)}, {@link Backend#storeRow},
 * {@link Backend#attention(Tensor, Tensor, Tensor, Tensor, AttentionShape, DecodeStep)}) read them when they run, not
 * when they are called, so a step recorded once with {@link Backend#record} decodes every later token after a
 * {@link #set}. A backend keeps them where its ops read them (device memory for a GPU).
 */
public class DecodeStep implements AutoCloseable {
    private final int half;
    private final float[] invFreq;
    private int token = -1;
    private long position = -1;

    /** Inputs for a model whose rotary tables have {@code half} frequencies. */
    public DecodeStep(int half) {
        if (half < 0) throw new IllegalArgumentException("decode step: half must be >= 0, got " + half);
        this.half = half;
        this.invFreq = new float[half];
    }

    /** The next step's token, position (its index in the sequence) and inverse frequencies. */
    public final void set(int token, long position, float[] invFreq) {
        if (token < 0) throw new IllegalArgumentException("decode step: token must be >= 0, got " + token);
        if (position < 0) throw new IllegalArgumentException("decode step: position must be >= 0, got " + position);
        if (position >= 1L << 24)
            throw new IllegalArgumentException("decode step: position " + position + " is past 2^24, where a float32 position loses integers");
        if (invFreq == null || invFreq.length != half)
            throw new IllegalArgumentException("decode step: invFreq must have " + half + " values, got "
                    + (invFreq == null ? "null" : invFreq.length));
        this.token = token;
        this.position = position;
        System.arraycopy(invFreq, 0, this.invFreq, 0, half);
        publish();
    }

    /** Makes the values just set visible to the backend's ops (nothing to do where they read this object). */
    protected void publish() {}

    public final int half() { return half; }

    /** The token; fails before the first {@link #set}. */
    public final int token() {
        checkSet();
        return token;
    }

    public final long position() {
        checkSet();
        return position;
    }

    public final float[] invFreq() {
        checkSet();
        return Arrays.copyOf(invFreq, half);
    }

    private void checkSet() {
        if (position < 0) throw new IllegalStateException("decode step: no token set yet");
    }

    @Override
    public void close() {}
}
