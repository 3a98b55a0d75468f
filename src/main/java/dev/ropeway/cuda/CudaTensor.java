package dev.ropeway.cuda;

import dev.ropeway.tensor.Tensor;

import java.lang.ref.Cleaner;

/**
 * A float32 buffer in GPU memory (or a float16 one: a KV cache, see {@link CudaBackend#allocateKv}; or a bfloat16 one:
 * a matrix-product operand in mixed-precision training, see {@link CudaBackend#allocate(long, dev.ropeway.tensor.DType)}), zero-filled,
 * indexed by long. A tensor that becomes unreachable without being
 * closed is freed by a cleaner; closing explicitly is still the rule, since the garbage collector does not see GPU
 * memory pressure.
 */
public final class CudaTensor implements Tensor {
    private static final Cleaner CLEANER = Cleaner.create();

    /** What an element is: float32, float16 or bfloat16. */
    enum Storage {
        F32(4, "floats"), F16(2, "halves"), BF16(2, "bfloat16 values");

        final int bytes;
        final String plural;

        Storage(int bytes, String plural) {
            this.bytes = bytes;
            this.plural = plural;
        }
    }

    private final long size;
    private final Storage storage;
    private final long address;
    private final CudaTensor base;
    private final Cleaner.Cleanable cleanable;
    private volatile boolean closed;

    CudaTensor(CudaBackend backend, long size) {
        this(backend, size, Storage.F32);
    }

    /** {@code size} elements of {@code storage}. */
    CudaTensor(CudaBackend backend, long size, Storage storage) {
        if (size < 0) throw new IllegalArgumentException("tensor size must be >= 0, got " + size);
        if (size > Long.MAX_VALUE / Float.BYTES) throw new IllegalArgumentException("tensor size " + size + " floats is too large");
        this.size = size;
        this.storage = storage;
        // Whole 4-byte words, so that zero-filling by words covers an odd number of halves.
        long bytes = (size * storage.bytes + 3) / 4 * 4;
        this.address = backend.allocateBytes(bytes);
        this.base = null;
        this.cleanable = CLEANER.register(this, backend.releaser(address, bytes));
    }

    CudaTensor(CudaTensor base, long offset, long size) {
        if (offset < 0 || size < 0 || offset > base.size - size)
            throw new IllegalArgumentException("view [" + offset + ", " + offset + "+" + size + ") is outside a tensor of "
                    + base.size + " " + base.storage.plural);
        this.size = size;
        this.storage = base.storage;
        this.address = base.address + offset * base.elementBytes();
        this.base = base;
        this.cleanable = null;
    }

    @Override
    public long size() {
        return size;
    }

    /** Whether the elements are float16 (a KV cache). */
    boolean isHalf() {
        return storage == Storage.F16;
    }

    Storage storage() {
        return storage;
    }

    /** Bytes per element: 2 for float16 and bfloat16, 4 for float32. */
    int elementBytes() {
        return storage.bytes;
    }

    /** The device address of element 0; fails once the tensor (or the one it views) is closed. */
    long address() {
        if (closed || base != null && base.closed)
            throw new IllegalStateException("GPU tensor of " + size + " " + storage.plural + " is closed");
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
        return "CudaTensor[" + size + (storage == Storage.F32 ? "" : " " + storage.name().toLowerCase(java.util.Locale.ROOT))
                + (closed ? ", closed]" : "]");
    }
}
