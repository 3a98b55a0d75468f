package dev.ropeway.tensor;

import org.junit.jupiter.api.Test;

import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

/** Two threads sharing one backend get exactly the results each gets alone. */
class ConcurrencyTest {
    private record Work(Tensor x, Tensor w, Tensor y, Tensor q, Tensor out, AttentionShape shape) {}

    private static float[] run(CpuBackend cpu, Work work) {
        cpu.linear(work.y(), work.x(), work.w(), null, 96, 64, 80);
        cpu.attention(work.out(), work.q(), work.q(), work.q(), null, work.shape());
        float[] result = new float[(int) (work.y().size() + work.out().size())];
        cpu.download(work.y(), 0, result, 0, (int) work.y().size());
        cpu.download(work.out(), 0, result, (int) work.y().size(), (int) work.out().size());
        return result;
    }

    @Test
    void concurrentCallersGetTheSameResults() throws Exception {
        try (CpuBackend cpu = new CpuBackend(3); ExecutorService callers = Executors.newFixedThreadPool(2)) {
            List<Work> works = new ArrayList<>();
            List<float[]> alone = new ArrayList<>();
            for (int c = 0; c < 2; c++) {
                Random rnd = new Random(c);
                AttentionShape shape = AttentionShape.selfAttention(1, 150, 4, 2, 32);
                Work w = new Work(cpu.upload(GemmTest.random(rnd, 96 * 64)), cpu.upload(GemmTest.random(rnd, 80 * 64)),
                        cpu.allocate(96 * 80), cpu.upload(GemmTest.random(rnd, 150 * 4 * 32)), cpu.allocate(150 * 4 * 32), shape);
                works.add(w);
                alone.add(run(cpu, w));
            }
            List<Future<?>> futures = new ArrayList<>();
            for (int c = 0; c < 2; c++) {
                int caller = c;
                futures.add(callers.submit(() -> {
                    for (int i = 0; i < 30; i++) assertArrayEquals(alone.get(caller), run(cpu, works.get(caller)));
                    return null;
                }));
            }
            for (Future<?> f : futures) f.get();
        }
    }
}
