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
            assertEquals(0, Greedy.decode(t, t.config().rope(), prompt, 0, -1).length);
        }
    }
}
