package dev.ropeway.generate;

import dev.ropeway.RopewayException;
import dev.ropeway.model.Logits;

import java.util.Arrays;
import java.util.Objects;
import java.util.SplittableRandom;
import java.util.random.RandomGenerator;

/**
 * Picks the next token from a row of logits, in the order of Hugging Face's sampling pipeline: repetition penalty,
 * temperature, top-k, top-p, min-p, then one draw from what is left. Greedy (temperature 0) takes the highest
 * logit after the penalty, the lowest id on ties, as {@code argmax} does.
 *
 * <p>Nothing sorts the whole vocabulary: top-k finds its threshold with a k-sized heap and sorts the k survivors;
 * top-p alone sorts only the tokens that a bound on the nucleus leaves (see {@link #nucleusOfAll}); min-p alone
 * compares scores before exponentiating. Probabilities are computed in double from the logits minus their maximum.
 *
 * <p>One sampler serves one sequence: it owns the random generator (one draw per sampled token, so the n-th
 * token of a given seed is always drawn with the same number) and scratch buffers reused from call to call. It
 * is not thread-safe.
 */
public final class Sampler {
    private final SamplingSettings settings;
    private final RandomGenerator random;

    // Scratch, grown to the vocabulary on first use.
    private float[] penalized = new float[0];
    private int[] penalizedMark = new int[0];
    private int markEpoch;
    private float[] heapValues = new float[0];
    private long[] order = new long[0];
    private int[] ids = new int[0];
    private double[] weights = new double[0];
    private int count;
    private boolean sortedByScore;
    /** The largest score of the last {@link #scores} call, and its lowest index. */
    private float maxScore;
    private int argmaxScore;

    public Sampler(SamplingSettings settings) {
        this.settings = Objects.requireNonNull(settings, "settings");
        this.random = new SplittableRandom(settings.seed());
    }

    public SamplingSettings settings() {
        return settings;
    }

    /** The next token given the logits of the last position and every token of the sequence so far. */
    public int sample(float[] logits, int[] tokens) {
        return sample(logits, tokens, tokens.length);
    }

    /** The next token given the logits of the last position and the first {@code length} tokens of {@code tokens}. */
    public int sample(float[] logits, int[] tokens, int length) {
        float[] scores = scores(logits, tokens, length);
        if (settings.isGreedy()) return argmaxScore;
        double total = select(scores);
        double target = random.nextDouble() * total;
        double sum = 0;
        for (int i = 0; i < count; i++) {
            sum += weights[i];
            if (sum > target) return ids[i];
        }
        return ids[count - 1]; // rounding left the target at the very top of the range
    }

    /**
     * The tokens a draw would choose from, most likely first, with their probabilities (summing to 1). It draws
     * nothing: the sequence of draws of {@link #sample} is unchanged.
     */
    public Distribution distribution(float[] logits, int[] tokens, int length) {
        float[] scores = scores(logits, tokens, length);
        if (settings.isGreedy()) return new Distribution(new int[] {argmaxScore}, new double[] {1});
        select(scores);
        int[] outIds = Arrays.copyOf(ids, count);
        if (!sortedByScore) sortByScore(scores, outIds, count);
        double max = scores[outIds[0]];
        double[] outProbabilities = new double[count];
        double sum = 0;
        for (int i = 0; i < count; i++) sum += outProbabilities[i] = Math.exp((scores[outIds[i]] - max) / settings.temperature());
        for (int i = 0; i < count; i++) outProbabilities[i] /= sum;
        return new Distribution(outIds, outProbabilities);
    }

    /** What a draw chooses from: token ids, most likely first, and their probabilities. */
    public record Distribution(int[] ids, double[] probabilities) {
        public int size() {
            return ids.length;
        }
    }

    /** The index of the largest value, the lowest one on ties; NaN is an error. */
    public static int argmax(float[] logits) {
        return Logits.argmax(logits);
    }


    /** The logits checked, with the repetition penalty applied to a copy when there is one. */
    private float[] scores(float[] logits, int[] tokens, int length) {
        Objects.requireNonNull(logits, "logits");
        Objects.requireNonNull(tokens, "tokens");
        int vocab = logits.length;
        if (vocab == 0) throw new RopewayException("no logits to choose from (empty vocabulary)");
        if (length < 0 || length > tokens.length) {
            throw new RopewayException("token count " + length + " is outside 0.." + tokens.length);
        }
        // One pass checks the logits and finds their maximum.
        float max = Float.NEGATIVE_INFINITY;
        int best = -1;
        for (int i = 0; i < vocab; i++) {
            float x = logits[i];
            if (x > max) {
                max = x;
                best = i;
            } else if (Float.isNaN(x)) {
                throw nan(i);
            }
        }
        if (max == Float.POSITIVE_INFINITY) throw new RopewayException("logit " + best + " is +infinity; the model output is broken");
        if (best < 0) throw new RopewayException("every logit is -infinity: no token can be chosen");
        maxScore = max;
        argmaxScore = best;
        double penalty = settings.repetitionPenalty();
        if (penalty == 1 || length == 0) return logits;

        if (penalized.length < vocab) {
            penalized = new float[vocab];
            penalizedMark = new int[vocab];
            markEpoch = 0;
        }
        System.arraycopy(logits, 0, penalized, 0, vocab);
        if (++markEpoch == Integer.MAX_VALUE) {
            Arrays.fill(penalizedMark, 0);
            markEpoch = 1;
        }
        int window = settings.repetitionWindow();
        int from = window == 0 ? 0 : Math.max(0, length - window);
        for (int j = from; j < length; j++) {
            int t = tokens[j];
            if (t < 0 || t >= vocab) {
                throw new RopewayException("token id " + t + " at position " + j + " is outside the vocabulary (0.." + (vocab - 1) + ")");
            }
            // Each distinct token is penalised once, however often it occurs (Hugging Face gathers, then scatters).
            if (penalizedMark[t] == markEpoch) continue;
            penalizedMark[t] = markEpoch;
            float x = penalized[t];
            penalized[t] = (float) (x < 0 ? x * penalty : x / penalty);
        }
        maxScore = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < vocab; i++) {
            if (penalized[i] > maxScore) {
                maxScore = penalized[i];
                argmaxScore = i;
            }
        }
        return penalized;
    }

    private static RopewayException nan(int index) {
        return Logits.nan(index);
    }


    /**
     * Fills {@code ids} / {@code weights} (the first {@code count}) with the tokens that survive top-k, top-p and
     * min-p, each weighted exp((score - max) / temperature), and returns the sum of the weights.
     */
    private double select(float[] scores) {
        int vocab = scores.length;
        if (ids.length < vocab) {
            ids = new int[vocab];
            weights = new double[vocab];
        }
        double temperature = settings.temperature();
        int topK = settings.topK();
        double topP = settings.topP();
        double total;
        if (topK > 0 && topK < vocab) {
            float threshold = kthLargest(scores, topK);
            count = 0;
            for (int i = 0; i < vocab; i++) if (scores[i] >= threshold && scores[i] != Float.NEGATIVE_INFINITY) ids[count++] = i;
            sortByScore(scores, ids, count);
            sortedByScore = true;
            float max = scores[ids[0]];
            total = 0;
            for (int i = 0; i < count; i++) total += weights[i] = Math.exp((scores[ids[i]] - (double) max) / temperature);
            if (topP < 1) total = keepNucleus(total, topP);
        } else if (topP < 1) {
            total = nucleusOfAll(scores, temperature, topP);
            sortedByScore = true;
        } else {
            // Min-p alone needs no probability below its cut: compare scores first, exponentiate only survivors
            // (with a hair of margin; the exact cut follows).
            double floor = settings.minP() > 0 ? maxScore + temperature * (Math.log(settings.minP()) - 1e-9) : Double.NEGATIVE_INFINITY;
            count = 0;
            total = 0;
            for (int i = 0; i < vocab; i++) {
                if (scores[i] == Float.NEGATIVE_INFINITY || scores[i] < floor) continue;
                ids[count] = i;
                total += weights[count++] = Math.exp((scores[i] - (double) maxScore) / temperature);
            }
            sortedByScore = false;
        }
        double minP = settings.minP();
        if (minP > 0) total = keepAboveMinP(total, minP);
        return total;
    }

    /** Cuts the sorted candidates to those whose preceding mass is below p of the total (at least one). */
    private double keepNucleus(double total, double topP) {
        double limit = topP * total;
        double before = 0;
        int kept = 0;
        while (kept < count && (kept == 0 || before < limit)) before += weights[kept++];
        count = kept;
        return before;
    }

    /**
     * Top-p over the whole vocabulary without sorting it. The last token of the nucleus, L, has more than 1 - p of
     * the mass at or below it, spread over at most V tokens, so its weight exceeds (1 - p) Z / V: every token at
     * or below that weight is outside. Only the tokens above it (a handful for a peaked distribution) are sorted.
     */
    private double nucleusOfAll(float[] scores, double temperature, double topP) {
        int vocab = scores.length;
        double max = maxScore;
        double total = 0;
        for (float x : scores) if (x != Float.NEGATIVE_INFINITY) total += Math.exp((x - max) / temperature);
        // The weight bound on the score scale, with a hair of margin: extra candidates only cost sorting.
        double floor = max + temperature * (Math.log((1 - topP) * total / vocab) - 1e-9);
        count = 0;
        for (int i = 0; i < vocab; i++) if (scores[i] > floor && scores[i] != Float.NEGATIVE_INFINITY) ids[count++] = i;
        sortByScore(scores, ids, count);
        for (int i = 0; i < count; i++) weights[i] = Math.exp((scores[ids[i]] - max) / temperature);
        return keepNucleus(total, topP);
    }

    /** Drops tokens whose probability is below minP times the largest one; weights are relative to the maximum. */
    private double keepAboveMinP(double total, double minP) {
        double kept = 0;
        int n = 0;
        double best = 0;
        for (int i = 0; i < count; i++) best = Math.max(best, weights[i]);
        for (int i = 0; i < count; i++) {
            if (weights[i] >= minP * best) {
                ids[n] = ids[i];
                kept += weights[n++] = weights[i];
            }
        }
        count = n;
        return kept;
    }

    /** The k-th largest value (the smallest in a k-sized min-heap of the largest values seen). */
    private float kthLargest(float[] scores, int k) {
        if (heapValues.length < k) heapValues = new float[k];
        float[] heap = heapValues;
        System.arraycopy(scores, 0, heap, 0, k);
        for (int i = k / 2 - 1; i >= 0; i--) siftDownMin(heap, i, k);
        for (int i = k; i < scores.length; i++) {
            if (scores[i] > heap[0]) {
                heap[0] = scores[i];
                siftDownMin(heap, 0, k);
            }
        }
        return heap[0];
    }

    private static void siftDownMin(float[] heap, int i, int size) {
        float value = heap[i];
        while (true) {
            int child = 2 * i + 1;
            if (child >= size) break;
            if (child + 1 < size && heap[child + 1] < heap[child]) child++;
            if (heap[child] >= value) break;
            heap[i] = heap[child];
            i = child;
        }
        heap[i] = value;
    }

    /**
     * A long that sorts ascending as the score descending, then the id ascending: the order-preserving int form
     * of the float, inverted, above the id.
     */
    private static long orderKey(float score, int id) {
        int bits = Float.floatToIntBits(score);
        int sortable = bits ^ ((bits >> 31) & 0x7fffffff);
        return ((long) ~sortable << 32) | id;
    }

    private void sortByScore(float[] scores, int[] candidates, int n) {
        if (order.length < n) order = new long[Math.max(n, 16)];
        for (int i = 0; i < n; i++) order[i] = orderKey(scores[candidates[i]], candidates[i]);
        Arrays.sort(order, 0, n);
        for (int i = 0; i < n; i++) candidates[i] = (int) order[i];
    }
}
