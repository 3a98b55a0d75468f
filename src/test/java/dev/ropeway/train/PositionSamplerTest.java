package dev.ropeway.train;

import dev.ropeway.rope.DefaultRope;
import dev.ropeway.rope.LinearRope;
import dev.ropeway.rope.RopePlan;
import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Property tests of the training position samplers over many draws. */
class PositionSamplerTest {
    static final DefaultRope BASE = new DefaultRope(10000, 16);

    @Test
    void e2KeepsSinksShiftsTheRestAndCoversEveryScale() {
        int seq = 64, l0 = 128, gMax = 8, draws = 8000;
        E2TrainingRope e2 = new E2TrainingRope(BASE, l0, gMax, false);
        SplittableRandom random = new SplittableRandom(1);
        int[] gCount = new int[gMax + 1];
        long maxT = 0;
        boolean sawZeroOffset = false;
        for (int i = 0; i < draws; i++) {
            RopePlan plan = e2.plan(2, seq, random.split());
            assertArrayEquals(BASE.inverseFrequencies(seq), plan.invFreq(), "E2 trains with the model's own frequencies");
            float[] p = plan.positions();
            // Recover g from the spacing after the sinks (positions are (m + t) / g), t from the first shifted token.
            double step = p[5] - p[4];
            int g = (int) Math.round(1 / step);
            assertTrue(g >= 1 && g <= gMax, "g = " + g);
            gCount[g]++;
            for (int b = 0; b < 2; b++)
                for (int m = 0; m < E2TrainingRope.SINK_TOKENS; m++)
                    assertEquals((float) m / g, p[b * seq + m], 0f, "sink token " + m + " stays at its place");
            long t = Math.round(p[4] * g) - 4;
            assertTrue(t >= 0 && t <= (long) g * l0 - seq, "offset " + t + " for g " + g);
            maxT = Math.max(maxT, t);
            sawZeroOffset |= t == 0;
            for (int b = 0; b < 2; b++) {
                for (int m = 1; m < seq; m++) assertTrue(p[b * seq + m] > p[b * seq + m - 1], "increasing");
                assertTrue(p[b * seq + seq - 1] * g <= g * l0 - 1 + 1e-3, "last position inside g * L0");
                // Per iteration: both sequences share g and t.
                assertEquals(p[m(0, 10, seq)], p[m(1, 10, seq)]);
            }
        }
        for (int g = 1; g <= gMax; g++)
            assertEquals(draws / (double) gMax, gCount[g], 5 * Math.sqrt(draws / (double) gMax), "uniform g: " + g);
        assertTrue(sawZeroOffset && maxT > (long) gMax * l0 - seq - 100, "offsets reach both ends of their range: " + maxT);
    }

    private static int m(int b, int i, int seq) {
        return b * seq + i;
    }

    @Test
    void e2PerSampleDrawsEachSequenceOnItsOwn() {
        E2TrainingRope e2 = new E2TrainingRope(BASE, 128, 8, true);
        SplittableRandom random = new SplittableRandom(2);
        int differ = 0;
        for (int i = 0; i < 200; i++) {
            float[] p = e2.plan(2, 64, random).positions();
            if (p[10] != p[64 + 10]) differ++;
        }
        assertTrue(differ > 150, differ + " of 200 pairs differ");
    }

    @Test
    void poseSkipsOnceWithinTheTargetLength() {
        int seq = 64, target = 512, draws = 5000;
        LinearRope pi = new LinearRope(10000, 16, target / 128.0);
        PoseTrainingRope pose = new PoseTrainingRope(pi, target);
        SplittableRandom random = new SplittableRandom(3);
        int[] firstChunk = new int[seq + 1];
        long maxSkip = 0;
        for (int i = 0; i < draws; i++) {
            RopePlan plan = pose.plan(1, seq, random);
            assertArrayEquals(pi.inverseFrequencies(target), plan.invFreq());
            float[] p = plan.positions();
            assertEquals(0f, p[0]);
            int jumps = 0, r1 = seq;
            for (int m = 1; m < seq; m++) {
                float d = p[m] - p[m - 1];
                assertTrue(d >= 1, "increasing");
                if (d > 1) {
                    jumps++;
                    r1 = m;
                    maxSkip = Math.max(maxSkip, (long) d - 1);
                }
            }
            assertTrue(jumps <= 1, "two chunks, one skip");
            assertTrue(p[seq - 1] <= target - 1, "inside the target length");
            if (jumps == 1) firstChunk[r1]++;
            assertTrue(r1 >= 1 && (jumps == 0 || r1 <= (seq + 1) / 2), "first chunk length " + r1);
        }
        assertTrue(maxSkip > target - seq - 50, "skips reach the end of their range: " + maxSkip);
        for (int r = 1; r <= (seq + 1) / 2; r++) assertTrue(firstChunk[r] > 0 || r == seq, "first chunk of " + r + " occurs");
    }
}
