package dev.ropeway.eval;

import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.model.ModelConfig;
import dev.ropeway.model.Scorer;
import dev.ropeway.model.TokenBatch;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.rope.E2Rope;
import dev.ropeway.tensor.CpuBackend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** Each protocol against the same numbers computed by hand from whole-window scores. */
class PerplexityTest {

    @Test
    void slidingWindowsScoreEveryTokenOnceWithTheirNewTokensOnly() {
        // doc 50, L 16, S 8: windows at 0, 8, 16, 24, 32, 34 (the last aligned to the end).
        List<int[]> w = Perplexity.sliding(50, 16, 8);
        assertEquals(List.of("0:0", "8:8", "16:8", "24:8", "32:8", "34:14"),
                w.stream().map(a -> a[0] + ":" + a[1]).toList());
        int[] scored = new int[50];
        for (int[] a : w) for (int i = Math.max(1, a[0] + a[1]); i < a[0] + 16; i++) scored[i]++;
        for (int i = 1; i < 50; i++) assertEquals(1, scored[i], "token " + i);
        assertEquals(List.of("0:0", "16:0", "32:0"), Perplexity.chunks(50, 16).stream().map(a -> a[0] + ":" + a[1]).toList());
    }

    @Test
    void protocolsMatchAHandComputation(@TempDir Path dir) {
        ModelConfig c = CheckpointWriter.writeRandom(dir, CheckpointWriter.llamaConfig(40, 32, 64, 2, 2, 2, 16, 64,
                new DefaultRope(10000, 16), false), 3);
        SplittableRandom r = new SplittableRandom(4);
        int[] doc = r.ints(50, 0, 40).toArray();
        try (CpuBackend backend = new CpuBackend(); Transformer t = Transformer.load(backend, dir)) {
            Scorer scorer = new Scorer(t);
            // chunks: three whole windows of 16, 15 predictions each.
            double sum = 0;
            for (int s = 0; s + 16 <= 50; s += 16)
                sum += scorer.score(TokenBatch.of(Arrays.copyOfRange(doc, s, s + 16), 1, 16), c.rope(), false).sumLoss();
            Perplexity.Result chunks = Perplexity.evaluate(t, c.rope(), List.of(doc), 16, PerplexityProtocol.CHUNKS, 0, 0, n -> { });
            assertEquals(45, chunks.tokens());
            assertEquals(sum / 45, chunks.loss(), 1e-9);
            // sliding: token i (1..49) scored by the window that first contains it, with that window's context.
            double slide = 0;
            for (int[] a : Perplexity.sliding(50, 16, 8)) {
                double[] losses = scorer.score(TokenBatch.of(Arrays.copyOfRange(doc, a[0], a[0] + 16), 1, 16), c.rope(), false)
                        .tokenLosses();
                for (int i = Math.max(0, a[1] - 1); i < 15; i++) slide += losses[i];
            }
            Perplexity.Result sliding = Perplexity.evaluate(t, c.rope(), List.of(doc), 16, PerplexityProtocol.SLIDING, 8, 0, n -> { });
            assertEquals(49, sliding.tokens());
            assertEquals(slide / 49, sliding.loss(), 1e-9);
            // A token budget stops after the window that reaches it.
            assertEquals(15, Perplexity.evaluate(t, c.rope(), List.of(doc), 16, PerplexityProtocol.CHUNKS, 0, 10, n -> { }).tokens());
        }
    }

    /**
     * prefill: each 16-token window in blocks of 8, the second block planned at 16 tokens. With E² (L0 = 8) g is 1
     * for the first block and 2 for the second; a one-layer model makes the re-rotated cache exact, so the hand
     * computation is the first block scored alone at g = 1 plus the second block's rows of the whole window at g = 2.
     */
    @Test
    void prefillProtocolMatchesAHandComputation(@TempDir Path dir) {
        E2Rope e2 = new E2Rope(10000, 16, 8, 0, 4);
        ModelConfig c = CheckpointWriter.writeRandom(dir, CheckpointWriter.withRope(CheckpointWriter.llamaConfig(40, 32, 64, 1,
                2, 2, 16, 64, new DefaultRope(10000, 16), false), e2, 64), 3);
        SplittableRandom r = new SplittableRandom(5);
        int[] doc = r.ints(40, 0, 40).toArray();
        try (CpuBackend backend = new CpuBackend(); Transformer t = Transformer.load(backend, dir)) {
            Scorer scorer = new Scorer(t);
            double sum = 0;
            for (int s = 0; s + 16 <= 40; s += 16) {
                int[] w = Arrays.copyOfRange(doc, s, s + 16);
                double[] first = scorer.score(TokenBatch.of(Arrays.copyOf(w, 9), 1, 9), new E2Rope(10000, 16, 8, 1, 4), false).tokenLosses();
                double[] whole = scorer.score(TokenBatch.of(w, 1, 16), e2, false).tokenLosses();
                for (int i = 0; i < 8; i++) sum += first[i];
                for (int i = 8; i < 15; i++) sum += whole[i];
            }
            Perplexity.Result prefill = Perplexity.evaluate(t, e2, List.of(doc), 16, PerplexityProtocol.PREFILL, 8, 0, n -> { });
            assertEquals(30, prefill.tokens());
            assertEquals(2, prefill.windows());
            assertEquals(sum / 30, prefill.loss(), 1e-5);
            // Without a length-dependent RoPE, prefill in blocks is the chunks protocol.
            Perplexity.Result chunks = Perplexity.evaluate(t, new DefaultRope(10000, 16), List.of(doc), 16, PerplexityProtocol.CHUNKS, 0, 0, n -> { });
            Perplexity.Result blocks = Perplexity.evaluate(t, new DefaultRope(10000, 16), List.of(doc), 16, PerplexityProtocol.PREFILL, 5, 0, n -> { });
            assertEquals(chunks.loss(), blocks.loss(), 1e-5);
            assertEquals(chunks.tokens(), blocks.tokens());
        }
    }
}
