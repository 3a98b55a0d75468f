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
import static org.junit.jupiter.api.Assertions.assertTrue;

class RotaryBackwardTest {
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

    static float[] invFreq(int half) {
        float[] f = new float[half];
        for (int j = 0; j < half; j++) f[j] = (float) Math.pow(10000, -(double) j / half);
        return f;
    }

    /** y = rotary(x) in double, angles = positions[r] * invFreq[j] computed in double. */
    static double[] forward(double[] x, float[] positions, double[] invFreq, double scale, int rows, int heads, int headDim) {
        int half = invFreq.length;
        double[] y = x.clone();
        for (int r = 0; r < rows; r++)
            for (int h = 0; h < heads; h++)
                for (int j = 0; j < half; j++) {
                    int b = (r * heads + h) * headDim;
                    double angle = positions[r] * invFreq[j], c = Math.cos(angle) * scale, s = Math.sin(angle) * scale;
                    y[b + j] = x[b + j] * c - x[b + j + half] * s;
                    y[b + j + half] = x[b + j + half] * c + x[b + j] * s;
                }
        return y;
    }

    static double dot(double[] a, double[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) s += a[i] * b[i];
        return s;
    }

    /** The reference dx: the transposed rotation of each pair; features past 2*half pass through. */
    static double[] backwardX(double[] dy, float[] positions, double[] invFreq, double scale, int rows, int heads, int headDim) {
        int half = invFreq.length;
        double[] dx = dy.clone();
        for (int r = 0; r < rows; r++)
            for (int h = 0; h < heads; h++)
                for (int j = 0; j < half; j++) {
                    int b = (r * heads + h) * headDim;
                    double angle = positions[r] * invFreq[j], c = Math.cos(angle) * scale, s = Math.sin(angle) * scale;
                    dx[b + j] = dy[b + j] * c + dy[b + j + half] * s;
                    dx[b + j + half] = dy[b + j + half] * c - dy[b + j] * s;
                }
        return dx;
    }

    /** The reference dL/dinvFreq from dy and the rotated output y. */
    static double[] backwardInvFreq(double[] dy, double[] y, float[] positions, int half, int rows, int heads, int headDim) {
        double[] g = new double[half];
        for (int r = 0; r < rows; r++)
            for (int h = 0; h < heads; h++)
                for (int j = 0; j < half; j++) {
                    int b = (r * heads + h) * headDim;
                    g[j] += positions[r] * (-dy[b + j] * y[b + j + half] + dy[b + j + half] * y[b + j]);
                }
        return g;
    }

    @Test
    void referenceMatchesFiniteDifferences() {
        int rows = 4, heads = 2, headDim = 10, half = 4;
        double scale = 0.75;
        Random rnd = new Random(2);
        float[] positions = {0, 3, 17.5f, 40};
        double[] f = toDouble(invFreq(half)), x = toDouble(random(rnd, rows * heads * headDim));
        double[] dy = toDouble(random(rnd, x.length));
        double[] y = forward(x, positions, f, scale, rows, heads, headDim);
        double[] dx = backwardX(dy, positions, f, scale, rows, heads, headDim);
        GradCheck.check(x, dx, GradCheck.sample(x.length),
                p -> dot(dy, forward(p, positions, f, scale, rows, heads, headDim)), "dx");
        double[] df = backwardInvFreq(dy, y, positions, half, rows, heads, headDim);
        GradCheck.check(f, df, GradCheck.sample(half),
                p -> dot(dy, forward(x, positions, p, scale, rows, heads, headDim)), "dInvFreq");
    }

    @ParameterizedTest(name = "rows={0} heads={1} headDim={2} half={3}")
    @CsvSource({"3,2,64,32", "17,4,80,40", "5,3,48,16", "1,1,2,1", "300,2,46,23", "9,2,50,11"})
    void matchesReference(int rows, int heads, int headDim, int half) {
        Random rnd = new Random(rows * heads + headDim);
        float scale = 0.875f;
        float[] positions = new float[rows];
        for (int r = 0; r < rows; r++) positions[r] = r * 2 + 1;
        float[] invFreq = invFreq(half), x = random(rnd, rows * heads * headDim), dy = random(rnd, x.length);
        double[] dInvFreq = new double[half];
        for (int j = 0; j < half; j++) dInvFreq[j] = j - 3;   // the op adds to what is there
        double[] before = dInvFreq.clone();
        try (RotaryTable table = cpu.rotaryTable(positions, invFreq, scale); Tensor y = cpu.upload(x);
             Tensor d = cpu.upload(dy); Tensor dPlain = cpu.upload(dy)) {
            cpu.rotary(y, table, rows, heads, headDim);
            float[] rotated = download(y), cos = download(table.cos()), sin = download(table.sin());
            cpu.rotaryBackward(d, y, table, positions, dInvFreq, rows, heads, headDim);
            cpu.rotaryBackward(dPlain, null, table, null, null, rows, heads, headDim);
            // dx against the transpose of the table's own (float) rotation.
            double[] expect = toDouble(dy);
            for (int r = 0; r < rows; r++)
                for (int h = 0; h < heads; h++)
                    for (int j = 0; j < half; j++) {
                        int b = (r * heads + h) * headDim;
                        double c = cos[r * half + j], s = sin[r * half + j];
                        expect[b + j] = dy[b + j] * c + dy[b + j + half] * s;
                        expect[b + j + half] = dy[b + j + half] * c - dy[b + j] * s;
                    }
            assertClose(expect, download(d), 1e-5, "dx");
            assertArrayEquals(download(d), download(dPlain), "dx does not depend on the frequency gradient");
            assertArrayEquals(rotated, download(y), "rotated is only read");
            double[] g = backwardInvFreq(toDouble(dy), toDouble(rotated), positions, half, rows, heads, headDim);
            for (int j = 0; j < half; j++) g[j] += before[j];
            assertClose(g, dInvFreq, 1e-4, "dInvFreq");
        }
    }

    @Test
    void backwardWithUnitScaleUndoesTheRotation() {
        int rows = 33, heads = 3, headDim = 38, half = 19;
        Random rnd = new Random(3);
        float[] positions = new float[rows];
        for (int r = 0; r < rows; r++) positions[r] = 5 * r;
        float[] x = random(rnd, rows * heads * headDim);
        try (RotaryTable table = cpu.rotaryTable(positions, invFreq(half), 1f); Tensor t = cpu.upload(x)) {
            cpu.rotary(t, table, rows, heads, headDim);
            float[] rotated = download(t);
            double moved = 0;
            for (int i = 0; i < x.length; i++) moved = Math.max(moved, Math.abs(rotated[i] - x[i]));
            assertTrue(moved > 0.1, "the rotation changed x");
            cpu.rotaryBackward(t, null, table, null, null, rows, heads, headDim);
            assertClose(toDouble(x), download(t), 1e-5, "inverse of rotation");
        }
    }

    @Test
    void checksArguments() {
        float[] positions = {0, 1};
        try (RotaryTable table = cpu.rotaryTable(positions, new float[8], 1f); Tensor d = cpu.allocate(2 * 16)) {
            var e = assertThrows(IllegalArgumentException.class,
                    () -> cpu.rotaryBackward(d, d, table, positions, new double[7], 2, 1, 16));
            assertEquals("rotaryBackward: dInvFreq has 7 entries, needs table.half = 8", e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> cpu.rotaryBackward(d, null, table, positions, new double[8], 2, 1, 16));
            assertEquals("rotaryBackward: rotated is null", e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> cpu.rotaryBackward(d, null, table, null, null, 3, 1, 16));
            assertEquals("rotaryBackward: table has 2 rows, needs rows = 3", e.getMessage());
        }
    }
}
