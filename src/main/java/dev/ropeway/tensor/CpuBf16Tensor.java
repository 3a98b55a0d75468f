package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;
import java.lang.ref.Cleaner;

/**
 * A read-only weight matrix kept in bfloat16 in native memory: half the memory of float32, and half the bytes a
 * decode step streams. Widening a bfloat16 to float32 is exact, so every op that reads one computes exactly what it
 * computes on the float32 copy. Only {@code linear}, {@code gemm} (as a transposed B), {@code embedding} and
 * {@code download} read these; other ops refuse them by name.
 */
@SuppressWarnings("restricted") // native access is this class's job; the JVM runs with --enable-native-access
public final class CpuBf16Tensor implements Tensor {
    private static final Cleaner CLEANER = Cleaner.create();

    private final long size;
    private final MemorySegment segment;
    private final Cleaner.Cleanable cleanable;
    private volatile boolean closed;

    /** A copy of {@code count} little-endian bfloat16 values from {@code src}. */
    CpuBf16Tensor(MemorySegment src, long count) {
        this.size = count;
        long bytes = count * 2;
        long raw = NativeMemory.callocRaw(Math.max(bytes, 2));
        this.segment = MemorySegment.ofAddress(NativeMemory.align(raw)).reinterpret(bytes);
        MemorySegment.copy(src, 0, segment, 0, bytes);
        this.cleanable = CLEANER.register(this, new CpuTensor.Release(raw));
    }

    @Override
    public long size() {
        return size;
    }

    /** The bfloat16 values, two bytes each; fails once closed. */
    MemorySegment segment() {
        if (closed) throw new IllegalStateException("bfloat16 tensor of " + size + " values is closed");
        return segment;
    }

    @Override
    public void close() {
        closed = true;
        cleanable.clean();
    }

    @Override
    public String toString() {
        return "CpuBf16Tensor[" + size + (closed ? ", closed]" : "]");
    }
}
