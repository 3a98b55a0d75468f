package dev.ropeway.tensor;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static dev.ropeway.tensor.GemmTest.random;
import static dev.ropeway.tensor.GradCheck.assertClose;
import static dev.ropeway.tensor.GradCheck.toDouble;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SwigluBackwardTest {
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

    static double sigmoid(double g) {
        return 1 / (1 + Math.exp(-g));
    }

    /** L = sum dOut * silu(gate) * up. */
    static double loss(double[] gate, double[] up, double[] dOut) {
        double l = 0;
        for (int i = 0; i < gate.length; i++) l += dOut[i] * gate[i] * sigmoid(gate[i]) * up[i];
        return l;
    }

    static double[] dGate(double[] gate, double[] up, double[] dOut) {
        double[] d = new double[gate.length];
        for (int i = 0; i < d.length; i++) {
            double s = sigmoid(gate[i]);
            d[i] = dOut[i] * up[i] * s * (1 + gate[i] * (1 - s));
        }
        return d;
    }

    static double[] dUp(double[] gate, double[] dOut) {
        double[] d = new double[gate.length];
        for (int i = 0; i < d.length; i++) d[i] = dOut[i] * gate[i] * sigmoid(gate[i]);
        return d;
    }

    @Test
    void referenceMatchesFiniteDifferences() {
        Random rnd = new Random(4);
        int n = 23;
        double[] gate = toDouble(random(rnd, n)), up = toDouble(random(rnd, n)), dOut = toDouble(random(rnd, n));
        for (int i = 0; i < n; i++) gate[i] *= 3;
        GradCheck.check(gate, dGate(gate, up, dOut), GradCheck.sample(n), p -> loss(p, up, dOut), "dGate");
        GradCheck.check(up, dUp(gate, dOut), GradCheck.sample(n), p -> loss(gate, p, dOut), "dUp");
    }

    @Test
    void matchesReferenceIncludingLargeGates() {
        int n = 70_001;
        Random rnd = new Random(5);
        float[] gate = random(rnd, n), up = random(rnd, n), dOut = random(rnd, n);
        float[] extremes = {0f, -0f, 30f, -30f, 88f, -88f, 89f, -89f, 104f, -104f, 500f, -500f};
        for (int i = 0; i < extremes.length; i++) gate[i] = extremes[i];
        for (int i = extremes.length; i < n; i += 97) gate[i] *= 10;
        double[] g = toDouble(gate), u = toDouble(up), dy = toDouble(dOut);
        try (Tensor tg = cpu.upload(gate); Tensor tu = cpu.upload(up); Tensor tdy = cpu.upload(dOut);
             Tensor dg = cpu.allocate(n); Tensor du = cpu.allocate(n)) {
            cpu.swigluBackward(dg, du, tdy, tg, tu, n);
            float[] gotGate = download(dg), gotUp = download(du);
            for (float f : gotGate) assertTrue(Float.isFinite(f), "finite dGate");
            assertClose(dGate(g, u, dy), gotGate, 1e-5, "dGate");
            assertClose(dUp(g, dy), gotUp, 1e-5, "dUp");
            // The gradients may be written over the inputs: dGate over dOut, dUp over up.
            cpu.swigluBackward(tdy, tu, tdy, tg, tu, n);
            assertClose(toDouble(gotGate), download(tdy), 1e-6, "dGate over dOut");
            assertClose(toDouble(gotUp), download(tu), 1e-6, "dUp over up");
        }
    }

    @Test
    void checksSizes() {
        try (Tensor a = cpu.allocate(8); Tensor b = cpu.allocate(8); Tensor small = cpu.allocate(7)) {
            var e = assertThrows(IllegalArgumentException.class, () -> cpu.swigluBackward(a, b, a, small, b, 8));
            assertEquals("swigluBackward: gate has 7 floats, needs n = 8", e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> cpu.swigluBackward(a, a, b, b, b, 8));
            assertEquals("swigluBackward: dGate and dUp are the same tensor", e.getMessage());
        }
    }
}
