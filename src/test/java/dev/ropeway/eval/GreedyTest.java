package dev.ropeway.eval;

import dev.ropeway.model.Scorer;
import dev.ropeway.model.TokenBatch;
import dev.ropeway.model.Transformer;
import dev.ropeway.tensor.CpuBackend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class GreedyTest {

    @Test
    void eachTokenIsTheMostLikelyAfterEverythingBeforeIt(@TempDir Path dir) {
        TinyModels.model(dir, 64, 5);
        try (CpuBackend backend = new CpuBackend(); Transformer t = Transformer.load(backend, dir)) {
            int vocab = t.config().vocabSize();
            int[] prompt = {0, 71, 106, 103, 34, 119, 107, 99, 110, 103};
            int[] out = Greedy.decode(t, t.config().rope(), prompt, 6, -1);
            assertEquals(6, out.length);
            Scorer scorer = new Scorer(t);
            int[] seq = prompt;
            for (int step = 0; step < out.length; step++) {
                // The scorer's logits over the whole sequence; the last row predicts the next token.
                float[] logits = scorer.score(TokenBatch.of(seq, 1, seq.length), t.config().rope(), true).logits();
                int base = (seq.length - 1) * vocab, best = 0;
                for (int v = 1; v < vocab; v++) if (logits[base + v] > logits[base + best]) best = v;
                assertEquals(best, out[step], "token " + step);
                seq = Arrays.copyOf(seq, seq.length + 1);
                seq[seq.length - 1] = out[step];
            }
            // Asked to stop at the token it generates first, it returns just that token.
            assertArrayEquals(new int[]{out[0]}, Greedy.decode(t, t.config().rope(), prompt, 6, out[0]));
            // Among several stop tokens (a chat model's end of turn beside its EOS), whichever comes first stops it.
            try (Greedy g = new Greedy(t, t.config().rope())) {
                int third = out[2];
                int firstAt = 0;
                while (out[firstAt] != third) firstAt++;
                assertArrayEquals(Arrays.copyOf(out, firstAt + 1), g.decode(prompt, 6, new int[] {-1, 261, third}));
                assertArrayEquals(out, g.decode(prompt, 6, new int[0]));
            }
            assertEquals(0, Greedy.decode(t, t.config().rope(), prompt, 0, -1).length);
            // Limited to the ids below the greedy tokens' largest, it picks the best among those instead.
            int limit = Arrays.stream(out).max().getAsInt();
            try (Greedy g = new Greedy(t, t.config().rope(), limit)) {
                int[] limited = g.decode(prompt, 6, -1);
                for (int id : limited) assertTrue(id < limit, "id " + id);
                float[] logits = scorer.score(TokenBatch.of(prompt, 1, prompt.length), t.config().rope(), true).logits();
                int base = (prompt.length - 1) * vocab, best = 0;
                for (int v = 1; v < limit; v++) if (logits[base + v] > logits[base + best]) best = v;
                assertEquals(best, limited[0]);
            }
        }
    }

    /**
     * Prompts that share their start, on one cache: the shared part is kept, and every greedy answer and answer
     * log-likelihood is what a fresh cache and a whole forward give. Under E²'s length-dependent RoPE too, with
     * prompts and answers that cross its boundaries (the kept rows are then computed again).
     */
    @Test
    void promptsOnOneCacheGiveWhatFreshOnesGive(@TempDir Path dir) {
        TinyModels.model(dir, 64, 5);
        try (CpuBackend backend = new CpuBackend(); Transformer t = Transformer.load(backend, dir)) {
            checkSharedPrompts(t, t.config().rope());
            checkSharedPrompts(t, new dev.ropeway.rope.E2Rope(10000, 16, 16, 0, 8));
        }
    }

    private static void checkSharedPrompts(Transformer t, dev.ropeway.rope.RopeScaling rope) {
        java.util.SplittableRandom r = new java.util.SplittableRandom(9);
        int[] shared = new int[20];
        for (int i = 0; i < shared.length; i++) shared[i] = r.nextInt(t.config().vocabSize());
        Scorer scorer = new Scorer(t);
        try (Greedy g = new Greedy(t, rope)) {
            for (int trial = 0; trial < 4; trial++) {
                // Prompts of 45..27 tokens, answers of 9..3 (the first sizes the cache): E²'s g = ceil(length / 16)
                // changes between and within them.
                int[] prompt = Arrays.copyOf(shared, 45 - 6 * trial), answer = new int[9 - 2 * trial];
                for (int i = shared.length; i < prompt.length; i++) prompt[i] = r.nextInt(t.config().vocabSize());
                for (int i = 0; i < answer.length; i++) answer[i] = r.nextInt(t.config().vocabSize());
                long before = g.cachedTokens();
                double ll = g.logLikelihood(prompt, answer);
                if (trial > 0) assertTrue(g.cachedTokens() - before >= shared.length, "trial " + trial + " kept the shared start");
                int[] full = Arrays.copyOf(prompt, prompt.length + answer.length);
                System.arraycopy(answer, 0, full, prompt.length, answer.length);
                double[] lp = scorer.score(TokenBatch.of(full, 1, full.length), rope, false).logProbs(0, full.length);
                double want = 0;
                for (int i = 0; i < answer.length; i++) want += lp[prompt.length - 1 + i];
                assertEquals(want, ll, 1e-4 * Math.abs(want), "trial " + trial + "'s answer log-likelihood");
                before = g.cachedTokens();
                int[] out = g.decode(prompt, 6, -1);
                assertEquals(prompt.length - 1, g.cachedTokens() - before, "decoding after the answer's scoring keeps the prompt");
                assertArrayEquals(Greedy.decode(t, rope, prompt, 6, -1), out, "trial " + trial);
            }
        }
    }
}
