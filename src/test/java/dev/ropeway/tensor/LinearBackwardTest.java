package dev.ropeway.tensor;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static dev.ropeway.tensor.GemmTest.random;
import static dev.ropeway.tensor.GradCheck.assertClose;
import static dev.ropeway.tensor.GradCheck.toDouble;

/**
 * The backward of a linear layer {@code y = x w^T + b} needs no op of its own: {@code dX = dY w} and
 * {@code dW += dY^T x} are products through {@link Backend#gemm}, and {@code db += column sums of dY} is
 * {@link Backend#sumRows}. This test shows the calls and checks them.
 */
class LinearBackwardTest {
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

    /** L = sum dY * (x w^T + b), in double. */
    static double loss(double[] x, double[] w, double[] b, double[] dY, int rows, int in, int out) {
        double l = 0;
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < out; o++) {
                double y = b[o];
                for (int i = 0; i < in; i++) y += x[r * in + i] * w[o * in + i];
                l += dY[r * out + o] * y;
            }
        return l;
    }

    /** The reference gradients: dX = dY w, dW = dY^T x, db = column sums of dY. */
    static double[][] gradients(double[] x, double[] w, double[] dY, int rows, int in, int out) {
        double[] dx = new double[rows * in], dw = new double[out * in], db = new double[out];
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < out; o++) {
                double g = dY[r * out + o];
                db[o] += g;
                for (int i = 0; i < in; i++) {
                    dx[r * in + i] += g * w[o * in + i];
                    dw[o * in + i] += g * x[r * in + i];
                }
            }
        return new double[][]{dx, dw, db};
    }

    @Test
    void referenceMatchesFiniteDifferences() {
        int rows = 3, in = 5, out = 4;
        Random rnd = new Random(15);
        double[] x = toDouble(random(rnd, rows * in)), w = toDouble(random(rnd, out * in)), b = toDouble(random(rnd, out));
        double[] dY = toDouble(random(rnd, rows * out));
        double[][] g = gradients(x, w, dY, rows, in, out);
        GradCheck.check(x, g[0], GradCheck.sample(x.length), p -> loss(p, w, b, dY, rows, in, out), "dX");
        GradCheck.check(w, g[1], GradCheck.sample(w.length), p -> loss(x, p, b, dY, rows, in, out), "dW");
        GradCheck.check(b, g[2], GradCheck.sample(out), p -> loss(x, w, p, dY, rows, in, out), "db");
    }

    @Test
    void gemmAndSumRowsGiveTheLinearGradients() {
        int rows = 37, in = 29, out = 43;
        Random rnd = new Random(16);
        float[] x = random(rnd, rows * in), w = random(rnd, out * in), dY = random(rnd, rows * out);
        float[] dW0 = random(rnd, out * in), db0 = random(rnd, out);   // gradients accumulate over micro-batches
        double[][] g = gradients(toDouble(x), toDouble(w), toDouble(dY), rows, in, out);
        for (int i = 0; i < dW0.length; i++) g[1][i] += dW0[i];
        for (int i = 0; i < out; i++) g[2][i] += db0[i];
        try (Tensor tx = cpu.upload(x); Tensor tw = cpu.upload(w); Tensor tdY = cpu.upload(dY);
             Tensor dX = cpu.allocate((long) rows * in); Tensor dW = cpu.upload(dW0); Tensor db = cpu.upload(db0)) {
            cpu.gemm(false, false, rows, in, out, 1f, tdY, 0, out, tw, 0, in, 0f, dX, 0, in);
            cpu.gemm(true, false, out, in, rows, 1f, tdY, 0, out, tx, 0, in, 1f, dW, 0, in);
            cpu.sumRows(db, tdY, rows, out);
            assertClose(g[0], download(dX), 1e-4, "dX");
            assertClose(g[1], download(dW), 1e-4, "dW");
            assertClose(g[2], download(db), 1e-4, "db");
        }
    }
}
