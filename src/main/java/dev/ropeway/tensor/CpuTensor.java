package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;
import java.lang.ref.Cleaner;

/**
 * A float32 buffer in native memory: zero-filled, 64-byte aligned, indexed by long, freed by {@link #close()}.
 *
 * <p>A tensor that becomes unreachable without being closed is freed by a cleaner, so a forgotten close leaks
 * only until the next garbage collection; closing explicitly is still the rule, because the garbage collector
 * does not see native memory pressure.
 */
@SuppressWarnings("restricted") // native access is this class's job; the JVM runs with --enable-native-access
public final class CpuTensor implements Tensor {
    private static final Cleaner CLEANER = Cleaner.create();

    private final long size;
    private final MemorySegment segment;
    private final Cleaner.Cleanable cleanable;
    private volatile boolean closed;

    CpuTensor(long size) {
        if (size < 0) throw new IllegalArgumentException("tensor size must be >= 0, got " + size);
        if (size > Long.MAX_VALUE / Float.BYTES - NativeMemory.ALIGNMENT)
            throw new IllegalArgumentException("tensor size " + size + " floats is too large");
        this.size = size;
        long raw = NativeMemory.callocRaw(size * Float.BYTES);
        this.segment = MemorySegment.ofAddress(NativeMemory.align(raw)).reinterpret(size * Float.BYTES);
        this.cleanable = CLEANER.register(this, new Release(raw));
    }

    @Override
    public long size() {
        return size;
    }

    /** The memory, {@code size() * 4} bytes; fails once the tensor is closed. */
    public MemorySegment segment() {
        if (closed) throw new IllegalStateException("tensor of " + size + " floats is closed");
        return segment;
    }

    public boolean isClosed() {
        return closed;
    }

    @Override
    public void close() {
        closed = true;
        cleanable.clean();
    }

    @Override
    public String toString() {
        return "CpuTensor[" + size + (closed ? ", closed]" : "]");
    }

    /** Frees the block; holds only the address so that the tensor itself can become unreachable. */
    private record Release(long raw) implements Runnable {
        @Override
        public void run() {
            NativeMemory.free(raw);
        }
    }
}
