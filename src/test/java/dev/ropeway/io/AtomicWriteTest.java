package dev.ropeway.io;

import dev.ropeway.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A write either completes and replaces the file, or fails and leaves the old file and no debris. */
class AtomicWriteTest {
    @TempDir Path dir;

    private List<Path> folderContent() throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.sorted().toList();
        }
    }

    private Path writeOriginal() {
        Path file = dir.resolve("model.safetensors");
        new SafeTensorsWriter().add("w", new float[] {1, 2, 3}, 3).write(file);
        return file;
    }

    @Test
    void invalidTensorIsRefusedBeforeTheOldFileIsTouched() throws IOException {
        Path file = writeOriginal();
        byte[] before = Files.readAllBytes(file);
        assertThrows(IllegalArgumentException.class,
                () -> new SafeTensorsWriter().add("w", new float[] {9, 9}, 3).write(file));
        assertArrayEquals(before, Files.readAllBytes(file));
        assertEquals(List.of(file), folderContent());
    }

    @Test
    void failureHalfwayThroughLeavesTheOldFileAndNoTempFile() throws IOException {
        Path file = writeOriginal();
        byte[] before = Files.readAllBytes(file);
        MemorySegment gone;
        try (Arena arena = Arena.ofConfined()) {
            gone = arena.allocate(4096);
        }
        // The first tensor is written to the temp file, then reading the second (freed) one fails.
        SafeTensorsWriter writer = new SafeTensorsWriter()
                .add("big", new float[1 << 18], 1 << 18)
                .add("freed", DType.U8, gone, 4096);
        assertThrows(IllegalStateException.class, () -> writer.write(file));
        assertArrayEquals(before, Files.readAllBytes(file));
        assertEquals(List.of(file), folderContent(), "the temp file was removed");
        try (SafeTensors st = SafeTensors.open(file)) {
            assertArrayEquals(new float[] {1, 2, 3}, st.readFloats("w"));
        }
    }

    @Test
    void unwritableTargetIsACheckpointError() {
        Path file = dir.resolve("missing-folder").resolve("model.safetensors");
        CheckpointException e = assertThrows(CheckpointException.class,
                () -> new SafeTensorsWriter().add("w", new float[] {1}, 1).write(file));
        assertTrue(e.getMessage().startsWith("cannot write " + file), e.getMessage());
    }

    @Test
    void replacingAMappedFileKeepsTheOpenMappingIntact() {
        Path file = writeOriginal();
        try (SafeTensors old = SafeTensors.open(file)) {
            // Save over the very file the weights were loaded from, straight from its mapping.
            new SafeTensorsWriter().add("w", new float[] {4, 5, 6, 7}, 4).add("copy", DType.F32, old.data("w"), 3).write(file);
            assertArrayEquals(new float[] {1, 2, 3}, old.readFloats("w"), "the old inode stays mapped");
        }
        try (SafeTensors fresh = SafeTensors.open(file)) {
            assertArrayEquals(new float[] {4, 5, 6, 7}, fresh.readFloats("w"));
            assertArrayEquals(new float[] {1, 2, 3}, fresh.readFloats("copy"));
        }
    }

    @Test
    void readersSeeOnlyCompleteFilesWhileAWriterReplacesThem() throws Exception {
        Path file = dir.resolve("live.safetensors");
        int n = 20_000;
        float[][] versions = new float[2][n];
        java.util.Arrays.fill(versions[0], 1f);
        java.util.Arrays.fill(versions[1], 2f);
        new SafeTensorsWriter().add("w", versions[0], n).write(file);
        AtomicBoolean done = new AtomicBoolean();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        AtomicInteger reads = new AtomicInteger();
        Thread reader = Thread.ofPlatform().start(() -> {
            try {
                while (!done.get()) {
                    try (SafeTensors st = SafeTensors.open(file)) {
                        float[] w = st.readFloats("w");
                        for (float v : w) if (v != w[0]) throw new AssertionError("mixed versions in one file");
                        reads.incrementAndGet();
                    }
                }
            } catch (Throwable t) {
                failure.set(t);
            }
        });
        for (int i = 0; i < 60; i++) new SafeTensorsWriter().add("w", versions[i % 2], n).write(file);
        done.set(true);
        reader.join();
        assertNull(failure.get(), () -> "reader saw a broken file: " + failure.get());
        assertTrue(reads.get() > 0);
        assertEquals(List.of(file), folderContent());
    }

    @Test
    void jsonIsReplacedAtomicallyToo() throws IOException {
        Path file = dir.resolve("report.json");
        Json.writeAtomic(file, Map.of("loss", 1.5));
        assertEquals(Map.of("loss", 1.5), Json.readObject(file));
        byte[] before = Files.readAllBytes(file);
        // An object Jackson cannot serialise fails before anything is written.
        assertThrows(IllegalArgumentException.class, () -> Json.writeAtomic(file, new Object()));
        assertArrayEquals(before, Files.readAllBytes(file));
        Json.writeAtomic(file, Map.of("loss", 0.5));
        assertEquals(Map.of("loss", 0.5), Json.readObject(file));
        assertEquals(List.of(file), folderContent());
    }
}
