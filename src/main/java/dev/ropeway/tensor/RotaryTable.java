package dev.ropeway.tensor;

/**
 * Cosines and sines for the rotary embedding of {@code rows} tokens, {@code half} pairs each:
 * {@code cos[r * half + j] = cos(position[r] * invFreq[j]) * attentionScale} (angle computed in float32, as
 * Hugging Face does), same for {@code sin}. Built once per forward and shared by every layer.
 */
public record RotaryTable(Tensor cos, Tensor sin, long rows, int half) implements AutoCloseable {

    /**
     * Every backend's argument check for rotating {@code rows} rows of {@code heads} heads of {@code headDim} features
     * with {@code table} (op names the caller in the message).
     */
    public static void check(String op, RotaryTable table, long rows, int heads, int headDim) {
        if (table == null) throw new IllegalArgumentException(op + ": table is null");
        if (rows < 0) throw new IllegalArgumentException(op + ": rows must be >= 0, got " + rows);
        if (heads <= 0) throw new IllegalArgumentException(op + ": heads must be positive, got " + heads);
        if (headDim <= 0) throw new IllegalArgumentException(op + ": headDim must be positive, got " + headDim);
        if (2L * table.half() > headDim)
            throw new IllegalArgumentException(op + ": table rotates 2*half = " + 2L * table.half()
                    + " features, more than headDim = " + headDim);
        if (table.rows() < rows)
            throw new IllegalArgumentException(op + ": table has " + table.rows() + " rows, needs rows = " + rows);
    }

    @Override
    public void close() {
        cos.close();
        sin.close();
    }
}
