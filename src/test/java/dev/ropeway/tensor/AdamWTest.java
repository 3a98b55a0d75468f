package dev.ropeway.tensor;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static dev.ropeway.tensor.GemmTest.random;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

class AdamWTest {
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

    /** Several steps with a new gradient each, against the same steps in double. */
    @Test
    void stepsMatchDoubleReference() {
        int n = 50_003, steps = 5;
        float lr = 1e-2f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, decay = 0.1f, gradScale = 0.5f;
        Random rnd = new Random(14);
        float[] p0 = random(rnd, n);
        double[] p = new double[n], m = new double[n], v = new double[n];
        for (int i = 0; i < n; i++) p[i] = p0[i];
        try (Tensor tp = cpu.upload(p0); Tensor tm = cpu.allocate(n); Tensor tv = cpu.allocate(n); Tensor tg = cpu.allocate(n)) {
            for (int t = 1; t <= steps; t++) {
                float[] g = random(rnd, n);
                for (int i = 0; i < n; i += 11) g[i] *= 1e-3f;   // small gradients, where eps and bias correction matter more
                try (Tensor fresh = cpu.upload(g)) {
                    cpu.copy(tg, 0, fresh, 0, n);
                }
                cpu.adamW(tp, tg, tm, tv, n, lr, beta1, beta2, eps, decay, gradScale, t);
                double c1 = 1 - Math.pow(beta1, t), c2 = 1 - Math.pow(beta2, t);
                // m can cancel to near zero: its rounding is held to the size of the two terms that made it.
                double[] mScale = new double[n];
                for (int i = 0; i < n; i++) {
                    double gi = (double) g[i] * gradScale;
                    mScale[i] = Math.abs(beta1 * m[i]) + Math.abs((1 - (double) beta1) * gi);
                    m[i] = beta1 * m[i] + (1 - (double) beta1) * gi;
                    v[i] = beta2 * v[i] + (1 - (double) beta2) * gi * gi;
                    p[i] -= lr * (m[i] / c1 / (Math.sqrt(v[i] / c2) + eps) + decay * p[i]);
                }
                float[] gotP = download(tp), gotM = download(tm), gotV = download(tv);
                for (int i = 0; i < n; i++) {
                    assertEquals(m[i], gotM[i], 1e-5 * mScale[i] + 1e-12, "m[" + i + "] step " + t);
                    assertEquals(v[i], gotV[i], 1e-5 * Math.abs(v[i]) + 1e-18, "v[" + i + "] step " + t);
                    // Each step moves p by about lr; its float rounding is held to 1e-4 of that.
                    assertEquals(p[i], gotP[i], 1e-4 * lr * t + 2 * Math.ulp((float) p[i]), "p[" + i + "] step " + t);
                }
            }
        }
    }

    /** The first step of Adam moves every parameter by lr in the gradient's opposite direction (sign descent). */
    @Test
    void firstStepIsSignDescentPlusDecay() {
        float[] p0 = {1f, -2f, 0.5f, 3f, -1f, 0.25f, 7f};
        float[] g = {0.3f, -4f, 1e-3f, -0.2f, 5f, -1e-2f, 2f};
        float lr = 0.1f, decay = 0.01f;
        try (Tensor tp = cpu.upload(p0); Tensor tg = cpu.upload(g); Tensor tm = cpu.allocate(7); Tensor tv = cpu.allocate(7)) {
            cpu.adamW(tp, tg, tm, tv, 7, lr, 0.9f, 0.999f, 1e-12f, decay, 3f, 1);
            float[] got = download(tp);
            for (int i = 0; i < 7; i++)
                assertEquals(p0[i] - lr * (Math.signum(g[i]) + decay * p0[i]), got[i], 1e-6, "p[" + i + "]");
        }
    }

    @Test
    void checksArguments() {
        try (Tensor a = cpu.allocate(4); Tensor small = cpu.allocate(3)) {
            var e = assertThrows(IllegalArgumentException.class, () -> cpu.adamW(a, a, a, a, 4, 1e-3f, 0.9f, 0.99f, 1e-8f, 0f, 1f, 0));
            assertEquals("adamW: step must be positive, got 0", e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> cpu.adamW(a, a, small, a, 4, 1e-3f, 0.9f, 0.99f, 1e-8f, 0f, 1f, 1));
            assertEquals("adamW: m has 3 floats, needs n = 4", e.getMessage());
        }
    }
}
