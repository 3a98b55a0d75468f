package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;

/**
 * Argument checks made at the entry of every op, so that a wrong size fails with a message naming the op, the
 * buffer and the formula ("linear: x has 100 floats, needs rows*in = 128") instead of corrupting memory or failing
 * deep inside a kernel.
 */
final class Checks {
    private Checks() {}

    /** The memory of a live tensor made by a {@link CpuBackend}. */
    static MemorySegment segment(String op, String name, Tensor t) {
        if (t == null) throw new IllegalArgumentException(op + ": " + name + " is null");
        if (!(t instanceof CpuTensor c))
            throw new IllegalArgumentException(op + ": " + name + " is a " + t.getClass().getSimpleName() + ", not a CPU tensor"
                    + (t instanceof CpuBf16Tensor ? " (bfloat16 tensors are read only by linear, gemm as a transposed B, embedding, "
                    + "attention as keys and values, copy, download and view)" : "")
                    + (t instanceof CpuF16Tensor ? " (float16 weight tensors are read only by linear, gemm, embedding, copy, "
                    + "download and view)" : "")
                    + (t instanceof CpuQ8Tensor ? " (Q8_0 weight tensors are read only by linear, gemm, embedding, copy and "
                    + "download)" : "")
                    + (t instanceof CpuKQuantTensor k ? " (" + k.type() + " weight tensors are read only by linear, gemm, "
                    + "embedding, copy and download)" : ""));
        if (c.isClosed()) throw new IllegalArgumentException(op + ": " + name + " is closed");
        return c.segment();
    }

    /** Checks that {@code t} holds at least {@code needed} floats and returns its memory. */
    static MemorySegment atLeast(String op, String name, Tensor t, long needed, String formula) {
        MemorySegment s = segment(op, name, t);
        if (t.size() < needed)
            throw new IllegalArgumentException(op + ": " + name + " has " + t.size() + " floats, needs " + formula + " = " + needed);
        return s;
    }

    /** Checks that {@code [offset, offset + length)} lies inside {@code t}. */
    static MemorySegment range(String op, String name, Tensor t, long offset, long length) {
        MemorySegment s = segment(op, name, t);
        if (offset < 0 || length < 0 || offset > t.size() - length)
            throw new IllegalArgumentException(op + ": " + name + " range [" + offset + ", " + (offset + length)
                    + ") is outside its " + t.size() + " floats");
        return s;
    }
}
