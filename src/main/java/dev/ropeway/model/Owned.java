package dev.ropeway.model;

import dev.ropeway.RopewayException;

import java.util.ArrayList;
import java.util.List;

/**
 * Resources made one after another for one purpose (a recorded step's tensors, tables and recording), closed together
 * in reverse order; one that fails to close does not keep the others open, and the first failure is thrown after.
 */
final class Owned implements AutoCloseable {
    private final String what;
    private final List<AutoCloseable> made = new ArrayList<>();

    /** {@code what} names the owner in a failure's message. */
    Owned(String what) {
        this.what = what;
    }

    <T extends AutoCloseable> T add(T t) {
        made.add(t);
        return t;
    }

    @Override
    public void close() {
        RuntimeException failure = null;
        for (int i = made.size() - 1; i >= 0; i--) {
            try {
                made.get(i).close();
            } catch (Exception e) {
                if (failure == null) failure = new RopewayException("closing " + what + ": " + e.getMessage());
                failure.addSuppressed(e);
            }
        }
        made.clear();
        if (failure != null) throw failure;
    }
}
