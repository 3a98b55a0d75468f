package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;
import java.lang.ref.Cleaner;

/**
 * A buffer of 16-bit floating-point values in native memory, two bytes each: the storage shared by
 * {@link CpuBf16Tensor} and {@link CpuF16Tensor}, which differ in how their bits widen to float32 and in which ops read
 * or write them.
 */
@SuppressWarnings("restricted") // native access is this class's job; the JVM runs with --enable-native-access
abstract sealed class HalfTensor implements Tensor permits CpuBf16Tensor, CpuF16Tensor {
    private static final Cleaner CLEANER = Cleaner.create();

    private final long size;
    private final MemorySegment segment;
    private final Cleaner.Cleanable cleanable;
    /** The tensor whose memory a view shares (null for an owner): a view stays usable only while it is open. */
    private final HalfTensor base;
    private volatile boolean closed;

    /** A copy of {@code count} little-endian 16-bit values from {@code src} (zeros when {@code src} is null). */
    HalfTensor(MemorySegment src, long count) {
        this.size = count;
        long bytes = count * 2;
        long raw = NativeMemory.callocRaw(Math.max(bytes, 2));
        this.segment = MemorySegment.ofAddress(NativeMemory.align(raw)).reinterpret(bytes);
        if (src != null) MemorySegment.copy(src, 0, segment, 0, bytes);
        this.cleanable = CLEANER.register(this, new CpuTensor.Release(raw));
        this.base = null;
    }

    /** A view of {@code size} values of {@code base} from element {@code offset}; closing it frees nothing. */
    HalfTensor(HalfTensor base, long offset, long size) {
        if (offset < 0 || size < 0 || offset > base.size - size)
            throw new IllegalArgumentException("view [" + offset + ", " + offset + "+" + size + ") is outside a tensor of "
                    + base.size + " " + base.typeName() + " values");
        this.size = size;
        this.segment = base.segment().asSlice(offset * 2, size * 2);
        this.cleanable = null;
        this.base = base;
    }

    /** "bfloat16" or "float16", for messages. */
    abstract String typeName();

    @Override
    public long size() {
        return size;
    }

    /** The values, two bytes each; fails once this tensor (or the one it views) is closed. */
    MemorySegment segment() {
        if (closed || base != null && base.closed)
            throw new IllegalStateException(typeName() + " tensor of " + size + " values is closed");
        return segment;
    }

    @Override
    public void close() {
        closed = true;
        if (cleanable != null) cleanable.clean();
    }

    @Override
    public String toString() {
        return getClass().getSimpleName() + "[" + size + (closed ? ", closed]" : "]");
    }
}
