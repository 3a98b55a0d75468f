package dev.ropeway.train;

import dev.ropeway.io.FileTrees;
import dev.ropeway.RopewayException;
import dev.ropeway.io.Json;
import dev.ropeway.io.SafeTensorsWriter;
import dev.ropeway.model.TrainableModel;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.Tensor;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Stream;

/**
 * Training checkpoints inside a run folder: {@code checkpoint-<step>/}, each a complete Hugging Face folder
 * ({@code config.json}, {@code model.safetensors}, tokenizer files) plus {@code optimizer.safetensors} (AdamW
 * moments) and {@code training_state.json}. A checkpoint is built in a hidden temporary folder and renamed into place
 * in one step, so a run killed at any moment leaves only complete checkpoints; leftovers of an interrupted write
 * are deleted by the next one.
 */
public final class Checkpoints {
    public static final String STATE = "training_state.json", OPTIMIZER = "optimizer.safetensors";
    private static final String PREFIX = "checkpoint-";
    private static final List<String> TOKENIZER_FILES = List.of("tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "tokenizer.model");

    private Checkpoints() {}

    /** Writes checkpoint {@code state.step()} and keeps only the newest {@code keep}. Returns its folder. */
    public static Path write(Path runDir, TrainableModel model, Optimizer optimizer, TrainingState state,
                             Map<String, Object> configJson, Path tokenizerDir, int keep) {
        Path target = runDir.resolve(PREFIX + state.step());
        Path temp = runDir.resolve("." + PREFIX + state.step() + ".tmp");
        try {
            Files.createDirectories(runDir);
            FileTrees.delete(temp);
            Files.createDirectories(temp);
            model.save(temp, configJson);
            copyTokenizer(tokenizerDir, temp);
            writeMoments(temp.resolve(OPTIMIZER), model, optimizer);
            Json.writeAtomic(temp.resolve(STATE), state.toJson());
            FileTrees.delete(target);
            Files.move(temp, target, StandardCopyOption.ATOMIC_MOVE);
            syncDirectory(runDir);
        } catch (IOException e) {
            throw new RopewayException("cannot write checkpoint " + target + ": " + e.getMessage());
        }
        prune(runDir, keep);
        return target;
    }

    /** Copies the tokenizer files found in {@code from} (if any) into {@code to}. */
    public static void copyTokenizer(Path from, Path to) throws IOException {
        if (from == null) return;
        for (String name : TOKENIZER_FILES) {
            Path f = from.resolve(name);
            if (Files.isRegularFile(f)) Files.copy(f, to.resolve(name), StandardCopyOption.REPLACE_EXISTING);
        }
    }

    private static void writeMoments(Path file, TrainableModel model, Optimizer optimizer) {
        Backend b = model.backend();
        long n = model.layout().totalSize();
        if (n > Integer.MAX_VALUE) throw new RopewayException("optimizer state of " + n + " floats is too large to save");
        float[] m = new float[(int) n], v = new float[(int) n];
        b.download(optimizer.firstMoment(), 0, m, 0, m.length);
        b.download(optimizer.secondMoment(), 0, v, 0, v.length);
        new SafeTensorsWriter().metadata("layout", "ropeway flat parameter layout")
                .add("adamw.m", m, n).add("adamw.v", v, n).write(file);
    }

    /** Loads the moments saved by {@link #write} into {@code optimizer}. */
    public static void readMoments(Path checkpoint, TrainableModel model, Optimizer optimizer) {
        Path file = checkpoint.resolve(OPTIMIZER);
        try (dev.ropeway.io.SafeTensors st = dev.ropeway.io.SafeTensors.open(file)) {
            long n = model.layout().totalSize();
            for (String name : List.of("adamw.m", "adamw.v")) {
                var info = st.info(name);
                if (info == null || info.elementCount() != n)
                    throw new RopewayException(file + ": tensor " + name + " missing or not " + n + " floats (was the model changed?)");
            }
            Backend b = model.backend();
            try (Tensor m = b.upload(st.readFloats("adamw.m")); Tensor v = b.upload(st.readFloats("adamw.v"))) {
                b.copy(optimizer.firstMoment(), 0, m, 0, n);
                b.copy(optimizer.secondMoment(), 0, v, 0, n);
            }
        }
    }

    /**
     * The checkpoint a run in {@code runDir} starts from: none for a fresh run; the newest one with {@code resume}.
     * A folder that already holds a run is refused without {@code resume}, so nothing is overwritten by mistake.
     */
    public static Optional<Path> startingPoint(Path runDir, boolean resume, java.util.function.Consumer<String> log) {
        Optional<Path> latest = latest(runDir);
        if (latest.isPresent() && !resume)
            throw new RopewayException(runDir + " already holds a run (" + latest.get().getFileName()
                    + "); pass --resume to continue it, or choose another --out");
        if (latest.isEmpty() && resume) log.accept("no checkpoint in " + runDir + " yet: starting from scratch");
        return latest;
    }

    /** Writes a finished run's Hugging Face folder (config, weights, tokenizer files) at the top of {@code runDir}. */
    public static void writeFinal(Path runDir, TrainableModel model, Map<String, Object> configJson, Path tokenizerDir) {
        model.save(runDir, configJson);
        try {
            copyTokenizer(tokenizerDir, runDir);
        } catch (IOException e) {
            throw new RopewayException("cannot copy the tokenizer into " + runDir + ": " + e.getMessage());
        }
    }

    /** The newest complete checkpoint of a run, if any. */
    public static Optional<Path> latest(Path runDir) {
        return list(runDir).stream().reduce((a, b) -> b);
    }

    /** Complete checkpoints, oldest first. */
    public static List<Path> list(Path runDir) {
        if (!Files.isDirectory(runDir)) return List.of();
        try (Stream<Path> s = Files.list(runDir)) {
            return s.filter(p -> p.getFileName().toString().matches(PREFIX + "\\d+"))
                    .filter(p -> Files.isRegularFile(p.resolve(STATE)))
                    .sorted(Comparator.comparingLong(Checkpoints::stepOf))
                    .toList();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    public static long stepOf(Path checkpoint) {
        return Long.parseLong(checkpoint.getFileName().toString().substring(PREFIX.length()));
    }

    public static TrainingState readState(Path checkpoint) {
        Path f = checkpoint.resolve(STATE);
        return TrainingState.fromJson(Json.readObject(f), f.toString());
    }

    private static void prune(Path runDir, int keep) {
        List<Path> all = new ArrayList<>(list(runDir));
        while (all.size() > Math.max(1, keep)) {
            try {
                FileTrees.delete(all.removeFirst());
            } catch (IOException e) {
                return; // an old checkpoint that cannot be deleted costs disk, not correctness
            }
        }
    }


    private static void syncDirectory(Path dir) {
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        } catch (IOException e) {
            // Some file systems cannot sync a directory; the rename itself is still atomic.
        }
    }
}
