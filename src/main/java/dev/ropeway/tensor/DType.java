package dev.ropeway.tensor;

/**
 * Element types a checkpoint may store. Compute is always float32 on the CPU.
 *
 * <p>Besides the plain types there are ggml's block quantisations, which Ropeway keeps as they are when a GGUF
 * file holds them: a matrix row is cut into blocks of {@link #blockSize()} values stored in {@link #blockBytes()} bytes
 * (Q8_0: a float16 scale and 32 int8 values; Q4_0, Q5_0 and IQ4_NL: a float16 scale and 32 4-bit or 5-bit values, or
 * 4-bit indices into a fixed table of 16 integers; Q4_1 and Q5_1: the same with a float16 min as well; the lattice
 * types IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS and IQ3_S: 256 values as indices into fixed tables of 4 or 8
 * values with signs and scales ({@link IqGrids}); TQ1_0 and TQ2_0: 256 values -1, 0 or 1 and a float16 factor; Q2_K and Q3_K: 256 values in 16 sub-blocks with 4-bit scales and mins or
 * 6-bit scales, and 2-bit or 3-bit values; Q4_K and Q5_K: 256 values in 8 sub-blocks with 6-bit scales and mins and
 * 4-bit or 5-bit values; Q6_K: 256 values in 16 sub-blocks with int8 scales and 6-bit values; IQ4_XS: 256 values in 8
 * sub-blocks with 6-bit scales and 4-bit indices into a fixed table of 16 integers). Such a type has no per-element size:
 * {@link #bytes()} refuses it, {@link #byteSize(long)} sizes any type.
 */
public enum DType {
    F64(8), F32(4), F16(2), BF16(2), I64(8), I32(4), I16(2), I8(1), U8(1), BOOL(1), F8_E4M3(1), F8_E5M2(1),
    Q8_0(32, 34), Q2_K(256, 84), Q3_K(256, 110), Q4_K(256, 144), Q5_K(256, 176), Q6_K(256, 210), IQ4_XS(256, 136),
    Q4_0(32, 18), Q4_1(32, 20), Q5_0(32, 22), Q5_1(32, 24), IQ4_NL(32, 18),
    IQ2_XXS(256, 66), IQ2_XS(256, 74), IQ2_S(256, 82), IQ3_XXS(256, 98), IQ3_S(256, 110), IQ1_S(256, 50), IQ1_M(256, 56),
    TQ1_0(256, 54), TQ2_0(256, 66);

    private final int blockSize;
    private final int blockBytes;

    DType(int bytes) { this(1, bytes); }

    DType(int blockSize, int blockBytes) {
        this.blockSize = blockSize;
        this.blockBytes = blockBytes;
    }

    /** Bytes per element; a quantised type has none and refuses (use {@link #byteSize(long)}). */
    public int bytes() {
        if (blockSize != 1)
            throw new UnsupportedOperationException(this + " stores blocks of " + blockSize + " values in " + blockBytes
                    + " bytes, not a whole number of bytes per value");
        return blockBytes;
    }

    /** Values per block: 1 for the plain types. */
    public int blockSize() { return blockSize; }

    /** Bytes per block: {@link #bytes()} for the plain types. */
    public int blockBytes() { return blockBytes; }

    /** Whether this is one of ggml's block quantisations. */
    public boolean isQuantised() { return blockSize != 1; }

    /**
     * Bytes of {@code elements} values: for a quantised type a whole number of blocks (a row of a matrix must be one),
     * else an {@link IllegalArgumentException} naming the block size.
     */
    public long byteSize(long elements) {
        if (elements % blockSize != 0)
            throw new IllegalArgumentException(this + " stores values in blocks of " + blockSize + "; " + elements
                    + " is not a multiple");
        return Math.multiplyExact(elements / blockSize, (long) blockBytes);
    }

    /** True for the types a model's weights may use (converted to float32 when loaded). */
    public boolean isFloatWeight() { return this == F32 || this == F16 || this == BF16 || this == F64; }

    /** Parses a safetensors dtype name ("F32", "BF16", ...); null when unknown (a quantised type is no safetensors dtype). */
    public static DType fromSafetensors(String name) {
        if (name == null) return null;
        return switch (name) {
            case "F64" -> F64; case "F32" -> F32; case "F16" -> F16; case "BF16" -> BF16;
            case "I64" -> I64; case "I32" -> I32; case "I16" -> I16; case "I8" -> I8; case "U8" -> U8;
            case "BOOL" -> BOOL; case "F8_E4M3" -> F8_E4M3; case "F8_E5M2" -> F8_E5M2;
            default -> null;
        };
    }

    /** The safetensors dtype name; a quantised type is stored as U8 bytes (see {@code SafeTensorsHeader}). */
    public String safetensorsName() { return isQuantised() ? U8.name() : name(); }
}
