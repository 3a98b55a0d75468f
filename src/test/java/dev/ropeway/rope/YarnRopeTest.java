package dev.ropeway.rope;

import org.junit.jupiter.api.Test;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.OptionalDouble;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

/** YaRN against the worked numbers of the method reference and transformers' quirks. */
class YarnRopeTest {

    private static YarnRope yarn(double theta, int d, double factor, long original, boolean truncate) {
        return new YarnRope(theta, d, factor, original, 32, 1, OptionalDouble.empty(), OptionalDouble.empty(),
                OptionalDouble.empty(), truncate);
    }

    @Test
    void llama2CorrectionRangeAndMscale() {
        YarnRope s16 = YarnRope.of(1e4, 128, 16, 4096);
        assertEquals(new YarnRope.CorrectionRange(20, 46), s16.correctionRange());
        assertEquals(1.27726, s16.resolvedAttentionFactor(), 5e-6);
        assertEquals(1.34657, YarnRope.of(1e4, 128, 32, 4096).resolvedAttentionFactor(), 5e-6);

        YarnRope.CorrectionRange raw = yarn(1e4, 128, 16, 4096, false).correctionRange();
        assertEquals(20.944, raw.low(), 5e-4);
        assertEquals(45.027, raw.high(), 5e-4);
    }

    @Test
    void qwen25LikeCorrectionRangeAndMscale() {
        YarnRope rope = YarnRope.of(1e6, 128, 4, 32768);
        assertEquals(new YarnRope.CorrectionRange(23, 40), rope.correctionRange());
        assertEquals(1.13863, rope.resolvedAttentionFactor(), 5e-6);
        assertEquals(1.13863f, rope.attentionScaling(), 5e-6f);
    }

    @Test
    void deepSeekMscalePairCancels() {
        YarnRope rope = new YarnRope(1e4, 64, 40, 4096, 32, 1, OptionalDouble.empty(), OptionalDouble.of(1),
                OptionalDouble.of(1), true);
        assertEquals(new YarnRope.CorrectionRange(10, 23), rope.correctionRange());
        assertEquals(1.0, rope.resolvedAttentionFactor(), 0);
    }

    @Test
    void explicitAttentionFactorWins() {
        YarnRope rope = new YarnRope(1e4, 128, 16, 4096, 32, 1, OptionalDouble.of(0.75), OptionalDouble.of(1),
                OptionalDouble.of(0.5), true);
        assertEquals(0.75f, rope.attentionScaling());
    }

    @Test
    void pairsOutsideTheRampAreKeptOrFullyInterpolated() {
        YarnRope rope = YarnRope.of(1e4, 128, 16, 4096);
        float[] inv = rope.inverseFrequencies(1);
        float[] plain = new DefaultRope(1e4, 128).inverseFrequencies(1);
        float[] powers = RopeMath.basePowers(1e4, 128);
        for (int j = 0; j <= 20; j++) assertEquals(plain[j], inv[j], "pair " + j + " keeps its frequency");
        for (int j = 46; j < 64; j++) assertEquals(1f / (16f * powers[j]), inv[j], "pair " + j + " is divided by 16");
        for (int j = 21; j < 46; j++) {
            assertNotEquals(plain[j], inv[j], "pair " + j + " is blended");
            assertEquals(true, inv[j] < plain[j] && inv[j] > plain[j] / 16.00001f, "pair " + j + " lies between");
        }
    }

    @Test
    void upperClampIsRotaryDimMinusOneNotPairCount() {
        // beta_slow's correction dim is 8.34 here: ceil 9 stays, although only pairs 0..7 exist, so no pair is
        // fully interpolated (ramp (7 - low) / (9 - low) < 1).
        YarnRope narrow = yarn(500, 16, 4, 4096, true);
        assertEquals(9.0, narrow.correctionRange().high());
        float[] powers = RopeMath.basePowers(500, 16);
        assertNotEquals(1f / (4f * powers[7]), narrow.inverseFrequencies(1)[7]);
        // A correction dim beyond d - 1 is clamped to d - 1 = 15, not to d/2 - 1.
        assertEquals(15.0, yarn(10, 16, 4, 1_000_000, true).correctionRange().high());
    }

    @Test
    void zeroWidthRampIsWidenedLikeTransformers() {
        // An original context of 5 puts both ends at 0: transformers widens the ramp by 0.001, so pair 0 is
        // kept and every later pair divided (without the guard pair 0 would be 0/0).
        YarnRope rope = yarn(10, 8, 2, 5, true);
        assertEquals(new YarnRope.CorrectionRange(0, 0), rope.correctionRange());
        float[] inv = rope.inverseFrequencies(1);
        assertEquals(1f, inv[0]);
        float[] powers = RopeMath.basePowers(10, 8);
        for (int j = 1; j < 4; j++) assertEquals(1f / (2f * powers[j]), inv[j]);
    }

    @Test
    void rampEndingBelowItsStartKeepsEveryPair() {
        // beta_slow's dim is negative (original 1): high = -3 < low = 0, the ramp is never positive, and
        // transformers then keeps every pair unscaled although factor is 2.
        YarnRope rope = yarn(10, 8, 2, 1, true);
        assertEquals(new YarnRope.CorrectionRange(0, -3), rope.correctionRange());
        assertArrayEquals(new DefaultRope(10, 8).inverseFrequencies(1), rope.inverseFrequencies(1));
    }

    @Test
    void parametersFollowTransformersDefaults() {
        RopeContext ctx = new RopeContext(128, 16384, 0, 1e4);
        Map<String, Object> p = new LinkedHashMap<>();
        p.put("rope_type", "yarn");
        p.put("original_max_position_embeddings", 4096);
        p.put("beta_fast", 0);
        p.put("beta_slow", 0.0);
        YarnRope rope = (YarnRope) RopeScalings.fromParameters(p, ctx);
        assertEquals(4.0, rope.factor(), "factor absent: max_position_embeddings / original");
        assertEquals(32.0, rope.betaFast(), "beta_fast 0 is Python-falsy");
        assertEquals(1.0, rope.betaSlow(), "beta_slow 0 is Python-falsy");
        assertEquals(true, rope.truncate());

        p.put("factor", 8);
        assertEquals(8.0, ((YarnRope) RopeScalings.fromParameters(p, ctx)).factor(), "an explicit factor wins");
    }
}
