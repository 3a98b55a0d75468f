package dev.ropeway.train;

import dev.ropeway.model.ModelConfig;
import dev.ropeway.model.Recompute;
import dev.ropeway.model.TrainableModel;
import dev.ropeway.tensor.CpuBackend;

import java.nio.file.Path;
import java.util.Map;

/** A child process for {@link KillDuringCheckpointTest}: trains the tiny model, checkpointing after every step, forever. */
public final class KillableTraining {
    public static void main(String[] args) {
        Path dir = Path.of(args[0]);
        // The test keeps our stdin open; when it ends (or dies) stdin closes and so do we.
        Thread watchdog = new Thread(() -> {
            try {
                while (System.in.read() >= 0) { }
            } catch (java.io.IOException ignored) {
            }
            Runtime.getRuntime().halt(3);
        });
        watchdog.setDaemon(true);
        watchdog.start();
        Map<String, Object> json = TrainerTest.tinyConfig();
        ModelConfig c = ModelConfig.parse(json, "test");
        try (CpuBackend backend = new CpuBackend(1)) {
            java.util.Optional<Path> latest = Checkpoints.latest(dir);
            try (TrainableModel model = latest.isPresent() ? TrainableModel.load(backend, latest.get()) : TrainableModel.random(backend, c, 1);
                 Optimizer optimizer = new Optimizer(model, OptimizerSettings.defaults(1e-3, 0, 1_000_000))) {
                Trainer trainer = new Trainer(model, optimizer, TrainerTest.corpus(1, 100), null,
                        TrainingRope.fixed(c.rope()), c.rope(), new Trainer.Settings(2, 16, 1, 3, 1, 2, 0, 0, Recompute.OFF),
                        dir, json, null);
                TrainingState start = latest.map(trainer::resumeFrom).orElseGet(trainer::initialState);
                System.out.println("started at " + start.step());
                System.out.flush();
                trainer.run(start, report -> {});
            }
        }
    }
}
