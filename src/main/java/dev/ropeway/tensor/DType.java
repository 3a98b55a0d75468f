package dev.ropeway.tensor;

/** Element types a checkpoint may store. Compute is always float32 on the CPU. */
public enum DType {
    F64(8), F32(4), F16(2), BF16(2), I64(8), I32(4), I16(2), I8(1), U8(1), BOOL(1), F8_E4M3(1), F8_E5M2(1);

    private final int bytes;

    DType(int bytes) { this.bytes = bytes; }

    public int bytes() { return bytes; }

    /** True for the types a model's weights may use (converted to float32 when loaded). */
    public boolean isFloatWeight() { return this == F32 || this == F16 || this == BF16 || this == F64; }

    /** Parses a safetensors dtype name ("F32", "BF16", ...); null when unknown. */
    public static DType fromSafetensors(String name) {
        if (name == null) return null;
        return switch (name) {
            case "F64" -> F64; case "F32" -> F32; case "F16" -> F16; case "BF16" -> BF16;
            case "I64" -> I64; case "I32" -> I32; case "I16" -> I16; case "I8" -> I8; case "U8" -> U8;
            case "BOOL" -> BOOL; case "F8_E4M3" -> F8_E4M3; case "F8_E5M2" -> F8_E5M2;
            default -> null;
        };
    }

    public String safetensorsName() { return name(); }
}
