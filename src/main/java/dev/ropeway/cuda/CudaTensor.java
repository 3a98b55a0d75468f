package dev.ropeway.cuda;

import dev.ropeway.tensor.Tensor;

import java.lang.ref.Cleaner;

/**
 * A float32 buffer in GPU memory (or a float16 one: a KV cache, see {@link CudaBackend#allocateKv}), zero-filled,
 * indexed by long. A tensor that becomes unreachable without being
 * closed is freed by a cleaner; closing explicitly is still the rule, since the garbage collector does not see GPU
 * memory pressure.
 */
public final class CudaTensor implements Tensor {
    private static final Cleaner CLEANER = Cleaner.create();

    private final long size;
    private final boolean half;
    private final long address;
    private final CudaTensor base;
    private final Cleaner.Cleanable cleanable;
    private volatile boolean closed;

    CudaTensor(CudaBackend backend, long size) {
        this(backend, size, false);
    }

    /** {@code size} elements of float32, or of float16 when {@code half}. */
    CudaTensor(CudaBackend backend, long size, boolean half) {
        if (size < 0) throw new IllegalArgumentException("tensor size must be >= 0, got " + size);
        if (size > Long.MAX_VALUE / Float.BYTES) throw new IllegalArgumentException("tensor size " + size + " floats is too large");
        this.size = size;
        this.half = half;
        // Whole 4-byte words, so that zero-filling by words covers an odd number of halves.
        long bytes = half ? (size * 2 + 3) / 4 * 4 : size * Float.BYTES;
        this.address = backend.allocateBytes(bytes);
        this.base = null;
        this.cleanable = CLEANER.register(this, backend.releaser(address, bytes));
    }

    CudaTensor(CudaTensor base, long offset, long size) {
        if (offset < 0 || size < 0 || offset > base.size - size)
            throw new IllegalArgumentException("view [" + offset + ", " + offset + "+" + size + ") is outside a tensor of "
                    + base.size + (base.half ? " halves" : " floats"));
        this.size = size;
        this.half = base.half;
        this.address = base.address + offset * base.elementBytes();
        this.base = base;
        this.cleanable = null;
    }

    @Override
    public long size() {
        return size;
    }

    /** Whether the elements are float16 (a KV cache) rather than float32. */
    boolean isHalf() {
        return half;
    }

    /** Bytes per element: 2 for float16, 4 for float32. */
    int elementBytes() {
        return half ? 2 : Float.BYTES;
    }

    /** The device address of element 0; fails once the tensor (or the one it views) is closed. */
    long address() {
        if (closed || base != null && base.closed)
            throw new IllegalStateException("GPU tensor of " + size + (half ? " halves" : " floats") + " is closed");
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
        return "CudaTensor[" + size + (half ? " f16" : "") + (closed ? ", closed]" : "]");
    }
}
