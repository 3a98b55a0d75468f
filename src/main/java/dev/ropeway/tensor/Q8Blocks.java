package dev.ropeway.tensor;

/**
 * ggml's Q8_0 quantisation: blocks of 32 consecutive values, each stored as a float16 scale d = max|x| / 127 and 32
 * int8 values round(x / d) (C's roundf: ties away from zero). A value comes back as d q, exactly representable in
 * float32 (an 11-bit scale times an 8-bit integer). GGUF export writes these blocks; the CPU backend holds weight
 * matrices in them under {@code --cpu-weights q8_0}.
 */
public final class Q8Blocks {
    /** Values per block. */
    public static final int BLOCK = 32;

    private Q8Blocks() {}

    /**
     * Quantises {@code x[start, start + 32)} into {@code q[at, at + 32)} and returns the block's scale as float16 bits.
     * The quotients use the float32 scale before it is rounded to float16, as ggml's reference does.
     */
    public static short block(float[] x, int start, byte[] q, int at) {
        float amax = 0;
        for (int j = 0; j < BLOCK; j++) amax = Math.max(amax, Math.abs(x[start + j]));
        float d = amax / 127f;
        float inverse = d != 0 ? 1f / d : 0f;
        for (int j = 0; j < BLOCK; j++) q[at + j] = (byte) roundHalfAway(x[start + j] * inverse);
        return Float.floatToFloat16(d);
    }

    /** C's roundf (ties away from zero), which ggml uses; Math.round would send -0.5 to 0. Clamped to int8's ±127. */
    static int roundHalfAway(float v) {
        int r = (int) (Math.signum(v) * Math.floor(Math.abs(v) + 0.5f));
        return Math.clamp(r, -127, 127);
    }
}
