package dev.ropeway.train;

import dev.ropeway.model.TrainableModel;
import dev.ropeway.tensor.CpuBackend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Kills (SIGKILL) a training process that writes a checkpoint after every step, at random moments, and checks each
 * time that the newest checkpoint left behind loads completely (weights, optimizer moments, state), and that a new
 * process resumes from it.
 */
class KillDuringCheckpointTest {

    @Test
    void aKilledRunAlwaysLeavesALoadableCheckpoint(@TempDir Path dir) throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        SplittableRandom random = new SplittableRandom(5);
        long lastStep = -1;
        for (int round = 0; round < 3; round++) {
            Process p = new ProcessBuilder(List.of(java, "--add-modules", "jdk.incubator.vector",
                    "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                    KillableTraining.class.getName(), dir.toString())).redirectError(ProcessBuilder.Redirect.DISCARD).start();
            try {
                killAtRandom(p, dir, random, lastStep);
            } finally {
                p.destroyForcibly();   // never leave a child training forever, whatever failed
            }
            assertTrue(p.waitFor(20, TimeUnit.SECONDS));
            Path latest = Checkpoints.latest(dir).orElseThrow(() -> new AssertionError("no checkpoint after the kill"));
            TrainingState state = Checkpoints.readState(latest);
            assertEquals(Checkpoints.stepOf(latest), state.step());
            try (CpuBackend backend = new CpuBackend(1);
                 TrainableModel model = TrainableModel.load(backend, latest);
                 Optimizer optimizer = new Optimizer(model, OptimizerSettings.defaults(1e-3, 0, 10))) {
                Checkpoints.readMoments(latest, model, optimizer);
            }
            assertTrue(state.step() > Math.max(0, lastStep), "progress in round " + round + ": " + state.step());
            lastStep = state.step();
        }
    }

    private static void killAtRandom(Process p, Path dir, SplittableRandom random, long lastStep) throws Exception {
        BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream()));
        String first = out.readLine();
        assertTrue(first != null && first.startsWith("started at "), "child said: " + first);
        long started = Long.parseLong(first.substring("started at ".length()));
        if (lastStep >= 0) assertEquals(lastStep, started, "resumes from the newest checkpoint");
        // Let it write at least one checkpoint of its own, then kill it at a random moment (a checkpoint a step,
        // so most kills land during a write).
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (Checkpoints.latest(dir).map(Checkpoints::stepOf).orElse(-1L) <= started && System.nanoTime() < deadline)
            Thread.sleep(5);
        Thread.sleep(random.nextInt(400));
        p.destroyForcibly();
    }
}
