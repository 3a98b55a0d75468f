package dev.ropeway.generate;

import dev.ropeway.RopewayException;

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
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < count; i++) {
            float x = logits[offset + i];
            if (Float.isNaN(x)) throw new RopewayException("logit " + i + " is NaN; the model output is broken");
            if (x > max) max = x;
        }
        if (max == Double.POSITIVE_INFINITY) throw new RopewayException("a logit is +infinity; the model output is broken");
        double sum = 0;
        for (int i = 0; i < count; i++) sum += Math.exp(logits[offset + i] - max);
        double logZ = max + Math.log(sum);
        // The top ids by insertion into a short sorted list: a strictly larger logit moves ahead, so ties keep id order.
        int[] ids = new int[top];
        int filled = 0;
        for (int i = 0; i < count && top > 0; i++) {
            float x = logits[offset + i];
            if (filled == top && x <= logits[offset + ids[top - 1]]) continue;
            int at = Math.min(filled, top - 1);
            while (at > 0 && x > logits[offset + ids[at - 1]]) {
                ids[at] = ids[at - 1];
                at--;
            }
            ids[at] = i;
            if (filled < top) filled++;
        }
        double[] lps = new double[top];
        for (int i = 0; i < top; i++) lps[i] = logits[offset + ids[i]] - logZ;
        return new TokenLogprob(token, logits[offset + token] - logZ, ids, lps);
    }
}
