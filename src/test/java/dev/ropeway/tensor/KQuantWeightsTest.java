package dev.ropeway.tensor;

import dev.ropeway.io.GgmlDequant;
import dev.ropeway.io.GgmlType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * ggml's Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, lattice (IQ1, IQ2, IQ3), ternary (TQ1_0, TQ2_0)
 * and Q8_0 blocks, as a GGUF file holds them, kept as they are by {@link CpuBackend#uploadWeights}:
 * every op that reads them computes, bit for bit, what it computes on the float32 matrix of ggml's own dequantisation
 * ({@link GgmlDequant}, the reference here).
 */
public class KQuantWeightsTest {
    private static final ValueLayout.OfShort HALF = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final List<DType> TYPES = List.of(DType.Q2_K, DType.Q3_K, DType.Q4_K, DType.Q5_K, DType.Q6_K, DType.IQ4_XS,
            DType.Q4_0, DType.Q4_1, DType.Q5_0, DType.Q5_1, DType.IQ4_NL, DType.IQ2_XXS, DType.IQ2_XS, DType.IQ2_S,
            DType.IQ3_XXS, DType.IQ3_S, DType.IQ1_S, DType.IQ1_M, DType.TQ1_0, DType.TQ2_0, DType.Q8_0);

    static CpuBackend auto, f32;
    static Arena arena;

    @BeforeAll
    static void open() {
        auto = new CpuBackend(2);
        f32 = new CpuBackend(2, DType.F32, CpuBackend.Weights.F32);
        arena = Arena.ofShared();
    }

    @AfterAll
    static void close() {
        auto.close();
        f32.close();
        arena.close();
    }

    /**
     * {@code count} values of random {@code type} blocks: random bytes, with the float16 factors (d, and the dmin or m of Q2_K, Q4_K, Q5_K, Q4_1 and Q5_1) of
     * realistic magnitude (1e-3 to 1e-1, either sign) except for some blocks where they are zero, negative zero or
     * subnormal.
     */
    static MemorySegment blocks(DType type, long count, long seed) {
        Random r = new Random(seed);
        byte[] bytes = new byte[Math.toIntExact(type.byteSize(count))];
        r.nextBytes(bytes);
        MemorySegment s = arena.allocate(bytes.length);
        MemorySegment.copy(bytes, 0, s, JAVA_BYTE, 0, bytes.length);
        for (long b = 0; b < count / type.blockSize(); b++) {
            long p = b * type.blockBytes();
            switch (type) {
                case Q4_K, Q5_K, Q4_1, Q5_1 -> {
                    s.set(HALF, p, factor(r, b));
                    s.set(HALF, p + 2, factor(r, b + 3));
                }
                case Q6_K -> s.set(HALF, p + 208, factor(r, b));
                case Q3_K -> s.set(HALF, p + 108, factor(r, b));
                case Q2_K -> {
                    s.set(HALF, p + 80, factor(r, b));
                    s.set(HALF, p + 82, factor(r, b + 3));
                }
                case TQ1_0 -> s.set(HALF, p + 52, factor(r, b));
                case TQ2_0 -> s.set(HALF, p + 64, factor(r, b));
                case IQ1_M -> setIq1mScale(s, p, factor(r, b));
                default -> s.set(HALF, p, factor(r, b));
            }
        }
        return s;
    }

    /** IQ1_M's d at the block from byte p: its four nibbles are the top nibbles of the four 16-bit scale words. */
    private static void setIq1mScale(MemorySegment s, long p, short d) {
        for (int i = 0; i < 4; i++) {
            long at = p + 49 + 2 * i;
            s.set(JAVA_BYTE, at, (byte) (s.get(JAVA_BYTE, at) & 0x0F | (d >> 4 * i & 0xF) << 4));
        }
    }

    private static short factor(Random r, long block) {
        return switch ((int) (block % 11)) {
            case 4 -> 0;
            case 5 -> (short) 0x8000;
            case 6 -> (short) (1 + r.nextInt(0x3FF) | (r.nextBoolean() ? 0x8000 : 0));
            default -> Float.floatToFloat16((float) ((r.nextInt(8) == 0 ? -1 : 1) * Math.pow(10, -3 + 2 * r.nextDouble())));
        };
    }

    /** ggml's dequantisation of the first {@code count} values. */
    static float[] reference(DType type, MemorySegment src, long count) {
        float[] out = new float[Math.toIntExact(count)];
        GgmlDequant.toFloats(GgmlType.valueOf(type.name()), src, count, out, 0);
        return out;
    }

    static float[] read(CpuBackend b, Tensor t) {
        float[] out = new float[Math.toIntExact(t.size())];
        b.download(t, 0, out, 0, out.length);
        return out;
    }

    @Test
    void blocksDecodeAsGgmlDoes() {
        for (DType type : TYPES) {
            int rows = 12, cols = 1024;
            long count = (long) rows * cols;
            MemorySegment src = blocks(type, count, type.ordinal());
            float[] want = reference(type, src, count);
            assertTrue(Arrays.stream(toDoubles(want)).filter(v -> v != 0).count() > count / 2, "the blocks hold values");
            Tensor kept = auto.uploadWeights(src, type, rows, cols);
            Class<?> keptAs = type == DType.Q8_0 ? CpuQ8Tensor.class : CpuKQuantTensor.class;
            assertInstanceOf(keptAs, kept);
            assertEquals(count, kept.size());
            assertArrayEquals(want, read(auto, kept), type + " download");
            assertArrayEquals(want, read(f32, f32.upload(src, type, count)), type + " upload");
            float[] converted = new float[cols];
            Convert.toFloats(src, type, 3L * cols, converted, cols);
            assertArrayEquals(Arrays.copyOfRange(want, 3 * cols, 4 * cols), converted, type + " toFloats");
            // Parts that start and end inside blocks, through download and copy.
            float[] part = new float[700];
            auto.download(kept, 301, part, 0, part.length);
            assertArrayEquals(Arrays.copyOfRange(want, 301, 1001), part, type + " part");
            try (Tensor wide = auto.allocate(5000)) {
                auto.copy(wide, 7, kept, 1500, 4993);
                assertArrayEquals(Arrays.copyOfRange(want, 1500, 6493), Arrays.copyOfRange(read(auto, wide), 7, 5000), type + " copy");
            }
            kept.close();
        }
    }

    private static double[] toDoubles(float[] x) {
        double[] d = new double[x.length];
        for (int i = 0; i < x.length; i++) d[i] = x[i];
        return d;
    }

    /** The vector decoder and ggml's scalar one over many blocks, one block at a time at every offset. */
    @Test
    void manyBlocksBitForBit() {
        for (DType type : TYPES.subList(0, TYPES.size() - 1)) {
            int blocks = 2000;
            MemorySegment src = blocks(type, (long) blocks * 256, 100 + type.ordinal());
            float[] want = reference(type, src, (long) blocks * 256);
            MemorySegment padded = arena.allocate(src.byteSize() + 64, 64);
            MemorySegment.copy(src, 0, padded, 0, src.byteSize());
            MemorySegment out = arena.allocate((long) blocks * 256 * Float.BYTES, 64);
            KQuantGemm.dequantize(type, padded, 0, out, 0, (long) blocks * 256);
            float[] got = out.toArray(JAVA_FLOAT);
            for (int i = 0; i < want.length; i++)
                assertEquals(Float.floatToRawIntBits(want[i]), Float.floatToRawIntBits(got[i]), type + " value " + i);
        }
    }

    /** Decode-sized products (one to four rows, with and without bias) and prompt-sized ones equal float32 over ggml's values. */
    @Test
    void linearMatchesTheDequantisedWeights() {
        for (DType type : TYPES)
            for (int[] shape : new int[][] {{37, 512}, {64, 768}}) {
                int out = shape[0], in = shape[1];
                MemorySegment src = blocks(type, (long) out * in, 7 * out + in + type.ordinal());
                Tensor wq = auto.uploadWeights(src, type, out, in);
                Tensor wf = f32.upload(reference(type, src, (long) out * in));
                Tensor bias = f32.upload(Bf16WeightsTest.random(3, out));
                for (int rows : new int[] {1, 2, 3, 4, 5, 37})
                    for (Tensor b : new Tensor[] {null, bias}) {
                        Tensor x = f32.upload(Bf16WeightsTest.random(rows + in, rows * in));
                        Tensor yq = f32.allocate((long) rows * out), yf = f32.allocate((long) rows * out);
                        auto.linear(yq, x, wq, b, rows, in, out);
                        f32.linear(yf, x, wf, b, rows, in, out);
                        String what = type + " [" + out + ", " + in + "], " + rows + " rows" + (b == null ? "" : ", bias");
                        assertArrayEquals(read(f32, yf), read(f32, yq), what);
                    }
            }
    }

    /** W as gemm's transposed B (a language-model head), whole or in part, on block boundaries or not. */
    @Test
    void gemmReadsTheWeightsAsB() {
        for (DType type : TYPES) {
            int n = 40, k = 512;
            MemorySegment src = blocks(type, (long) n * k, 17 + type.ordinal());
            Tensor wq = auto.uploadWeights(src, type, n, k);
            Tensor wf = f32.upload(reference(type, src, (long) n * k));
            for (int m : new int[] {1, 3, 4, 9}) {
                Tensor a = f32.upload(Bf16WeightsTest.random(m, m * k));
                // {columns, k, bOffset, ldb}: whole rows; rows from the fourth; every other row's first half; and
                // (widened first) rows starting inside a block, and an untransposed B.
                int[][] cases = {{n, k, 0, k}, {n - 3, k, 3 * k, k}, {n / 2, 256, 0, 2 * k}, {30, 300, 5, 310}};
                for (int[] cs : cases) {
                    int cols = cs[0], kk = cs[1];
                    Tensor aa = f32.upload(Bf16WeightsTest.random(m + kk, m * kk));
                    try (Tensor c1 = f32.allocate((long) m * cols); Tensor c2 = f32.allocate((long) m * cols)) {
                        auto.gemm(false, true, m, cols, kk, 1f, aa, 0, kk, wq, cs[2], cs[3], 0f, c1, 0, cols);
                        f32.gemm(false, true, m, cols, kk, 1f, aa, 0, kk, wf, cs[2], cs[3], 0f, c2, 0, cols);
                        assertArrayEquals(read(f32, c2), read(f32, c1), type + ", " + m + " rows, " + Arrays.toString(cs));
                        // alpha and beta take the widened path.
                        auto.gemm(false, true, m, cols, kk, 0.5f, aa, 0, kk, wq, cs[2], cs[3], 2f, c1, 0, cols);
                        f32.gemm(false, true, m, cols, kk, 0.5f, aa, 0, kk, wf, cs[2], cs[3], 2f, c2, 0, cols);
                        assertArrayEquals(read(f32, c2), read(f32, c1), type + ", alpha and beta, " + Arrays.toString(cs));
                    }
                }
                try (Tensor c1 = f32.allocate((long) m * 30); Tensor c2 = f32.allocate((long) m * 30)) {
                    auto.gemm(false, false, m, 30, k, 1f, a, 0, k, wq, 0, n, 0f, c1, 0, 30);
                    f32.gemm(false, false, m, 30, k, 1f, a, 0, k, wf, 0, n, 0f, c2, 0, 30);
                    assertArrayEquals(read(f32, c2), read(f32, c1), type + ", untransposed");
                }
            }
        }
    }

    /** Embedding rows, whole matrix rows or rows of a narrower view of the table (starting inside blocks). */
    @Test
    void embeddingRowsAreDequantisedRows() {
        for (DType type : TYPES) {
            int vocab = 20, dim = 768;
            MemorySegment src = blocks(type, (long) vocab * dim, 31 + type.ordinal());
            float[] want = reference(type, src, (long) vocab * dim);
            Tensor table = auto.uploadWeights(src, type, vocab, dim);
            for (int d : new int[] {dim, 96}) {
                int[] ids = {19, 0, 7, 7, (int) (want.length / d) - 1};
                try (Tensor out = auto.allocate((long) ids.length * d)) {
                    auto.embedding(out, table, ids, d);
                    float[] got = read(auto, out);
                    for (int i = 0; i < ids.length; i++)
                        assertArrayEquals(Arrays.copyOfRange(want, ids[i] * d, ids[i] * d + d),
                                Arrays.copyOfRange(got, i * d, i * d + d), type + " row " + ids[i] + " of width " + d);
                }
            }
        }
    }

    /** F32 and BF16 dequantise, AUTO and Q8_0 keep the blocks (never quantising them again); shapeless loads dequantise. */
    @Test
    void policies() {
        try (CpuBackend bf16 = new CpuBackend(2, DType.F32, CpuBackend.Weights.BF16);
             CpuBackend q8 = new CpuBackend(2, DType.F32, CpuBackend.Weights.Q8_0)) {
            for (DType type : TYPES) {
                int rows = 3, cols = 512;
                MemorySegment src = blocks(type, (long) rows * cols, 41 + type.ordinal());
                float[] want = reference(type, src, (long) rows * cols);
                float[] rounded = new float[want.length];
                for (int i = 0; i < want.length; i++) rounded[i] = Float.intBitsToFloat(Bfloat16.round(want[i]) << 16);
                Class<?> kept = type == DType.Q8_0 ? CpuQ8Tensor.class : CpuKQuantTensor.class;

                Tensor t = f32.uploadWeights(src, type, rows, cols);
                assertInstanceOf(CpuTensor.class, t);
                assertArrayEquals(want, read(f32, t), type + " F32");
                t = bf16.uploadWeights(src, type, rows, cols);
                assertInstanceOf(CpuBf16Tensor.class, t);
                assertArrayEquals(rounded, read(bf16, t), type + " BF16");
                t = q8.uploadWeights(src, type, rows, cols);
                assertInstanceOf(kept, t);
                assertArrayEquals(want, read(q8, t), type + " Q8_0");
                if (t instanceof CpuKQuantTensor k) {
                    assertEquals(type, k.type());
                    assertEquals(rows, k.rows());
                    assertEquals(cols, k.cols());
                }
                assertInstanceOf(kept, auto.uploadWeights(src, type, rows, cols));

                // Without the matrix's shape: dequantised (to bfloat16 under BF16).
                assertInstanceOf(CpuTensor.class, auto.uploadWeights(src, type, (long) rows * cols));
                assertInstanceOf(CpuTensor.class, q8.uploadWeights(src, type, (long) rows * cols));
                t = bf16.uploadWeights(src, type, (long) rows * cols);
                assertInstanceOf(CpuBf16Tensor.class, t);
                assertArrayEquals(rounded, read(bf16, t), type + " BF16 without shape");
            }
        }
    }

    /** A float16 factor that is an infinity or a NaN: the matrix is held as float32, with ggml's values. */
    @Test
    void nonFiniteFactorsFallBackToFloat32() {
        for (DType type : TYPES)
            for (short bits : new short[] {0x7C00, (short) 0xFC00, 0x7E00}) {
                int rows = 2, cols = 256;
                MemorySegment src = blocks(type, (long) rows * cols, 53);
                long at = switch (type) {
                    case Q6_K -> type.blockBytes() + 208;
                    case Q4_K, Q5_K -> type.blockBytes() + 2;
                    case IQ4_XS -> type.blockBytes();
                    case Q3_K -> type.blockBytes() + 108;
                    case Q2_K -> type.blockBytes() + 82;
                    case Q4_1, Q5_1 -> type.blockBytes() * 5 + 2;
                    case TQ1_0 -> type.blockBytes() + 52;
                    case TQ2_0 -> type.blockBytes() + 64;
                    case IQ1_M -> -1;
                    case IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S -> type.blockBytes();
                    default -> type.blockBytes() * 5;
                };
                if (type == DType.IQ1_M) setIq1mScale(src, type.blockBytes(), bits);   // the second block's
                else src.set(HALF, at, bits);
                Tensor t = auto.uploadWeights(src, type, rows, cols);
                assertInstanceOf(CpuTensor.class, t, type + " with factor " + Integer.toHexString(bits & 0xFFFF));
                float[] want = reference(type, src, (long) rows * cols);
                assertTrue(Arrays.stream(toDoubles(want)).anyMatch(v -> !Double.isFinite(v)));
                assertArrayEquals(want, read(auto, t));
            }
    }

    /**
     * A small-block matrix (Q4_0 ...) whose rows are not whole 256s (Qwen2.5-0.5B's 896, SmolLM2's 576) keeps its
     * blocks: the kernels read 256 values at a time and the rest of a row (32 to 224 values) as float32, continuing the
     * same sums, so products equal float32 over ggml's values bit for bit, for one to five rows, with and without bias,
     * and as gemm's B from a row inside the matrix or over part of each row.
     */
    @Test
    void smallBlocksInRowsOfOtherLengthsAreKept() {
        for (DType type : List.of(DType.Q4_0, DType.Q4_1, DType.Q5_0, DType.Q5_1, DType.IQ4_NL))
            for (int in : new int[] {32, 96, 576, 896}) {
                int out = 13;
                MemorySegment src = blocks(type, (long) out * in, 67 + in);
                float[] values = reference(type, src, (long) out * in);
                Tensor wq = auto.uploadWeights(src, type, out, in);
                assertInstanceOf(CpuKQuantTensor.class, wq, type + " [" + out + ", " + in + "]");
                assertArrayEquals(values, read(auto, wq), type + " [" + out + ", " + in + "] values");
                Tensor wf = f32.upload(values);
                Tensor bias = f32.upload(Bf16WeightsTest.random(5, out));
                for (int rows : new int[] {1, 2, 3, 4, 5})
                    for (Tensor b : new Tensor[] {null, bias}) {
                        Tensor x = f32.upload(Bf16WeightsTest.random(rows + in, rows * in));
                        Tensor yq = f32.allocate((long) rows * out), yf = f32.allocate((long) rows * out);
                        auto.linear(yq, x, wq, b, rows, in, out);
                        f32.linear(yf, x, wf, b, rows, in, out);
                        assertArrayEquals(read(f32, yf), read(f32, yq),
                                type + " [" + out + ", " + in + "], " + rows + " rows" + (b == null ? "" : ", bias"));
                    }
                // {columns, k, bOffset, ldb}: rows from the third; the first values of every row.
                int part = Math.max(32, in - 64);
                for (int[] cs : new int[][] {{out - 2, in, 2 * in, in}, {out, part, 0, in}})
                    for (int m : new int[] {1, 2, 4}) {
                        int cols = cs[0], k = cs[1];
                        Tensor a = f32.upload(Bf16WeightsTest.random(m + k, m * k));
                        try (Tensor c1 = f32.allocate((long) m * cols); Tensor c2 = f32.allocate((long) m * cols)) {
                            auto.gemm(false, true, m, cols, k, 1f, a, 0, k, wq, cs[2], cs[3], 0f, c1, 0, cols);
                            f32.gemm(false, true, m, cols, k, 1f, a, 0, k, wf, cs[2], cs[3], 0f, c2, 0, cols);
                            assertArrayEquals(read(f32, c2), read(f32, c1), type + ", " + m + " rows, " + Arrays.toString(cs));
                        }
                    }
            }
    }

    @Test
    void clearErrors() {
        MemorySegment src = blocks(DType.Q4_K, 4 * 512, 61);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> auto.uploadWeights(src, DType.Q4_K, 8, 300));
        assertTrue(e.getMessage().contains("cols = 300 is not a multiple of 256"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> auto.uploadWeights(src, DType.Q4_K, 5, 512));
        assertTrue(e.getMessage().contains("src has 1152 bytes, needs count/256*144 = 1440"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> auto.uploadWeights(src.asSlice(0, 400), DType.Q6_K, 1, 512));
        assertTrue(e.getMessage().contains("src has 400 bytes, needs count/256*210 = 420"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> auto.upload(src, DType.Q4_K, 100));
        assertTrue(e.getMessage().contains("count = 100 is not a whole number of blocks"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Convert.toFloats(src, DType.Q6_K, 32, new float[256], 256));
        assertTrue(e.getMessage().contains("not whole blocks"), e.getMessage());

        Tensor t = auto.uploadWeights(src, DType.Q4_K, 4, 512);
        e = assertThrows(IllegalArgumentException.class, () -> auto.addInPlace(auto.allocate(32), t, 32));
        assertTrue(e.getMessage().contains("addInPlace") && e.getMessage().contains("Q4_K weight tensors are read only by linear"),
                e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> auto.view(t, 0, 256));
        assertTrue(e.getMessage().contains("view: a Q4_K weight tensor has no views"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> auto.copy(t, 0, auto.allocate(256), 0, 256));
        assertTrue(e.getMessage().contains("copy: dst is a Q4_K weight tensor"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> auto.copy(auto.allocate(256, DType.BF16), 0, t, 0, 256));
        assertTrue(e.getMessage().contains("copy: a Q4_K source copies into float32 only"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> auto.gemm(false, true, 1, 4, 512, 1f, auto.allocate(512), 0, 512,
                auto.allocate(2048), 0, 512, 0f, t, 0, 4));
        assertTrue(e.getMessage().contains("c must be float32"), e.getMessage());
        // The kernel itself refuses rows that do not start on block boundaries (the backend widens those first).
        try (CpuTensor a = auto.allocate(512); CpuTensor c = auto.allocate(4)) {
            e = assertThrows(IllegalArgumentException.class, () -> KQuantGemm.run(auto.workerPool(), 1, 1, 256, 1f, a.segment(), 0,
                    256, (CpuKQuantTensor) t, 128, 512, 0f, c.segment(), 0, 1, null));
            assertTrue(e.getMessage().contains("Q4_K weights need rows on block boundaries"), e.getMessage());
        }
    }
}
