package dev.ropeway.tensor;

/** bfloat16, the top half of a float32: rounding to it, one element at a time (widening is a shift). */
public final class Bfloat16 {
    private Bfloat16() {}

    /** float32 to bfloat16 bits, rounded to nearest even; a NaN stays a (quiet) NaN. */
    public static short round(float x) {
        int bits = Float.floatToRawIntBits(x);
        if ((bits & 0x7fffffff) > 0x7f800000) return (short) ((bits >>> 16) | 0x40);
        return (short) ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16);
    }
}
