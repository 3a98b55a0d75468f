package dev.ropeway.io;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ropeway.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SafeTensorsRoundTripTest {
    @TempDir Path dir;

    private static float[] randomFloats(Random random, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) random.nextGaussian();
        return v;
    }

    private static MemorySegment bytesOf(ValueLayout layout, int count, java.util.function.IntFunction<Object> value) {
        ByteBuffer b = ByteBuffer.allocate((int) layout.byteSize() * count).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < count; i++) {
            switch (value.apply(i)) {
                case Short s -> b.putShort(s);
                case Double d -> b.putDouble(d);
                case Long l -> b.putLong(l);
                case Byte x -> b.put(x);
                default -> throw new IllegalArgumentException();
            }
        }
        return MemorySegment.ofArray(b.array());
    }

    @Test
    void writerAndReaderAgreeOnEverything() {
        Random random = new Random(1);
        float[] a = randomFloats(random, 6);
        float[] b = randomFloats(random, 1000);
        short[] halves = new short[5];
        for (int i = 0; i < halves.length; i++) halves[i] = Float.floatToFloat16(a[i]);
        MemorySegment f16 = bytesOf(ValueLayout.JAVA_SHORT, 5, i -> halves[i]);
        MemorySegment i64 = bytesOf(ValueLayout.JAVA_LONG, 3, i -> (long) (i - 1) * 1_000_000_000_000L);
        MemorySegment odd = bytesOf(ValueLayout.JAVA_BYTE, 3, i -> (byte) (i + 100));

        Path file = dir.resolve("model.safetensors");
        new SafeTensorsWriter()
                .metadata("format", "pt")
                .metadata("note", "ünïcødé ✓")
                .add("a.weight", a, 2, 3)
                .add("odd.bytes", DType.U8, odd, 3) // leaves the following tensor unaligned
                .add("b", b, 10, 10, 10)
                .add("half", DType.F16, f16, 5)
                .add("ids", DType.I64, i64, 3)
                .add("nothing", new float[0], 0, 4)
                .add("scalar", new float[] {2.5f})
                .write(file);

        try (SafeTensors st = SafeTensors.open(file)) {
            assertEquals(Map.of("format", "pt", "note", "ünïcødé ✓"), st.metadata());
            assertEquals(List.of("a.weight", "odd.bytes", "b", "half", "ids", "nothing", "scalar"),
                    st.tensors().stream().map(TensorInfo::name).toList());
            assertArrayEquals(a, st.readFloats("a.weight"));
            assertArrayEquals(b, st.readFloats("b"));
            assertArrayEquals(new long[] {10, 10, 10}, st.info("b").shape());
            assertEquals(DType.F16, st.info("half").dtype());
            float[] half = st.readFloats("half");
            for (int i = 0; i < 5; i++) assertEquals(Float.float16ToFloat(halves[i]), half[i]);
            assertArrayEquals(i64.toArray(ValueLayout.JAVA_BYTE), st.data("ids").toArray(ValueLayout.JAVA_BYTE));
            assertArrayEquals(odd.toArray(ValueLayout.JAVA_BYTE), st.data("odd.bytes").toArray(ValueLayout.JAVA_BYTE));
            assertEquals(0, st.info("nothing").elementCount());
            assertArrayEquals(new long[] {}, st.info("scalar").shape());
            assertArrayEquals(new float[] {2.5f}, st.readFloats("scalar"));
            assertEquals(file, st.path());
            assertNull(st.info("absent"));
        }
    }

    @Test
    void fileLayoutFollowsTheFormat() throws Exception {
        Path file = dir.resolve("layout.safetensors");
        new SafeTensorsWriter().metadata("k", "v").add("x", new float[] {1, 2, 3}, 3).add("y", new float[] {4}, 1).write(file);
        byte[] raw = Files.readAllBytes(file);
        long headerLength = RawSafeTensors.headerLength(raw);
        assertEquals(0, headerLength % 8, "header padded to a multiple of 8");
        assertEquals(raw.length, 8 + headerLength + 16, "tensors are contiguous, with nothing after them");
        String header = new String(raw, 8, (int) headerLength, StandardCharsets.UTF_8);
        assertTrue(header.startsWith("{"));
        assertTrue(header.substring(header.lastIndexOf('}') + 1).isBlank(), "padding is spaces: [" + header + "]");
        JsonNode json = Json.mapper().readTree(header);
        assertEquals("v", json.get("__metadata__").get("k").asText());
        assertEquals("F32", json.get("x").get("dtype").asText());
        assertEquals("[0,12]", json.get("x").get("data_offsets").toString());
        assertEquals("[12,16]", json.get("y").get("data_offsets").toString());
        ByteBuffer data = ByteBuffer.wrap(raw, (int) (8 + headerLength), 16).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(1f, data.getFloat());
        assertEquals(2f, data.getFloat());
        assertEquals(3f, data.getFloat());
        assertEquals(4f, data.getFloat());
    }

    @Test
    void withoutMetadataTheHeaderHasNone() throws Exception {
        Path file = dir.resolve("plain.safetensors");
        new SafeTensorsWriter().add("x", new float[] {1}, 1).write(file);
        byte[] raw = Files.readAllBytes(file);
        String header = new String(raw, 8, (int) RawSafeTensors.headerLength(raw), StandardCharsets.UTF_8);
        assertFalse(header.contains("__metadata__"));
        try (SafeTensors st = SafeTensors.open(file)) {
            assertTrue(st.metadata().isEmpty());
        }
    }

    @Test
    void emptyFileIsValid() {
        Path file = dir.resolve("empty.safetensors");
        new SafeTensorsWriter().write(file);
        try (SafeTensors st = SafeTensors.open(file)) {
            assertTrue(st.tensors().isEmpty());
        }
    }

    @Test
    void bfloat16AndFloat64ConvertExactly() {
        // bfloat16 keeps the top 16 bits of a float32, so these values survive exactly.
        float[] values = {1f, -2f, 0.5f, Float.POSITIVE_INFINITY, -0f, 3.140625f};
        MemorySegment bf16 = bytesOf(ValueLayout.JAVA_SHORT, values.length, i -> (short) (Float.floatToRawIntBits(values[i]) >>> 16));
        MemorySegment f64 = bytesOf(ValueLayout.JAVA_DOUBLE, values.length, i -> (double) values[i]);
        Path file = dir.resolve("wide.safetensors");
        new SafeTensorsWriter().add("bf", DType.BF16, bf16, 2, 3).add("f64", DType.F64, f64, 6).write(file);
        try (SafeTensors st = SafeTensors.open(file)) {
            assertArrayEquals(values, st.readFloats("bf"));
            assertArrayEquals(values, st.readFloats("f64"));
        }
    }

    @Test
    void readFloatsRejectsIntegerTensorsAndUnknownNames() {
        Path file = dir.resolve("ints.safetensors");
        new SafeTensorsWriter().add("ids", DType.I32, MemorySegment.ofArray(new byte[8]), 2).write(file);
        try (SafeTensors st = SafeTensors.open(file)) {
            CheckpointException e = assertThrows(CheckpointException.class, () -> st.readFloats("ids"));
            assertTrue(e.getMessage().contains("tensor 'ids' in " + file) && e.getMessage().contains("dtype I32"), e.getMessage());
            CheckpointException missing = assertThrows(CheckpointException.class, () -> st.data("nope"));
            assertTrue(missing.getMessage().contains("'nope'") && missing.getMessage().contains(file.toString()));
            assertThrows(CheckpointException.class, () -> st.readFloats("nope"));
        }
    }

    @Test
    void tooManyElementsForAnArrayIsAClearError() {
        MemorySegment empty = MemorySegment.ofArray(new byte[0]);
        CheckpointException e = assertThrows(CheckpointException.class,
                () -> FloatConversion.toFloats(empty, DType.F32, 3_000_000_000L, "tensor 'big'"));
        assertTrue(e.getMessage().contains("tensor 'big' has 3000000000 elements"), e.getMessage());
    }

    @Test
    void slicesAreReadOnlyAndDieWithTheFile() {
        Path file = dir.resolve("ro.safetensors");
        new SafeTensorsWriter().add("x", new float[] {1, 2}, 2).write(file);
        SafeTensors st = SafeTensors.open(file);
        MemorySegment x = st.data("x");
        assertTrue(x.isReadOnly());
        assertThrows(IllegalArgumentException.class, () -> x.set(ValueLayout.JAVA_BYTE, 0, (byte) 1));
        st.close();
        st.close(); // twice is harmless
        assertThrows(IllegalStateException.class, () -> x.get(ValueLayout.JAVA_BYTE, 0));
        assertThrows(IllegalStateException.class, () -> st.data("x"));
    }

    @Test
    void writerRejectsInconsistentTensors() {
        SafeTensorsWriter w = new SafeTensorsWriter().add("x", new float[4], 2, 2);
        assertThrows(IllegalArgumentException.class, () -> w.add("x", new float[4], 4), "duplicate name");
        assertThrows(IllegalArgumentException.class, () -> w.add("y", new float[4], 2, 3), "size mismatch");
        assertThrows(IllegalArgumentException.class, () -> w.add("y", new float[4]), "an empty shape is a scalar");
        assertThrows(IllegalArgumentException.class, () -> w.add("y", new float[0], -1, 0), "negative dimension");
        assertThrows(IllegalArgumentException.class, () -> w.add("__metadata__", new float[1], 1), "reserved name");
        assertThrows(IllegalArgumentException.class,
                () -> w.add("y", DType.BF16, MemorySegment.ofArray(new byte[6]), 2, 2), "byte size mismatch");
        assertThrows(IllegalArgumentException.class,
                () -> w.add("y", DType.F64, MemorySegment.ofArray(new byte[0]), Long.MAX_VALUE / 4), "byte count overflow");
        assertThrows(IllegalArgumentException.class,
                () -> w.add("y", new float[0], Long.MAX_VALUE, 2), "element count overflow");
    }

    @Test
    void writesFromAnySegmentKind() {
        Path file = dir.resolve("kinds.safetensors");
        float[] values = {1.5f, -2.25f, 1e-3f};
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment nativeSegment = arena.allocate(12);
            for (int i = 0; i < 3; i++) nativeSegment.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), i, values[i]);
            new SafeTensorsWriter()
                    .add("native", DType.F32, nativeSegment, 3)
                    // A segment over a float[] cannot be viewed as a ByteBuffer, so the writer must copy it.
                    .add("heap", DType.F32, MemorySegment.ofArray(values.clone()), 3)
                    .write(file);
        }
        try (SafeTensors st = SafeTensors.open(file)) {
            assertArrayEquals(values, st.readFloats("native"));
            if (ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN) assertArrayEquals(values, st.readFloats("heap"));
        }
    }

    @Test
    void largeTensorsCrossTheWriteChunks() {
        Random random = new Random(7);
        float[] big = randomFloats(random, (1 << 20) / 4 * 3 + 17); // three 1 MiB chunks and a bit
        byte[] bytes = new byte[(1 << 20) * 2 + 5];
        random.nextBytes(bytes);
        Path file = dir.resolve("big.safetensors");
        new SafeTensorsWriter().add("f", big, big.length).add("u", DType.U8, MemorySegment.ofArray(bytes), bytes.length).write(file);
        try (SafeTensors st = SafeTensors.open(file)) {
            assertArrayEquals(big, st.readFloats("f"));
            assertArrayEquals(bytes, st.data("u").toArray(ValueLayout.JAVA_BYTE));
        }
    }

    @Test
    void tensorInfoIsAValue() {
        long[] shape = {2, 3};
        TensorInfo t = new TensorInfo("w", DType.F32, shape, 64, 24);
        shape[0] = 99;
        assertArrayEquals(new long[] {2, 3}, t.shape(), "the record copies its shape");
        t.shape()[1] = 99;
        assertArrayEquals(new long[] {2, 3}, t.shape(), "and hands out copies");
        assertEquals(6, t.elementCount());
        assertEquals(2, t.rank());
        assertEquals(3, t.dim(1));
        assertEquals(t, new TensorInfo("w", DType.F32, new long[] {2, 3}, 64, 24));
        assertEquals(t.hashCode(), new TensorInfo("w", DType.F32, new long[] {2, 3}, 64, 24).hashCode());
        assertFalse(t.equals(new TensorInfo("w", DType.F32, new long[] {3, 2}, 64, 24)));
        assertEquals("w F32 [2, 3] @64+24", t.toString());
        assertEquals(1, new TensorInfo("s", DType.F32, new long[0], 0, 4).elementCount());
    }

    /**
     * A matrix of ggml blocks is written as U8 [rows, bytes per row] named by a metadata entry, and read as the [rows,
     * cols] matrix of its type; readFloats dequantises it, and a plain reader of the file sees the bytes.
     */
    @Test
    void ggmlBlockMatricesRoundTrip() throws Exception {
        Random random = new Random(7);
        byte[] q8 = new byte[3 * 2 * 34];
        random.nextBytes(q8);
        float[] expected = new float[3 * 64];
        for (int b = 0; b < 6; b++) {
            short d = Float.floatToFloat16((float) (0.01 * (b + 1)));
            q8[34 * b] = (byte) d;
            q8[34 * b + 1] = (byte) (d >> 8);
            for (int j = 0; j < 32; j++) expected[32 * b + j] = q8[34 * b + 2 + j] * Float.float16ToFloat(d);
        }
        byte[] q4k = new byte[2 * 144];
        random.nextBytes(q4k);
        Path file = dir.resolve("blocks.safetensors");
        new SafeTensorsWriter().metadata("format", "pt")
                .add("norm", new float[] {1, 2}, 2)
                .addQuantisedLater("w", DType.Q8_0, () -> MemorySegment.ofArray(q8), 3, 64)
                .addQuantisedLater("k", DType.Q4_K, () -> MemorySegment.ofArray(q4k), 2, 256)
                .write(file);
        try (SafeTensors st = SafeTensors.open(file)) {
            TensorInfo w = st.info("w"), k = st.info("k");
            assertEquals(DType.Q8_0, w.dtype());
            assertArrayEquals(new long[] {3, 64}, w.shape());
            assertEquals(q8.length, w.byteSize());
            assertEquals(DType.Q4_K, k.dtype());
            assertArrayEquals(new long[] {2, 256}, k.shape());
            assertArrayEquals(q8, st.data("w").toArray(ValueLayout.JAVA_BYTE));
            assertArrayEquals(expected, st.readFloats("w"));
            float[] k32 = new float[512];
            GgmlDequant.toFloats(GgmlType.Q4_K, MemorySegment.ofArray(q4k), 512, k32, 0);
            assertArrayEquals(k32, st.readFloats("k"));
            assertEquals("Q8_0", st.metadata().get("ggml_type:w"));
        }
        // What any safetensors reader sees: U8 bytes.
        byte[] raw = Files.readAllBytes(file);
        long length = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
        JsonNode header = new com.fasterxml.jackson.databind.ObjectMapper().readTree(new String(raw, 8, (int) length, StandardCharsets.UTF_8));
        assertEquals("U8", header.get("w").get("dtype").asText());
        assertEquals("[3,68]", header.get("w").get("shape").toString());
        assertEquals("[2,144]", header.get("k").get("shape").toString());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> new SafeTensorsWriter().addQuantisedLater("x", DType.Q4_K, () -> MemorySegment.ofArray(q4k), 1, 100));
        assertTrue(e.getMessage().contains("not whole Q4_K blocks of 256"), e.getMessage());
        assertThrows(UnsupportedOperationException.class, DType.Q4_K::bytes);
    }
}
