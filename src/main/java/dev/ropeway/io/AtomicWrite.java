package dev.ropeway.io;

import java.nio.ByteBuffer;
import java.nio.file.Path;

/** Public entry to the atomic file replacement the checkpoint writers use (temp file, fsync, rename). */
public final class AtomicWrite {
    private AtomicWrite() {}

    /** Replaces {@code file} with {@code bytes} so that a crash leaves either the old file or the new one. */
    public static void bytes(Path file, byte[] bytes) {
        AtomicFiles.write(file, channel -> {
            ByteBuffer b = ByteBuffer.wrap(bytes);
            while (b.hasRemaining()) channel.write(b);
        });
    }
}
