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
    /** The tensor whose memory a view shares (null for an owner): a view stays usable only while it is open. */
    private final CpuTensor base;
    private volatile boolean closed;

    CpuTensor(long size) {
        if (size < 0) throw new IllegalArgumentException("tensor size must be >= 0, got " + size);
        if (size > Long.MAX_VALUE / Float.BYTES - NativeMemory.ALIGNMENT)
            throw new IllegalArgumentException("tensor size " + size + " floats is too large");
        this.size = size;
        long raw = NativeMemory.callocRaw(size * Float.BYTES);
        this.segment = MemorySegment.ofAddress(NativeMemory.align(raw)).reinterpret(size * Float.BYTES);
        this.cleanable = CLEANER.register(this, new Release(raw));
        this.base = null;
    }

    /** A view of {@code size} floats of {@code base} from element {@code offset}; closing it frees nothing. */
    CpuTensor(CpuTensor base, long offset, long size) {
        if (offset < 0 || size < 0 || offset > base.size - size)
            throw new IllegalArgumentException("view [" + offset + ", " + offset + "+" + size + ") is outside a tensor of "
                    + base.size + " floats");
        this.size = size;
        this.segment = base.segment().asSlice(offset * Float.BYTES, size * Float.BYTES);
        this.cleanable = null;
        this.base = base;
    }

    @Override
    public long size() {
        return size;
    }

    /** The memory, {@code size() * 4} bytes; fails once the tensor is closed. */
    public MemorySegment segment() {
        if (closed || base != null && base.closed)
            throw new IllegalStateException("tensor of " + size + " floats is closed");
        return segment;
    }

    public boolean isClosed() {
        return closed;
    }

    @Override
    public void close() {
        closed = true;
        if (cleanable != null) cleanable.clean();
    }

    @Override
    public String toString() {
        return "CpuTensor[" + size + (closed ? ", closed]" : "]");
    }

    /** Frees the block; holds only the address so that the tensor itself can become unreachable. */
    record Release(long raw) implements Runnable {
        @Override
        public void run() {
            NativeMemory.free(raw);
        }
    }
}
