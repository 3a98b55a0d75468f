package dev.ropeway.tensor;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.Random;

import static dev.ropeway.tensor.GemmTest.random;
import static dev.ropeway.tensor.GradCheck.assertClose;
import static dev.ropeway.tensor.GradCheck.toDouble;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

class RmsNormBackwardTest {
    private static final float EPS = 1e-5f;
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

    /** L = sum dOut * rmsNorm(x, w), in double. */
    static double loss(double[] x, double[] w, double[] dOut, int rows, int dim, double eps) {
        double l = 0;
        for (int r = 0; r < rows; r++) {
            double sq = 0;
            for (int i = 0; i < dim; i++) sq += x[r * dim + i] * x[r * dim + i];
            double inv = 1 / Math.sqrt(sq / dim + eps);
            for (int i = 0; i < dim; i++) l += dOut[r * dim + i] * x[r * dim + i] * inv * w[i];
        }
        return l;
    }

    /** The reference backward: fills dx and adds into dw. */
    static void backward(double[] dx, double[] dw, double[] dOut, double[] x, double[] w, int rows, int dim, double eps) {
        for (int r = 0; r < rows; r++) {
            double sq = 0, dot = 0;
            for (int i = 0; i < dim; i++) {
                sq += x[r * dim + i] * x[r * dim + i];
                dot += dOut[r * dim + i] * w[i] * x[r * dim + i];
            }
            double inv = 1 / Math.sqrt(sq / dim + eps);
            for (int i = 0; i < dim; i++) {
                int k = r * dim + i;
                dw[i] += dOut[k] * x[k] * inv;
                dx[k] = dOut[k] * w[i] * inv - x[k] * inv * inv * inv * dot / dim;
            }
        }
    }

    @Test
    void referenceMatchesFiniteDifferences() {
        int rows = 3, dim = 11;
        Random rnd = new Random(1);
        double[] x = toDouble(random(rnd, rows * dim)), w = toDouble(random(rnd, dim)), dOut = toDouble(random(rnd, rows * dim));
        double[] dx = new double[rows * dim], dw = new double[dim];
        backward(dx, dw, dOut, x, w, rows, dim, EPS);
        GradCheck.check(x, dx, GradCheck.sample(x.length), p -> loss(p, w, dOut, rows, dim, EPS), "dx");
        GradCheck.check(w, dw, GradCheck.sample(dim), p -> loss(x, p, dOut, rows, dim, EPS), "dWeight");
    }

    @ParameterizedTest(name = "rows={0} dim={1}")
    @CsvSource({"1,7", "3,37", "130,100", "2000,45", "4,1031"})
    void matchesReferenceAndAddsIntoWeightGradient(int rows, int dim) {
        Random rnd = new Random(rows * 31 + dim);
        float[] x = random(rnd, rows * dim), w = random(rnd, dim), dOut = random(rnd, rows * dim), dw0 = random(rnd, dim);
        double[] dx = new double[rows * dim], dw = toDouble(dw0);
        backward(dx, dw, toDouble(dOut), toDouble(x), toDouble(w), rows, dim, EPS);
        try (Tensor tx = cpu.upload(x); Tensor tw = cpu.upload(w); Tensor tdOut = cpu.upload(dOut);
             Tensor tdx = cpu.allocate((long) rows * dim); Tensor tdw = cpu.upload(dw0); Tensor again = cpu.upload(dw0)) {
            cpu.rmsNormBackward(tdx, tdw, tdOut, tx, tw, rows, dim, EPS);
            assertClose(dx, download(tdx), 1e-4, "dx");
            assertClose(dw, download(tdw), 1e-4, "dWeight");
            assertArrayEquals(dOut, download(tdOut), "dOut is left alone when dx is another tensor");
            // dx written over dOut gives the same values, and the weight gradient comes out bit for bit the same.
            cpu.rmsNormBackward(tdOut, again, tdOut, tx, tw, rows, dim, EPS);
            float[] first = download(tdx), inPlace = download(tdOut);
            for (int i = 0; i < first.length; i++) assertEquals(first[i], inPlace[i], 4 * Math.ulp(first[i]), "in place at " + i);
            assertArrayEquals(download(tdw), download(again), "dWeight is deterministic");
        }
    }

    @Test
    void checksSizes() {
        try (Tensor x = cpu.allocate(12); Tensor w = cpu.allocate(4); Tensor small = cpu.allocate(3)) {
            var e = assertThrows(IllegalArgumentException.class, () -> cpu.rmsNormBackward(x, small, x, x, w, 3, 4, EPS));
            assertEquals("rmsNormBackward: dWeight has 3 floats, needs dim = 4", e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> cpu.rmsNormBackward(x, w, small, x, w, 3, 4, EPS));
            assertEquals("rmsNormBackward: dOut has 3 floats, needs rows*dim = 12", e.getMessage());
        }
    }
}
