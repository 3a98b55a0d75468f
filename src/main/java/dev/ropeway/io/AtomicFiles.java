package dev.ropeway.io;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.HexFormat;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Replaces a file so that a reader (or a crash) sees either the old complete file or the new complete one, never
 * a half-written checkpoint: write a temp file beside the target, fsync it, then rename it over the target.
 */
final class AtomicFiles {

    /** Writes the content of a file through an open channel. */
    @FunctionalInterface
    interface Body {
        void writeTo(FileChannel channel) throws IOException;
    }

    private AtomicFiles() {}

    static void write(Path target, Body body) {
        Path absolute = target.toAbsolutePath();
        Path dir = absolute.getParent();
        // Same folder, so the rename stays on one file system and is atomic. Hidden, so tools listing the folder
        // do not mistake it for a checkpoint while it is being written.
        Path temp = dir.resolve("." + absolute.getFileName() + "."
                + HexFormat.of().toHexDigits(ThreadLocalRandom.current().nextLong()) + ".tmp");
        boolean moved = false;
        try {
            // CREATE_NEW with the default permissions: the result must be as readable as any file the user makes.
            try (FileChannel channel = FileChannel.open(temp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                body.writeTo(channel);
                channel.force(true);
            }
            try {
                Files.move(temp, absolute, StandardCopyOption.ATOMIC_MOVE);
            } catch (AtomicMoveNotSupportedException e) {
                throw new CheckpointException("cannot write " + target + ": its file system cannot rename atomically", e);
            }
            moved = true;
            syncDirectory(dir);
        } catch (IOException e) {
            throw new CheckpointException("cannot write " + target + ": " + e, e);
        } finally {
            if (!moved) deleteQuietly(temp);
        }
    }

    /** Makes the rename itself durable. Not every platform can open a folder for this; there it is skipped. */
    private static void syncDirectory(Path dir) {
        try (FileChannel channel = FileChannel.open(dir, StandardOpenOption.READ)) {
            channel.force(true);
        } catch (IOException | UnsupportedOperationException e) {
            // The file itself is complete and renamed; only durability across a power cut is weaker.
        }
    }

    private static void deleteQuietly(Path temp) {
        try {
            Files.deleteIfExists(temp);
        } catch (IOException e) {
            // Best effort: the failure that brought us here is the one worth reporting.
        }
    }
}
