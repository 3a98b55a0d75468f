package dev.ropeway.model;

import dev.ropeway.tensor.Tensor;

/**
 * Receives the logits of a forward pass a block of rows at a time, so that a long sequence never holds
 * rows x vocab floats at once. The tensor is only valid during the call.
 */
@FunctionalInterface
public interface LogitsSink {
    void accept(long firstRow, int rows, Tensor logits);
}
