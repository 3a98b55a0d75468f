package dev.ropeway.eval;

import dev.ropeway.model.Decoder;
import dev.ropeway.model.Logits;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.RopeScaling;

import java.util.Arrays;

/**
 * Greedy decoding and answer log-likelihoods for the evaluation tasks, through one KV cache that a series of prompts
 * shares: each prompt keeps what the cache already holds of its start ({@link Decoder#reusablePrefix}: the trials of a
 * passkey cell share everything before the needle, and an answer's log-likelihood shares the whole prompt with its
 * greedy decoding) and only the rest is computed. RoPE is planned at the sequence's total length at every step, and
 * when that changes the frequencies (E²'s g, CLEX's t, dynamic NTK crossing a boundary) the prefix is recomputed, so
 * every token is the one a whole-sequence forward of the same tokens would pick, and every log-likelihood the one a
 * whole forward of the prompt and answer gives.
 */
public final class Greedy implements AutoCloseable {
    private final Transformer model;
    private final RopeScaling rope;
    private final int vocabulary;
    private Decoder decoder;
    private long cachedTokens;

    public Greedy(Transformer model, RopeScaling rope) {
        this(model, rope, model.config().vocabSize());
    }

    /**
     * Decoding that picks among the first {@code vocabulary} ids only: a tokenizer's, when the model's vocabulary is
     * padded past it (its extra rows have no text).
     */
    public Greedy(Transformer model, RopeScaling rope, int vocabulary) {
        if (vocabulary < 1 || vocabulary > model.config().vocabSize())
            throw new IllegalArgumentException("vocabulary " + vocabulary + " outside [1, " + model.config().vocabSize() + "]");
        this.model = model;
        this.rope = rope;
        this.vocabulary = vocabulary;
    }

    /** One prompt's greedy decoding on a fresh cache. */
    public static int[] decode(Transformer model, RopeScaling rope, int[] prompt, int maxNew, int stopToken) {
        try (Greedy g = new Greedy(model, rope)) {
            return g.decode(prompt, maxNew, stopToken);
        }
    }

    /**
     * Up to {@code maxNew} tokens after {@code prompt}, each the most likely next token (the lowest id on ties),
     * stopping after {@code stopToken} when it is generated (negative: never stop early).
     */
    public int[] decode(int[] prompt, int maxNew, int stopToken) {
        return decode(prompt, maxNew, new int[] {stopToken});
    }

    /**
     * Up to {@code maxNew} tokens after {@code prompt}, each the most likely next token (the lowest id on ties),
     * stopping after any of {@code stopTokens} (a tokenizer's {@link dev.ropeway.io.Tokenizer#endIds end tokens}) when
     * it is generated; negative entries never match.
     */
    public int[] decode(int[] prompt, int maxNew, int[] stopTokens) {
        if (prompt.length == 0) throw new IllegalArgumentException("greedy decoding needs a non-empty prompt");
        if (maxNew <= 0) return new int[0];
        int[] out = new int[maxNew];
        int n = 0;
        Decoder d = decoderFor(prompt.length + maxNew);
        float[] logits = d.append(Arrays.copyOfRange(prompt, keep(d, prompt, prompt.length - 1), prompt.length));
        while (true) {
            int best = Logits.argmax(logits, vocabulary);
            out[n++] = best;
            if (n == maxNew || stops(best, stopTokens)) break;
            logits = d.next(best);
        }
        return Arrays.copyOf(out, n);
    }

    private static boolean stops(int token, int[] stopTokens) {
        for (int s : stopTokens) if (s == token) return true;
        return false;
    }

    /**
     * The log-likelihood of {@code answer}'s tokens following {@code prompt}: the sum of log p(answer[i] | prompt,
     * answer[..i]), the prompt and answer planned together at their whole length, as one forward over both.
     */
    public double logLikelihood(int[] prompt, int[] answer) {
        if (prompt.length == 0) throw new IllegalArgumentException("a log-likelihood needs a non-empty prompt");
        if (answer.length == 0) return 0;
        int[] full = Arrays.copyOf(prompt, prompt.length + answer.length);
        System.arraycopy(answer, 0, full, prompt.length, answer.length);
        Decoder d = decoderFor(full.length);
        // The row of the prompt's last token predicts the answer's first, so that token is appended at least.
        int from = keep(d, full, prompt.length - 1), vocab = model.config().vocabSize();
        double[] sum = {0};
        d.append(Arrays.copyOfRange(full, from, full.length), (first, rows, logits) -> {
            int[] targets = new int[rows];
            for (int r = 0; r < rows; r++) {
                long position = from + first + r;
                targets[r] = position >= prompt.length - 1 && position < full.length - 1 ? full[(int) position + 1] : -1;
            }
            double[] losses = model.backend().crossEntropy(logits, targets, rows, vocab);
            for (int r = 0; r < rows; r++) if (targets[r] >= 0) sum[0] -= losses[r];
        });
        return sum[0];
    }

    /** Prompt tokens found in the cache so far, not computed again. */
    public long cachedTokens() {
        return cachedTokens;
    }

    /** Keeps at most {@code limit} of {@code seq}'s first tokens from the cache (the rest is appended next). */
    private int keep(Decoder d, int[] seq, int limit) {
        int kept = Math.min(d.reusablePrefix(seq), limit);
        d.truncate(kept);
        cachedTokens += kept;
        return kept;
    }

    /** The cache, grown (emptied) when it cannot hold {@code tokens}. */
    private Decoder decoderFor(long tokens) {
        if (decoder != null && decoder.capacity() >= tokens) return decoder;
        if (decoder != null) decoder.close();
        decoder = null;
        // Some room beyond this prompt: the next trials' prompts differ by a few tokens.
        long capacity = tokens + Math.max(16, tokens / 16);
        decoder = new Decoder(model, rope, capacity, Decoder.RopeChange.RECOMPUTE, model.backend().prefillChunk());
        return decoder;
    }

    @Override
    public void close() {
        if (decoder != null) decoder.close();
        decoder = null;
    }
}
