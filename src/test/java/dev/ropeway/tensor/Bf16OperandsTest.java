package dev.ropeway.tensor;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Bfloat16 tensors as mixed-precision training uses them: float32 rounds to nearest even on the way in, widens exactly
 * on the way out, and every op that reads or writes one gives what the same op gives on float32 with the rounding
 * applied where the bfloat16 tensor stands.
 */
public class Bf16OperandsTest {
    static CpuBackend cpu;

    @BeforeAll
    static void open() {
        cpu = new CpuBackend(2);
    }

    @AfterAll
    static void close() {
        cpu.close();
    }

    /** Round to nearest even, computed the long way: the nearer of the two neighbouring bfloat16 values. */
    static float rounded(float x) {
        if (Float.isNaN(x) || Float.isInfinite(x)) return x;
        int bits = Float.floatToRawIntBits(x);
        float down = Float.intBitsToFloat(bits & 0xffff0000);
        float up = Float.intBitsToFloat((bits & 0xffff0000) + 0x10000);
        // Past the largest bfloat16, "up" is infinity, which rounding treats as 2^128 (one step further).
        double upValue = Float.isInfinite(up) ? Math.copySign(Math.scalb(1.0, 128), x) : up;
        double dd = Math.abs((double) x - down), du = Math.abs(upValue - x);
        if (dd < du) return down;
        if (du < dd) return up;
        return ((bits >>> 16) & 1) == 0 ? down : up;
    }

    static float[] random(long seed, int n, double scale) {
        Random r = new Random(seed);
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float) (r.nextGaussian() * scale);
        return x;
    }

    static float[] read(Tensor t) {
        float[] out = new float[(int) t.size()];
        cpu.download(t, 0, out, 0, out.length);
        return out;
    }

    static float[] rounded(float[] x) {
        float[] r = new float[x.length];
        for (int i = 0; i < x.length; i++) r[i] = rounded(x[i]);
        return r;
    }

    /** A bfloat16 tensor holding {@code x} rounded. */
    static Tensor bf16(float[] x) {
        return bf16(cpu, x);
    }

    /** A bfloat16 tensor on backend {@code b} holding {@code x} rounded to nearest even (the backend's own copy). */
    public static Tensor bf16(Backend b, float[] x) {
        Tensor t = b.allocate(x.length, DType.BF16);
        try (Tensor f = b.upload(x)) {
            b.copy(t, 0, f, 0, x.length);
        }
        return t;
    }

    @Test
    void copiesRoundToNearestEvenAndWidenExactly() {
        float[] x = random(1, 5000, 3);
        // Ties both ways, the largest finite float (rounds to infinity), infinities, NaN, signed zero, a subnormal.
        float[] special = {Float.intBitsToFloat(0x3f808000), Float.intBitsToFloat(0x3f818000), Float.MAX_VALUE,
                Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, Float.NaN, -0f, Float.MIN_VALUE * 3, 1e-40f};
        System.arraycopy(special, 0, x, 0, special.length);
        Tensor t = bf16(x);
        assertInstanceOf(CpuBf16Tensor.class, t);
        float[] back = read(t);
        for (int i = 0; i < x.length; i++) {
            float want = rounded(x[i]);
            if (Float.isNaN(x[i])) assertTrue(Float.isNaN(back[i]), "NaN stays NaN");
            else assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(back[i]), "element " + i + " (" + x[i] + ")");
        }
        assertEquals(Float.POSITIVE_INFINITY, back[2], "the largest float rounds up to infinity");
        // bfloat16 to float32 with offsets, and bfloat16 to bfloat16.
        Tensor wide = cpu.allocate(100), copy = cpu.allocate(x.length, DType.BF16);
        cpu.copy(wide, 10, t, 2000, 90);
        cpu.copy(copy, 0, t, 0, x.length);
        float[] w = read(wide);
        for (int i = 0; i < 90; i++) assertEquals(back[2000 + i], w[10 + i]);
        assertArrayEquals(back, read(copy));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> cpu.copy(t, 4990, wide, 0, 20));
        assertTrue(e.getMessage().contains("dst range"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> cpu.addInPlace(t, wide, 10));
        assertTrue(e.getMessage().contains("addInPlace"), e.getMessage());
        for (Tensor z : new Tensor[] {t, wide, copy}) z.close();
    }

    @Test
    void rmsNormAndSwigluWriteRoundedResults() {
        int rows = 7, dim = 96;
        float[] x = random(2, rows * dim, 2), w = random(3, dim, 1), g = random(4, rows * dim, 2), u = random(5, rows * dim, 2);
        try (Tensor xs = cpu.upload(x); Tensor ws = cpu.upload(w); Tensor gs = cpu.upload(g); Tensor us = cpu.upload(u); Tensor f = cpu.allocate(rows * dim); Tensor h = cpu.allocate(rows * dim, DType.BF16)) {
            cpu.rmsNorm(f, xs, ws, rows, dim, 1e-5f);
            cpu.rmsNorm(h, xs, ws, rows, dim, 1e-5f);
            assertArrayEquals(rounded(read(f)), read(h));
            cpu.swiglu(f, gs, us, rows * dim);
            cpu.swiglu(h, gs, us, rows * dim);
            assertArrayEquals(rounded(read(f)), read(h));
        }
    }

    /**
     * Attention into a bfloat16 out (mixed precision's output projection operand) writes the float32 result rounded
     * once, and its backward reading that out gives what it gives from a float32 out of the same values.
     */
    @Test
    void attentionWritesARoundedOutAndItsBackwardReadsIt() {
        AttentionShape s = AttentionShape.selfAttention(2, 9, 4, 2, 8);
        long qn = 2 * 9 * 4 * 8, kvn = 2 * 9 * 2 * 8, stats = 2 * 9 * 4;
        try (Tensor q = cpu.upload(random(11, (int) qn, 1)); Tensor k = cpu.upload(random(12, (int) kvn, 1));
             Tensor v = cpu.upload(random(13, (int) kvn, 1)); Tensor dOut = cpu.upload(random(14, (int) qn, 1));
             Tensor f = cpu.allocate(qn); Tensor h = cpu.allocate(qn, DType.BF16); Tensor lse = cpu.allocate(stats)) {
            cpu.attention(f, q, k, v, lse, s);
            cpu.attention(h, q, k, v, lse, s);
            assertArrayEquals(rounded(read(f)), read(h));
            float[][] grads = new float[2][];
            for (int run = 0; run < 2; run++)
                try (Tensor out = run == 0 ? cpu.upload(read(h)) : null; Tensor dq = cpu.allocate(qn);
                     Tensor dk = cpu.allocate(kvn); Tensor dv = cpu.allocate(kvn)) {
                    cpu.attentionBackward(dq, dk, dv, dOut, q, k, v, run == 0 ? out : h, lse, s);
                    grads[run] = concat(read(dq), read(dk), read(dv));
                }
            assertArrayEquals(grads[0], grads[1]);
        }
    }

    private static float[] concat(float[]... parts) {
        int n = 0;
        for (float[] p : parts) n += p.length;
        float[] all = new float[n];
        int at = 0;
        for (float[] p : parts) {
            System.arraycopy(p, 0, all, at, p.length);
            at += p.length;
        }
        return all;
    }

    /** Products with one or both operands bfloat16, every transpose: exactly the float32 product of the widened values. */
    @ParameterizedTest
    @CsvSource({"false,false,true,true", "false,true,true,true", "true,false,true,true", "true,true,true,true",
            "false,true,false,true", "true,false,false,true", "false,false,true,false"})
    void productsReadWidenedOperands(boolean transA, boolean transB, boolean halfA, boolean halfB) {
        int m = 37, n = 29, k = 53, lda = transA ? m + 3 : k + 3, ldb = transB ? k + 1 : n + 1, ldc = n + 2;
        int aRows = transA ? k : m, bRows = transB ? n : k;
        float[] a = rounded(random(6, 5 + aRows * lda, 1)), b = rounded(random(7, 3 + bRows * ldb, 1));
        float[] c0 = random(8, m * ldc, 1);
        try (Tensor af = cpu.upload(a); Tensor bf = cpu.upload(b); Tensor want = cpu.upload(c0); Tensor got = cpu.upload(c0)) {
            Tensor ah = halfA ? bf16(a) : af, bh = halfB ? bf16(b) : bf;
            cpu.gemm(transA, transB, m, n, k, 0.5f, af, 5, lda, bf, 3, ldb, 0.25f, want, 0, ldc);
            cpu.gemm(transA, transB, m, n, k, 0.5f, ah, 5, lda, bh, 3, ldb, 0.25f, got, 0, ldc);
            assertArrayEquals(read(want), read(got));
            if (halfA) ah.close();
            if (halfB) bh.close();
        }
    }

    @Test
    void linearReadsBf16InputsAndWeights() {
        int rows = 19, in = 48, out = 40;
        float[] x = rounded(random(9, rows * in, 1)), w = rounded(random(10, out * in, 0.2)), bias = random(11, out, 1);
        try (Tensor xf = cpu.upload(x); Tensor wf = cpu.upload(w); Tensor bs = cpu.upload(bias); Tensor xh = bf16(x); Tensor wh = bf16(w); Tensor want = cpu.allocate(rows * out); Tensor got = cpu.allocate(rows * out)) {
            cpu.linear(want, xf, wf, bs, rows, in, out);
            cpu.linear(got, xh, wh, bs, rows, in, out);
            assertArrayEquals(read(want), read(got));
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> cpu.gemm(false, true, rows, out, in, 1f, xh, 0, in, wh, 0, in, 0f, xh, 0, out));
            assertTrue(e.getMessage().contains("c must be float32"), e.getMessage());
        }
    }

    /** Mixed precision's gate and up: a linear into bfloat16 is the float32 result rounded; SwiGLU reads them widened. */
    @Test
    void linearIntoBf16AndSwigluFromBf16() {
        int rows = 13, in = 32, out = 24;
        float[] x = rounded(random(12, rows * in, 1)), w = rounded(random(13, out * in, 0.3)), bias = random(14, out, 1);
        try (Tensor xh = bf16(x); Tensor wh = bf16(w); Tensor bs = cpu.upload(bias); Tensor f = cpu.allocate(rows * out);
             Tensor h = cpu.allocate(rows * out, DType.BF16)) {
            for (Tensor b : new Tensor[] {null, bs}) {
                cpu.linear(f, xh, wh, b, rows, in, out);
                cpu.linear(h, xh, wh, b, rows, in, out);
                assertArrayEquals(rounded(read(f)), read(h), "linear into bfloat16, bias " + (b != null));
            }
            int n = rows * out;
            float[] dy = random(15, n, 1);
            try (Tensor g = cpu.upload(read(h)); Tensor u = cpu.upload(rounded(random(16, n, 1))); Tensor uh = bf16(read(u));
                 Tensor dys = cpu.upload(dy); Tensor want = cpu.allocate(n); Tensor got = cpu.allocate(n, DType.BF16);
                 Tensor got32 = cpu.allocate(n); Tensor dg = cpu.allocate(n); Tensor du = cpu.allocate(n);
                 Tensor dg2 = cpu.allocate(n); Tensor du2 = cpu.allocate(n)) {
                cpu.swiglu(want, g, u, n);
                cpu.swiglu(got32, h, uh, n);
                assertArrayEquals(read(want), read(got32), "swiglu from bfloat16");
                cpu.swiglu(got, h, uh, n);
                assertArrayEquals(rounded(read(want)), read(got), "swiglu from and into bfloat16");
                cpu.swigluBackward(dg, du, dys, g, u, n);
                cpu.swigluBackward(dg2, du2, dys, h, uh, n);
                assertArrayEquals(read(dg), read(dg2), "swigluBackward from bfloat16: dGate");
                assertArrayEquals(read(du), read(du2), "swigluBackward from bfloat16: dUp");
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> cpu.swiglu(want, h, u, n));
                assertTrue(e.getMessage().contains("both float32 or both bfloat16"), e.getMessage());
            }
        }
    }

    @Test
    void otherTypesAreRefusedByName() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> cpu.allocate(10, DType.F16));
        assertTrue(e.getMessage().contains("F16"), e.getMessage());
        assertEquals(DType.F32, cpu.trainingOperandType());
    }
}
