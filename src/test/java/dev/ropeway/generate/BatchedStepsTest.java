package dev.ropeway.generate;

import dev.ropeway.RopewayException;
import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.model.Decoder;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.tensor.CpuBackend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/** Decode steps of concurrent generations combined into batched steps. */
class BatchedStepsTest {
    static final int VOCAB = 48;

    static Transformer model(Path dir, CpuBackend backend) {
        CheckpointWriter.writeRandom(dir, CheckpointWriter.llamaConfig(VOCAB, 32, 64, 2, 4, 2, 8, 128,
                new DefaultRope(10000, 8), false), 11);
        return Transformer.load(backend, dir);
    }

    /** Greedy tokens after {@code prompt}, each step through {@code steps}. */
    static int[] greedy(Decoder d, int[] prompt, int n, Generator.Steps steps) {
        int[] out = new int[n];
        try {
            float[] logits = d.append(prompt);
            for (int i = 0; i < n; i++) {
                int best = 0;
                for (int v = 1; v < logits.length; v++) if (logits[v] > logits[best]) best = v;
                out[i] = best;
                if (i + 1 < n) logits = steps.next(d, best);
            }
        } finally {
            steps.done(d);
        }
        return out;
    }

    @Test
    void concurrentGenerationsShareStepsAndGetTheirOwnTokens(@TempDir Path dir) throws Exception {
        try (CpuBackend backend = new CpuBackend(2); Transformer t = model(dir, backend);
             ExecutorService pool = Executors.newFixedThreadPool(4)) {
            int[][] prompts = {{1, 2, 3}, {4, 5, 6, 7, 8, 9}, {10}, {11, 12, 13, 14}};
            int[] lengths = {30, 18, 40, 25};
            int[][] expected = new int[prompts.length][];
            for (int i = 0; i < prompts.length; i++)
                try (Decoder d = new Decoder(t, t.config().rope(), 64)) {
                    expected[i] = greedy(d, prompts[i], lengths[i], Generator.Steps.ALONE);
                }
            // Every generation joins before it starts, and a member that has not asked yet is waited for (up to a
            // minute), so every step carries every generation that has steps left, however the threads are scheduled.
            BatchedSteps steps = new BatchedSteps(4, TimeUnit.SECONDS.toNanos(60), TimeUnit.SECONDS.toNanos(60));
            CyclicBarrier start = new CyclicBarrier(prompts.length);
            List<Future<int[]>> results = new ArrayList<>();
            for (int i = 0; i < prompts.length; i++) {
                int k = i;
                results.add(pool.submit(() -> {
                    try (Decoder d = new Decoder(t, t.config().rope(), 64)) {
                        steps.join(d);
                        start.await();
                        return greedy(d, prompts[k], lengths[k], steps);
                    }
                }));
            }
            for (int i = 0; i < prompts.length; i++)
                assertArrayEquals(expected[i], results.get(i).get(60, TimeUnit.SECONDS), "generation " + i);
            long rows = Arrays.stream(lengths).map(n -> n - 1).sum();
            assertEquals(rows, steps.rows(), "every step after the first token went through the batcher");
            // Generations of 17 to 39 steps: 39 steps, the first 17 of them carrying all four.
            assertEquals(Arrays.stream(lengths).max().orElseThrow() - 1, steps.steps(), "batched steps");
        }
    }

    /** A member that does not ask in time does not stop the others; one that fails fails alone. */
    @Test
    void aSlowOrFailingMemberHoldsNoOneUp(@TempDir Path dir) throws Exception {
        try (CpuBackend backend = new CpuBackend(2); Transformer t = model(dir, backend);
             Decoder slow = new Decoder(t, t.config().rope(), 64); Decoder quick = new Decoder(t, t.config().rope(), 64);
             Decoder full = new Decoder(t, t.config().rope(), 3); Decoder other = new Decoder(t, t.config().rope(), 64);
             ExecutorService pool = Executors.newFixedThreadPool(2)) {
            BatchedSteps steps = new BatchedSteps(4);
            slow.append(new int[]{1, 2});
            quick.append(new int[]{3, 4});
            steps.next(slow, 5);          // slow is a member from now on, and asks for nothing more for a while
            long t0 = System.nanoTime();
            for (int i = 0; i < 5; i++) steps.next(quick, 6 + i);
            assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(5), "the quick member's steps went on without the slow one");
            steps.done(slow);
            steps.done(quick);

            full.append(new int[]{1, 2, 3});
            other.append(new int[]{4});
            CyclicBarrier both = new CyclicBarrier(2);
            Future<float[]> fine = pool.submit(() -> {
                both.await();
                return steps.next(other, 7);
            });
            Future<Throwable> failed = pool.submit(() -> {
                both.await();
                try {
                    steps.next(full, 8);
                    return null;
                } catch (RopewayException e) {
                    return e;
                }
            });
            Throwable e = failed.get(30, TimeUnit.SECONDS);
            assertNotNull(e, "a full context fails its own step");
            assertTrue(e.getMessage().contains("the context is full"), e.getMessage());
            float[] logits = fine.get(30, TimeUnit.SECONDS);
            assertEquals(VOCAB, logits.length);
            assertEquals(2, other.length(), "the other sequence got its step");
            assertEquals(3, full.length());
        }
    }
}
