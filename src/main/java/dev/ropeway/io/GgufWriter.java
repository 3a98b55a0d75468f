package dev.ropeway.io;

import dev.ropeway.RopewayException;
import dev.ropeway.tensor.Q8Blocks;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.function.Supplier;
import java.util.regex.Pattern;

/**
 * Writes a GGUF v3 file (llama.cpp's single-file model format), little-endian: the header (magic, version, tensor
 * and key counts), the metadata key/value pairs, one info per tensor (name, dimensions in ggml order, type, offset),
 * padding to {@link #ALIGNMENT}, then each tensor's data at an aligned offset. Tensors are given as float32 in
 * row-major order and encoded to their GGUF type while the file is written, one at a time, so a model never sits in
 * memory twice. The file appears atomically: a crash leaves the old file or none.
 */
public final class GgufWriter {
    public static final int MAGIC = 0x46554747; // "GGUF" read as a little-endian uint32
    public static final int VERSION = 3;
    public static final int ALIGNMENT = 32;
    /** ggml's limit on dimensions per tensor. */
    public static final int MAX_DIMS = 4;
    /** GGUF's limit on the bytes of a tensor name. */
    public static final int MAX_NAME_BYTES = 64;

    private static final Pattern KEY = Pattern.compile("[a-z0-9_]+(\\.[a-z0-9_]+)*");

    private final Map<String, GgufValue> metadata = new LinkedHashMap<>();
    private final List<Pending> tensors = new ArrayList<>();
    private final Map<String, Boolean> tensorNames = new LinkedHashMap<>();

    /** A tensor waiting to be written: its row-major shape, the type to store and where its floats come from. */
    private record Pending(String name, GgmlType type, long[] shape, Supplier<float[]> data) {
        /** Dimensions in ggml order: ne[0] is the fastest-moving (last row-major) dimension. */
        long[] ne() {
            long[] ne = new long[shape.length];
            for (int i = 0; i < shape.length; i++) ne[i] = shape[shape.length - 1 - i];
            return ne;
        }

        long elements() {
            long n = 1;
            for (long d : shape) n = Math.multiplyExact(n, d);
            return n;
        }

        long byteSize() {
            return type.byteSize(elements(), shape[shape.length - 1]);
        }
    }

    public GgufWriter() {
        metadata.put("general.alignment", GgufValue.uint32(ALIGNMENT));
    }

    /** What was written. */
    public record Written(Path file, long bytes, int tensors, int keys) {}

    /** Adds (or replaces) a metadata key: lower-case ASCII segments separated by dots, as GGUF requires. */
    public GgufWriter put(String key, GgufValue value) {
        Objects.requireNonNull(value, "value");
        if (key.equals("general.alignment") && !value.equals(GgufValue.uint32(ALIGNMENT)))
            throw new IllegalArgumentException("this writer aligns tensor data to " + ALIGNMENT + " bytes");
        if (!KEY.matcher(key).matches())
            throw new IllegalArgumentException("GGUF key '" + key + "' must be lower_snake_case segments separated by dots");
        metadata.put(key, value);
        return this;
    }

    /**
     * Adds a tensor of row-major {@code shape} (as Hugging Face and PyTorch write it), stored as {@code type};
     * {@code data} is called once, when the file is written, and must return exactly the shape's element count.
     */
    public GgufWriter tensor(String name, GgmlType type, long[] shape, Supplier<float[]> data) {
        if (name.getBytes(StandardCharsets.UTF_8).length > MAX_NAME_BYTES)
            throw new IllegalArgumentException("GGUF tensor name '" + name + "' is longer than " + MAX_NAME_BYTES + " bytes");
        if (tensorNames.put(name, Boolean.TRUE) != null) throw new IllegalArgumentException("duplicate tensor " + name);
        if (shape.length == 0 || shape.length > MAX_DIMS)
            throw new IllegalArgumentException("tensor " + name + " has " + shape.length + " dimensions; GGUF takes 1.." + MAX_DIMS);
        for (long d : shape) if (d <= 0) throw new IllegalArgumentException("tensor " + name + " has a dimension of " + d);
        if (type != GgmlType.F32 && type != GgmlType.F16 && type != GgmlType.Q8_0)
            throw new IllegalArgumentException("this writer encodes F32, F16 and Q8_0, not " + type);
        if (shape[shape.length - 1] % type.blockSize() != 0)
            throw new IllegalArgumentException("tensor " + name + ": rows of " + shape[shape.length - 1]
                    + " elements are not a whole number of " + type + " blocks (" + type.blockSize() + ")");
        tensors.add(new Pending(name, type, shape.clone(), data));
        return this;
    }

    public Map<String, GgufValue> metadata() {
        return java.util.Collections.unmodifiableMap(metadata);
    }

    /** Writes the file, replacing {@code file} atomically. */
    public Written write(Path file) {
        long[] offsets = new long[tensors.size()];
        long dataBytes = 0;
        for (int i = 0; i < tensors.size(); i++) {
            offsets[i] = dataBytes;
            dataBytes = align(dataBytes + tensors.get(i).byteSize());
        }
        byte[] header = header(offsets);
        long headerBytes = align(header.length);
        AtomicFiles.write(file, channel -> {
            writeFully(channel, ByteBuffer.wrap(header));
            writeFully(channel, ByteBuffer.allocate((int) (headerBytes - header.length)));
            for (int i = 0; i < tensors.size(); i++) {
                Pending t = tensors.get(i);
                writeFully(channel, encode(t).flip());
                long end = offsets[i] + t.byteSize();
                writeFully(channel, ByteBuffer.allocate((int) (align(end) - end)));
            }
        });
        return new Written(file, headerBytes + dataBytes, tensors.size(), metadata.size());
    }

    static long align(long n) {
        return (n + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    }

    private static void writeFully(FileChannel channel, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) channel.write(b);
    }

    private byte[] header(long[] offsets) {
        LittleEndianOut out = new LittleEndianOut();
        out.u32(MAGIC);
        out.u32(VERSION);
        out.u64(tensors.size());
        out.u64(metadata.size());
        for (Map.Entry<String, GgufValue> e : metadata.entrySet()) {
            out.string(e.getKey());
            out.u32(e.getValue().type().id());
            if (e.getValue().type() == GgufValue.Type.ARRAY) {
                out.u32(e.getValue().elementType().id());
                out.u64(e.getValue().asList().size());
                for (Object element : e.getValue().asList()) out.scalar(e.getValue().elementType(), element);
            } else {
                out.scalar(e.getValue().type(), e.getValue().value());
            }
        }
        for (int i = 0; i < tensors.size(); i++) {
            Pending t = tensors.get(i);
            out.string(t.name());
            long[] ne = t.ne();
            out.u32(ne.length);
            for (long d : ne) out.u64(d);
            out.u32(t.type().id());
            out.u64(offsets[i]);
        }
        return out.toByteArray();
    }

    private static ByteBuffer encode(Pending t) {
        float[] x = t.data().get();
        if (x.length != t.elements())
            throw new IllegalStateException("tensor " + t.name() + ": " + x.length + " values for shape "
                    + java.util.Arrays.toString(t.shape()));
        for (int i = 0; i < x.length; i++) {
            if (!Float.isFinite(x[i]))
                throw new RopewayException("tensor " + t.name() + " holds " + x[i] + " at element " + i
                        + "; a checkpoint with non-finite weights cannot be exported");
        }
        ByteBuffer b = ByteBuffer.allocate(Math.toIntExact(t.byteSize())).order(ByteOrder.LITTLE_ENDIAN);
        switch (t.type()) {
            case F32 -> { for (float v : x) b.putFloat(v); }
            case F16 -> {
                for (int i = 0; i < x.length; i++) b.putShort(toF16(x[i], t.name(), i));
            }
            case Q8_0 -> Q8_0.encode(x, b);
            default -> throw new IllegalStateException("unexpected type " + t.type());
        }
        return b;
    }

    private static short toF16(float v, String name, int index) {
        short h = Float.floatToFloat16(v);
        if (Float.isInfinite(Float.float16ToFloat(h)))
            throw new RopewayException("tensor " + name + " holds " + v + " at element " + index
                    + ", beyond the f16 range (65504); export with --dtype f32 or q8_0");
        return h;
    }

    /** ggml's Q8_0 blocks ({@link Q8Blocks}): each an f16 scale followed by 32 int8 values. */
    static final class Q8_0 {
        private Q8_0() {}

        static void encode(float[] x, ByteBuffer out) {
            byte[] q = new byte[Q8Blocks.BLOCK];
            for (int start = 0; start < x.length; start += Q8Blocks.BLOCK) {
                out.putShort(Q8Blocks.block(x, start, q, 0));
                out.put(q);
            }
        }
    }

    /** A growable little-endian byte buffer for the header. */
    private static final class LittleEndianOut {
        private final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        private final ByteBuffer scratch = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);

        void u32(long v) { scratch.clear(); scratch.putInt((int) v); bytes.write(scratch.array(), 0, 4); }

        void u64(long v) { scratch.clear(); scratch.putLong(v); bytes.write(scratch.array(), 0, 8); }

        void string(String s) {
            byte[] b = s.getBytes(StandardCharsets.UTF_8);
            u64(b.length);
            bytes.write(b, 0, b.length);
        }

        void scalar(GgufValue.Type type, Object v) {
            scratch.clear();
            switch (type) {
                case UINT8, INT8 -> scratch.put((byte) (long) (Long) v);
                case UINT16, INT16 -> scratch.putShort((short) (long) (Long) v);
                case UINT32, INT32 -> scratch.putInt((int) (long) (Long) v);
                case UINT64, INT64 -> scratch.putLong((Long) v);
                case FLOAT32 -> scratch.putFloat((Float) v);
                case FLOAT64 -> scratch.putDouble((Double) v);
                case BOOL -> scratch.put((byte) ((Boolean) v ? 1 : 0));
                case STRING -> { string((String) v); return; }
                case ARRAY -> throw new IllegalArgumentException("nested GGUF arrays are not supported");
            }
            bytes.write(scratch.array(), 0, scratch.position());
        }

        byte[] toByteArray() { return bytes.toByteArray(); }
    }
}
