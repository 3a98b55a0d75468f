package dev.ropeway.tensor;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Random;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Q8_0 weight matrices ({@code --cpu-weights q8_0}): quantised as ggml's reference quantises, and read by every op
 * exactly as the float32 matrix of their dequantised values would be.
 */
public class Q8WeightsTest {
    static CpuBackend q8, f32;
    static Arena arena;

    @BeforeAll
    static void open() {
        q8 = new CpuBackend(2, DType.F32, CpuBackend.Weights.Q8_0);
        f32 = new CpuBackend(2);
        arena = Arena.ofShared();
    }

    @AfterAll
    static void close() {
        q8.close();
        f32.close();
        arena.close();
    }

    /** Random float32 weights of varied magnitude per block (a few blocks all zero), as a checkpoint would hold them. */
    static MemorySegment weights(long seed, int count) {
        Random r = new Random(seed);
        MemorySegment s = arena.allocate(4L * count, 64);
        for (int i = 0; i < count; i++) {
            double scale = (i / 32) % 7 == 3 ? 0 : Math.pow(2, (i / 32) % 9 - 6);
            s.setAtIndex(JAVA_FLOAT, i, (float) (r.nextGaussian() * scale));
        }
        return s;
    }

    static float[] read(CpuBackend b, Tensor t) {
        float[] out = new float[(int) t.size()];
        b.download(t, 0, out, 0, out.length);
        return out;
    }

    /** What ggml's quantize_row_q8_0_ref and dequantisation give, written out from their definition. */
    static float[] reference(MemorySegment src, int count) {
        float[] out = new float[count];
        for (int b = 0; b < count; b += 32) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(src.getAtIndex(JAVA_FLOAT, b + j)));
            float d = amax / 127f, inverse = d == 0 ? 0 : 1 / d;
            float stored = Float.float16ToFloat(Float.floatToFloat16(d));
            for (int j = 0; j < 32; j++) {
                float v = src.getAtIndex(JAVA_FLOAT, b + j) * inverse;
                long q = v < 0 ? -Math.round(Math.floor(-v + 0.5)) : Math.round(Math.floor(v + 0.5));
                out[b + j] = q * stored;
            }
        }
        return out;
    }

    @Test
    void quantisedAsGgmlDoesAndReadBackExactly() {
        int rows = 40, cols = 96;
        MemorySegment src = weights(1, rows * cols);
        Tensor t = q8.uploadWeights(src, DType.F32, rows, cols);
        assertInstanceOf(CpuQ8Tensor.class, t);
        float[] want = reference(src, rows * cols), got = read(q8, t);
        assertArrayEquals(want, got);
        // A part that starts and ends inside blocks, and the same through copy and embedding.
        float[] part = new float[50];
        q8.download(t, 45, part, 0, 50);
        assertArrayEquals(java.util.Arrays.copyOfRange(want, 45, 95), part);
        try (Tensor wide = q8.allocate(70); Tensor rowsOut = q8.allocate(3L * cols)) {
            q8.copy(wide, 0, t, 13, 70);
            assertArrayEquals(java.util.Arrays.copyOfRange(want, 13, 83), read(q8, wide));
            q8.embedding(rowsOut, t, new int[] {39, 0, 7}, cols);
            float[] e = read(q8, rowsOut);
            assertArrayEquals(java.util.Arrays.copyOfRange(want, 39 * cols, 40 * cols), java.util.Arrays.copyOfRange(e, 0, cols));
            assertArrayEquals(java.util.Arrays.copyOfRange(want, 7 * cols, 8 * cols), java.util.Arrays.copyOfRange(e, 2 * cols, 3 * cols));
        }
        // The error bound: half a step of the scale, plus 127 times the scale's float16 rounding (2^-11 of it).
        for (int i = 0; i < rows * cols; i++) {
            float x = src.getAtIndex(JAVA_FLOAT, i);
            assertTrue(Math.abs(got[i] - x) <= (0.5 + 127 * 0x1p-11) * 1.0001 * maxInBlock(src, i) / 127, "value " + i);
        }
    }

    private static float maxInBlock(MemorySegment src, int i) {
        float m = 0;
        for (int j = i / 32 * 32; j < i / 32 * 32 + 32; j++) m = Math.max(m, Math.abs(src.getAtIndex(JAVA_FLOAT, j)));
        return m;
    }

    /** Decode-sized products (one to four rows) and prompt-sized ones equal float32 over the dequantised matrix. */
    @Test
    void linearAndGemmMatchTheDequantisedWeights() {
        int in = 160, out = 53;
        MemorySegment src = weights(2, in * out);
        Tensor wq = q8.uploadWeights(src, DType.F32, out, in);
        Tensor wf = f32.upload(read(q8, wq));
        Tensor bias = f32.upload(Bf16WeightsTest.random(3, out));
        for (int rows : new int[] {1, 2, 3, 4, 5, 37}) {
            Tensor x = f32.upload(Bf16WeightsTest.random(rows, rows * in));
            Tensor yq = f32.allocate((long) rows * out), yf = f32.allocate((long) rows * out);
            q8.linear(yq, x, wq, bias, rows, in, out);
            f32.linear(yf, x, wf, bias, rows, in, out);
            assertArrayEquals(read(f32, yf), read(f32, yq), rows + " rows");
            // As a transposed gemm B (a language-model head).
            q8.gemm(false, true, rows, out, in, 1f, x, 0, in, wq, 0, in, 0f, yq, 0, out);
            f32.gemm(false, true, rows, out, in, 1f, x, 0, in, wf, 0, in, 0f, yf, 0, out);
            assertArrayEquals(read(f32, yf), read(f32, yq), rows + " rows, gemm");
        }
        // Rows starting inside a block, or read untransposed: widened first, the float32 product exactly.
        Tensor a = f32.upload(Bf16WeightsTest.random(9, 3 * 100));
        try (Tensor c1 = f32.allocate(3L * 50); Tensor c2 = f32.allocate(3L * 50)) {
            q8.gemm(false, true, 3, 50, 100, 1f, a, 0, 100, wq, 5, 150, 0f, c1, 0, 50);
            f32.gemm(false, true, 3, 50, 100, 1f, a, 0, 100, wf, 5, 150, 0f, c2, 0, 50);
            assertArrayEquals(read(f32, c2), read(f32, c1));
            q8.gemm(false, false, 3, 50, 100, 1f, a, 0, 100, wq, 0, 53, 0f, c1, 0, 50);
            f32.gemm(false, false, 3, 50, 100, 1f, a, 0, 100, wf, 0, 53, 0f, c2, 0, 50);
            assertArrayEquals(read(f32, c2), read(f32, c1));
        }
    }

    /** Rows that are not whole blocks, non-finite values and shapeless uploads fall back to bfloat16; the rest refuse. */
    @Test
    void fallbacksAndRefusals() {
        MemorySegment src = weights(4, 50 * 33);
        assertInstanceOf(CpuBf16Tensor.class, q8.uploadWeights(src, DType.F32, 50, 33));
        assertInstanceOf(CpuBf16Tensor.class, q8.uploadWeights(src, DType.F32, 50 * 33));
        MemorySegment bad = weights(5, 64);
        bad.setAtIndex(JAVA_FLOAT, 40, Float.POSITIVE_INFINITY);
        Tensor kept = q8.uploadWeights(bad, DType.F32, 2, 32);
        assertInstanceOf(CpuBf16Tensor.class, kept);
        assertEquals(Float.POSITIVE_INFINITY, read(q8, kept)[40]);
        // float16 and bfloat16 sources quantise from their values.
        Bf16WeightsTest.Weights h = Bf16WeightsTest.Weights.random(new Random(6), 64, arena, DType.F16, 0.1);
        MemorySegment wide = arena.allocate(4 * 64L, 64);
        for (int i = 0; i < 64; i++) wide.setAtIndex(JAVA_FLOAT, i, h.wide()[i]);
        assertArrayEquals(reference(wide, 64), read(q8, q8.uploadWeights(h.bits(), DType.F16, 2, 32)));
        Tensor t = q8.uploadWeights(src, DType.F32, 33, 32);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> q8.addInPlace(f32.allocate(32), t, 32));
        assertTrue(e.getMessage().contains("Q8_0 weight tensors are read only by linear"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> q8.view(t, 0, 32));
        assertThrows(IllegalArgumentException.class, () -> q8.copy(t, 0, f32.allocate(32), 0, 32));
    }
}
