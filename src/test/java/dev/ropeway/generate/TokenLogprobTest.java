package dev.ropeway.generate;

import dev.ropeway.RopewayException;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.Comparator;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.*;

class TokenLogprobTest {
    /** Against a float64 log-softmax and a full sort, over one row among others and over the first ids only. */
    @Test
    void logSoftmaxAndTopTokensMatchAFullSort() {
        SplittableRandom random = new SplittableRandom(3);
        int vocab = 500, count = 480;
        float[] logits = new float[3 * vocab];
        for (int i = 0; i < logits.length; i++) logits[i] = (float) (random.nextGaussian() * 4);
        logits[vocab + 490] = 100;                    // past the counted ids: never reported, not in the sum
        logits[vocab + 7] = logits[vocab + 3] = 30;   // a tie at the top: the lower id first
        for (int top : new int[]{0, 1, 5, 20}) {
            TokenLogprob t = TokenLogprob.of(logits, vocab, count, 11, top);
            double max = 30, sum = 0;
            for (int i = 0; i < count; i++) sum += Math.exp(logits[vocab + i] - max);
            double logZ = max + Math.log(sum);
            assertEquals(logits[vocab + 11] - logZ, t.logprob(), 1e-6, "float exponentials, summed in blocks");
            Integer[] order = IntStream.range(0, count).boxed().sorted(Comparator.<Integer>comparingDouble(i -> -logits[vocab + i])
                    .thenComparingInt(i -> i)).toArray(Integer[]::new);
            assertEquals(top, t.topTokens().length);
            for (int k = 0; k < top; k++) {
                assertEquals(order[k], t.topTokens()[k], "rank " + k + " of " + Arrays.toString(t.topTokens()));
                assertEquals(logits[vocab + order[k]] - logZ, t.topLogprobs()[k], 1e-6);
            }
            if (top >= 2) assertArrayEquals(new int[]{3, 7}, Arrays.copyOf(t.topTokens(), 2));
        }
        double total = 0;
        for (int i = 0; i < count; i++) total += Math.exp(TokenLogprob.of(logits, vocab, count, i, 0).logprob());
        assertEquals(1, total, 1e-6);
    }

    @Test
    void brokenLogitsAndBadArgumentsAreRefused() {
        float[] logits = {1, Float.NaN, 2};
        assertTrue(assertThrows(RopewayException.class, () -> TokenLogprob.of(logits, 0, 3, 0, 1)).getMessage().contains("NaN"));
        assertThrows(RopewayException.class, () -> TokenLogprob.of(new float[]{1, 2}, 0, 2, 2, 1));
        assertThrows(RopewayException.class, () -> TokenLogprob.of(new float[]{1, 2}, 0, 2, 0, 21));
        assertEquals(2, TokenLogprob.of(new float[]{1, 2}, 0, 2, 0, 5).topTokens().length, "at most the vocabulary");
    }
}
