package dev.ropeway.tensor;

/**
 * A fixed sequence of ops (see {@link Backend#record}) run again by {@link #replay}: what changes between runs is the
 * contents of the tensors and {@link DecodeStep}s they read, never which ops run or on which tensors. A GPU backend
 * records the ops once into a graph and replays it with a single launch; others run them again.
 */
public interface Recording extends AutoCloseable {

    /** Runs the recorded ops (asynchronously on a GPU: a later download waits for them). */
    void replay();

    /** Whether the last replay launched a recorded graph rather than the ops one by one. */
    default boolean replayedAsGraph() {
        return false;
    }

    @Override
    default void close() {}
}
