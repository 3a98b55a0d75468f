package dev.ropeway.eval;

import dev.ropeway.io.ByteLevelBpeFixture;
import dev.ropeway.io.Json;
import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.rope.DefaultRope;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.SplittableRandom;

/** A random Llama small enough for end-to-end evaluation tests, with a byte-level tokenizer, and a tiny corpus. */
public final class TinyModels {
    private TinyModels() {}

    /** A random model trained (nominally) at {@code maxPositions} tokens, in {@code dir}. */
    public static Path model(Path dir, int maxPositions, long seed) {
        CheckpointWriter.writeRandom(dir, CheckpointWriter.llamaConfig(262, 32, 64, 2, 2, 2, 16, maxPositions,
                new DefaultRope(10000, 16), false), seed);
        ByteLevelBpeFixture.write(dir);
        Json.writeAtomic(dir.resolve("tokenizer_config.json"), Map.of("bos_token", "<s>", "eos_token", "</s>"));
        return dir;
    }

    /** A prepared-corpus folder whose heldout/ part has two documents of random words. */
    public static Path corpus(Path dir) {
        SplittableRandom r = new SplittableRandom(1);
        String[] words = {"the", "whale", "sea", "ship", "captain", "said", "and", "was", "of", "a", "to", "in", "his"};
        try {
            for (String split : new String[]{"train", "heldout"}) {
                Files.createDirectories(dir.resolve(split));
                for (int d = 0; d < 2; d++) {
                    StringBuilder sb = new StringBuilder();
                    for (int i = 0; i < 600; i++) sb.append(words[r.nextInt(words.length)]).append(i % 11 == 10 ? ".\n" : " ");
                    Files.writeString(dir.resolve(split).resolve("d" + d + ".txt"), sb);
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return dir;
    }
}
