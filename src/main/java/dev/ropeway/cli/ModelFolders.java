package dev.ropeway.cli;

import dev.ropeway.eval.Evaluation;
import dev.ropeway.model.GgufCache;

import java.nio.file.Path;

/** {@code --model} as the commands read it: a checkpoint folder, or a GGUF file read through its cached import. */
final class ModelFolders {
    private ModelFolders() {}

    /** {@code model} itself, or for a GGUF file the folder of its import (made on first use, said on stderr). */
    static Path resolve(Path model) {
        if (!GgufCache.isGguf(model)) return model;
        return GgufCache.folder(model, message -> System.err.println("ropeway: " + message));
    }

    /** The name a model goes by: its folder's, or its GGUF file's without the extension. */
    static String name(Path model) {
        Path f = model.toAbsolutePath().normalize().getFileName();
        String n = f == null ? "model" : f.toString();
        return GgufCache.isGguf(model) ? n.replaceFirst("(?i)\\.gguf$", "") : n;
    }

    /** The same target, reading a GGUF file's import; its name stays the one given. */
    static Evaluation.Target resolve(Evaluation.Target t) {
        Path folder = resolve(t.model());
        return folder.equals(t.model()) ? t : new Evaluation.Target(t.name(), folder, t.rope());
    }
}
