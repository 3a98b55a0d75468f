package dev.ropeway.generate;

import dev.ropeway.RopewayException;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * A token's log-probability under the model at its position, and the most likely tokens there with theirs: the
 * log-softmax of the model's logits over the tokenizer's ids, before temperature, penalties or truncation (what the
 * model says, not what the sampler drew from).
 *
 * @param token       the token at this position
 * @param logprob     its log-probability
 * @param topTokens   the most likely tokens, most likely first (the lower id first on ties)
 * @param topLogprobs their log-probabilities
 */
public record TokenLogprob(int token, double logprob, int[] topTokens, double[] topLogprobs) {
    /** The most alternatives a position reports. */
    public static final int MAX_TOP = 20;

    /**
     * The log-softmax of {@code logits[offset, offset + count)} (one position's logits, of which the first
     * {@code count} ids are the tokenizer's): {@code token}'s log-probability and the {@code top} most likely tokens.
     */
    public static TokenLogprob of(float[] logits, int offset, int count, int token, int top) {
        if (top < 0 || top > MAX_TOP) throw new RopewayException("top log-probabilities: 0 to " + MAX_TOP + ", got " + top);
        if (token < 0 || token >= count) throw new RopewayException("token " + token + " is outside [0, " + count + ")");
        top = Math.min(top, count);
        float max = max(logits, offset, count);
        if (Float.isNaN(max)) {
            int i = 0;
            while (!Float.isNaN(logits[offset + i])) i++;
            throw new RopewayException("logit " + i + " is NaN; the model output is broken");
        }
        if (max == Float.POSITIVE_INFINITY) throw new RopewayException("a logit is +infinity; the model output is broken");
        double logZ = max + Math.log(sumExp(logits, offset, count, max));
        int[] ids = top(logits, offset, count, top);
        double[] lps = new double[top];
        for (int i = 0; i < top; i++) lps[i] = logits[offset + ids[i]] - logZ;
        return new TokenLogprob(token, logits[offset + token] - logZ, ids, lps);
    }

    /**
     * The {@code top} largest values' ids, largest first, by insertion into a short sorted list (a strictly larger
     * value moves ahead, so ties keep id order); a vector of values none of which beats the list's last is skipped.
     */
    private static int[] top(float[] x, int offset, int count, int top) {
        int[] ids = new int[top];
        if (top == 0) return ids;
        int filled = 0, step = SPECIES.length(), bound = SPECIES.loopBound(count);
        float last = Float.NEGATIVE_INFINITY;
        for (int from = 0; from < count; from += step) {
            if (filled == top && from < bound
                    && !FloatVector.fromArray(SPECIES, x, offset + from).compare(VectorOperators.GT, last).anyTrue()) continue;
            for (int i = from, to = Math.min(count, from + step); i < to; i++) {
                float v = x[offset + i];
                if (filled == top && v <= last) continue;
                int at = Math.min(filled, top - 1);
                while (at > 0 && v > x[offset + ids[at - 1]]) {
                    ids[at] = ids[at - 1];
                    at--;
                }
                ids[at] = i;
                if (filled < top) filled++;
                last = x[offset + ids[filled - 1]];
            }
        }
        return ids;
    }

    private static final VectorSpecies<Float> SPECIES = FloatVector.SPECIES_PREFERRED;
    /** Values summed in float lanes before the running sum (a double) takes them: bounds the float rounding. */
    private static final int BLOCK = 1024;

    /** The largest of the values (NaN if one is NaN). */
    private static float max(float[] x, int offset, int count) {
        FloatVector m = FloatVector.broadcast(SPECIES, Float.NEGATIVE_INFINITY);
        int i = 0, bound = SPECIES.loopBound(count);
        for (; i < bound; i += SPECIES.length()) m = m.lanewise(VectorOperators.MAX, FloatVector.fromArray(SPECIES, x, offset + i));
        float max = m.reduceLanes(VectorOperators.MAX);
        for (; i < count; i++) max = Math.max(max, x[offset + i]);
        return max;
    }

    /** The sum of exp(x - max), each term at most 1. */
    private static double sumExp(float[] x, int offset, int count, float max) {
        double sum = 0;
        int bound = SPECIES.loopBound(count);
        for (int from = 0; from < bound; from += BLOCK) {
            FloatVector s = FloatVector.zero(SPECIES);
            int to = Math.min(bound, from + BLOCK);
            for (int i = from; i < to; i += SPECIES.length())
                s = s.add(FloatVector.fromArray(SPECIES, x, offset + i).sub(max).lanewise(VectorOperators.EXP));
            sum += s.reduceLanes(VectorOperators.ADD);
        }
        for (int i = bound; i < count; i++) sum += Math.exp(x[offset + i] - max);
        return sum;
    }
}
