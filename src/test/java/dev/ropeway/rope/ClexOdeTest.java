package dev.ropeway.rope;

import dev.ropeway.RopewayException;
import dev.ropeway.testutil.FixtureFiles;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The CLEX ODE against the official layer's fixtures, the NTK closed form and float64 finite differences. */
class ClexOdeTest {

    /** One ode-* fixture: the layer's settings and tensors. */
    record Case(String name, int dim, int maxFactor, int paramFactor, ClexOde.Activation act, double ropeTheta,
                float timeDt, int gradT, int maxPositions, double lossValue, Path tensors) {
        static Case read(Path dir) {
            Map<String, Object> j = FixtureFiles.readJson(dir.resolve("reference.json"));
            return new Case(dir.getFileName().toString(), num(j, "dim").intValue(), num(j, "max_factor").intValue(),
                    num(j, "param_factor").intValue(), ClexOde.Activation.of((String) j.get("act")),
                    num(j, "rope_theta").doubleValue(), num(j, "time_dt").floatValue(), num(j, "grad_t").intValue(),
                    num(j, "max_position_embeddings").intValue(), num(j, "loss_value").doubleValue(),
                    dir.resolve("reference.safetensors"));
        }

        float[] tensor(String name) {
            return FixtureFiles.readF32(tensors, name).values();
        }

        ClexOde ode() {
            return new ClexOde(dim, maxFactor, paramFactor, act, timeDt, tensor("inv_freq"), tensor("ode_up_proj"),
                    tensor("ode_down_proj"));
        }
    }

    private static Number num(Map<String, Object> json, String key) {
        return (Number) json.get(key);
    }

    private static Stream<Case> cases() {
        var folders = FixtureFiles.caseFolders("ode-");
        assertEquals(3, folders.size(), "ode fixtures");
        return folders.stream().map(Case::read);
    }

    @TestFactory
    Stream<DynamicTest> thetasMatchTheOfficialLayer() {
        return cases().map(c -> DynamicTest.dynamicTest(c.name(), () -> {
            float[] inv = c.tensor("inv_freq");
            assertArrayEquals(RopeMath.standardInverseFrequencies(c.ropeTheta(), c.dim()), inv,
                    "the buffer is plain RoPE with rope_theta");
            float[] expected = c.tensor("theta");
            ClexOde ode = c.ode();
            float[][] got = ode.thetas();
            int half = c.dim() / 2;
            assertEquals(c.maxFactor(), got.length);
            double worst = 0;
            for (int t = 1; t <= c.maxFactor(); t++) {
                assertArrayEquals(got[t - 1], ode.theta(t));
                for (int j = 0; j < half; j++) {
                    double e = expected[(t - 1) * half + j];
                    worst = Math.max(worst, Math.abs(got[t - 1][j] - e) / e);
                }
            }
            assertTrue(worst < 1e-5, c.name() + ": max relative error " + worst);
            // the learned correction is visible: the result is not the untrained NTK solution
            double[] ntk = ClexOde.closedFormTheta(inv, c.maxFactor());
            double off = 0;
            for (int j = 0; j < half; j++) off = Math.max(off, Math.abs(got[c.maxFactor() - 1][j] - ntk[j]) / ntk[j]);
            assertTrue(off > 1e-3, "fixture differs from NTK by " + off);
            System.out.printf("%s theta max rel err %.3g%n", c.name(), worst);
        }));
    }

    @TestFactory
    Stream<DynamicTest> gradientsMatchTheOfficialLayer() {
        return cases().map(c -> DynamicTest.dynamicTest(c.name(), () -> {
            ClexOde ode = c.ode();
            int half = c.dim() / 2, d = c.dim(), t = c.gradT();
            float[] theta = ode.trainingTheta(t);
            assertArrayEquals(ode.theta(t), theta, "step 0.01: the training solve is the inference solve");
            float[] w = c.tensor("loss_weight");
            int n = c.maxPositions() * (c.maxFactor() - 1);
            assertEquals((long) n * d, w.length);
            // loss = sum W cos(emb) + 0.5 W sin(emb), emb[p, c] = p * theta[c mod d/2] (float32 outer product)
            double loss = 0;
            double[] dTheta = new double[half];
            for (int p = 0; p < n; p++)
                for (int col = 0; col < d; col++) {
                    int j = col % half;
                    double angle = (float) p * theta[j];
                    double wpc = w[p * d + col];
                    loss += wpc * Math.cos(angle) + 0.5 * wpc * Math.sin(angle);
                    dTheta[j] += p * (-wpc * Math.sin(angle) + 0.5 * wpc * Math.cos(angle));
                }
            assertEquals(c.lossValue(), loss, 1e-4 * Math.max(1, Math.abs(c.lossValue())), "loss");
            double[] dUp = new double[half * c.paramFactor() * d], dDown = new double[dUp.length];
            ode.backward(t, dTheta, dUp, dDown);
            double eUp = relativeError(c.tensor("grad.ode_up_proj"), dUp);
            double eDown = relativeError(c.tensor("grad.ode_down_proj"), dDown);
            System.out.printf("%s grad rel err up %.3g down %.3g%n", c.name(), eUp, eDown);
            assertTrue(eUp < 1e-4, "grad.ode_up_proj relative error " + eUp);
            assertTrue(eDown < 1e-4, "grad.ode_down_proj relative error " + eDown);
            // backward adds: a second call doubles the gradients
            double[] up2 = dUp.clone(), down2 = dDown.clone();
            ode.backward(t, dTheta, up2, down2);
            for (int i = 0; i < dUp.length; i++) assertEquals(2 * dUp[i], up2[i], 1e-12 * Math.abs(dUp[i]) + 1e-300);
        }));
    }

    /** ||got - expected|| / ||expected||. */
    private static double relativeError(float[] expected, double[] got) {
        assertEquals(expected.length, got.length);
        double num = 0, den = 0;
        for (int i = 0; i < got.length; i++) {
            num += (got[i] - expected[i]) * (got[i] - expected[i]);
            den += (double) expected[i] * expected[i];
        }
        assertTrue(den > 0, "reference gradient is zero");
        return Math.sqrt(num / den);
    }

    @Test
    void untrainedLayerIsNtkScalingWithAlphaTwoTMinusOne() {
        int maxFactor = 16;
        for (int d : new int[] {16, 64, 128}) {
            float[] up = ClexOde.initialUp(d, 1, 42 + d);
            float[] down = new float[up.length];
            ClexOde ode = new ClexOde(d, maxFactor, 1, ClexOde.Activation.TANH, 0.01f, 10000.0, up, down);
            float[] inv = ode.invFreq();
            float[][] f32 = ode.thetas();
            ode.setPrecision(ClexOde.Precision.FLOAT64);
            float[][] f64 = ode.thetas();
            double worst32 = 0, worst64 = 0;
            for (int t = 1; t <= maxFactor; t++) {
                double[] exact = ClexOde.closedFormTheta(inv, t);
                for (int j = 0; j < d / 2; j++) {
                    worst32 = Math.max(worst32, Math.abs(f32[t - 1][j] - exact[j]) / exact[j]);
                    worst64 = Math.max(worst64, Math.abs(f64[t - 1][j] - exact[j]) / exact[j]);
                }
            }
            System.out.printf("untrained d=%d: max rel err float32 %.3g, float64 %.3g%n", d, worst32, worst64);
            // float32: z (|z| up to 12, ulp 1e-6) is rounded at each of 1500 steps, and since the increment
            // changes slowly the rounding errors share their sign: tens of ulps, as the reference layer drifts
            assertTrue(worst32 < 5e-5, "d=" + d + " float32 " + worst32);
            assertTrue(worst64 < 1.5e-7, "d=" + d + " float64 " + worst64);   // theta rounded to float
        }
    }

    @Test
    void referenceValuesOfTheNotes() {
        double[] want = {1.0, 0.820025943, 1.74776464e-3, 3.72510318e-6};
        int[] at = {0, 1, 32, 63};
        float[] up = ClexOde.initialUp(128, 1, 5);
        ClexOde ode = new ClexOde(128, 16, 1, ClexOde.Activation.SILU, 0.01f, 1e4, up, new float[up.length]);
        double[] closed = ClexOde.closedFormTheta(ode.invFreq(), 16);
        float[] f32 = ode.theta(16);
        ode.setPrecision(ClexOde.Precision.FLOAT64);
        float[] f64 = ode.theta(16);
        for (int i = 0; i < at.length; i++) {
            // the notes' values start from inv_freq in double; ours is the float32 buffer (6e-8 relative)
            assertEquals(want[i], closed[at[i]], 1e-7 * want[i], "closed form j=" + at[i]);
            assertEquals(want[i], f64[at[i]], 1.5e-7 * want[i], "float64 solve j=" + at[i]);
            assertEquals(want[i], f32[at[i]], 5e-5 * want[i], "float32 solve j=" + at[i]);
        }
    }

    @Test
    void initialUpIsKaimingUniform() {
        float[] up = ClexOde.initialUp(64, 2, 9);
        assertEquals(32 * 128, up.length);
        double bound = 1 / Math.sqrt(128), min = 1, max = -1, sum = 0;
        for (float v : up) {
            min = Math.min(min, v);
            max = Math.max(max, v);
            sum += v;
        }
        assertTrue(min >= -bound && max <= bound, min + " .. " + max);
        assertTrue(min < -0.95 * bound && max > 0.95 * bound, "fills the interval: " + min + " .. " + max);
        assertEquals(0, sum / up.length, 0.05 * bound);
        assertArrayEquals(up, ClexOde.initialUp(64, 2, 9));
        assertFalse(Arrays.equals(up, ClexOde.initialUp(64, 2, 10)));
    }

    /** Small random layer whose correction is large enough to matter. */
    private static ClexOde randomOde(int d, int lambda, int maxFactor, ClexOde.Activation act, float dt, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] up = new float[d / 2 * lambda * d], down = new float[up.length];
        for (int i = 0; i < up.length; i++) up[i] = (float) (r.nextGaussian() * 0.7);
        for (int i = 0; i < down.length; i++) down[i] = (float) (r.nextGaussian() * 0.3);
        return new ClexOde(d, maxFactor, lambda, act, dt, 100.0, up, down);
    }

    @Test
    void backwardMatchesFloat64FiniteDifferences() {
        // step 0.01: t on the grid; step 0.03: the training solve over [1, t] has its own last step
        check(randomOde(8, 1, 3, ClexOde.Activation.TANH, 0.01f, 1), 3);
        check(randomOde(8, 2, 3, ClexOde.Activation.SILU, 0.01f, 2), 2);
        check(randomOde(6, 1, 3, ClexOde.Activation.SILU, 0.03f, 3), 3);
    }

    private static void check(ClexOde ode, int t) {
        ode.setPrecision(ClexOde.Precision.FLOAT64);
        int half = ode.dim() / 2;
        SplittableRandom r = new SplittableRandom(t);
        double[] c = new double[half];
        for (int j = 0; j < half; j++) c[j] = r.nextGaussian();
        float[] up = ode.up(), down = ode.down();
        double[] dUp = new double[up.length], dDown = new double[down.length];
        ode.backward(t, c, dUp, dDown);
        double scale = 0;
        for (double g : dUp) scale = Math.max(scale, Math.abs(g));
        for (double g : dDown) scale = Math.max(scale, Math.abs(g));
        assertTrue(scale > 1e-3, "gradient scale " + scale);
        double worst = 0;
        for (int which = 0; which < 2; which++) {
            float[] w = which == 0 ? up : down;
            double[] grad = which == 0 ? dUp : dDown;
            for (int i = 0; i < w.length; i++) {
                float orig = w[i];
                float plus = orig + 1e-3f, minus = orig - 1e-3f;
                w[i] = plus;
                ode.setWeights(up, down);
                double lp = dot(c, ode.trainingTheta(t));
                w[i] = minus;
                ode.setWeights(up, down);
                double lm = dot(c, ode.trainingTheta(t));
                w[i] = orig;
                double fd = (lp - lm) / ((double) plus - minus);
                worst = Math.max(worst, Math.abs(fd - grad[i]) / scale);
            }
        }
        ode.setWeights(up, down);
        // theta is rounded to float before the dot product: 6e-8 relative of ~1 over a 2e-3 step
        assertTrue(worst < 2e-4, "finite differences differ by " + worst + " of the largest gradient");
    }

    private static double dot(double[] c, float[] theta) {
        double s = 0;
        for (int j = 0; j < c.length; j++) s += c[j] * theta[j];
        return s;
    }

    @Test
    void setWeightsInvalidatesTheCachedSolve() {
        ClexOde a = randomOde(16, 1, 4, ClexOde.Activation.TANH, 0.01f, 11);
        ClexOde b = randomOde(16, 1, 4, ClexOde.Activation.TANH, 0.01f, 12);
        float[] upA = a.up(), downA = a.down();
        float[][] thetaA = a.thetas();
        double[] c = new double[8];
        Arrays.fill(c, 1);
        double[] gUpA = new double[upA.length], gDownA = new double[downA.length];
        a.backward(4, c, gUpA, gDownA);

        a.setWeights(b.up(), b.down());
        assertArrayEquals(b.thetas(), a.thetas());
        assertFalse(Arrays.equals(thetaA[3], a.theta(4)));
        double[] gUp = new double[upA.length], gDown = new double[downA.length];
        double[] gUpB = new double[upA.length], gDownB = new double[downA.length];
        a.backward(4, c, gUp, gDown);
        b.backward(4, c, gUpB, gDownB);
        assertArrayEquals(gUpB, gUp);
        assertArrayEquals(gDownB, gDown);

        // the weights are copied: changing the caller's array changes nothing until setWeights
        float first = upA[0];
        upA[0] = first + 1f;
        a.setWeights(a.up(), a.down());
        assertArrayEquals(b.thetas(), a.thetas());
        upA[0] = first;
        a.setWeights(upA, downA);
        assertArrayEquals(thetaA, a.thetas());
        Arrays.fill(gUp, 0);
        Arrays.fill(gDown, 0);
        a.backward(4, c, gUp, gDown);
        assertArrayEquals(gUpA, gUp);
        assertArrayEquals(gDownA, gDown);
    }

    @Test
    void solvingOnDemandGivesTheSameNumbersAsOneSolve() {
        for (ClexOde.Precision precision : ClexOde.Precision.values()) {
            ClexOde partial = randomOde(16, 2, 6, ClexOde.Activation.SILU, 0.01f, 31);
            ClexOde whole = randomOde(16, 2, 6, ClexOde.Activation.SILU, 0.01f, 31);
            partial.setPrecision(precision);
            whole.setPrecision(precision);
            float[][] all = whole.thetas();
            double[] c = {1, -2, 3, -4, 5, -6, 7, -8};
            double[] upWhole = new double[256], downWhole = new double[256];
            whole.backward(3, c, upWhole, downWhole);
            // the partial solve stops at t = 3, is differentiated there, then goes on to the end
            double[] up = new double[256], down = new double[256];
            partial.backward(3, c, up, down);
            assertArrayEquals(all[2], partial.trainingTheta(3));
            assertArrayEquals(upWhole, up, precision.toString());
            assertArrayEquals(downWhole, down, precision.toString());
            assertArrayEquals(all[4], partial.theta(5));
            assertArrayEquals(all, partial.thetas(), precision.toString());
        }
    }

    @Test
    void resultsAreBitIdenticalAfterTheJitCompiles() {
        ClexOde ode = randomOde(16, 1, 6, ClexOde.Activation.SILU, 0.01f, 21);
        double[] c = new double[8];
        Arrays.fill(c, 0.5);
        float[][] first = ode.thetas();
        double[] up0 = new double[128], down0 = new double[128];
        ode.backward(6, c, up0, down0);
        float[][] last = null;
        double[] up = null, down = null;
        for (int i = 0; i < 40; i++) {
            ode.invalidate();
            last = ode.thetas();
            up = new double[128];
            down = new double[128];
            ode.backward(6, c, up, down);
        }
        assertArrayEquals(first, last);
        assertArrayEquals(up0, up);
        assertArrayEquals(down0, down);
    }

    @Test
    void gridHitsEveryIntegerFactor() {
        float[] grid = ClexOde.times(64f, 0.01f);
        assertEquals(6301, grid.length);
        for (int t = 1; t <= 64; t++) assertEquals((float) t, grid[100 * (t - 1)], "t=" + t);
        float[] coarse = ClexOde.times(3f, 0.03f);
        assertEquals(68, coarse.length, "ceil(2 / 0.03 + 1)");
        assertEquals(3f, coarse[67]);
        assertTrue(coarse[66] < 3f && coarse[66] > 2.97f);
        assertEquals(1, ClexOde.times(1f, 0.01f).length);
    }

    @Test
    void offGridFactorsSolveTheirOwnInterval() {
        ClexOde ode = randomOde(8, 1, 3, ClexOde.Activation.TANH, 0.03f, 4);
        float[] inference = ode.theta(2), training = ode.trainingTheta(2);
        assertFalse(Arrays.equals(inference, training), "t = 2 lies between grid points");
        for (int j = 0; j < 4; j++) assertEquals(inference[j], training[j], 1e-4 * inference[j]);
        assertArrayEquals(ode.theta(3), ode.trainingTheta(3), "the end point is on both grids");
    }

    @Test
    void factorOneIsTheInitialFrequencies() {
        ClexOde ode = randomOde(8, 1, 3, ClexOde.Activation.TANH, 0.01f, 5);
        assertArrayEquals(ode.invFreq(), ode.theta(1));
        assertArrayEquals(ode.invFreq(), ode.thetas()[0]);
        double[] up = new double[32], down = new double[32];
        ode.backward(1, new double[] {1, 1, 1, 1}, up, down);
        assertArrayEquals(new double[32], up);
        assertThrows(IllegalArgumentException.class, () -> ode.theta(4));
        assertThrows(IllegalArgumentException.class, () -> ode.theta(0));
    }

    @Test
    void rejectsBadSettings() {
        float[] w = new float[32];
        assertThrows(RopewayException.class, () -> ClexOde.Activation.of("gelu"));
        assertEquals(ClexOde.Activation.SILU, ClexOde.Activation.of("SiLU"));
        assertThrows(RopewayException.class,
                () -> new ClexOde(7, 3, 1, ClexOde.Activation.TANH, 0.01f, 1e4, w, w));
        assertThrows(RopewayException.class,
                () -> new ClexOde(8, 3, 1, ClexOde.Activation.TANH, 0f, 1e4, w, w));
        assertThrows(IllegalArgumentException.class,
                () -> new ClexOde(8, 3, 2, ClexOde.Activation.TANH, 0.01f, 1e4, w, w));
    }
}
