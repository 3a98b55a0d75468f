package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;
import java.lang.ref.Cleaner;

/**
 * A bfloat16 buffer in native memory: a weight matrix kept as its checkpoint stores it (half the memory of float32,
 * half the bytes a decode step streams), in mixed-precision training a matrix-product operand
 * ({@link Backend#allocate(long, DType)}), or a bfloat16 KV cache ({@link CpuBackend#allocateKv}). Widening a bfloat16
 * to float32 is exact, so every op that reads one computes exactly what it computes on the widened float32 copy. Only
 * {@code linear}, {@code gemm}, {@code embedding}, {@code attention} (as keys and values), {@code copy} and
 * {@code download} read these, {@code copy}, {@code rmsNorm} and {@code swiglu} write them, and {@code view} shares
 * them; other ops refuse them by name.
 */
@SuppressWarnings("restricted") // native access is this class's job; the JVM runs with --enable-native-access
public final class CpuBf16Tensor implements Tensor {
    private static final Cleaner CLEANER = Cleaner.create();

    private final long size;
    private final MemorySegment segment;
    private final Cleaner.Cleanable cleanable;
    /** The tensor whose memory a view shares (null for an owner): a view stays usable only while it is open. */
    private final CpuBf16Tensor base;
    private volatile boolean closed;

    /** {@code count} zeros. */
    CpuBf16Tensor(long count) {
        this(null, count);
    }

    /** A copy of {@code count} little-endian bfloat16 values from {@code src} (zeros when {@code src} is null). */
    CpuBf16Tensor(MemorySegment src, long count) {
        this.size = count;
        long bytes = count * 2;
        long raw = NativeMemory.callocRaw(Math.max(bytes, 2));
        this.segment = MemorySegment.ofAddress(NativeMemory.align(raw)).reinterpret(bytes);
        if (src != null) MemorySegment.copy(src, 0, segment, 0, bytes);
        this.cleanable = CLEANER.register(this, new CpuTensor.Release(raw));
        this.base = null;
    }

    /** A view of {@code size} values of {@code base} from element {@code offset}; closing it frees nothing. */
    CpuBf16Tensor(CpuBf16Tensor base, long offset, long size) {
        if (offset < 0 || size < 0 || offset > base.size - size)
            throw new IllegalArgumentException("view [" + offset + ", " + offset + "+" + size + ") is outside a tensor of "
                    + base.size + " bfloat16 values");
        this.size = size;
        this.segment = base.segment().asSlice(offset * 2, size * 2);
        this.cleanable = null;
        this.base = base;
    }

    @Override
    public long size() {
        return size;
    }

    /** The bfloat16 values, two bytes each; fails once this tensor (or the one it views) is closed. */
    MemorySegment segment() {
        if (closed || base != null && base.closed) throw new IllegalStateException("bfloat16 tensor of " + size + " values is closed");
        return segment;
    }

    @Override
    public void close() {
        closed = true;
        if (cleanable != null) cleanable.clean();
    }

    @Override
    public String toString() {
        return "CpuBf16Tensor[" + size + (closed ? ", closed]" : "]");
    }
}
