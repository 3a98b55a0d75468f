package dev.ropeway.train;

import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.model.ClexLayer;
import dev.ropeway.model.ModelConfig;
import dev.ropeway.model.TrainableModel;
import dev.ropeway.model.TrainingPass;
import dev.ropeway.rope.ClexOde;
import dev.ropeway.rope.ClexRope;
import dev.ropeway.rope.RopePlan;
import dev.ropeway.tensor.CpuBackend;
import org.junit.jupiter.api.Test;

import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The whole CLEX chain in training: loss -> rotary -> d loss / d frequencies -> every ODE stage -> the layer's
 * weights, against central differences of the model's loss, and the training positions' rules.
 */
class ClexTrainingGradientTest {

    @Test
    void layerGradientsMatchFiniteDifferencesOfTheLoss() {
        ClexRope clex = new ClexRope(10000, 16, 32, 4, 1, "tanh", 0.01, false, null);
        Map<String, Object> json = CheckpointWriter.withRope(TrainerTest.tinyConfig(), clex, 32);
        ModelConfig c = ModelConfig.parse(json, "clex test");
        int t = 3, seq = 32, batch = 2;
        try (CpuBackend backend = new CpuBackend(); TrainableModel model = TrainableModel.random(backend, c, 4)) {
            // Non-zero W_down so the layer is off its closed form.
            SplittableRandom r = new SplittableRandom(8);
            float[] up = model.read(ClexLayer.UP, false), down = new float[up.length];
            for (int i = 0; i < down.length; i++) down[i] = (float) (r.nextGaussian() * 0.05);
            ClexOde ode = new ClexOde(16, 4, 1, ClexOde.Activation.TANH, 0.01f, model.clexInvFreq(), up, down);
            PackedTokens data = TrainerTest.corpus(3, 40);
            int[] ids = new int[batch * seq], targets = new int[batch * seq];
            for (int b = 0; b < batch; b++) data.sample(1, b, seq, ids, targets, b * seq);
            float[] one = ClexTrainingRope.positions(seq, t, 32, new SplittableRandom(2));
            float[] positions = new float[batch * seq];
            for (int b = 0; b < batch; b++) System.arraycopy(one, 0, positions, b * seq, seq);
            try (TrainingPass pass = new TrainingPass(backend, c, model.weights(), model.gradientViews(), batch, seq, false)) {
                double[] dInv = new double[8];
                pass.run(ids, targets, new RopePlan(ode.trainingTheta(t), positions, 1f), 1f / (batch * seq), dInv);
                double[] dUp = new double[up.length], dDown = new double[down.length];
                ode.backward(t, dInv, dUp, dDown);
                int checked = 0;
                for (int i = 0; i < down.length; i += 7) {
                    double h = 1e-2;
                    float[] plus = down.clone(), minus = down.clone();
                    plus[i] += (float) h;
                    minus[i] -= (float) h;
                    double fd = (loss(pass, ode, up, plus, ids, targets, positions, t) - loss(pass, ode, up, minus, ids, targets, positions, t))
                            / ((double) plus[i] - minus[i]);
                    assertEquals(fd, dDown[i], 2e-3 + 0.05 * Math.abs(fd), "d loss / d W_down[" + i + "]");
                    checked++;
                }
                for (int i = 0; i < up.length; i += 11) {
                    double h = 1e-2;
                    float[] plus = up.clone(), minus = up.clone();
                    plus[i] += (float) h;
                    minus[i] -= (float) h;
                    double fd = (loss(pass, ode, plus, down, ids, targets, positions, t) - loss(pass, ode, minus, down, ids, targets, positions, t))
                            / ((double) plus[i] - minus[i]);
                    assertEquals(fd, dUp[i], 2e-3 + 0.05 * Math.abs(fd), "d loss / d W_up[" + i + "]");
                    checked++;
                }
                assertTrue(checked > 20);
            }
        }
    }

    private static double loss(TrainingPass pass, ClexOde ode, float[] up, float[] down, int[] ids, int[] targets,
                               float[] positions, int t) {
        ode.setWeights(up, down);
        TrainingPass.Loss l = pass.run(ids, targets, new RopePlan(ode.trainingTheta(t), positions, 1f), 0f, null);
        return l.mean();
    }

    @Test
    void trainingPositionsFollowTheReference() {
        SplittableRandom r = new SplittableRandom(1);
        // sf = 1: t = 1 is plain positions; larger t spans 0 .. L t - 1, sorted, ends pinned.
        float[] plain = ClexTrainingRope.positions(16, 1, 16, r);
        for (int i = 0; i < 16; i++) assertEquals(i, plain[i]);
        for (int t = 2; t <= 8; t++) {
            float[] p = ClexTrainingRope.positions(16, t, 16, r);
            assertEquals(0f, p[0]);
            assertEquals(16 * t - 1, p[15]);
            for (int i = 1; i < 15; i++) assertTrue(p[i] > p[i - 1] && p[i] <= 16 * t - 2, "t " + t + " i " + i);
        }
        // sf = 4 (training at 4 x L0): quarter steps; at t = 1 position interpolation by 4 with the last pinned to L/4 - 1.
        float[] pi = ClexTrainingRope.positions(64, 1, 16, r);
        for (int i = 0; i < 63; i++) assertEquals(i / 4f, pi[i], 0f);
        assertEquals(15f, pi[63]);
    }
}
