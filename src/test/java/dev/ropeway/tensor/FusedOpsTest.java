package dev.ropeway.tensor;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import static dev.ropeway.tensor.Bf16OperandsTest.random;
import static dev.ropeway.tensor.Bf16OperandsTest.rounded;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The fused ops of the training and decoding paths (residual add + norm, norm backward into the residual gradient,
 * cross-entropy into a separate gradient, SwiGLU backward into bfloat16): each gives exactly what its unfused ops
 * give, for every aliasing the contract allows, and refuses the ones it does not. A GPU backend's fused kernels are
 * held to these results by the CUDA tests.
 */
class FusedOpsTest {
    static CpuBackend cpu;

    @BeforeAll
    static void open() {
        cpu = new CpuBackend(2);
    }

    @AfterAll
    static void close() {
        cpu.close();
    }

    static float[] read(Tensor t) {
        float[] out = new float[(int) t.size()];
        cpu.download(t, 0, out, 0, out.length);
        return out;
    }

    @Test
    void addRmsNormIsTheAddThenTheNormForEveryAllowedAliasing() {
        int rows = 37, dim = 70;
        float eps = 1e-5f;
        float[] a = random(1, rows * dim, 2), b = random(2, rows * dim, 1), w = random(3, dim, 1);
        float[] sum = new float[a.length];
        for (int i = 0; i < a.length; i++) sum[i] = a[i] + b[i];
        float[] norm;
        try (Tensor s = cpu.upload(sum); Tensor n = cpu.allocate(a.length); Tensor wt = cpu.upload(w)) {
            cpu.rmsNorm(n, s, wt, rows, dim, eps);
            norm = read(n);
        }
        // sum = a, out separate
        try (Tensor ta = cpu.upload(a); Tensor tb = cpu.upload(b); Tensor out = cpu.allocate(a.length); Tensor wt = cpu.upload(w)) {
            cpu.addRmsNorm(out, ta, ta, tb, wt, rows, dim, eps);
            assertArrayEquals(sum, read(ta), "sum into a");
            assertArrayEquals(norm, read(out), "norm of the sum");
            assertArrayEquals(b, read(tb), "b untouched");
        }
        // sum = a, out = b: the decoder's "x += hs; hs = norm(x)"
        try (Tensor ta = cpu.upload(a); Tensor tb = cpu.upload(b); Tensor wt = cpu.upload(w)) {
            cpu.addRmsNorm(tb, ta, ta, tb, wt, rows, dim, eps);
            assertArrayEquals(sum, read(ta), "sum into a, out over b");
            assertArrayEquals(norm, read(tb), "norm over b");
        }
        // sum = b, out = a
        try (Tensor ta = cpu.upload(a); Tensor tb = cpu.upload(b); Tensor wt = cpu.upload(w)) {
            cpu.addRmsNorm(ta, tb, ta, tb, wt, rows, dim, eps);
            assertArrayEquals(sum, read(tb), "sum into b");
            assertArrayEquals(norm, read(ta), "norm over a");
        }
        // sum separate, out bfloat16
        try (Tensor ta = cpu.upload(a); Tensor tb = cpu.upload(b); Tensor s = cpu.allocate(a.length);
             Tensor out = cpu.allocate(a.length, DType.BF16); Tensor wt = cpu.upload(w)) {
            cpu.addRmsNorm(out, s, ta, tb, wt, rows, dim, eps);
            assertArrayEquals(sum, read(s), "sum into its own tensor");
            assertArrayEquals(a, read(ta), "a untouched");
            assertArrayEquals(rounded(norm), read(out), "norm rounded to bfloat16");
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> cpu.addRmsNorm(s, s, ta, tb, wt, rows, dim, eps));
            assertTrue(e.getMessage().contains("out and sum are the same tensor"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> cpu.addRmsNorm(out, s, ta, tb, wt, -1, dim, eps));
        }
    }

    @Test
    void rmsNormBackwardAddAddsIntoTheResidualGradientAndRoundsACopy() {
        int rows = 29, dim = 96;
        float eps = 1e-6f;
        float[] x = random(4, rows * dim, 1.5), w = random(5, dim, 1), dy = random(6, rows * dim, 1);
        float[] res = random(7, rows * dim, 0.5), dw0 = random(8, dim, 0.1);
        float[] dx, dwWant;
        try (Tensor tx = cpu.upload(x); Tensor tw = cpu.upload(w); Tensor tdy = cpu.upload(dy); Tensor tdx = cpu.allocate(x.length);
             Tensor tdw = cpu.upload(dw0)) {
            cpu.rmsNormBackward(tdx, tdw, tdy, tx, tw, rows, dim, eps);
            dx = read(tdx);
            dwWant = read(tdw);
        }
        float[] resWant = new float[res.length];
        for (int i = 0; i < res.length; i++) resWant[i] = res[i] + dx[i];
        for (DType copyType : new DType[] {null, DType.F32, DType.BF16}) {
            try (Tensor tx = cpu.upload(x); Tensor tw = cpu.upload(w); Tensor tdy = cpu.upload(dy); Tensor tres = cpu.upload(res);
                 Tensor tdw = cpu.upload(dw0); Tensor copy = copyType == null ? null : cpu.allocate(x.length, copyType)) {
                cpu.rmsNormBackwardAdd(tres, copy, tdw, tdy, tx, tw, rows, dim, eps);
                assertArrayEquals(resWant, read(tres), "dResidual += dx (" + copyType + ")");
                assertArrayEquals(dwWant, read(tdw), "dWeight accumulated (" + copyType + ")");
                if (copyType == DType.F32) assertArrayEquals(resWant, read(copy), "float32 copy");
                if (copyType == DType.BF16) assertArrayEquals(rounded(resWant), read(copy), "bfloat16 copy");
                assertArrayEquals(x, read(tx), "x untouched");
                for (Tensor bad : new Tensor[] {tdy, tx})
                    assertThrows(IllegalArgumentException.class,
                            () -> cpu.rmsNormBackwardAdd(bad, null, tdw, tdy, tx, tw, rows, dim, eps));
            }
        }
    }

    @Test
    void crossEntropyBackwardIntoItsOwnGradient() {
        int rows = 9, vocab = 301;
        float[] logits = random(9, rows * vocab, 3);
        int[] targets = new int[rows];
        for (int r = 0; r < rows; r++) targets[r] = r == 4 ? -1 : (r * 37) % vocab;
        float[] gradWant;
        double[] lossWant;
        try (Tensor t = cpu.upload(logits)) {
            lossWant = cpu.crossEntropyBackward(t, targets, rows, vocab, 0.5f);
            gradWant = read(t);
        }
        for (DType type : new DType[] {DType.F32, DType.BF16}) {
            try (Tensor t = cpu.upload(logits); Tensor g = cpu.allocate(logits.length, type)) {
                double[] loss = cpu.crossEntropyBackward(t, g, targets, rows, vocab, 0.5f);
                assertArrayEquals(lossWant, loss, "losses (" + type + ")");
                assertArrayEquals(type == DType.BF16 ? rounded(gradWant) : gradWant, read(g), "gradient (" + type + ")");
            }
        }
        try (Tensor t = cpu.upload(logits)) {
            double[] loss = cpu.crossEntropyBackward(t, t, targets, rows, vocab, 0.5f);
            assertArrayEquals(lossWant, loss, "in place: losses");
            assertArrayEquals(gradWant, read(t), "in place: gradient");
        }
    }

    @Test
    void swigluBackwardRoundsItsGradientsToBfloat16() {
        int n = 1001;
        float[] g = random(10, n, 2), u = random(11, n, 1), dy = random(12, n, 1);
        float[] dgWant, duWant;
        try (Tensor tg = cpu.upload(g); Tensor tu = cpu.upload(u); Tensor tdy = cpu.upload(dy);
             Tensor dg = cpu.allocate(n); Tensor du = cpu.allocate(n)) {
            cpu.swigluBackward(dg, du, tdy, tg, tu, n);
            dgWant = read(dg);
            duWant = read(du);
        }
        try (Tensor tg = cpu.upload(g); Tensor tu = cpu.upload(u); Tensor tdy = cpu.upload(dy);
             Tensor dg = cpu.allocate(n, DType.BF16); Tensor du = cpu.allocate(n, DType.BF16); Tensor f = cpu.allocate(n)) {
            cpu.swigluBackward(dg, du, tdy, tg, tu, n);
            assertArrayEquals(rounded(dgWant), read(dg), "dGate rounded");
            assertArrayEquals(rounded(duWant), read(du), "dUp rounded");
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> cpu.swigluBackward(dg, f, tdy, tg, tu, n));
            assertTrue(e.getMessage().contains("both float32 or both bfloat16"), e.getMessage());
            assertEquals(n, dg.size());
        }
    }
}
