package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;

/**
 * A weight matrix in ggml's Q8_0 form ({@link Q8Blocks}), as {@code --cpu-weights q8_0} holds it: one int8 per value
 * and a scale per block of 32 consecutive values (kept as float32, each exactly the block's float16 scale), about
 * 1.125 bytes per weight against 2 for bfloat16 and 4 for float32. Each value reads back as scale times int8, exactly, so
 * every op that reads one computes exactly what it computes on that dequantised float32 matrix. Only {@code linear},
 * {@code gemm}, {@code embedding}, {@code copy} (as the source) and {@code download} read these; nothing writes them.
 */
public final class CpuQ8Tensor implements Tensor {
    private final long size;
    /** The int8 values, one byte each (held in a float buffer of a quarter the count, rounded up). */
    private final CpuTensor quants;
    /** One float32 scale per block of 32 values. */
    private final CpuTensor scales;

    /** Zeros: {@code size}, a multiple of 32, values to fill through {@link #quants()} and {@link #scales()}. */
    CpuQ8Tensor(long size) {
        if (size < 0 || size % Q8Blocks.BLOCK != 0)
            throw new IllegalArgumentException("a Q8_0 tensor holds whole blocks of " + Q8Blocks.BLOCK + " values, not " + size);
        this.size = size;
        // Padded by one vector of bytes: a kernel may load a few bytes past the last value it uses.
        this.quants = new CpuTensor((size + 64 + 3) / 4);
        try {
            this.scales = new CpuTensor(size / Q8Blocks.BLOCK);
        } catch (RuntimeException | Error e) {
            quants.close();
            throw e;
        }
    }

    @Override
    public long size() {
        return size;
    }

    /** The int8 values, byte {@code i} for element {@code i}; fails once closed. */
    MemorySegment quants() {
        return quants.segment();
    }

    /** The scales, float {@code b} for block {@code b}; fails once closed. */
    MemorySegment scales() {
        return scales.segment();
    }

    @Override
    public void close() {
        quants.close();
        scales.close();
    }

    @Override
    public String toString() {
        return "CpuQ8Tensor[" + size + (quants.isClosed() ? ", closed]" : "]");
    }
}
