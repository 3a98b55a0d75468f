package dev.ropeway.io;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.ropeway.tensor.DType;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.function.Supplier;

/**
 * Builds a safetensors file: tensors are laid out contiguously in the order they were added, the JSON header is
 * padded with spaces to a multiple of 8 bytes (so the data region starts 8-aligned), and the file replaces any
 * previous one atomically. Arrays and segments are read when {@link #write} runs, not copied when added, so a
 * large model is never held twice; do not change them in between.
 */
public final class SafeTensorsWriter {
    private static final ObjectMapper HEADER_JSON = new ObjectMapper();
    private static final int CHUNK = 1 << 20;

    private final Map<String, String> metadata = new LinkedHashMap<>();
    private final List<Entry> entries = new ArrayList<>();
    private final Set<String> names = new HashSet<>();

    /**
     * One tensor to write: its bytes come from exactly one of {@code floats}, {@code bytes} and {@code later};
     * {@code bytes} hold {@code from} values, converted to {@code dtype} as they are written, when {@code from} is
     * not null; {@code later} makes float32 values when the tensor is written, converted to {@code dtype}.
     */
    private record Entry(String name, DType dtype, long[] shape, float[] floats, MemorySegment bytes, long byteSize,
                         DType from, Supplier<float[]> later, Supplier<MemorySegment> blocks) {
        Entry(String name, DType dtype, long[] shape, float[] floats, MemorySegment bytes, long byteSize, DType from) {
            this(name, dtype, shape, floats, bytes, byteSize, from, null, null);
        }
    }

    /** Adds a "__metadata__" entry (a later value for the same key wins). */
    public SafeTensorsWriter metadata(String key, String value) {
        metadata.put(Objects.requireNonNull(key, "key"), Objects.requireNonNull(value, "value"));
        return this;
    }

    /** Adds an F32 tensor; {@code shape} must hold exactly {@code data.length} elements (an empty shape is a scalar). */
    public SafeTensorsWriter add(String name, float[] data, long... shape) {
        Objects.requireNonNull(data, "data");
        long elements = checkNameAndShape(name, shape);
        if (elements != data.length) {
            throw new IllegalArgumentException("tensor '" + name + "': shape " + Arrays.toString(shape) + " holds "
                    + elements + " elements but " + data.length + " floats were given");
        }
        return add(new Entry(name, DType.F32, shape.clone(), data, null, 4L * data.length, null));
    }

    /** Adds a tensor from its raw little-endian bytes, which must be exactly shape x dtype size long. */
    public SafeTensorsWriter add(String name, DType dtype, MemorySegment bytes, long... shape) {
        Objects.requireNonNull(dtype, "dtype");
        Objects.requireNonNull(bytes, "bytes");
        long elements = checkNameAndShape(name, shape);
        long expected;
        try {
            expected = Math.multiplyExact(elements, (long) dtype.bytes());
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException("tensor '" + name + "': shape " + Arrays.toString(shape) + " is too large");
        }
        if (expected != bytes.byteSize()) {
            throw new IllegalArgumentException("tensor '" + name + "': " + dtype + " " + Arrays.toString(shape)
                    + " needs " + expected + " bytes but " + bytes.byteSize() + " were given");
        }
        return add(new Entry(name, dtype, shape.clone(), null, bytes, expected, null));
    }

    /**
     * Adds a tensor stored as {@code dtype} (F32, BF16 or F16) from the raw little-endian values of another floating
     * type in {@code src} (F32, BF16, F16 or F64): converted a block at a time as the file is written, rounded to
     * nearest even where the new type is narrower (a NaN stays a NaN).
     */
    public SafeTensorsWriter addConverted(String name, DType dtype, MemorySegment src, DType srcType, long... shape) {
        Objects.requireNonNull(dtype, "dtype");
        Objects.requireNonNull(srcType, "srcType");
        Objects.requireNonNull(src, "src");
        if (dtype != DType.F32 && dtype != DType.BF16 && dtype != DType.F16)
            throw new IllegalArgumentException("tensor '" + name + "': converts to F32, BF16 or F16, not " + dtype);
        if (!srcType.isFloatWeight())
            throw new IllegalArgumentException("tensor '" + name + "': converts from F32, BF16, F16 or F64, not " + srcType);
        long elements = checkNameAndShape(name, shape);
        if (src.byteSize() != elements * srcType.bytes())
            throw new IllegalArgumentException("tensor '" + name + "': " + srcType + " " + Arrays.toString(shape)
                    + " needs " + elements * srcType.bytes() + " bytes but " + src.byteSize() + " were given");
        return add(new Entry(name, dtype, shape.clone(), null, src, elements * dtype.bytes(), srcType));
    }

    /**
     * Adds a tensor stored as {@code dtype} (F32, BF16 or F16) whose float32 values {@code values} makes when the file
     * is written (rounded to nearest even where {@code dtype} is narrower): one such tensor is in memory at a time, so a
     * model larger than memory can be converted tensor by tensor.
     */
    public SafeTensorsWriter addLater(String name, DType dtype, Supplier<float[]> values, long... shape) {
        Objects.requireNonNull(dtype, "dtype");
        Objects.requireNonNull(values, "values");
        if (dtype != DType.F32 && dtype != DType.BF16 && dtype != DType.F16)
            throw new IllegalArgumentException("tensor '" + name + "': converts to F32, BF16 or F16, not " + dtype);
        long elements = checkNameAndShape(name, shape);
        return add(new Entry(name, dtype, shape.clone(), null, null, elements * dtype.bytes(), null, values, null));
    }

    /**
     * Adds a [rows, cols] matrix in one of ggml's block quantisations ({@link DType#isQuantised()}), whose blocks
     * (exactly {@code type.byteSize(rows * cols)} bytes, rows of whole blocks) {@code blocks} gives when the file is
     * written; stored as U8 [rows, bytes per row] with a {@code ggml_type:} metadata entry ({@link SafeTensorsHeader}).
     */
    public SafeTensorsWriter addQuantisedLater(String name, DType type, Supplier<MemorySegment> blocks, long rows, long cols) {
        Objects.requireNonNull(type, "type");
        Objects.requireNonNull(blocks, "blocks");
        if (!type.isQuantised()) throw new IllegalArgumentException("tensor '" + name + "': " + type + " is not a block type");
        long elements = checkNameAndShape(name, new long[] {rows, cols});
        if (cols % type.blockSize() != 0)
            throw new IllegalArgumentException("tensor '" + name + "': rows of " + cols + " values are not whole " + type
                    + " blocks of " + type.blockSize());
        metadata(SafeTensorsHeader.GGML_TYPE + name, type.name());
        return add(new Entry(name, type, new long[] {rows, cols}, null, null, type.byteSize(elements), null, null, blocks));
    }

    private SafeTensorsWriter add(Entry entry) {
        names.add(entry.name());
        entries.add(entry);
        return this;
    }

    private long checkNameAndShape(String name, long[] shape) {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(shape, "shape");
        if (name.equals(SafeTensorsHeader.METADATA_KEY)) {
            throw new IllegalArgumentException("'" + name + "' is reserved for metadata and cannot name a tensor");
        }
        if (names.contains(name)) throw new IllegalArgumentException("duplicate tensor name '" + name + "'");
        long elements = 1;
        for (long d : shape) {
            if (d < 0) throw new IllegalArgumentException("tensor '" + name + "': negative dimension in shape " + Arrays.toString(shape));
            try {
                elements = Math.multiplyExact(elements, d);
            } catch (ArithmeticException e) {
                throw new IllegalArgumentException("tensor '" + name + "': shape " + Arrays.toString(shape) + " is too large");
            }
        }
        return elements;
    }

    /** Writes the file: to a temp file beside it first, then renamed over {@code file}. */
    public void write(Path file) {
        byte[] header = header();
        AtomicFiles.write(file, channel -> {
            ByteBuffer length = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(header.length).flip();
            writeFully(channel, length);
            writeFully(channel, ByteBuffer.wrap(header));
            for (Entry e : entries) {
                if (e.floats() != null) writeFloats(channel, e.floats());
                else if (e.later() != null) writeLater(channel, e);
                else if (e.blocks() != null) writeBlocks(channel, e);
                else if (e.from() != null) writeConverted(channel, e);
                else writeSegment(channel, e.bytes());
            }
        });
    }

    private byte[] header() {
        Map<String, Object> root = new LinkedHashMap<>();
        if (!metadata.isEmpty()) root.put(SafeTensorsHeader.METADATA_KEY, metadata);
        long offset = 0;
        for (Entry e : entries) {
            Map<String, Object> fields = new LinkedHashMap<>();
            fields.put("dtype", e.dtype().safetensorsName());
            long[] shape = e.shape();
            if (e.dtype().isQuantised()) shape = new long[] {shape[0], e.dtype().byteSize(shape[1])};
            fields.put("shape", shape);
            fields.put("data_offsets", new long[] {offset, offset + e.byteSize()});
            root.put(e.name(), fields);
            offset += e.byteSize();
        }
        byte[] json;
        try {
            json = HEADER_JSON.writeValueAsString(root).getBytes(StandardCharsets.UTF_8);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot serialise a safetensors header", e);
        }
        // Trailing spaces are legal JSON whitespace; they put the data region on an 8-byte boundary.
        int padded = (json.length + 7) & ~7;
        byte[] header = Arrays.copyOf(json, padded);
        Arrays.fill(header, json.length, padded, (byte) ' ');
        return header;
    }

    private static void writeFloats(FileChannel channel, float[] data) throws IOException {
        ByteBuffer buffer = ByteBuffer.allocate(CHUNK).order(ByteOrder.LITTLE_ENDIAN);
        for (int from = 0; from < data.length; from += CHUNK / 4) {
            int count = Math.min(CHUNK / 4, data.length - from);
            buffer.clear();
            buffer.asFloatBuffer().put(data, from, count);
            buffer.limit(4 * count);
            writeFully(channel, buffer);
        }
    }

    private static void writeLater(FileChannel channel, Entry e) throws IOException {
        float[] values = e.later().get();
        long elements = e.byteSize() / e.dtype().bytes();
        if (values == null || values.length != elements)
            throw new IllegalStateException("tensor '" + e.name() + "': " + Arrays.toString(e.shape()) + " holds " + elements
                    + " elements but " + (values == null ? "none" : values.length) + " values were made");
        if (e.dtype() == DType.F32) {
            writeFloats(channel, values);
            return;
        }
        ByteBuffer buffer = ByteBuffer.allocate(CHUNK).order(ByteOrder.LITTLE_ENDIAN);
        for (int from = 0; from < values.length; from += CHUNK / 2) {
            int n = Math.min(CHUNK / 2, values.length - from);
            buffer.clear();
            if (e.dtype() == DType.BF16) for (int i = 0; i < n; i++) buffer.putShort(dev.ropeway.tensor.Bfloat16.round(values[from + i]));
            else for (int i = 0; i < n; i++) buffer.putShort(Float.floatToFloat16(values[from + i]));
            buffer.flip();
            writeFully(channel, buffer);
        }
    }

    private static void writeBlocks(FileChannel channel, Entry e) throws IOException {
        MemorySegment bytes = e.blocks().get();
        if (bytes == null || bytes.byteSize() != e.byteSize())
            throw new IllegalStateException("tensor '" + e.name() + "': " + e.dtype() + " " + Arrays.toString(e.shape())
                    + " takes " + e.byteSize() + " bytes but " + (bytes == null ? "none" : bytes.byteSize()) + " were made");
        writeSegment(channel, bytes);
    }

    private static void writeConverted(FileChannel channel, Entry e) throws IOException {
        int inBytes = e.from().bytes(), outBytes = e.dtype().bytes();
        long count = e.bytes().byteSize() / inBytes;
        ByteBuffer buffer = ByteBuffer.allocate(CHUNK).order(ByteOrder.LITTLE_ENDIAN);
        int per = CHUNK / 4;
        for (long from = 0; from < count; from += per) {
            int n = (int) Math.min(per, count - from);
            float[] values = FloatConversion.toFloats(e.bytes().asSlice(from * inBytes, (long) n * inBytes), e.from(), n,
                    "tensor '" + e.name() + "'");
            buffer.clear();
            switch (e.dtype()) {
                case F32 -> buffer.asFloatBuffer().put(values);
                case BF16 -> { for (float v : values) buffer.putShort(dev.ropeway.tensor.Bfloat16.round(v)); }
                case F16 -> { for (float v : values) buffer.putShort(Float.floatToFloat16(v)); }
                default -> throw new AssertionError(e.dtype());
            }
            buffer.position(0).limit(n * outBytes);
            writeFully(channel, buffer);
        }
    }

    private static void writeSegment(FileChannel channel, MemorySegment bytes) throws IOException {
        // Copy through a byte[]: any segment (native, mapped or backed by a float[]) can be copied, but not all can
        // be viewed as a ByteBuffer.
        byte[] chunk = new byte[(int) Math.min(CHUNK, bytes.byteSize())];
        for (long from = 0; from < bytes.byteSize(); from += CHUNK) {
            int count = (int) Math.min(CHUNK, bytes.byteSize() - from);
            MemorySegment.copy(bytes, ValueLayout.JAVA_BYTE, from, chunk, 0, count);
            writeFully(channel, ByteBuffer.wrap(chunk, 0, count));
        }
    }

    private static void writeFully(FileChannel channel, ByteBuffer buffer) throws IOException {
        while (buffer.hasRemaining()) channel.write(buffer);
    }
}
