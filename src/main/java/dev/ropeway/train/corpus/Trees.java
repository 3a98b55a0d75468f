package dev.ropeway.train.corpus;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.List;
import java.util.stream.Stream;

/** Folder helpers for the corpus steps, which build whole trees beside their final place and then swap them in. */
final class Trees {
    private Trees() {}

    /** Creates {@code dir} and its parents, failing with a message that names it. */
    static void createDirectories(Path dir) {
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new dev.ropeway.RopewayException("cannot create folder " + dir + ": " + e.getMessage());
        }
    }

    /** Deletes {@code dir} and everything under it (links are removed, never followed); absent is fine. */
    static void delete(Path dir) {
        try {
            dev.ropeway.io.FileTrees.delete(dir);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot delete " + dir, e);
        }
    }

    /** The regular files under {@code dir} (links not followed), sorted by path. */
    static List<Path> files(Path dir) {
        try (Stream<Path> walk = Files.walk(dir)) {
            return walk.filter(p -> Files.isRegularFile(p, java.nio.file.LinkOption.NOFOLLOW_LINKS)).sorted().toList();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list " + dir, e);
        }
    }

    /** {@code file}'s path under {@code root} with '/' separators, the form manifests use on every platform. */
    static String relative(Path root, Path file) {
        return root.relativize(file).toString().replace(java.io.File.separatorChar, '/');
    }
}
