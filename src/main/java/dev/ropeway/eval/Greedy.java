package dev.ropeway.eval;

import dev.ropeway.model.Decoder;
import dev.ropeway.model.Logits;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.RopeScaling;

import java.util.Arrays;

/**
 * Greedy decoding for every evaluation task, through the KV cache: the prompt is prefilled once, then each new
 * token costs one decode step. RoPE is planned at the sequence's total length at every step, and when that changes
 * the frequencies (E²'s g, CLEX's t, dynamic NTK crossing a boundary) the prefix is recomputed, so every token is the
 * one a whole-sequence forward of the same tokens would pick.
 */
public final class Greedy {
    private Greedy() {}

    /**
     * Up to {@code maxNew} tokens after {@code prompt}, each the most likely next token (the lowest id on ties),
     * stopping after {@code stopToken} when it is generated (negative: never stop early).
     */
    public static int[] decode(Transformer model, RopeScaling rope, int[] prompt, int maxNew, int stopToken) {
        if (prompt.length == 0) throw new IllegalArgumentException("greedy decoding needs a non-empty prompt");
        int[] out = new int[Math.max(0, maxNew)];
        int n = 0;
        if (maxNew <= 0) return out;
        try (Decoder decoder = new Decoder(model, rope, prompt.length + maxNew, Decoder.RopeChange.RECOMPUTE, model.backend().prefillChunk())) {
            float[] logits = decoder.append(prompt);
            while (true) {
                int best = Logits.argmax(logits);
                out[n++] = best;
                if (best == stopToken || n == maxNew) break;
                logits = decoder.next(best);
            }
        }
        return Arrays.copyOf(out, n);
    }
}
