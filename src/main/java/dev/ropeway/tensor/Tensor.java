package dev.ropeway.tensor;

/**
 * A float32 buffer owned by a {@link Backend}, indexed by long. Shapes are not stored: every op is told the
 * dimensions it works on, as in llm.c, so one buffer can be viewed as [rows, cols] by one op and as
 * [batch, seq, heads, headDim] by the next.
 */
public interface Tensor extends AutoCloseable {
    /** Number of float elements. */
    long size();

    /** Frees the memory now; using the tensor afterwards is an error. */
    @Override
    void close();
}
