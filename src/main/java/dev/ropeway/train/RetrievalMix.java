package dev.ropeway.train;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Tokenizer;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Retrieval warm-up data: a fraction of training windows carry a pass-key needle ("The pass key is K. Remember it.
 * K is the pass key.") at a random place in their real text, and end with the question and its answer ("What is the
 * pass key? The pass key is K."). A small model trained on text alone for minutes never learns to copy from its
 * context, so it scores zero on retrieval at every length and no context-extension method can show anything; with
 * the warm-up it learns retrieval within its training length, and evaluation then asks whether each method carries
 * that skill beyond it. The haystack is real corpus text, not the evaluation's repeated filler.
 *
 * <p>Which windows are mixed, and with which key, is a pure function of (seed, sample index), so resumed runs replay it.
 */
public final class RetrievalMix {

    /** One encoded needle and its question-plus-answer. */
    record Example(int[] needle, int[] question) {}

    private final double fraction;
    private final List<Example> pool;

    RetrievalMix(double fraction, List<Example> pool) {
        if (!(fraction > 0 && fraction <= 1)) throw new RopewayException("the retrieval fraction must be in (0, 1], got " + fraction);
        this.fraction = fraction;
        this.pool = List.copyOf(pool);
    }

    /** Encodes {@code poolSize} needles with distinct random five-digit keys. */
    public static RetrievalMix build(Tokenizer tokenizer, double fraction, int poolSize, long seed) {
        SplittableRandom r = new SplittableRandom(seed ^ 0x5EED_4E7A1L);
        List<Example> pool = new ArrayList<>(poolSize);
        for (int i = 0; i < poolSize; i++) {
            int key = 10000 + r.nextInt(90000);
            int[] needle = tokenizer.encode(" The pass key is " + key + ". Remember it. " + key + " is the pass key. ", false);
            int[] question = tokenizer.encode("\nWhat is the pass key? The pass key is " + key + ".", false);
            pool.add(new Example(needle, question));
        }
        return new RetrievalMix(fraction, pool);
    }

    public double fraction() { return fraction; }

    /**
     * Turns sample {@code index} (already in {@code inputs} / {@code targets} at {@code offset}, {@code seq} long) into
     * a retrieval example when it is one of the chosen fraction; windows too short for a needle and a question stay.
     */
    public void apply(long seed, long index, int seq, int[] inputs, int[] targets, int offset) {
        long h = PackedTokens.mix(seed ^ 0x7E7A1L, index);
        if ((h >>> 11) * 0x1.0p-53 >= fraction) return;
        Example e = pool.get((int) Long.remainderUnsigned(PackedTokens.mix(h, 1), pool.size()));
        int n = seq + 1, q = e.question().length, k = e.needle().length;
        if (q + k + 8 > n) return;
        int[] window = new int[n];
        System.arraycopy(inputs, offset, window, 0, seq);
        window[seq] = targets[offset + seq - 1];
        int at = 1 + (int) Long.remainderUnsigned(PackedTokens.mix(h, 2), n - q - k - 1);
        System.arraycopy(e.needle(), 0, window, at, k);
        System.arraycopy(e.question(), 0, window, n - q, q);
        System.arraycopy(window, 0, inputs, offset, seq);
        System.arraycopy(window, 1, targets, offset, seq);
    }
}
