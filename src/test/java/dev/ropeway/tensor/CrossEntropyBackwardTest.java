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

class CrossEntropyBackwardTest {
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

    static double rowLoss(double[] logits, int r, int vocab, int target) {
        double max = Double.NEGATIVE_INFINITY, sum = 0;
        for (int i = 0; i < vocab; i++) max = Math.max(max, logits[r * vocab + i]);
        for (int i = 0; i < vocab; i++) sum += Math.exp(logits[r * vocab + i] - max);
        return max + Math.log(sum) - logits[r * vocab + target];
    }

    /** L = sum over counted rows of gradScale * loss. */
    static double loss(double[] logits, int[] targets, int vocab, double gradScale) {
        double l = 0;
        for (int r = 0; r < targets.length; r++) if (targets[r] >= 0) l += gradScale * rowLoss(logits, r, vocab, targets[r]);
        return l;
    }

    static double[] gradient(double[] logits, int[] targets, int vocab, double gradScale) {
        double[] g = new double[logits.length];
        for (int r = 0; r < targets.length; r++) {
            if (targets[r] < 0) continue;
            double max = Double.NEGATIVE_INFINITY, sum = 0;
            for (int i = 0; i < vocab; i++) max = Math.max(max, logits[r * vocab + i]);
            for (int i = 0; i < vocab; i++) sum += Math.exp(logits[r * vocab + i] - max);
            for (int i = 0; i < vocab; i++) g[r * vocab + i] = gradScale * Math.exp(logits[r * vocab + i] - max) / sum;
            g[r * vocab + targets[r]] -= gradScale;
        }
        return g;
    }

    @Test
    void referenceMatchesFiniteDifferences() {
        int vocab = 9;
        int[] targets = {3, -1, 0, 8};
        Random rnd = new Random(8);
        double[] logits = toDouble(random(rnd, targets.length * vocab));
        double scale = 0.3;
        GradCheck.check(logits, gradient(logits, targets, vocab, scale), GradCheck.sample(logits.length),
                p -> loss(p, targets, vocab, scale), "dLogits");
    }

    @Test
    void lossesMatchCrossEntropyAndGradientsMatchReference() {
        int rows = 9, vocab = 5003;
        float gradScale = 1f / 7;
        Random rnd = new Random(9);
        float[] logits = random(rnd, rows * vocab);
        for (int i = 0; i < vocab; i++) logits[2 * vocab + i] *= 40;   // a peaked row
        logits[4 * vocab + 11] = 20;   // its target takes all but about 1e-5 of the mass
        int[] targets = {0, 17, 4999, -1, 11, 3, -100, 2500, 5002};
        double[] x = toDouble(logits);
        try (Tensor t = cpu.upload(logits)) {
            double[] forward = cpu.crossEntropy(t, targets, rows, vocab);
            double[] loss = cpu.crossEntropyBackward(t, targets, rows, vocab, gradScale);
            assertEquals(rows, loss.length);
            for (int r = 0; r < rows; r++) {
                double expect = targets[r] < 0 ? 0 : rowLoss(x, r, vocab, targets[r]);
                assertEquals(expect, loss[r], 1e-6 * (1 + Math.abs(expect)), "loss row " + r);
                assertEquals(forward[r], loss[r], 1e-6 * (1 + Math.abs(expect)), "as crossEntropy, row " + r);
            }
            float[] got = download(t);
            double[] expect = gradient(x, targets, vocab, gradScale);
            for (int r = 0; r < rows; r++) {
                double[] e = new double[vocab];
                float[] g = new float[vocab];
                System.arraycopy(expect, r * vocab, e, 0, vocab);
                System.arraycopy(got, r * vocab, g, 0, vocab);
                assertClose(e, g, 1e-4, "row " + r);
                if (targets[r] < 0) for (float v : g) assertEquals(0f, v, "ignored row " + r);
            }
            // The target of the dominated row: p is 1 - 1e-5, and its gradient keeps those digits.
            assertEquals(expect[4 * vocab + 11], got[4 * vocab + 11], 1e-4 * Math.abs(expect[4 * vocab + 11]));
        }
    }

    @Test
    void checksTargets() {
        try (Tensor t = cpu.allocate(10)) {
            var e = assertThrows(IllegalArgumentException.class, () -> cpu.crossEntropyBackward(t, new int[]{5, 0}, 2, 5, 1f));
            assertEquals("crossEntropyBackward: targets[0] = 5 is not below vocab = 5", e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> cpu.crossEntropyBackward(t, new int[]{0}, 2, 5, 1f));
            e = assertThrows(IllegalArgumentException.class, () -> cpu.crossEntropyBackward(t, new int[3], 3, 5, 1f));
            assertEquals("crossEntropyBackward: logits has 10 floats, needs rows*vocab = 15", e.getMessage());
        }
    }
}
