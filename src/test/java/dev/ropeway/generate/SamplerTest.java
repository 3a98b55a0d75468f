package dev.ropeway.generate;

import dev.ropeway.RopewayException;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.Comparator;
import java.util.Random;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SamplerTest {
    private static final int[] NONE = new int[0];
    /** Sampling with nothing but the temperature: every token stays a candidate. */
    private static final SamplingSettings PLAIN = new SamplingSettings(1, 0, 1, 0, 1, 0, 7);

    private static float[] randomLogits(Random random, int vocab) {
        float[] logits = new float[vocab];
        for (int i = 0; i < vocab; i++) logits[i] = (float) (random.nextGaussian() * 3);
        return logits;
    }

    /** Logits whose softmax is {@code probabilities} (up to a shift, which softmax ignores). */
    private static float[] logitsOf(double... probabilities) {
        float[] logits = new float[probabilities.length];
        for (int i = 0; i < logits.length; i++) logits[i] = (float) (Math.log(probabilities[i]) + 4.25);
        return logits;
    }

    private static int naiveArgmax(float[] logits) {
        int best = 0;
        for (int i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }

    @Test
    void greedyIsArgmaxWithTheLowestIdOnTies() {
        Sampler greedy = new Sampler(SamplingSettings.greedy());
        Random random = new Random(1);
        for (int row = 0; row < 20; row++) {
            float[] logits = randomLogits(random, 5000);
            assertEquals(naiveArgmax(logits), greedy.sample(logits, NONE));
        }
        assertEquals(1, greedy.sample(new float[] {1, 3, 3, 2}, NONE));
        assertEquals(1, Sampler.argmax(new float[] {Float.NEGATIVE_INFINITY, 3, 3, 2}));
    }

    @Test
    void topKOfOneIsGreedyAtAnyTemperature() {
        Random random = new Random(2);
        for (double temperature : new double[] {0.05, 0.7, 1, 3, 100}) {
            Sampler sampler = new Sampler(new SamplingSettings(temperature, 1, 1, 0, 1, 0, 11));
            for (int row = 0; row < 30; row++) {
                float[] logits = randomLogits(random, 3000);
                assertEquals(naiveArgmax(logits), sampler.sample(logits, NONE), "temperature " + temperature);
            }
        }
    }

    /** Pearson's statistic of observed counts against expected probabilities. */
    private static double chiSquare(long[] counts, double[] expected, int draws) {
        double chi = 0;
        for (int i = 0; i < counts.length; i++) {
            double e = expected[i] * draws;
            if (e == 0) {
                assertEquals(0, counts[i], "token " + i + " has probability 0 but was drawn");
                continue;
            }
            chi += (counts[i] - e) * (counts[i] - e) / e;
        }
        return chi;
    }

    private static long[] draw(Sampler sampler, float[] logits, int draws) {
        long[] counts = new long[logits.length];
        for (int i = 0; i < draws; i++) counts[sampler.sample(logits, NONE)]++;
        return counts;
    }

    @Test
    void drawsFollowTheSoftmaxOfTheLogits() {
        double[] p = {0.4, 0.25, 0.15, 0.1, 0.06, 0.04};
        int draws = 200_000;
        // Five degrees of freedom: P(chi2 > 25) is about 1e-4, so a correct sampler passes with any seed;
        // one that is off by a single percent of the mass anywhere fails far beyond it.
        double bound = 25;
        assertTrue(chiSquare(draw(new Sampler(PLAIN), logitsOf(p), draws), p, draws) < bound);

        // Temperature 2 flattens: probabilities proportional to sqrt(p).
        double[] flat = Arrays.stream(p).map(Math::sqrt).toArray();
        double norm = Arrays.stream(flat).sum();
        for (int i = 0; i < flat.length; i++) flat[i] /= norm;
        long[] hot = draw(new Sampler(PLAIN.withTemperature(2).withSeed(3)), logitsOf(p), draws);
        assertTrue(chiSquare(hot, flat, draws) < bound);
        assertTrue(chiSquare(hot, p, draws) > 1000, "the temperature visibly changes the frequencies");

        // Top-k 3: the three largest, renormalised; the others never drawn.
        double[] top3 = {0.4 / 0.8, 0.25 / 0.8, 0.15 / 0.8, 0, 0, 0};
        assertTrue(chiSquare(draw(new Sampler(PLAIN.withTopK(3).withSeed(4)), logitsOf(p), draws), top3, draws) < bound);
    }

    @Test
    void topPKeepsTheSmallestSetReachingTheMass() {
        // Probabilities 0.5, 0.2, 0.15, 0.1, 0.05 at shuffled ids.
        int[] idOfRank = {3, 0, 4, 1, 2};
        double[] byRank = {0.5, 0.2, 0.15, 0.1, 0.05};
        double[] p = new double[5];
        for (int r = 0; r < 5; r++) p[idOfRank[r]] = byRank[r];
        float[] logits = logitsOf(p);

        Sampler.Distribution d = new Sampler(PLAIN.withTopP(0.8)).distribution(logits, NONE, 0);
        // 0.5 + 0.2 = 0.7 < 0.8, so the third is needed; with it the mass is 0.85 and the fourth is not.
        assertArrayEquals(new int[] {3, 0, 4}, d.ids());
        assertArrayEquals(new double[] {0.5 / 0.85, 0.2 / 0.85, 0.15 / 0.85}, d.probabilities(), 1e-6);

        assertArrayEquals(new int[] {3, 0, 4, 1}, new Sampler(PLAIN.withTopP(0.9)).distribution(logits, NONE, 0).ids());
        assertArrayEquals(new int[] {3}, new Sampler(PLAIN.withTopP(0.01)).distribution(logits, NONE, 0).ids());
        assertArrayEquals(new int[] {3, 0, 4, 1, 2}, new Sampler(PLAIN.withTopP(1)).distribution(logits, NONE, 0).ids());
        // After top-k 4 the mass is 0.95, and 0.8 of it is 0.76: still the first three.
        assertArrayEquals(new int[] {3, 0, 4}, new Sampler(PLAIN.withTopK(4).withTopP(0.8)).distribution(logits, NONE, 0).ids());
        // Min-p 0.35 keeps what is at least 0.175: the first two.
        Sampler.Distribution minP = new Sampler(PLAIN.withMinP(0.35)).distribution(logits, NONE, 0);
        assertArrayEquals(new int[] {3, 0}, minP.ids());
        assertArrayEquals(new double[] {0.5 / 0.7, 0.2 / 0.7}, minP.probabilities(), 1e-6);

        for (int i = 0; i < 2000; i++) {
            int t = new Sampler(PLAIN.withTopP(0.8).withSeed(i)).sample(logits, NONE);
            assertTrue(t == 3 || t == 0 || t == 4, "drew " + t + " outside the nucleus");
        }
    }

    /** Top-p alone (a heap over the vocabulary) against sorting everything and accumulating. */
    @Test
    void nucleusOfTheWholeVocabularyMatchesASortedReference() {
        Random random = new Random(5);
        for (int row = 0; row < 20; row++) {
            float[] logits = randomLogits(random, 2000);
            double temperature = 0.5 + random.nextDouble();
            double topP = 0.05 + 0.9 * random.nextDouble();
            Integer[] order = IntStream.range(0, logits.length).boxed().toArray(Integer[]::new);
            Arrays.sort(order, Comparator.comparingDouble((Integer i) -> -logits[i]).thenComparingInt(i -> i));
            double max = logits[order[0]];
            double[] w = new double[logits.length];
            double total = 0;
            for (int i = 0; i < w.length; i++) total += w[i] = Math.exp((logits[order[i]] - max) / temperature);
            int kept = 0;
            double before = 0;
            while (kept == 0 || before < topP * total) before += w[kept++];
            int[] expected = Arrays.stream(order, 0, kept).mapToInt(Integer::intValue).toArray();
            SamplingSettings settings = PLAIN.withTemperature(temperature).withTopP(topP);
            assertArrayEquals(expected, new Sampler(settings).distribution(logits, NONE, 0).ids());
            // The same cut through the top-k path (k = vocabulary - 1 keeps all but the last, never in a nucleus here).
            assertArrayEquals(expected, new Sampler(settings.withTopK(logits.length - 1)).distribution(logits, NONE, 0).ids());

            // Min-p alone keeps every token at least minP times as likely as the best one.
            double minP = 0.001 + 0.2 * random.nextDouble();
            int[] aboveMinP = Arrays.stream(order).mapToInt(Integer::intValue)
                    .filter(i -> Math.exp((logits[i] - max) / temperature) >= minP).toArray();
            assertArrayEquals(aboveMinP, new Sampler(PLAIN.withTemperature(temperature).withMinP(minP)).distribution(logits, NONE, 0).ids());
        }
    }

    @Test
    void topKKeepsEveryTokenTiedWithTheKth() {
        float[] logits = {1, 5, 3, 3, 0};
        assertArrayEquals(new int[] {1, 2, 3}, new Sampler(PLAIN.withTopK(2)).distribution(logits, NONE, 0).ids());
    }

    @Test
    void repetitionPenaltyDividesPositiveAndMultipliesNegativeLogits() {
        float[] logits = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 0.0f};
        int[] history = {0, 1, 1, 4, 5, 0};
        // Hand-computed with penalty 1.3: 2 / 1.3, -1 * 1.3, -2 * 1.3, 0 stays 0; ids 2 and 3 are not in the history.
        double[] penalized = {2.0 / 1.3, -1.3, 0.5, 3.0, -2.6, 0.0};
        double[] expected = softmax(penalized);
        Sampler.Distribution d = new Sampler(PLAIN.withRepetitionPenalty(1.3, 0)).distribution(logits, history, history.length);
        assertArrayEquals(new int[] {3, 0, 2, 5, 1, 4}, d.ids());
        double[] byId = new double[6];
        for (int i = 0; i < 6; i++) byId[d.ids()[i]] = d.probabilities()[i];
        assertArrayEquals(expected, byId, 1e-6);

        // Greedy sees the penalty too: 3 / 2 = 1.5 falls below 2.
        Sampler greedy = new Sampler(SamplingSettings.greedy().withRepetitionPenalty(2, 0));
        assertEquals(1, greedy.sample(new float[] {3, 2}, new int[] {0}));
        assertEquals(1, greedy.sample(new float[] {-1, -1.5f}, new int[] {0}), "-1 * 2 = -2 falls below -1.5");
        assertEquals(0, greedy.sample(new float[] {3, 2}, new int[] {0, 1}), "both penalised: 1.5 against 1");
        // The window sees only the last n tokens; length cuts the array.
        assertEquals(0, new Sampler(SamplingSettings.greedy().withRepetitionPenalty(2, 2)).sample(new float[] {3, 2}, new int[] {0, 1, 1}),
                "0 is outside the last two");
        assertEquals(1, greedy.sample(new float[] {3, 2}, new int[] {0, 1, 1}, 1), "only the first token counts");
        // A penalty below 1 rewards repetition.
        assertEquals(0, new Sampler(SamplingSettings.greedy().withRepetitionPenalty(0.5, 0)).sample(new float[] {1.2f, 2}, new int[] {0}));
        // The logits given are not changed.
        assertArrayEquals(new float[] {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 0.0f}, logits);
    }

    private static double[] softmax(double[] x) {
        double max = Arrays.stream(x).max().orElseThrow();
        double[] e = Arrays.stream(x).map(v -> Math.exp(v - max)).toArray();
        double sum = Arrays.stream(e).sum();
        return Arrays.stream(e).map(v -> v / sum).toArray();
    }

    @Test
    void theSameSeedGivesTheSameTokens() {
        Random random = new Random(6);
        float[][] rows = new float[300][];
        for (int i = 0; i < rows.length; i++) rows[i] = randomLogits(random, 500);
        SamplingSettings settings = new SamplingSettings(0.9, 40, 0.95, 0.01, 1.1, 64, 1234);
        int[] a = run(new Sampler(settings), rows);
        int[] b = run(new Sampler(settings), rows);
        int[] c = run(new Sampler(settings.withSeed(1235)), rows);
        assertArrayEquals(a, b);
        assertNotEquals(Arrays.toString(a), Arrays.toString(c));
        assertTrue(Arrays.stream(a).distinct().count() > 50, "the draws do vary");
    }

    private static int[] run(Sampler sampler, float[][] rows) {
        int[] tokens = new int[rows.length];
        for (int i = 0; i < rows.length; i++) tokens[i] = sampler.sample(rows[i], tokens, i);
        return tokens;
    }

    @Test
    void maskedTokensAreNeverDrawnFromALargeVocabulary() {
        Random random = new Random(8);
        float[] logits = randomLogits(random, 150_000);
        for (int i = 0; i < logits.length; i += 2) logits[i] = Float.NEGATIVE_INFINITY;
        for (SamplingSettings s : new SamplingSettings[] {PLAIN, PLAIN.withTopK(50), PLAIN.withTopP(0.9), PLAIN.withMinP(0.05)}) {
            Sampler sampler = new Sampler(s);
            for (int draw = 0; draw < 50; draw++) assertEquals(1, sampler.sample(logits, NONE) % 2, s.toString());
        }
        float[] top50 = logits.clone();
        Arrays.sort(top50);
        float threshold = top50[top50.length - 50];
        Sampler topK = new Sampler(PLAIN.withTopK(50));
        for (int draw = 0; draw < 200; draw++) assertTrue(logits[topK.sample(logits, NONE)] >= threshold);
    }

    @Test
    void badSettingsAndLogitsAreRefusedByName() {
        assertEquals("temperature must be a finite number >= 0 (0 = greedy), got -0.5",
                assertThrows(RopewayException.class, () -> PLAIN.withTemperature(-0.5)).getMessage());
        assertThrows(RopewayException.class, () -> PLAIN.withTemperature(Double.NaN));
        assertEquals("top_p must be in (0, 1] (1 = off), got 0.0",
                assertThrows(RopewayException.class, () -> PLAIN.withTopP(0)).getMessage());
        assertThrows(RopewayException.class, () -> PLAIN.withTopP(1.01));
        assertEquals("top_k must be >= 0 (0 = off), got -1", assertThrows(RopewayException.class, () -> PLAIN.withTopK(-1)).getMessage());
        assertEquals("repetition penalty must be a finite number > 0 (1 = off), got 0.0",
                assertThrows(RopewayException.class, () -> PLAIN.withRepetitionPenalty(0, 0)).getMessage());
        assertThrows(RopewayException.class, () -> PLAIN.withRepetitionPenalty(1.1, -1));
        assertThrows(RopewayException.class, () -> PLAIN.withMinP(1.5));

        Sampler sampler = new Sampler(PLAIN.withRepetitionPenalty(1.2, 0));
        assertEquals("logit 2 is NaN; the model output is broken",
                assertThrows(RopewayException.class, () -> sampler.sample(new float[] {1, 2, Float.NaN}, NONE)).getMessage());
        assertEquals("logit 2 is NaN; the model output is broken", assertThrows(RopewayException.class,
                () -> new Sampler(SamplingSettings.greedy()).sample(new float[] {1, 2, Float.NaN}, NONE)).getMessage());
        assertThrows(RopewayException.class, () -> sampler.sample(new float[] {1, Float.POSITIVE_INFINITY}, NONE));
        assertEquals("every logit is -infinity: no token can be chosen", assertThrows(RopewayException.class,
                () -> sampler.sample(new float[] {Float.NEGATIVE_INFINITY, Float.NEGATIVE_INFINITY}, NONE)).getMessage());
        assertEquals("token id 5 at position 1 is outside the vocabulary (0..2)",
                assertThrows(RopewayException.class, () -> sampler.sample(new float[] {1, 2, 3}, new int[] {0, 5})).getMessage());
        assertThrows(RopewayException.class, () -> sampler.sample(new float[0], NONE));
    }
}
