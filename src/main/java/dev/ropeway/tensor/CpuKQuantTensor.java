package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;

/**
 * A [rows, cols] weight matrix in one of ggml's 256-value block forms, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K or IQ4_XS, held exactly as a GGUF file stores
 * it: each row a whole number of blocks of 256 values, 84 per Q2_K block (0.33 bytes per weight), 110 per Q3_K block
 * (0.43), 144 bytes per Q4_K block (4-bit values, a 6-bit scale and min per
 * 32, two float16 factors: 0.5625 bytes per weight), 176 per Q5_K block (the same with 5-bit values: 0.6875 bytes per
 * weight), 136 per IQ4_XS block (4-bit indices into a table of 16 integers, a 6-bit scale per 32, one float16 factor:
 * 0.53 bytes per weight) and 210 per Q6_K block (6-bit values, an int8 scale per 16, one
 * float16 factor: 0.8203 bytes per weight), against 2 for bfloat16 and 4 for float32. Every op that reads one decodes
 * the blocks as ggml's reference dequantisation does, bit for bit, so it computes exactly what it computes on that
 * dequantised float32 matrix ({@link KQuantGemm}). Only {@code linear}, {@code gemm}, {@code embedding}, {@code copy}
 * (as the source) and {@code download} read these; nothing writes them.
 */
public final class CpuKQuantTensor implements Tensor {
    private final DType type;
    private final long rows, cols;
    /** The blocks, row after row (held in a float buffer of a quarter the byte count, rounded up). */
    private final CpuTensor blocks;

    /** Zeros: a [rows, cols] matrix of {@code type} (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K or IQ4_XS, cols a multiple of 256), to fill through {@link #blocks()}. */
    CpuKQuantTensor(DType type, long rows, long cols) {
        if (!type.isQuantised() || type.blockSize() != KQuantGemm.BLOCK)
            throw new IllegalArgumentException("a k-quant tensor holds Q2_K, Q3_K, Q4_K, Q5_K, Q6_K or IQ4_XS blocks, not " + type);
        if (rows < 0 || cols < 0 || cols % type.blockSize() != 0)
            throw new IllegalArgumentException("a " + type + " matrix has rows of whole blocks of " + type.blockSize()
                    + " values, not [" + rows + ", " + cols + "]");
        this.type = type;
        this.rows = rows;
        this.cols = cols;
        long bytes = type.byteSize(Math.multiplyExact(rows, cols));
        // Padded by one vector of bytes: a kernel may load a few bytes past the last value it uses.
        this.blocks = new CpuTensor((bytes + 64 + 3) / 4);
    }

    /** rows * cols. */
    @Override
    public long size() {
        return rows * cols;
    }

    /** Q2_K, Q3_K, Q4_K, Q5_K, Q6_K or IQ4_XS. */
    public DType type() {
        return type;
    }

    public long rows() {
        return rows;
    }

    public long cols() {
        return cols;
    }

    /** The bytes of the blocks, block {@code b} at byte {@code b * type().blockBytes()}; fails once closed. */
    MemorySegment blocks() {
        return blocks.segment();
    }

    @Override
    public void close() {
        blocks.close();
    }

    @Override
    public String toString() {
        return "CpuKQuantTensor[" + type + ", " + rows + " x " + cols + (blocks.isClosed() ? ", closed]" : "]");
    }
}
