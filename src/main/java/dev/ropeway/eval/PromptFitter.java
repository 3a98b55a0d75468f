package dev.ropeway.eval;

import java.util.function.IntUnaryOperator;

/**
 * Sizes a synthetic task's prompts to a token budget: the largest haystack (lines, words, paragraphs, code lines:
 * whatever the task's size counts) whose prompt fits, found once for a cell by doubling and bisection on trial 0's
 * draw, then fitted again for every trial whose own draw tokenises over the budget or more than 1% short of it.
 * The generator must give, for one trial, prompts that grow with the size.
 */
final class PromptFitter {
    /** One trial's sample at a haystack size. */
    interface Generator {
        Ruler.Sample sample(int size, int trial);
    }

    /** A trial's sample and its prompt's token ids. */
    record Fitted(Ruler.Sample sample, int[] ids) {}

    private final PromptFormat format;
    private final int budget;
    private final int cap;
    private final Generator generator;
    private final int size;

    /** {@code size()} is then the cell's size: -1 when even an empty haystack is over budget, {@code cap} at the cap. */
    PromptFitter(PromptFormat format, int budget, int cap, Generator generator) {
        this.format = format;
        this.budget = budget;
        this.cap = cap;
        this.generator = generator;
        this.size = largestFitting(k -> tokens(generator.sample(k, 0)), budget, cap);
    }

    int size() {
        return size;
    }

    /** A sample's prompt's ids, in the cell's format. */
    int[] ids(Ruler.Sample s) {
        return format.ids(s);
    }

    int tokens(Ruler.Sample s) {
        return ids(s).length;
    }

    /**
     * Trial {@code trial}'s sample: a smaller haystack if its own draw tokenises over the budget, a larger one if it
     * falls more than 1% short (coded words or UUIDs tokenise to a few percent more or fewer tokens from one draw to
     * the next, paragraphs and files differ in length). The prompt's ids come with it, so that it is not tokenised
     * again.
     */
    Fitted trial(int trial) {
        if (size < 0) throw new IllegalStateException("no haystack size fits the budget");
        Ruler.Sample s = generator.sample(size, trial);
        int[] ids = ids(s);
        int n = fittedSize(trial, ids.length);
        if (n == size) return new Fitted(s, ids);
        Ruler.Sample fitted = generator.sample(n, trial);
        return new Fitted(fitted, ids(fitted));
    }

    /** The haystack size for trial {@code trial}, whose prompt at the cell's size has {@code tokens} tokens. */
    private int fittedSize(int trial, int tokens) {
        IntUnaryOperator tokensAt = k -> tokens(generator.sample(k, trial));
        if (tokens > budget) {
            if (size == 0) return 0;
            return tokensAt.applyAsInt(0) <= budget ? bisect(tokensAt, budget, 0, size) : 0;
        }
        if (tokens >= budget - budget / 100 || size == cap) return size;
        int lo = size, step = Math.max(1, size / 64);
        while (true) {
            int hi = (int) Math.min((long) lo + step, cap);
            if (tokensAt.applyAsInt(hi) > budget) return bisect(tokensAt, budget, lo, hi);
            lo = hi;
            if (lo == cap) return lo;
            step = (int) Math.min(2L * step, 1 << 24);
        }
    }

    /**
     * The largest n in [0, cap] with {@code tokensAt(n) ≤ budget} (the token count grows with n), or -1 when even
     * n = 0 is over budget. Doubling, then bisection, so the tokeniser's work stays proportional to the answer.
     */
    static int largestFitting(IntUnaryOperator tokensAt, int budget, int cap) {
        if (tokensAt.applyAsInt(0) > budget) return -1;
        if (cap == 0) return 0;
        int lo = 0, hi = 1;
        while (tokensAt.applyAsInt(hi) <= budget) {
            lo = hi;
            if (hi == cap) return cap;
            if (hi > (1 << 24)) throw new IllegalStateException("the prompt does not grow with the haystack");
            hi = (int) Math.min(2L * hi, cap);
        }
        return bisect(tokensAt, budget, lo, hi);
    }

    /** The largest n in [lo, hi) with {@code tokensAt(n) ≤ budget}, given that lo fits and hi does not. */
    private static int bisect(IntUnaryOperator tokensAt, int budget, int lo, int hi) {
        while (hi - lo > 1) {
            int mid = (lo + hi) >>> 1;
            if (tokensAt.applyAsInt(mid) <= budget) lo = mid;
            else hi = mid;
        }
        return lo;
    }
}
