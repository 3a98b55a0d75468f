package dev.ropeway.io;

import dev.ropeway.RopewayException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class GgufWriterTest {

    private static float[] random(int n, long seed) {
        Random r = new Random(seed);
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float) r.nextGaussian();
        return x;
    }

    @Test
    void headerMetadataAndTensorInfosFollowTheGgufV3Layout(@TempDir Path tmp) throws Exception {
        float[] a = random(3 * 64, 1), b = random(5, 2);
        GgufWriter w = new GgufWriter()
                .put("general.architecture", GgufValue.string("llama"))
                .put("llama.block_count", GgufValue.uint32(4_000_000_000L))
                .put("test.signed", GgufValue.int32(-7))
                .put("test.big", GgufValue.uint64(1L << 40))
                .put("test.eps", GgufValue.float32(1e-5f))
                .put("test.flag", GgufValue.bool(true))
                .put("test.words", GgufValue.strings(List.of("a", "Ġthe", "\u00e9t\u00e9", "")))
                .put("test.types", GgufValue.int32s(new int[]{1, 3, -1}))
                .put("test.floats", GgufValue.float32s(new float[]{0.5f, -2f}))
                .tensor("a.weight", GgmlType.F32, new long[]{3, 64}, () -> a)
                .tensor("b.bias", GgmlType.F32, new long[]{5}, () -> b);
        Path file = tmp.resolve("m.gguf");
        GgufWriter.Written written = w.write(file);
        byte[] raw = Files.readAllBytes(file);
        assertEquals(raw.length, written.bytes());
        ByteBuffer le = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals("GGUF", new String(raw, 0, 4, java.nio.charset.StandardCharsets.US_ASCII));
        assertEquals(3, le.getInt(4));
        assertEquals(2, le.getLong(8));   // tensors
        assertEquals(10, le.getLong(16)); // keys, general.alignment included

        try (GgufFile g = GgufFile.open(file)) {
            assertEquals(3, g.version());
            assertEquals(32, g.alignment());
            assertEquals(List.of("general.alignment", "general.architecture", "llama.block_count", "test.signed", "test.big",
                    "test.eps", "test.flag", "test.words", "test.types", "test.floats"), List.copyOf(g.metadata().keySet()));
            assertEquals(GgufValue.Type.UINT32, g.value("general.alignment").type());
            assertEquals("llama", g.value("general.architecture").asString());
            assertEquals(4_000_000_000L, g.value("llama.block_count").asLong());
            assertEquals(-7, g.value("test.signed").asLong());
            assertEquals(1L << 40, g.value("test.big").asLong());
            assertEquals(1e-5f, (float) g.value("test.eps").asDouble());
            assertTrue(g.value("test.flag").asBool());
            assertEquals(List.of("a", "Ġthe", "\u00e9t\u00e9", ""), g.value("test.words").asStrings());
            assertEquals(List.of(1L, 3L, -1L), g.value("test.types").asList());
            assertEquals(GgufValue.Type.INT32, g.value("test.types").elementType());
            assertEquals(List.of(0.5f, -2f), g.value("test.floats").asList());

            GgufFile.Tensor ta = g.tensor("a.weight");
            assertArrayEquals(new long[]{64, 3}, ta.ne(), "ne[0] is the fastest-moving dimension");
            assertArrayEquals(new long[]{3, 64}, ta.shape());
            assertEquals(0, ta.offset());
            GgufFile.Tensor tb = g.tensor("b.bias");
            assertEquals(3 * 64 * 4, tb.offset(), "768 bytes is already a multiple of 32");
            assertEquals(0, g.dataOffset() % 32);
            assertArrayEquals(a, g.floats("a.weight"));
            assertArrayEquals(b, g.floats("b.bias"));
            // The data really sits where the info says: first float of a at the data offset.
            assertEquals(a[0], le.getFloat((int) g.dataOffset()));
            assertEquals(b[0], le.getFloat((int) (g.dataOffset() + tb.offset())));
        }
    }

    @Test
    void tensorOffsetsArePaddedToTheAlignment(@TempDir Path tmp) {
        GgufWriter w = new GgufWriter();
        for (int i = 0; i < 4; i++) {
            float[] x = random(3 + i, i);
            w.tensor("t" + i, GgmlType.F32, new long[]{3 + i}, () -> x);
        }
        Path file = tmp.resolve("pad.gguf");
        w.write(file);
        try (GgufFile g = GgufFile.open(file)) {
            long expected = 0;
            for (int i = 0; i < 4; i++) {
                GgufFile.Tensor t = g.tensor("t" + i);
                assertEquals(expected, t.offset());
                assertEquals(0, t.offset() % 32);
                expected += 32; // 12..24 bytes each, padded to 32
                assertArrayEquals(random(3 + i, i), g.floats("t" + i));
            }
        }
    }

    @Test
    void f16StoresTheNearestHalfAndRefusesOverflow(@TempDir Path tmp) {
        float[] x = random(2 * 32, 3);
        x[5] = 65504f;      // the largest half
        x[6] = 1e-8f;       // a subnormal half
        Path file = tmp.resolve("h.gguf");
        new GgufWriter().tensor("h", GgmlType.F16, new long[]{2, 32}, () -> x).write(file);
        try (GgufFile g = GgufFile.open(file)) {
            float[] back = g.floats("h");
            for (int i = 0; i < x.length; i++) {
                assertEquals(Float.float16ToFloat(Float.floatToFloat16(x[i])), back[i]);
                assertTrue(Math.abs(back[i] - x[i]) <= Math.abs(x[i]) * 0x1p-11f + 0x1p-25f, "element " + i);
            }
            assertEquals(2 * 32 * 2, g.tensor("h").byteSize());
        }
        float[] big = {1f, 70000f};
        RopewayException e = assertThrows(RopewayException.class,
                () -> new GgufWriter().tensor("big", GgmlType.F16, new long[]{2}, () -> big).write(tmp.resolve("big.gguf")));
        assertTrue(e.getMessage().contains("beyond the f16 range") && e.getMessage().contains("big"), e.getMessage());
        assertFalse(Files.exists(tmp.resolve("big.gguf")), "a failed write leaves no file");
    }

    @Test
    void q8_0BlocksAreAHalfScaleAndThirtyTwoRoundedBytes(@TempDir Path tmp) throws Exception {
        float[] x = new float[96];                                  // the third block is all zero
        for (int j = 0; j < 32; j++) x[j] = (j - 10) * 0.1f;        // max |x| = 2.1
        x[40] = -0.25f;
        Path file = tmp.resolve("q.gguf");
        new GgufWriter().tensor("q", GgmlType.Q8_0, new long[]{96}, () -> x).write(file);
        try (GgufFile g = GgufFile.open(file)) {
            assertEquals(3 * 34, g.tensor("q").byteSize());
            ByteBuffer d = g.data("q").asByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
            float scale = 2.1f / 127f;
            assertEquals(Float.floatToFloat16(scale), d.getShort(0));
            for (int j = 0; j < 32; j++) {
                double v = x[j] / scale;
                long expected = (long) (Math.signum(v) * Math.floor(Math.abs(v) + 0.5));
                assertEquals(expected, d.get(2 + j), "block 0 element " + j);
            }
            assertEquals(127, d.get(2 + 31));
            assertEquals(-60, d.get(2));                 // -1.0 / (2.1 / 127) = -60.48
            assertEquals(Float.floatToFloat16(0.25f / 127f), d.getShort(34));
            assertEquals(-127, d.get(36 + 8), "-0.25 is the block's largest magnitude");
            assertEquals(0, d.get(36 + 9));
            assertEquals(0, d.getShort(68), "an all-zero block has scale 0");
            assertArrayEquals(new float[32], Arrays.copyOfRange(g.floats("q"), 64, 96));
        }
    }

    @Test
    void q8_0ErrorStaysWithinHalfAStepPerBlock(@TempDir Path tmp) {
        float[] x = random(4 * 96, 9);
        for (int i = 0; i < x.length; i += 7) x[i] *= 30; // blocks of very different ranges
        Path file = tmp.resolve("q.gguf");
        new GgufWriter().tensor("w", GgmlType.Q8_0, new long[]{4, 96}, () -> x).write(file);
        try (GgufFile g = GgufFile.open(file)) {
            float[] back = g.floats("w");
            for (int block = 0; block < x.length / 32; block++) {
                float amax = 0;
                for (int j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[block * 32 + j]));
                float d32 = amax / 127f, d16 = Float.float16ToFloat(Float.floatToFloat16(d32));
                double bound = 0.5 * d32 + 127 * Math.abs(d32 - d16) + 1e-6;
                for (int j = 0; j < 32; j++) {
                    int i = block * 32 + j;
                    assertTrue(Math.abs(back[i] - x[i]) <= bound, "element " + i + ": " + x[i] + " -> " + back[i]);
                }
            }
        }
    }

    @Test
    void badInputIsRefusedWithTheReason(@TempDir Path tmp) {
        GgufWriter w = new GgufWriter();
        assertThrows(IllegalArgumentException.class, () -> w.put("Bad Key", GgufValue.bool(true)));
        assertThrows(IllegalArgumentException.class, () -> w.put("general.alignment", GgufValue.uint32(64)));
        assertThrows(IllegalArgumentException.class, () -> GgufValue.uint32(-1));
        assertThrows(IllegalArgumentException.class, () -> w.tensor("x".repeat(65), GgmlType.F32, new long[]{1}, () -> new float[1]));
        assertThrows(IllegalArgumentException.class, () -> w.tensor("r", GgmlType.Q8_0, new long[]{2, 48}, () -> new float[96]));
        assertThrows(IllegalArgumentException.class, () -> w.tensor("five", GgmlType.F32, new long[]{1, 1, 1, 1, 1}, () -> new float[1]));
        assertThrows(IllegalArgumentException.class, () -> w.tensor("k", GgmlType.Q4_0, new long[]{32}, () -> new float[32]));
        w.tensor("dup", GgmlType.F32, new long[]{1}, () -> new float[1]);
        assertThrows(IllegalArgumentException.class, () -> w.tensor("dup", GgmlType.F32, new long[]{1}, () -> new float[1]));
        float[] nan = {1f, Float.NaN};
        RopewayException e = assertThrows(RopewayException.class,
                () -> new GgufWriter().tensor("n", GgmlType.F32, new long[]{2}, () -> nan).write(tmp.resolve("n.gguf")));
        assertTrue(e.getMessage().contains("non-finite"), e.getMessage());
    }

    @Test
    void aDamagedFileIsNamedAndExplained(@TempDir Path tmp) throws Exception {
        float[] x = random(64, 4);
        Path file = tmp.resolve("ok.gguf");
        new GgufWriter().put("general.name", GgufValue.string("m")).tensor("w", GgmlType.F32, new long[]{64}, () -> x).write(file);
        byte[] good = Files.readAllBytes(file);

        Path cut = tmp.resolve("cut.gguf");
        Files.write(cut, Arrays.copyOf(good, good.length - 10));
        CheckpointException e = assertThrows(CheckpointException.class, () -> GgufFile.open(cut));
        assertTrue(e.getMessage().contains("truncated") && e.getMessage().contains("w"), e.getMessage());

        Path header = tmp.resolve("header.gguf");
        Files.write(header, Arrays.copyOf(good, 40));
        e = assertThrows(CheckpointException.class, () -> GgufFile.open(header));
        assertTrue(e.getMessage().contains("truncated"), e.getMessage());

        byte[] magic = good.clone();
        magic[0] = 'X';
        Path notGguf = tmp.resolve("magic.gguf");
        Files.write(notGguf, magic);
        e = assertThrows(CheckpointException.class, () -> GgufFile.open(notGguf));
        assertTrue(e.getMessage().contains("is not a GGUF file"), e.getMessage());

        byte[] version = good.clone();
        version[4] = 9;
        Path v9 = tmp.resolve("v9.gguf");
        Files.write(v9, version);
        e = assertThrows(CheckpointException.class, () -> GgufFile.open(v9));
        assertTrue(e.getMessage().contains("version 9"), e.getMessage());

        try (GgufFile g = GgufFile.open(file)) {
            e = assertThrows(CheckpointException.class, () -> g.value("general.architecture"));
            assertTrue(e.getMessage().contains("no metadata key general.architecture"), e.getMessage());
            e = assertThrows(CheckpointException.class, () -> g.tensor("missing"));
            assertTrue(e.getMessage().contains("no tensor missing"), e.getMessage());
        }
    }
}
