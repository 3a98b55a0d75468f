package dev.ropeway.tensor;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Random;

import static java.lang.foreign.ValueLayout.JAVA_SHORT;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * float16 weight matrices kept as float16 on the CPU give, on every op that reads them, exactly what their float32
 * widening gives; matrices holding an infinity or a NaN, and the F32 policy, widen at load instead.
 */
public class F16WeightsTest {
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

    /** Random float16 weights with every 13th value replaced by a subnormal of random sign. */
    static Bf16WeightsTest.Weights weights(long seed, int count) {
        Random r = new Random(seed);
        Bf16WeightsTest.Weights w = Bf16WeightsTest.Weights.random(r, count, arena, DType.F16, 0.05);
        for (int i = 0; i < count; i += 13) {
            short bits = (short) ((r.nextBoolean() ? 0x8000 : 0) | 1 + r.nextInt(0x3FF));
            w.bits().setAtIndex(JAVA_SHORT, i, bits);
            w.wide()[i] = Float.float16ToFloat(bits);
        }
        return w;
    }

    static float[] read(CpuBackend b, Tensor t) {
        float[] out = new float[(int) t.size()];
        b.download(t, 0, out, 0, out.length);
        return out;
    }

    static float[] random(long seed, int n) {
        return Bf16WeightsTest.random(seed, n);
    }

    /** All 63,488 finite float16 values (zeros, subnormals, normals, both signs) widen to their float32 values. */
    @Test
    void everyFiniteValueWidensExactly() {
        MemorySegment bits = arena.allocate(2 * 65536L);
        int n = 0;
        for (int h = 0; h < 65536; h++) if ((h & 0x7C00) != 0x7C00) bits.setAtIndex(JAVA_SHORT, n++, (short) h);
        assertEquals(63488, n);
        int count = n - 5;   // not a multiple of the vector length: the scalar tail runs too
        Tensor t = cpu.uploadWeights(bits, DType.F16, count);
        assertInstanceOf(CpuF16Tensor.class, t);
        float[] got = read(cpu, t);
        for (int i = 0; i < count; i++) {
            short h = bits.getAtIndex(JAVA_SHORT, i);
            assertEquals(Float.floatToRawIntBits(Float.float16ToFloat(h)), Float.floatToRawIntBits(got[i]),
                    () -> "float16 bits " + Integer.toHexString(h & 0xFFFF));
        }
        // Copied into float32 and read back as an embedding table, the same values.
        try (Tensor wide = cpu.allocate(count); Tensor rows = cpu.allocate(2 * 31)) {
            cpu.copy(wide, 0, t, 0, count);
            assertArrayEquals(got, read(cpu, wide));
            cpu.embedding(rows, t, new int[] {2046, 0}, 31);
            float[] want = new float[62];
            System.arraycopy(got, 2046 * 31, want, 0, 31);
            System.arraycopy(got, 0, want, 31, 31);
            assertArrayEquals(want, read(cpu, rows));
        }
    }

    /** Widening would turn infinities and NaNs finite, so a matrix holding one stays float32, every value exact. */
    @Test
    void aMatrixWithAnInfinityOrANanIsHeldAsFloat32() {
        for (short special : new short[] {(short) 0x7C00, (short) 0xFC00, (short) 0x7E01}) {
            Bf16WeightsTest.Weights w = weights(3, 100);
            w.bits().setAtIndex(JAVA_SHORT, 77, special);
            Tensor t = cpu.uploadWeights(w.bits(), DType.F16, 100);
            assertInstanceOf(CpuTensor.class, t, Integer.toHexString(special & 0xFFFF));
            float[] got = read(cpu, t);
            assertEquals(Float.float16ToFloat(special), got[77]);
            got[77] = w.wide()[77];
            assertArrayEquals(w.wide(), got);
        }
    }

    @Test
    void linearMatchesTheWidenedWeights() {
        int in = 77, out = 53;   // odd sizes: vector loops and scalar tails both run
        Bf16WeightsTest.Weights w = weights(4, in * out);
        Tensor wh = cpu.uploadWeights(w.bits(), DType.F16, (long) in * out), wf = cpu.upload(w.wide());
        assertInstanceOf(CpuF16Tensor.class, wh);
        Tensor bias = cpu.upload(random(5, out));
        for (int rows : new int[] {1, 2, 3, 4, 5, 37}) {
            Tensor x = cpu.upload(random(rows, rows * in));
            Tensor yh = cpu.allocate((long) rows * out), yf = cpu.allocate((long) rows * out);
            cpu.linear(yh, x, wh, bias, rows, in, out);
            cpu.linear(yf, x, wf, bias, rows, in, out);
            assertArrayEquals(read(cpu, yf), read(cpu, yh), rows + " rows");
            // Into a bfloat16 activation: the float32 result, rounded once.
            try (Tensor yb = cpu.allocate((long) rows * out, DType.BF16); Tensor back = cpu.allocate((long) rows * out)) {
                cpu.linear(yb, x, wh, bias, rows, in, out);
                cpu.copy(back, 0, yb, 0, (long) rows * out);
                float[] want = read(cpu, yf);
                for (int i = 0; i < want.length; i++) want[i] = Bf16OperandsTest.rounded(want[i]);
                assertArrayEquals(want, read(cpu, back), rows + " rows into bfloat16");
            }
        }
    }

    /**
     * One to four rows through rows of W of a multiple of 32 values take the kernels that read whole cache lines with
     * the rows of A scaled by 2^112: bit for bit the float32 product, with subnormal weights and activations, with an
     * activation too large to scale (2^16 and up: the other kernels), with a NaN, and for column counts that leave a
     * remainder.
     */
    @Test
    void rowsThroughWholeLinesMatchTheWidenedWeights() {
        for (int in : new int[] {32, 96, 768}) {
            for (int out : new int[] {4, 53}) {
                Bf16WeightsTest.Weights w = weights(in + out, in * out);
                Tensor wh = cpu.uploadWeights(w.bits(), DType.F16, (long) in * out), wf = cpu.upload(w.wide());
                assertInstanceOf(CpuF16Tensor.class, wh);
                float[][] special = new float[5][];
                special[0] = random(in, in);
                special[1] = random(in + 1, in);
                for (int i = 0; i < in; i += 3) special[1][i] = Float.MIN_VALUE * (i + 1) * (i % 2 == 0 ? 1 : -1);
                special[2] = random(in + 2, in);
                special[2][in / 2] = 65535.9f;   // the largest magnitude that still scales
                special[3] = random(in + 3, in);
                special[3][in - 1] = -0x1p16f;   // too large: the other kernels
                special[4] = random(in + 4, in);
                special[4][1] = Float.NaN;
                for (int rows = 1; rows <= 4; rows++) {
                    for (int r = 0; r < special.length; r++) {
                        // The special row last, after random ones.
                        float[] x = random(100 * rows + r, rows * in);
                        System.arraycopy(special[r], 0, x, (rows - 1) * in, in);
                        try (Tensor xt = cpu.upload(x); Tensor yh = cpu.allocate((long) rows * out);
                             Tensor yf = cpu.allocate((long) rows * out)) {
                            cpu.linear(yh, xt, wh, null, rows, in, out);
                            cpu.linear(yf, xt, wf, null, rows, in, out);
                            assertArrayEquals(read(cpu, yf), read(cpu, yh), in + " x " + out + ", " + rows + " rows, case " + r);
                        }
                    }
                }
                wh.close();
                wf.close();
            }
        }
    }

    @Test
    void gemmReadsAFloat16OperandWherever() {
        int m = 9, n = 300, k = 64;
        Bf16WeightsTest.Weights w = weights(6, n * k);
        Tensor wh = cpu.uploadWeights(w.bits(), DType.F16, (long) n * k), wf = cpu.upload(w.wide());
        Tensor a = cpu.upload(random(7, m * k));
        Tensor ch = cpu.upload(random(8, m * n)), cf = cpu.upload(random(8, m * n));
        cpu.gemm(false, true, m, n, k, 0.5f, a, 0, k, wh, 0, k, 0.25f, ch, 0, n);
        cpu.gemm(false, true, m, n, k, 0.5f, a, 0, k, wf, 0, k, 0.25f, cf, 0, n);
        float[] want = read(cpu, cf), got = read(cpu, ch);
        for (int i = 0; i < want.length; i++) assertEquals(want[i], got[i], 1e-5f * (1 + Math.abs(want[i])), "c[" + i + "]");
        // Untransposed, or as A, the weight is widened first: exactly the float32 product.
        cpu.gemm(false, false, m, n, k, 1f, a, 0, k, wh, 0, n, 0f, ch, 0, n);
        cpu.gemm(false, false, m, n, k, 1f, a, 0, k, wf, 0, n, 0f, cf, 0, n);
        assertArrayEquals(read(cpu, cf), read(cpu, ch));
        try (Tensor c1 = cpu.allocate((long) n * m); Tensor c2 = cpu.allocate((long) n * m)) {
            cpu.gemm(false, true, n, m, k, 1f, wh, 0, k, a, 0, k, 0f, c1, 0, m);
            cpu.gemm(false, true, n, m, k, 1f, wf, 0, k, a, 0, k, 0f, c2, 0, m);
            assertArrayEquals(read(cpu, c2), read(cpu, c1));
        }
    }

    @Test
    void viewsCopiesAndRefusals() {
        Bf16WeightsTest.Weights w = weights(9, 1000);
        Tensor t = cpu.uploadWeights(w.bits(), DType.F16, 1000);
        Tensor view = cpu.view(t, 300, 500);
        assertInstanceOf(CpuF16Tensor.class, view);
        assertArrayEquals(Arrays.copyOfRange(w.wide(), 300, 800), read(cpu, view));
        // float16 to float16 moves the bits; float16 to bfloat16 rounds the widened values.
        try (Tensor again = cpu.uploadWeights(weights(10, 1000).bits(), DType.F16, 1000);
             Tensor b = cpu.allocate(1000, DType.BF16)) {
            cpu.copy(again, 100, t, 0, 900);
            float[] back = read(cpu, again);
            assertArrayEquals(Arrays.copyOfRange(w.wide(), 0, 900), Arrays.copyOfRange(back, 100, 1000));
            cpu.copy(b, 0, t, 0, 1000);
            float[] rounded = read(cpu, b);
            for (int i = 0; i < 1000; i++) assertEquals(Bf16OperandsTest.rounded(w.wide()[i]), rounded[i], "value " + i);
            IllegalArgumentException into = assertThrows(IllegalArgumentException.class,
                    () -> cpu.copy(again, 0, cpu.upload(new float[4]), 0, 4));
            assertTrue(into.getMessage().contains("float16"), into.getMessage());
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> cpu.rmsNorm(cpu.allocate(1000), t, cpu.upload(new float[1000]), 1, 1000, 1e-5f));
        assertTrue(e.getMessage().contains("float16 weight tensors are read only by linear"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> cpu.view(t, 900, 200));
        view.close();
        t.close();
        assertThrows(IllegalStateException.class, () -> read(cpu, view));
    }

    /** The F32 policy widens 16-bit matrices at load; BF16 and float32 sources are unaffected by AUTO. */
    @Test
    void policiesChooseTheTypeAMatrixIsHeldIn() {
        Bf16WeightsTest.Weights half = weights(11, 500);
        Bf16WeightsTest.Weights brain = Bf16WeightsTest.Weights.random(new Random(12), 500, arena, DType.BF16, 1);
        try (CpuBackend wide = new CpuBackend(1, DType.F32, CpuBackend.Weights.F32)) {
            assertEquals(CpuBackend.Weights.F32, wide.weights());
            Tensor a = wide.uploadWeights(half.bits(), DType.F16, 500), b = wide.uploadWeights(brain.bits(), DType.BF16, 500);
            assertInstanceOf(CpuTensor.class, a);
            assertInstanceOf(CpuTensor.class, b);
            assertArrayEquals(half.wide(), read(wide, a));
            assertArrayEquals(brain.wide(), read(wide, b));
        }
        assertEquals(CpuBackend.Weights.AUTO, cpu.weights());
        assertInstanceOf(CpuBf16Tensor.class, cpu.uploadWeights(brain.bits(), DType.BF16, 500));
        assertThrows(IllegalArgumentException.class, () -> new CpuBackend(1, DType.F32, null));
    }
}
