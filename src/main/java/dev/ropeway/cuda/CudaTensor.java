package dev.ropeway.cuda;

import dev.ropeway.tensor.Tensor;

import java.lang.ref.Cleaner;

/**
 * A float32 buffer in GPU memory, zero-filled, indexed by long. A tensor that becomes unreachable without being
 * closed is freed by a cleaner; closing explicitly is still the rule, since the garbage collector does not see GPU
 * memory pressure.
 */
public final class CudaTensor implements Tensor {
    private static final Cleaner CLEANER = Cleaner.create();

    private final long size;
    private final long address;
    private final CudaTensor base;
    private final Cleaner.Cleanable cleanable;
    private volatile boolean closed;

    CudaTensor(CudaBackend backend, long size) {
        if (size < 0) throw new IllegalArgumentException("tensor size must be >= 0, got " + size);
        if (size > Long.MAX_VALUE / Float.BYTES) throw new IllegalArgumentException("tensor size " + size + " floats is too large");
        this.size = size;
        this.address = backend.allocateBytes(size * Float.BYTES);
        this.base = null;
        this.cleanable = CLEANER.register(this, backend.releaser(address, size * Float.BYTES));
    }

    CudaTensor(CudaTensor base, long offset, long size) {
        if (offset < 0 || size < 0 || offset > base.size - size)
            throw new IllegalArgumentException("view [" + offset + ", " + offset + "+" + size + ") is outside a tensor of "
                    + base.size + " floats");
        this.size = size;
        this.address = base.address + offset * Float.BYTES;
        this.base = base;
        this.cleanable = null;
    }

    @Override
    public long size() {
        return size;
    }

    /** The device address of element 0; fails once the tensor (or the one it views) is closed. */
    long address() {
        if (closed || base != null && base.closed)
            throw new IllegalStateException("GPU tensor of " + size + " floats is closed");
        return address;
    }

    /** The allocation this tensor lives in (itself for an owner). */
    CudaTensor owner() {
        return base == null ? this : base;
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        if (cleanable != null) cleanable.clean();
    }

    @Override
    public String toString() {
        return "CudaTensor[" + size + (closed ? ", closed]" : "]");
    }
}
