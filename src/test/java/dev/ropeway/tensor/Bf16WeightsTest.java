package dev.ropeway.tensor;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Random;

import static java.lang.foreign.ValueLayout.JAVA_SHORT;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** bfloat16 weights kept as bfloat16 give what their float32 widening gives, on every op that reads them. */
public class Bf16WeightsTest {
    static CpuBackend cpu;
    static Arena arena;

    @BeforeAll
    static void open() {
        cpu = new CpuBackend(2);
        arena = Arena.ofShared();
    }

    @AfterAll
    static void close() {
        cpu.close();
        arena.close();
    }

    /** Random bfloat16 or float16 values: their raw bits (as a checkpoint holds them) and their exact float32 widening. */
    public record Weights(MemorySegment bits, float[] wide) {
        /** {@code count} normal values of standard deviation {@code scale}, stored as {@code type} (BF16 or F16). */
        public static Weights random(Random r, int count, Arena arena, DType type, double scale) {
            MemorySegment bits = arena.allocate(2L * count);
            float[] wide = new float[count];
            for (int i = 0; i < count; i++) {
                float v = (float) (r.nextGaussian() * scale);
                short b = type == DType.F16 ? Float.floatToFloat16(v) : (short) (Float.floatToRawIntBits(v) >>> 16);
                bits.setAtIndex(JAVA_SHORT, i, b);
                wide[i] = type == DType.F16 ? Float.float16ToFloat(b) : Float.intBitsToFloat(b << 16);
            }
            return new Weights(bits, wide);
        }

        static Weights random(long seed, int count) {
            return random(new Random(seed), count, arena, DType.BF16, 1);
        }
    }

    static float[] random(long seed, int n) {
        Random r = new Random(seed);
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float) r.nextGaussian();
        return x;
    }

    static float[] read(Tensor t) {
        float[] out = new float[(int) t.size()];
        cpu.download(t, 0, out, 0, out.length);
        return out;
    }

    @Test
    void keptAsBf16AndDownloadedExactly() {
        Weights w = Weights.random(1, 1000);
        Tensor t = cpu.uploadWeights(w.bits(), DType.BF16, 1000);
        assertInstanceOf(CpuBf16Tensor.class, t);
        assertArrayEquals(w.wide(), read(t));
        float[] part = new float[10];
        cpu.download(t, 990, part, 0, 10);
        assertArrayEquals(java.util.Arrays.copyOfRange(w.wide(), 990, 1000), part);
        assertInstanceOf(CpuTensor.class, cpu.uploadWeights(cpu.segment(cpu.upload(new float[4])), DType.F32, 4));
    }

    /**
     * A backend made with BF16 matrices rounds float32 and float16 matrices to nearest-even bfloat16 as they load (in
     * slices of 2^20 values: this matrix crosses one), keeps bfloat16 ones as they are, and refuses other matrix types.
     */
    @Test
    void bf16MatricesRoundFloat32AndFloat16ToNearestEven() {
        int n = (1 << 20) + 37;
        Random r = new Random(9);
        float[] f = new float[n];
        for (int i = 0; i < n; i++) f[i] = (float) (r.nextGaussian() * Math.pow(2, r.nextInt(20) - 10));
        f[0] = Float.intBitsToFloat(0x3F808000);   // a tie with an even bfloat16 below: rounds down
        f[1] = Float.intBitsToFloat(0x3F818000);   // a tie with an odd bfloat16 below: rounds up
        f[n - 1] = Float.intBitsToFloat(0x3F80FFFF);
        Weights half = Weights.random(new Random(10), n, arena, DType.F16, 0.05);
        try (CpuBackend narrow = new CpuBackend(2, DType.F32, CpuBackend.Weights.BF16); Tensor src = narrow.upload(f)) {
            assertEquals(CpuBackend.Weights.BF16, narrow.weights());
            Tensor fromF32 = narrow.uploadWeights(CpuBackend.segment(src), DType.F32, n);
            Tensor fromF16 = narrow.uploadWeights(half.bits(), DType.F16, n);
            assertInstanceOf(CpuBf16Tensor.class, fromF32);
            assertInstanceOf(CpuBf16Tensor.class, fromF16);
            float[] a = new float[n], b = new float[n];
            narrow.download(fromF32, 0, a, 0, n);
            narrow.download(fromF16, 0, b, 0, n);
            for (int i = 0; i < n; i++) {
                assertEquals(nearestEven(f[i]), a[i], "float32 value " + i);
                assertEquals(nearestEven(half.wide()[i]), b[i], "float16 value " + i);
            }
            assertEquals(Float.intBitsToFloat(0x3F800000), a[0]);
            assertEquals(Float.intBitsToFloat(0x3F820000), a[1]);
            assertEquals(Float.intBitsToFloat(0x3F810000), a[n - 1]);
            Weights kept = Weights.random(11, 64);
            float[] c = new float[64];
            narrow.download(narrow.uploadWeights(kept.bits(), DType.BF16, 64), 0, c, 0, 64);
            assertArrayEquals(kept.wide(), c);
        }
    }

    /** Round to nearest even bfloat16, written out from the definition. */
    private static float nearestEven(float x) {
        int bits = Float.floatToRawIntBits(x);
        int low = bits & 0xFFFF, kept = bits & 0xFFFF0000;
        boolean up = low > 0x8000 || low == 0x8000 && (bits & 0x10000) != 0;
        return Float.intBitsToFloat(up ? kept + 0x10000 : kept);
    }

    @Test
    void linearMatchesTheWidenedWeights() {
        int in = 77, out = 53;   // odd sizes: vector loops and scalar tails both run
        Weights w = Weights.random(2, in * out);
        Tensor wb = cpu.uploadWeights(w.bits(), DType.BF16, (long) in * out), wf = cpu.upload(w.wide());
        Tensor bias = cpu.upload(random(3, out));
        for (int rows : new int[] {1, 2, 3, 4, 5, 37}) {
            Tensor x = cpu.upload(random(rows, rows * in));
            Tensor yb = cpu.allocate((long) rows * out), yf = cpu.allocate((long) rows * out);
            cpu.linear(yb, x, wb, bias, rows, in, out);
            cpu.linear(yf, x, wf, bias, rows, in, out);
            assertArrayEquals(read(yf), read(yb), rows + " rows");
        }
    }

    @Test
    void gemmWithATransposedBf16B() {
        int m = 9, n = 300, k = 64;
        Weights w = Weights.random(4, n * k);
        Tensor wb = cpu.uploadWeights(w.bits(), DType.BF16, (long) n * k), wf = cpu.upload(w.wide());
        Tensor a = cpu.upload(random(5, m * k));
        Tensor cb = cpu.upload(random(6, m * n)), cf = cpu.upload(random(6, m * n));
        cpu.gemm(false, true, m, n, k, 0.5f, a, 0, k, wb, 0, k, 0.25f, cb, 0, n);
        cpu.gemm(false, true, m, n, k, 0.5f, a, 0, k, wf, 0, k, 0.25f, cf, 0, n);
        float[] want = read(cf), got = read(cb);
        for (int i = 0; i < want.length; i++) assertEquals(want[i], got[i], 1e-5f * (1 + Math.abs(want[i])), "c[" + i + "]");
        // Read untransposed, the weight is widened first: exactly the float32 product.
        cpu.gemm(false, false, m, n, k, 1f, a, 0, k, wb, 0, n, 0f, cb, 0, n);
        cpu.gemm(false, false, m, n, k, 1f, a, 0, k, wf, 0, n, 0f, cf, 0, n);
        assertArrayEquals(read(cf), read(cb));
    }

    @Test
    void embeddingRowsAndOtherOpsRefuse() {
        int vocab = 40, dim = 33;
        Weights w = Weights.random(7, vocab * dim);
        Tensor wb = cpu.uploadWeights(w.bits(), DType.BF16, (long) vocab * dim), wf = cpu.upload(w.wide());
        int[] ids = {0, 39, 5, 5, 17};
        Tensor ob = cpu.allocate((long) ids.length * dim), of = cpu.allocate((long) ids.length * dim);
        cpu.embedding(ob, wb, ids, dim);
        cpu.embedding(of, wf, ids, dim);
        assertArrayEquals(read(of), read(ob));
        assertThrows(IllegalArgumentException.class, () -> cpu.embedding(ob, wb, new int[] {vocab}, dim));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> cpu.addInPlace(ob, wb, 10));
        assertTrue(e.getMessage().contains("bfloat16"), e.getMessage());
    }
}
