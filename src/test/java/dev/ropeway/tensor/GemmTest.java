package dev.ropeway.tensor;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class GemmTest {
    private static CpuBackend cpu;

    @BeforeAll
    static void start() {
        cpu = new CpuBackend(3);
    }

    @AfterAll
    static void stop() {
        cpu.close();
    }

    static float[] random(Random rnd, int n) {
        float[] x = new float[n];
        for (int i = 0; i < x.length; i++) x[i] = (float) rnd.nextGaussian();
        return x;
    }

    static float[] download(Tensor t) {
        float[] out = new float[(int) t.size()];
        cpu.download(t, 0, out, 0, out.length);
        return out;
    }

    static void assertClose(float[] expect, float[] got, double tol, String what) {
        assertEquals(expect.length, got.length);
        for (int i = 0; i < expect.length; i++)
            assertEquals(expect[i], got[i], tol * (1 + Math.abs(expect[i])), what + " at " + i);
    }

    /** A few rows times a transposed matrix (a decode step) takes the dot-product kernel: same results as the reference. */
    @ParameterizedTest(name = "m={0} n={1} k={2}")
    @CsvSource({"1,517,300", "2,3,7", "3,4096,384", "4,1030,17", "1,1,1", "1,8192,384"})
    void fewRowsMatchReference(int m, int n, int k) {
        assertTrue(Gemv.applies(false, true, m, 1f, 0f));
        Random rnd = new Random(m * 31L + n * 7L + k);
        int lda = k + 3, ldb = k + 5, ldc = n + 2, aOff = 11, bOff = 7, cOff = 13;
        float[] a = random(rnd, aOff + m * lda), b = random(rnd, bOff + n * ldb), c = random(rnd, cOff + m * ldc + 4);
        float[] expect = c.clone();
        Reference.gemm(false, true, m, n, k, 1f, a, aOff, lda, b, bOff, ldb, 0f, expect, cOff, ldc);
        try (Tensor ta = cpu.upload(a); Tensor tb = cpu.upload(b); Tensor tc = cpu.upload(c)) {
            cpu.gemm(false, true, m, n, k, 1f, ta, aOff, lda, tb, bOff, ldb, 0f, tc, cOff, ldc);
            assertClose(expect, download(tc), 1e-4, "gemv");
        }
    }

    /**
     * Rows go through the weights together (a batched decode step), yet every row's result is the one it gets alone,
     * bit for bit, with the leftover columns and elements of k, and C's padding untouched.
     */
    @ParameterizedTest(name = "m={0} n={1} k={2}")
    @CsvSource({"2,517,300", "3,1030,17", "4,4096,384", "4,7,33", "3,3,5"})
    void fewRowsTogetherGiveEachRowsOwnResult(int m, int n, int k) {
        Random rnd = new Random(m * 17L + n + k * 5L);
        int lda = k + 3, ldb = k + 5, ldc = n + 2;
        float[] a = random(rnd, m * lda), b = random(rnd, n * ldb), c = random(rnd, m * ldc);
        float[] alone = c.clone();
        try (Tensor ta = cpu.upload(a); Tensor tb = cpu.upload(b); Tensor tc = cpu.upload(c); Tensor t1 = cpu.upload(alone)) {
            cpu.gemm(false, true, m, n, k, 1f, ta, 0, lda, tb, 0, ldb, 0f, tc, 0, ldc);
            for (int r = 0; r < m; r++) cpu.gemm(false, true, 1, n, k, 1f, ta, (long) r * lda, lda, tb, 0, ldb, 0f, t1, (long) r * ldc, ldc);
            float[] together = download(tc), one = download(t1);
            assertArrayEquals(one, together);
            for (int r = 0; r < m; r++)
                for (int j = n; j < ldc; j++) assertEquals(c[r * ldc + j], together[r * ldc + j], "padding of row " + r);
        }
    }

    /** All four transpose combinations, with offsets, padded leading dimensions, alpha and beta. */
    @ParameterizedTest(name = "transA={0} transB={1} m={2} n={3} k={4}")
    @CsvSource({
            "false,false,37,53,29", "false,true,37,53,29", "true,false,37,53,29", "true,true,37,53,29",
            "false,false,301,203,101", "false,true,301,203,101", "true,false,301,203,101", "true,true,301,203,101",
            "false,true,1,517,300", "true,false,259,1,130"})
    void matchesReference(boolean ta, boolean tb, int m, int n, int k) {
        Random rnd = new Random(m * 31L + n * 7L + k + (ta ? 1 : 0) + (tb ? 2 : 0));
        int aRows = ta ? k : m, aCols = ta ? m : k, bRows = tb ? n : k, bCols = tb ? k : n;
        int lda = aCols + 3, ldb = bCols + 5, ldc = n + 2;
        int aOff = 11, bOff = 7, cOff = 13;
        float[] a = random(rnd, aOff + aRows * lda), b = random(rnd, bOff + bRows * ldb), c = random(rnd, cOff + m * ldc + 4);
        float[] expect = c.clone();
        Reference.gemm(ta, tb, m, n, k, 0.75f, a, aOff, lda, b, bOff, ldb, -0.5f, expect, cOff, ldc);
        try (Tensor ta_ = cpu.upload(a); Tensor tb_ = cpu.upload(b); Tensor tc = cpu.upload(c)) {
            cpu.gemm(ta, tb, m, n, k, 0.75f, ta_, aOff, lda, tb_, bOff, ldb, -0.5f, tc, cOff, ldc);
            float[] got = download(tc);
            assertClose(expect, got, 2e-5 * Math.sqrt(k), "gemm");
            // Padding between rows and the tail after C are untouched.
            assertEquals(c[c.length - 1], got[got.length - 1]);
            assertEquals(c[cOff + n], got[cOff + n]);
        }
    }

    @Test
    void zeroInnerDimensionScalesC() {
        float[] c = {1, 2, 3, 4, 5, 6};
        try (Tensor a = cpu.allocate(1); Tensor b = cpu.allocate(1); Tensor tc = cpu.upload(c)) {
            cpu.gemm(false, false, 2, 3, 0, 1f, a, 0, 1, b, 0, 3, 2f, tc, 0, 3);
            assertArrayEquals(new float[]{2, 4, 6, 8, 10, 12}, download(tc));
            cpu.gemm(false, false, 0, 3, 5, 1f, a, 0, 5, b, 0, 3, 0f, tc, 0, 3);
            assertArrayEquals(new float[]{2, 4, 6, 8, 10, 12}, download(tc));
        }
    }

    @Test
    void gemmChecksEveryMatrix() {
        try (Tensor a = cpu.allocate(12); Tensor b = cpu.allocate(12); Tensor c = cpu.allocate(9)) {
            var e = assertThrows(IllegalArgumentException.class,
                    () -> cpu.gemm(false, false, 3, 3, 4, 1f, a, 1, 4, b, 0, 3, 0f, c, 0, 3));
            assertTrue(e.getMessage().startsWith("gemm: a has 12 floats, needs offset + (rows-1)*ld + cols = 1 + 2*4 + 4 = 13"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> cpu.gemm(false, false, 3, 3, 4, 1f, a, 0, 3, b, 0, 3, 0f, c, 0, 3));
            assertTrue(e.getMessage().contains("lda = 3 is less than its 4 columns"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> cpu.gemm(false, true, 3, 3, 4, 1f, a, 0, 4, b, 0, 4, 0f, c, 1, 3));
            assertThrows(IllegalArgumentException.class, () -> cpu.gemm(false, false, -1, 3, 4, 1f, a, 0, 4, b, 0, 3, 0f, c, 0, 3));
        }
    }

    static float[] linearReference(float[] x, float[] w, float[] bias, int rows, int in, int out) {
        float[] y = new float[rows * out];
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < out; o++) {
                double sum = bias == null ? 0 : bias[o];
                for (int i = 0; i < in; i++) sum += (double) x[r * in + i] * w[o * in + i];
                y[r * out + o] = (float) sum;
            }
        return y;
    }

    @ParameterizedTest(name = "rows={0} in={1} out={2} bias={3}")
    @CsvSource({"1,64,37,true", "1,300,1000,false", "5,17,9,true", "130,96,200,true", "513,67,131,false", "333,256,384,true"})
    void linearMatchesReference(int rows, int in, int out, boolean withBias) {
        Random rnd = new Random(rows * 1000L + in + out);
        float[] x = random(rnd, rows * in), w = random(rnd, out * in), bias = withBias ? random(rnd, out) : null;
        float[] expect = linearReference(x, w, bias, rows, in, out);
        try (Tensor tx = cpu.upload(x); Tensor tw = cpu.upload(w); Tensor tb = withBias ? cpu.upload(bias) : null;
             Tensor ty = cpu.allocate((long) rows * out)) {
            cpu.linear(ty, tx, tw, tb, rows, in, out);
            assertClose(expect, download(ty), 2e-5 * Math.sqrt(in), "linear");
        }
    }

    @Test
    void linearSplitsRowsIntoChunks() {
        int rows = 100, in = 33, out = 45;
        Random rnd = new Random(9);
        float[] x = random(rnd, rows * in), w = random(rnd, out * in), bias = random(rnd, out);
        float[] expect = linearReference(x, w, bias, rows, in, out);
        try (Tensor tx = cpu.upload(x); Tensor tw = cpu.upload(w); Tensor tb = cpu.upload(bias); Tensor ty = cpu.allocate(rows * out)) {
            cpu.linear(ty, tx, tw, tb, rows, in, out, 7);
            assertClose(expect, download(ty), 1e-4, "linear in 7-row chunks");
        }
    }

    @Test
    void linearReportsTheFormulaItNeeded() {
        try (Tensor x = cpu.allocate(100); Tensor w = cpu.allocate(64 * 32); Tensor y = cpu.allocate(4 * 32)) {
            var e = assertThrows(IllegalArgumentException.class, () -> cpu.linear(y, x, w, null, 4, 32, 32));
            assertEquals("linear: x has 100 floats, needs rows*in = 128", e.getMessage());
            try (Tensor x2 = cpu.allocate(128); Tensor shortBias = cpu.allocate(31)) {
                e = assertThrows(IllegalArgumentException.class, () -> cpu.linear(y, x2, w, shortBias, 4, 32, 32));
                assertEquals("linear: bias has 31 floats, needs out = 32", e.getMessage());
            }
        }
    }

    @Test
    void gridKeepsBlocksLargeAndPackingLow() {
        assertArrayEquals(new int[]{1, 1}, ParallelGemm.grid(4, 10, 10, 1000));
        assertArrayEquals(new int[]{1, 1}, ParallelGemm.grid(1, 4096, 4096, 1L << 36));
        // Decode: one row, so split the columns.
        assertArrayEquals(new int[]{1, 4}, ParallelGemm.grid(4, 1, 4096, 4096L * 4096));
        // Tall: split the rows.
        assertArrayEquals(new int[]{4, 1}, ParallelGemm.grid(4, 8192, 256, 8192L * 256 * 256));
        // Square on 4 threads: a 2 x 2 grid packs least.
        assertArrayEquals(new int[]{2, 2}, ParallelGemm.grid(4, 1024, 1024, 1L << 30));
        // Too small to give every thread a 32-wide block: fewer parts.
        int[] g = ParallelGemm.grid(16, 64, 64, 64L * 64 * 4096);
        assertTrue(g[0] * g[1] <= 4, g[0] + "x" + g[1]);
    }
}
