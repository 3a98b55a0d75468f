package dev.ropeway.io;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A GGUF file read back (versions 2 and 3, little-endian), memory-mapped: its metadata in file order, its tensor
 * infos and their data. Every length and offset is checked against the file before use, so a truncated or
 * corrupt file gives a message naming what is wrong rather than an exception from deep inside.
 */
public final class GgufFile implements AutoCloseable {
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfDouble F64 = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /**
     * One tensor: dimensions in ggml order ({@code ne[0]} fastest-moving), type, offset relative to the data
     * section and size in bytes.
     */
    public record Tensor(String name, long[] ne, GgmlType type, long offset, long byteSize) {
        public Tensor {
            ne = ne.clone();
        }

        @Override
        public long[] ne() { return ne.clone(); }

        /** The row-major shape (ne reversed), as Hugging Face writes it. */
        public long[] shape() {
            long[] s = new long[ne.length];
            for (int i = 0; i < ne.length; i++) s[i] = ne[ne.length - 1 - i];
            return s;
        }

        public long elements() {
            long n = 1;
            for (long d : ne) n *= d;
            return n;
        }
    }

    private final Path path;
    private final Arena arena;
    private final MemorySegment file;
    private final int version;
    private final Map<String, GgufValue> metadata;
    private final Map<String, Tensor> tensors;
    private final long alignment;
    private final long dataOffset;

    private GgufFile(Path path, Arena arena, MemorySegment file, int version, Map<String, GgufValue> metadata,
                     Map<String, Tensor> tensors, long alignment, long dataOffset) {
        this.path = path;
        this.arena = arena;
        this.file = file;
        this.version = version;
        this.metadata = metadata;
        this.tensors = tensors;
        this.alignment = alignment;
        this.dataOffset = dataOffset;
    }

    public static GgufFile open(Path path) {
        Arena arena = Arena.ofShared();
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            MemorySegment file = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size(), arena);
            return parse(path, arena, file);
        } catch (IOException e) {
            arena.close();
            throw new CheckpointException("cannot read " + path + ": " + e.getMessage(), e);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    private static GgufFile parse(Path path, Arena arena, MemorySegment file) {
        Cursor c = new Cursor(path, file);
        if (file.byteSize() < 24) throw c.error("is too short for a GGUF header (" + file.byteSize() + " bytes)");
        int magic = c.i32("magic");
        if (magic != GgufWriter.MAGIC) throw c.error("is not a GGUF file (magic " + String.format("0x%08x", magic) + ")");
        int version = c.i32("version");
        if (version != 2 && version != 3)
            throw c.error("has GGUF version " + version + "; this reader knows versions 2 and 3");
        long tensorCount = c.count("tensor count");
        long keyCount = c.count("metadata key count");
        Map<String, GgufValue> metadata = new LinkedHashMap<>();
        for (long i = 0; i < keyCount; i++) {
            String key = c.string("metadata key " + i);
            GgufValue.Type type = c.type("value type of " + key);
            GgufValue value;
            if (type == GgufValue.Type.ARRAY) {
                GgufValue.Type element = c.type("element type of " + key);
                if (element == GgufValue.Type.ARRAY) throw c.error("key " + key + " holds nested arrays, which this reader does not read");
                long n = c.count("length of " + key);
                List<Object> list = new ArrayList<>((int) Math.min(n, 1 << 20));
                for (long j = 0; j < n; j++) list.add(c.scalar(element, key + "[" + j + "]"));
                value = new GgufValue(type, list, element);
            } else {
                value = new GgufValue(type, c.scalar(type, key), null);
            }
            if (metadata.put(key, value) != null) throw c.error("repeats metadata key " + key);
        }
        long alignment = GgufWriter.ALIGNMENT;
        GgufValue a = metadata.get("general.alignment");
        if (a != null) {
            if (!a.type().isInteger()) throw c.error("has general.alignment of type " + a.describe() + ", not an integer");
            alignment = a.asLong();
            if (alignment <= 0 || Long.bitCount(alignment) != 1)
                throw c.error("has general.alignment " + alignment + ", not a power of two");
        }
        Map<String, Tensor> tensors = new LinkedHashMap<>();
        for (long i = 0; i < tensorCount; i++) {
            String name = c.string("tensor name " + i);
            long dims = Integer.toUnsignedLong(c.i32("dimension count of " + name));
            if (dims == 0 || dims > GgufWriter.MAX_DIMS)
                throw c.error("tensor " + name + " has " + dims + " dimensions; GGUF allows 1.." + GgufWriter.MAX_DIMS);
            long[] ne = new long[(int) dims];
            long elements = 1;
            for (int d = 0; d < dims; d++) {
                ne[d] = c.i64("dimension " + d + " of " + name);
                if (ne[d] <= 0) throw c.error("tensor " + name + " has dimension " + d + " = " + ne[d]);
                try {
                    elements = Math.multiplyExact(elements, ne[d]);
                } catch (ArithmeticException e) {
                    throw c.error("tensor " + name + " has more elements than a long counts");
                }
            }
            long typeId = Integer.toUnsignedLong(c.i32("type of " + name));
            GgmlType type = GgmlType.byId(typeId);
            if (type == null) throw c.error("tensor " + name + " has ggml type id " + typeId + ", unknown to this reader");
            long offset = c.i64("offset of " + name);
            if (offset < 0 || offset % alignment != 0)
                throw c.error("tensor " + name + " starts at data offset " + offset + ", not a multiple of the alignment " + alignment);
            long bytes;
            try {
                bytes = type.byteSize(elements, ne[0]);
            } catch (IllegalArgumentException e) {
                throw c.error("tensor " + name + ": " + e.getMessage());
            }
            if (tensors.put(name, new Tensor(name, ne, type, offset, bytes)) != null) throw c.error("repeats tensor " + name);
        }
        long dataOffset = (c.position + alignment - 1) / alignment * alignment;
        for (Tensor t : tensors.values()) {
            if (dataOffset + t.offset() + t.byteSize() > file.byteSize())
                throw c.error("tensor " + t.name() + " runs past the end of the file (data at " + (dataOffset + t.offset())
                        + " + " + t.byteSize() + " bytes, file " + file.byteSize() + " bytes); the file is truncated");
        }
        List<Tensor> byOffset = new ArrayList<>(tensors.values());
        byOffset.sort((x, y) -> Long.compare(x.offset(), y.offset()));
        for (int i = 1; i < byOffset.size(); i++) {
            Tensor prev = byOffset.get(i - 1), t = byOffset.get(i);
            if (prev.offset() + prev.byteSize() > t.offset())
                throw c.error("tensors " + prev.name() + " and " + t.name() + " overlap");
        }
        return new GgufFile(path, arena, file, version, Collections.unmodifiableMap(metadata),
                Collections.unmodifiableMap(tensors), alignment, dataOffset);
    }

    public Path path() { return path; }

    public int version() { return version; }

    /** Every key in file order. */
    public Map<String, GgufValue> metadata() { return metadata; }

    /** Every tensor in file order. */
    public Map<String, Tensor> tensors() { return tensors; }

    public long alignment() { return alignment; }

    /** Where the data section starts, from the start of the file. */
    public long dataOffset() { return dataOffset; }

    public long fileSize() { return file.byteSize(); }

    /** The value of {@code key}; a {@link CheckpointException} naming the file when it is absent. */
    public GgufValue value(String key) {
        GgufValue v = metadata.get(key);
        if (v == null) throw new CheckpointException(path + " has no metadata key " + key);
        return v;
    }

    public Tensor tensor(String name) {
        Tensor t = tensors.get(name);
        if (t == null) throw new CheckpointException(path + " has no tensor " + name);
        return t;
    }

    /** The raw bytes of a tensor, a slice of the mapped file (valid until {@link #close}). */
    public MemorySegment data(String name) {
        Tensor t = tensor(name);
        return file.asSlice(dataOffset + t.offset(), t.byteSize());
    }

    /**
     * A tensor's values as float32 in row-major order, for every type {@link GgmlDequant} converts (the plain
     * floats, the legacy and k-quants, IQ4_NL / IQ4_XS and MXFP4).
     */
    public float[] floats(String name) {
        Tensor t = tensor(name);
        if (t.elements() > Integer.MAX_VALUE - 8)
            throw new CheckpointException("tensor " + name + " in " + path + " is too large to read into one array");
        if (!GgmlDequant.supports(t.type()))
            throw new CheckpointException("tensor " + name + " in " + path + " is " + t.type() + ", which this version "
                    + "does not convert to floats (it reads " + GgmlDequant.supported() + "); requantize the file to one "
                    + "of those (llama-quantize --allow-requantize ... Q4_K_M) or use an F16 / Q8_0 GGUF");
        int n = (int) t.elements();
        float[] out = new float[n];
        if (t.type() == GgmlType.F32) MemorySegment.copy(data(name), F32, 0, out, 0, n);
        else GgmlDequant.toFloats(t.type(), data(name), n, out, 0);
        return out;
    }

    @Override
    public void close() {
        arena.close();
    }

    /** Reads the header fields in order, each bounds-checked against the file. */
    private static final class Cursor {
        final Path path;
        final MemorySegment file;
        long position;

        Cursor(Path path, MemorySegment file) {
            this.path = path;
            this.file = file;
        }

        CheckpointException error(String what) {
            return new CheckpointException(path + " " + what);
        }

        private void need(long bytes, String what) {
            if (bytes < 0 || position + bytes > file.byteSize())
                throw error("is truncated: " + what + " at byte " + position + " runs past the end (" + file.byteSize() + " bytes)");
        }

        int i32(String what) {
            need(4, what);
            int v = file.get(I32, position);
            position += 4;
            return v;
        }

        long i64(String what) {
            need(8, what);
            long v = file.get(I64, position);
            position += 8;
            return v;
        }

        /** A uint64 count, which must leave at least one byte per item in the file. */
        long count(String what) {
            long n = i64(what);
            if (n < 0 || n > file.byteSize() - position)
                throw error("has " + what + " " + Long.toUnsignedString(n) + ", more than the file can hold");
            return n;
        }

        GgufValue.Type type(String what) {
            long id = Integer.toUnsignedLong(i32(what));
            GgufValue.Type t = GgufValue.Type.byId(id);
            if (t == null) throw error("has an unknown metadata type id " + id + " (" + what + ")");
            return t;
        }

        String string(String what) {
            long n = i64("length of " + what);
            if (n < 0 || n > Integer.MAX_VALUE) throw error("has a string of " + Long.toUnsignedString(n) + " bytes (" + what + ")");
            need(n, what);
            byte[] b = file.asSlice(position, n).toArray(ValueLayout.JAVA_BYTE);
            position += n;
            try {
                return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                        .onUnmappableCharacter(CodingErrorAction.REPORT).decode(java.nio.ByteBuffer.wrap(b)).toString();
            } catch (CharacterCodingException e) {
                throw error("has a string that is not UTF-8 (" + what + ")");
            }
        }

        Object scalar(GgufValue.Type type, String what) {
            if (type == GgufValue.Type.STRING) return string(what);
            need(type.bytes(), what);
            long at = position;
            position += type.bytes();
            return switch (type) {
                case UINT8 -> (long) (file.get(ValueLayout.JAVA_BYTE, at) & 0xFF);
                case INT8 -> (long) file.get(ValueLayout.JAVA_BYTE, at);
                case UINT16 -> (long) (file.get(I16, at) & 0xFFFF);
                case INT16 -> (long) file.get(I16, at);
                case UINT32 -> Integer.toUnsignedLong(file.get(I32, at));
                case INT32 -> (long) file.get(I32, at);
                case UINT64, INT64 -> file.get(I64, at);
                case FLOAT32 -> file.get(F32, at);
                case FLOAT64 -> file.get(F64, at);
                case BOOL -> {
                    byte b = file.get(ValueLayout.JAVA_BYTE, at);
                    if (b != 0 && b != 1) throw error("has a BOOL of value " + b + " (" + what + ")");
                    yield b == 1;
                }
                default -> throw new IllegalStateException("not a scalar type: " + type);
            };
        }
    }
}
