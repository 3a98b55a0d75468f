package dev.ropeway.train;

import dev.ropeway.RopewayException;
import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.model.ModelConfig;
import dev.ropeway.model.Recompute;
import dev.ropeway.model.TrainableModel;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.tensor.InstrumentedBackend;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TrainerTest {
    static CpuBackend backend;

    @BeforeAll
    static void open() { backend = new CpuBackend(); }

    @AfterAll
    static void close() { backend.close(); }

    static Map<String, Object> tinyConfig() {
        return CheckpointWriter.llamaConfig(64, 64, 128, 2, 4, 2, 16, 128, new DefaultRope(10000, 16), false);
    }

    /** Documents from a small grammar: predictable enough that a tiny model learns it in a few dozen steps. */
    static PackedTokens corpus(long seed, int docs) {
        SplittableRandom r = new SplittableRandom(seed);
        List<int[]> out = new ArrayList<>();
        for (int d = 0; d < docs; d++) {
            int len = 40 + r.nextInt(80);
            int[] doc = new int[len];
            int a = 3 + r.nextInt(20);
            for (int i = 0; i < len; i++) doc[i] = i % 4 == 3 ? 60 : 3 + (a + i * 7) % 50;
            out.add(doc);
        }
        return PackedTokens.pack(out, 1);
    }

    record Run(List<Double> losses, TrainingState state) {}

    static Run train(Path dir, long steps, long stopAfter, Path resumeFrom, double lr) {
        return train(backend, Recompute.OFF, dir, steps, stopAfter, resumeFrom, lr, null);
    }

    static Run train(Backend backend, Recompute recompute, Path dir, long steps, long stopAfter, Path resumeFrom, double lr,
                     List<String> memory) {
        Map<String, Object> json = tinyConfig();
        ModelConfig c = ModelConfig.parse(json, "test");
        OptimizerSettings opt = OptimizerSettings.defaults(lr, 5, steps);
        Trainer.Settings s = new Trainer.Settings(4, 32, 2, 7, 10, 3, 10, 4, recompute);
        List<Double> losses = new ArrayList<>();
        try (TrainableModel model = resumeFrom == null ? TrainableModel.random(backend, c, 11) : TrainableModel.load(backend, resumeFrom);
             Optimizer optimizer = new Optimizer(model, opt)) {
            Trainer trainer = new Trainer(model, optimizer, corpus(1, 200), corpus(2, 20), TrainingRope.fixed(c.rope()),
                    c.rope(), s, dir, json, null);
            if (memory != null) memory.add(trainer.memory().explanation());
            TrainingState start = resumeFrom == null ? trainer.initialState() : trainer.resumeFrom(resumeFrom);
            class Stop extends RuntimeException {}
            try {
                TrainingState end = trainer.run(start, report -> {
                    losses.add(report.loss());
                    if (report.step() == stopAfter) throw new Stop();
                });
                return new Run(losses, end);
            } catch (Stop stop) {
                return new Run(losses, null);
            }
        }
    }

    @Test
    void lossFallsAndResumeReproducesTheUninterruptedRun(@TempDir Path tmp) throws Exception {
        Run full = train(tmp.resolve("full"), 30, -1, null, 3e-3);
        double first = full.losses().getFirst(), last = full.losses().getLast();
        assertTrue(first > 3.5, "a fresh model starts near ln(64): " + first);
        assertTrue(last < first - 1.5, "loss must fall clearly: " + first + " -> " + last);
        assertEquals(30, full.state().step());
        assertEquals(30L * 4 * 32 * 2, full.state().tokens());

        // Killed after step 23: the last checkpoint is step 20; resuming from it replays 21..30 exactly.
        Path dir = tmp.resolve("resumed");
        Run killed = train(dir, 30, 23, null, 3e-3);
        assertEquals(23, killed.losses().size());
        Path latest = Checkpoints.latest(dir).orElseThrow();
        assertEquals(20, Checkpoints.stepOf(latest));
        Run resumed = train(dir, 30, -1, latest, 3e-3);
        double[] expect = full.losses().subList(20, 30).stream().mapToDouble(Double::doubleValue).toArray();
        double[] got = resumed.losses().stream().mapToDouble(Double::doubleValue).toArray();
        assertArrayEquals(expect, got, 0.0, "resumed losses must equal the uninterrupted run's");
        // Metrics: one line per step 1..30 (the killed run's 21..23 replaced), plus held-out evaluations.
        List<String> lines = Files.readAllLines(dir.resolve("metrics.jsonl"));
        assertEquals(30, lines.stream().filter(l -> l.contains("\"loss\"")).count());
        assertEquals(4, lines.stream().filter(l -> l.contains("heldout_loss")).count(), "steps 0, 10, 20, 30");
        assertEquals(3, Checkpoints.list(dir).size(), "keeps the newest 3 checkpoints");
    }

    @Test
    void automaticRecomputationStepsInWhenActivationsDoNotFitAndChangesNothing(@TempDir Path tmp) {
        // 128 KiB left: this model's buffers for 4 x 32 tokens (1.3 MiB keeping activations, 0.9 MiB recomputing) do not
        // fit, nor does the reserve kept for the ops' scratch.
        List<String> roomy = new ArrayList<>(), tight = new ArrayList<>();
        Run kept = train(InstrumentedBackend.of(backend).memoryAvailable(OptionalLong.of(8L << 30)).backend(), Recompute.AUTO,
                tmp.resolve("kept"), 6, -1, null, 3e-3, roomy);
        Run recomputed = train(InstrumentedBackend.of(backend).memoryAvailable(OptionalLong.of(128L << 10)).backend(), Recompute.AUTO,
                tmp.resolve("recomputed"), 6, -1, null, 3e-3, tight);
        assertTrue(roomy.getFirst().startsWith("keeping all activations"), roomy.getFirst());
        assertTrue(tight.getFirst().startsWith("recomputing activations in the backward: keeping them all would take"),
                tight.getFirst());
        assertEquals(6, recomputed.losses().size());
        double[] expect = kept.losses().stream().mapToDouble(Double::doubleValue).toArray();
        double[] got = recomputed.losses().stream().mapToDouble(Double::doubleValue).toArray();
        assertArrayEquals(expect, got, 0.0, "recomputing runs the same ops again: the same losses");
    }

    @Test
    void aDivergingRunStopsWithAClearMessageAndKeepsItsCheckpoint(@TempDir Path tmp) {
        RopewayException e = assertThrows(RopewayException.class, () -> train(tmp, 200, -1, null, 1e30));
        assertTrue(e.getMessage().contains("became") && e.getMessage().contains("Lower the learning rate"), e.getMessage());
    }

    @Test
    void resumingWithOtherSettingsIsRefused(@TempDir Path tmp) {
        train(tmp, 10, -1, null, 1e-3);
        Path ckpt = Checkpoints.latest(tmp).orElseThrow();
        Map<String, Object> json = tinyConfig();
        ModelConfig c = ModelConfig.parse(json, "test");
        try (TrainableModel model = TrainableModel.load(backend, ckpt);
             Optimizer optimizer = new Optimizer(model, OptimizerSettings.defaults(1e-3, 0, 20))) {
            Trainer trainer = new Trainer(model, optimizer, corpus(1, 50), null, TrainingRope.fixed(c.rope()), c.rope(),
                    new Trainer.Settings(4, 16, 2, 7, 10, 3, 0, 0, Recompute.OFF), tmp, json, null);
            RopewayException e = assertThrows(RopewayException.class, () -> trainer.resumeFrom(ckpt));
            assertTrue(e.getMessage().contains("seq = 32"), e.getMessage());
        }
    }
}
