package dev.ropeway.io;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A safetensors file, memory-mapped read-only as a whole. Tensors are slices of the mapping, so opening a
 * multi-gigabyte checkpoint costs only the header parse, and the OS pages weights in as they are touched.
 * The header is validated completely at {@link #open}: afterwards every listed tensor can be read.
 */
public final class SafeTensors implements AutoCloseable {
    private final Path path;
    private final Arena arena;
    private final MemorySegment file;
    private final SafeTensorsHeader header;
    private final Map<String, TensorInfo> byName;

    private SafeTensors(Path path, Arena arena, MemorySegment file, SafeTensorsHeader header) {
        this.path = path;
        this.arena = arena;
        this.file = file;
        this.header = header;
        this.byName = new HashMap<>();
        for (TensorInfo t : header.tensors()) byName.put(t.name(), t);
    }

    /** Maps {@code file} and validates its whole header; a {@link CheckpointException} names any problem. */
    public static SafeTensors open(Path file) {
        if (Files.isDirectory(file)) throw new CheckpointException(file + " is a folder, not a safetensors file");
        // A shared arena: the mapping is read by many threads (one per layer or matmul tile).
        Arena arena = Arena.ofShared();
        try {
            MemorySegment mapped;
            try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
                mapped = channel.map(FileChannel.MapMode.READ_ONLY, 0, channel.size(), arena);
            }
            return new SafeTensors(file, arena, mapped, SafeTensorsHeader.parse(file, mapped));
        } catch (NoSuchFileException e) {
            arena.close();
            throw new CheckpointException("no such file: " + file, e);
        } catch (IOException e) {
            arena.close();
            throw new CheckpointException("cannot read " + file + ": " + e.getMessage(), e);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    public Path path() {
        return path;
    }

    /** The "__metadata__" map of the header; empty when the file has none. */
    public Map<String, String> metadata() {
        return header.metadata();
    }

    /** Every tensor, in the order of their bytes in the file. */
    public List<TensorInfo> tensors() {
        return header.tensors();
    }

    /** The tensor called {@code name}, or null when the file has none. */
    public TensorInfo info(String name) {
        return byName.get(name);
    }

    /** The raw little-endian bytes of a tensor, as a read-only slice of the mapping (valid until {@link #close}). */
    public MemorySegment data(String name) {
        return slice(require(name));
    }

    /** The tensor's values converted to float32: F32, F16, BF16 and F64 tensors only. */
    public float[] readFloats(String name) {
        TensorInfo t = require(name);
        return FloatConversion.toFloats(slice(t), t.dtype(), t.elementCount(), "tensor '" + name + "' in " + path);
    }

    MemorySegment slice(TensorInfo t) {
        if (!arena.scope().isAlive()) throw new IllegalStateException(path + " is closed");
        return file.asSlice(t.offset(), t.byteSize()).asReadOnly();
    }

    private TensorInfo require(String name) {
        TensorInfo t = byName.get(name);
        if (t == null) throw new CheckpointException("no tensor '" + name + "' in " + path);
        return t;
    }

    /** Unmaps the file; slices handed out before become unusable. Closing twice is harmless. */
    @Override
    public void close() {
        if (arena.scope().isAlive()) arena.close();
    }
}
