package dev.ropeway.eval;

import dev.ropeway.model.TokenBatch;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.RopeScaling;

import java.util.Arrays;

/**
 * Greedy decoding for every evaluation task: the one place tokens are generated, so that a decoder with a KV cache
 * replaces this full recomputation for all of them at once.
 *
 * <p>For now each new token costs a forward pass over the whole sequence so far (prompt plus what was generated),
 * with the RoPE method seeing that sequence's length, exactly as a cache-free reference implementation does.
 */
public final class Greedy {
    private Greedy() {}

    /**
     * Up to {@code maxNew} tokens after {@code prompt}, each the most likely next token (the lowest id on ties),
     * stopping after {@code stopToken} when it is generated (negative: never stop early).
     */
    public static int[] decode(Transformer model, RopeScaling rope, int[] prompt, int maxNew, int stopToken) {
        if (prompt.length == 0) throw new IllegalArgumentException("greedy decoding needs a non-empty prompt");
        int vocab = model.config().vocabSize();
        float[] last = new float[vocab];
        int[] seq = Arrays.copyOf(prompt, prompt.length + Math.max(0, maxNew));
        int len = prompt.length;
        for (int step = 0; step < maxNew; step++) {
            int n = len;
            model.forward(TokenBatch.of(Arrays.copyOf(seq, n), 1, n), rope, (first, rows, logits) -> {
                if (first + rows == n) model.backend().download(logits, (long) (rows - 1) * vocab, last, 0, vocab);
            });
            int best = 0;
            for (int v = 1; v < vocab; v++) if (last[v] > last[best]) best = v;
            seq[len++] = best;
            if (best == stopToken) break;
        }
        return Arrays.copyOfRange(seq, prompt.length, len);
    }
}
