package dev.ropeway.tensor;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.Random;

import static dev.ropeway.tensor.GemmTest.random;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class RowKernelsTest {
    private static CpuBackend cpu;

    @BeforeAll
    static void start() {
        cpu = new CpuBackend(3);
    }

    @AfterAll
    static void stop() {
        cpu.close();
    }

    static float[] download(Tensor t) {
        float[] out = new float[(int) t.size()];
        cpu.download(t, 0, out, 0, out.length);
        return out;
    }

    @ParameterizedTest(name = "rows={0} dim={1}")
    @CsvSource({"1,7", "3,37", "130,100", "2000,96", "5,4099"})
    void rmsNormMatchesReference(int rows, int dim) {
        Random rnd = new Random(rows + dim);
        float[] x = random(rnd, rows * dim), w = random(rnd, dim);
        float eps = 1e-5f;
        try (Tensor tx = cpu.upload(x); Tensor tw = cpu.upload(w); Tensor out = cpu.allocate((long) rows * dim)) {
            cpu.rmsNorm(out, tx, tw, rows, dim, eps);
            float[] got = download(out);
            for (int r = 0; r < rows; r++) {
                double sum = 0;
                for (int i = 0; i < dim; i++) sum += (double) x[r * dim + i] * x[r * dim + i];
                double inv = 1 / Math.sqrt(sum / dim + eps);
                for (int i = 0; i < dim; i++) {
                    double expect = x[r * dim + i] * inv * w[i];
                    assertEquals(expect, got[r * dim + i], 1e-5 * (1 + Math.abs(expect)), "row " + r + " col " + i);
                }
            }
            // In place (out = x) gives the same result, to a few ulp: the interpreted and the JIT-compiled kernel
            // (which may be the one running the second call) sum the squares in different orders.
            cpu.rmsNorm(tx, tx, tw, rows, dim, eps);
            float[] inPlace = download(tx);
            for (int i = 0; i < got.length; i++) assertEquals(got[i], inPlace[i], 4 * Math.ulp(got[i]), "in place at " + i);
        }
    }

    @Test
    void rmsNormChecksSizes() {
        try (Tensor x = cpu.allocate(10); Tensor w = cpu.allocate(4)) {
            var e = assertThrows(IllegalArgumentException.class, () -> cpu.rmsNorm(x, x, w, 3, 4, 1e-6f));
            assertEquals("rmsNorm: x has 10 floats, needs rows*dim = 12", e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> cpu.rmsNorm(x, x, w, 2, 5, 1e-6f));
            assertEquals("rmsNorm: weight has 4 floats, needs dim = 5", e.getMessage());
        }
    }

    @Test
    void rotaryTableIsCosAndSinOfFloatAngles() {
        float[] positions = {0, 1, 2, 1000, 131071, 7.5f};
        float[] invFreq = new float[37];
        for (int j = 0; j < invFreq.length; j++) invFreq[j] = (float) Math.pow(500000, -2.0 * j / 74);
        float scale = 1.25f;
        try (RotaryTable table = cpu.rotaryTable(positions, invFreq, scale)) {
            assertEquals(positions.length, table.rows());
            assertEquals(invFreq.length, table.half());
            float[] cos = download(table.cos()), sin = download(table.sin());
            for (int r = 0; r < positions.length; r++)
                for (int j = 0; j < invFreq.length; j++) {
                    float angle = positions[r] * invFreq[j];
                    assertEquals((float) Math.cos(angle) * scale, cos[r * invFreq.length + j], 0f);
                    assertEquals((float) Math.sin(angle) * scale, sin[r * invFreq.length + j], 0f);
                }
        }
    }

    /** Full and partial rotation (2 * half < headDim leaves the tail features alone). */
    @ParameterizedTest(name = "rows={0} heads={1} headDim={2} half={3}")
    @CsvSource({"3,2,64,32", "17,4,80,40", "5,3,48,16", "1,1,2,1", "300,2,128,64"})
    void rotaryRotatesHalvesInPlace(int rows, int heads, int headDim, int half) {
        Random rnd = new Random(rows * heads + headDim);
        float[] positions = new float[rows];
        for (int r = 0; r < rows; r++) positions[r] = r * 3 + 1;
        float[] invFreq = new float[half];
        for (int j = 0; j < half; j++) invFreq[j] = (float) Math.pow(10000, -(double) j / half);
        float[] x = random(rnd, rows * heads * headDim);
        try (RotaryTable table = cpu.rotaryTable(positions, invFreq, 1f); Tensor tx = cpu.upload(x)) {
            cpu.rotary(tx, table, rows, heads, headDim);
            float[] got = download(tx), cos = download(table.cos()), sin = download(table.sin());
            for (int r = 0; r < rows; r++)
                for (int h = 0; h < heads; h++) {
                    int base = (r * heads + h) * headDim;
                    for (int j = 0; j < half; j++) {
                        float c = cos[r * half + j], s = sin[r * half + j];
                        float x1 = x[base + j], x2 = x[base + j + half];
                        assertEquals(x1 * c - x2 * s, got[base + j], 0f);
                        assertEquals(x2 * c + x1 * s, got[base + j + half], 0f);
                    }
                    for (int j = 2 * half; j < headDim; j++) assertEquals(x[base + j], got[base + j], 0f);
                }
        }
    }

    @Test
    void rotaryChecksTheTable() {
        try (RotaryTable table = cpu.rotaryTable(new float[]{0, 1}, new float[8], 1f); Tensor x = cpu.allocate(3 * 16)) {
            var e = assertThrows(IllegalArgumentException.class, () -> cpu.rotary(x, table, 3, 1, 16));
            assertEquals("rotary: table has 2 rows, needs rows = 3", e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> cpu.rotary(x, table, 2, 2, 12));
            assertTrue(e.getMessage().contains("more than headDim = 12"), e.getMessage());
        }
    }

    @Test
    void embeddingGathersRows() {
        int vocab = 50, dim = 37;
        Random rnd = new Random(5);
        float[] table = random(rnd, vocab * dim);
        int[] ids = new int[700];
        for (int i = 0; i < ids.length; i++) ids[i] = rnd.nextInt(vocab);
        try (Tensor t = cpu.upload(table); Tensor out = cpu.allocate((long) ids.length * dim)) {
            cpu.embedding(out, t, ids, dim);
            float[] got = download(out);
            for (int r = 0; r < ids.length; r++)
                for (int i = 0; i < dim; i++) assertEquals(table[ids[r] * dim + i], got[r * dim + i]);
            var e = assertThrows(IllegalArgumentException.class, () -> cpu.embedding(out, t, new int[]{3, vocab}, dim));
            assertEquals("embedding: ids[1] = 50 is outside the table's 50 rows", e.getMessage());
        }
    }

    @Test
    void swigluIsSiluOfGateTimesUp() {
        int n = 100_003;
        Random rnd = new Random(6);
        float[] gate = random(rnd, n), up = random(rnd, n);
        float[] extremes = {0f, -0f, 1e-30f, -1e-30f, 88f, -88f, 89f, -89f, 104f, -104f, 500f, -500f, Float.MAX_VALUE, -Float.MAX_VALUE};
        for (int i = 0; i < extremes.length; i++) gate[i] = extremes[i];
        for (int i = extremes.length; i < n; i += 101) gate[i] *= 30;
        try (Tensor g = cpu.upload(gate); Tensor u = cpu.upload(up); Tensor out = cpu.allocate(n)) {
            cpu.swiglu(out, g, u, n);
            float[] got = download(out);
            for (int i = 0; i < n; i++) {
                double silu = gate[i] / (1 + Math.exp(-(double) gate[i]));
                float expect = (float) (silu * up[i]);   // beyond float range this is +-inf, as it must be
                if (Float.isInfinite(expect)) assertEquals(expect, got[i], "element " + i + " gate " + gate[i]);
                else assertEquals(expect, got[i], 1e-6 * Math.abs(expect) + 1e-37, "element " + i + " gate " + gate[i]);
            }
        }
    }

    @Test
    void addInPlaceAddsEveryElement() {
        int n = 200_001;
        Random rnd = new Random(7);
        float[] y = random(rnd, n), x = random(rnd, n);
        try (Tensor ty = cpu.upload(y); Tensor tx = cpu.upload(x)) {
            cpu.addInPlace(ty, tx, n - 1);
            float[] got = download(ty);
            for (int i = 0; i < n - 1; i++) assertEquals(y[i] + x[i], got[i]);
            assertEquals(y[n - 1], got[n - 1], "element past n untouched");
            var e = assertThrows(IllegalArgumentException.class, () -> cpu.addInPlace(ty, tx, n + 1));
            assertEquals("addInPlace: y has 200001 floats, needs n = 200002", e.getMessage());
        }
    }

    @Test
    void crossEntropyMatchesLogSoftmaxAndIgnoresNegativeTargets() {
        int rows = 9, vocab = 5003;
        Random rnd = new Random(8);
        float[] logits = random(rnd, rows * vocab);
        for (int i = 0; i < vocab; i++) logits[2 * vocab + i] *= 40;   // a peaked row
        int[] targets = {0, 17, 4999, -1, 5002, 3, -100, 2500, 1};
        try (Tensor t = cpu.upload(logits)) {
            double[] loss = cpu.crossEntropy(t, targets, rows, vocab);
            assertEquals(rows, loss.length);
            for (int r = 0; r < rows; r++) {
                if (targets[r] < 0) {
                    assertEquals(0.0, loss[r]);
                    continue;
                }
                double max = Double.NEGATIVE_INFINITY, sum = 0;
                for (int i = 0; i < vocab; i++) max = Math.max(max, logits[r * vocab + i]);
                for (int i = 0; i < vocab; i++) sum += Math.exp(logits[r * vocab + i] - max);
                double expect = max + Math.log(sum) - logits[r * vocab + targets[r]];
                assertEquals(expect, loss[r], 1e-6 * (1 + Math.abs(expect)), "row " + r);
            }
            var e = assertThrows(IllegalArgumentException.class, () -> cpu.crossEntropy(t, new int[]{vocab}, 1, vocab));
            assertEquals("crossEntropy: targets[0] = 5003 is not below vocab = 5003", e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> cpu.crossEntropy(t, new int[2], 3, vocab));
        }
    }

    @Test
    void vectorExpIsWithinTwoUlpOfMathExp() {
        Random rnd = new Random(10);
        int n = 1 << 16;
        float[] x = new float[n + 5];
        for (int i = 0; i < x.length; i++) x[i] = (float) (rnd.nextDouble() * 200 - 110);
        float[] edges = {0f, -0f, 88.72f, 88.73f, -87.3f, -103.9f, -104f, Float.NEGATIVE_INFINITY, Float.POSITIVE_INFINITY, 1e-8f};
        System.arraycopy(edges, 0, x, 0, edges.length);
        float[] y = x.clone();
        VectorMath.expInPlace(y, 0, y.length);
        for (int i = 0; i < x.length; i++) {
            double e = Math.exp(x[i]);
            float ef = (float) e;
            if (Float.isInfinite(ef) || ef == 0f || ef < Float.MIN_NORMAL) {
                assertEquals(ef, y[i], Math.ulp(Float.MIN_NORMAL), "exp(" + x[i] + ")");
                continue;
            }
            assertEquals(e, y[i], 2 * Math.ulp(ef), "exp(" + x[i] + ")");
        }
        float[] nan = {Float.NaN};
        VectorMath.expInPlace(nan, 0, 1);
        assertTrue(Float.isNaN(nan[0]));
    }

    @Test
    void shiftedColumnExpGivesZeroForMaskedScores() {
        int width = VectorMath.LANES * 2, rows = 5;
        float[] s = new float[rows * width], shift = new float[width], sums = new float[width];
        Random rnd = new Random(11);
        for (int i = 0; i < s.length; i++) s[i] = (float) rnd.nextGaussian() * 10 - 20;
        for (int t = 0; t < width; t++) shift[t] = 15;
        s[3] = Float.NEGATIVE_INFINITY;
        float[] before = s.clone();
        VectorMath.expShiftedColumns(s, rows, width, shift, sums);
        for (int t = 0; t < width; t++) {
            double sum = 0;
            for (int j = 0; j < rows; j++) {
                // The argument is the float difference, as in any float softmax; exp itself is within 2 ulp.
                double e = Math.exp(before[j * width + t] - 15f);
                assertEquals(e, s[j * width + t], 2.5e-7 * e + 1e-38);
                sum += e;
            }
            assertEquals(sum, sums[t], 1e-6 * sum + 1e-38);
        }
        assertEquals(0f, s[3]);
    }
}
