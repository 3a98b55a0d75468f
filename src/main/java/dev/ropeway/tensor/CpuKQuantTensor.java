package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;

/**
 * A [rows, cols] weight matrix in one of ggml's block forms other than Q8_0, held exactly as a GGUF file stores it,
 * each row a whole number of blocks: the 256-value k-quant blocks, Q2_K (84 bytes: 0.33 bytes per weight), Q3_K (110:
 * 0.43), Q4_K (144: 4-bit values, a 6-bit scale and min per 32, two float16 factors; 0.5625), Q5_K (176: the same with
 * 5-bit values; 0.6875), Q6_K (210: 6-bit values, an int8 scale per 16, one float16 factor; 0.8203) and IQ4_XS (136:
 * 4-bit indices into a table of 16 integers, a 6-bit scale per 32; 0.53), and the 32-value blocks Q4_0 and IQ4_NL (18
 * bytes: 0.5625), Q4_1 (20: 0.625), Q5_0 (22: 0.6875) and Q5_1 (24: 0.75), the lattice types IQ1_S (50 bytes per 256:
 * 0.195), IQ1_M (56), IQ2_XXS (66), IQ2_XS (74), IQ2_S (82), IQ3_XXS (98) and IQ3_S (110), and the ternary TQ1_0 (54)
 * and TQ2_0 (66), against 2 for bfloat16 and 4 for float32.
 * Every op that reads one decodes the blocks as ggml's reference dequantisation does, bit for bit, so it computes
 * exactly what it computes on that dequantised float32 matrix ({@link KQuantGemm}). Only {@code linear}, {@code gemm},
 * {@code embedding}, {@code copy} (as the source) and {@code download} read these; nothing writes them.
 */
public final class CpuKQuantTensor implements Tensor {
    private final DType type;
    private final long rows, cols;
    /** The blocks, row after row (held in a float buffer of a quarter the byte count, rounded up). */
    private final CpuTensor blocks;

    /**
     * Zeros: a [rows, cols] matrix of {@code type} (a quantised type other than Q8_0, cols a whole number of its blocks), to fill
     * through {@link #blocks()}.
     */
    CpuKQuantTensor(DType type, long rows, long cols) {
        if (!type.isQuantised() || type == DType.Q8_0)
            throw new IllegalArgumentException("a k-quant tensor holds ggml blocks other than Q8_0's, not " + type);
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

    /** A quantised type other than Q8_0. */
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
