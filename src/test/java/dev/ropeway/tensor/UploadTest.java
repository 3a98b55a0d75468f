package dev.ropeway.tensor;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class UploadTest {
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static CpuBackend cpu;

    @BeforeAll
    static void start() {
        cpu = new CpuBackend(3);
    }

    @AfterAll
    static void stop() {
        cpu.close();
    }

    private static float[] download(Tensor t) {
        float[] out = new float[(int) t.size()];
        cpu.download(t, 0, out, 0, out.length);
        return out;
    }

    /** Sizes below, at and far above one parallel chunk, none a multiple of the vector length. */
    private static final int[] COUNTS = {1, 37, 70_001, 300_007};

    /** Confined sources (F32, F64 here) are converted on the calling thread; shared ones (F16, BF16) in parallel. */
    @Test
    void float32LittleEndian() {
        Random rnd = new Random(1);
        for (int n : COUNTS) {
            try (Arena arena = Arena.ofConfined()) {
                // An odd byte offset: mapped checkpoint tensors need not be aligned.
                MemorySegment src = arena.allocate(n * 4L + 1).asSlice(1);
                float[] expect = new float[n];
                for (int i = 0; i < n; i++) {
                    expect[i] = (float) rnd.nextGaussian();
                    src.set(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE), i * 4L, expect[i]);
                }
                try (Tensor t = cpu.upload(src, DType.F32, n)) {
                    float[] got = download(t);
                    for (int i = 0; i < n; i++) assertEquals(expect[i], got[i]);
                }
            }
        }
    }

    @Test
    void float16IncludingSpecialValues() {
        short[] special = {0x0000, (short) 0x8000, 0x3c00, (short) 0xc000, 0x7bff, 0x0001, 0x03ff, 0x7c00, (short) 0xfc00, 0x7e00};
        float[] specialExpect = {0f, -0f, 1f, -2f, 65504f, 5.9604645e-8f, 6.097555e-5f,
                Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, Float.NaN};
        Random rnd = new Random(2);
        for (int n : COUNTS) {
            try (Arena arena = Arena.ofShared()) {
                MemorySegment src = arena.allocate(Math.max(n, special.length) * 2L);
                int count = Math.max(n, special.length);
                float[] expect = new float[count];
                for (int i = 0; i < count; i++) {
                    short bits = i < special.length ? special[i] : (short) rnd.nextInt(0x7c00);
                    src.set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(LE), i * 2L, bits);
                    expect[i] = i < special.length ? specialExpect[i] : Float.float16ToFloat(bits);
                }
                try (Tensor t = cpu.upload(src, DType.F16, count)) {
                    float[] got = download(t);
                    for (int i = 0; i < count; i++) assertEquals(expect[i], got[i], "f16 element " + i);
                }
            }
        }
    }

    @Test
    void bfloat16IsTheTopHalfOfFloat32() {
        Random rnd = new Random(3);
        for (int n : COUNTS) {
            try (Arena arena = Arena.ofShared()) {
                MemorySegment src = arena.allocate(n * 2L);
                float[] expect = new float[n];
                for (int i = 0; i < n; i++) {
                    float f = i == 0 ? -3.5f : i == 1 ? Float.NEGATIVE_INFINITY : (float) (rnd.nextGaussian() * 1e3);
                    int bits = Float.floatToRawIntBits(f) & 0xffff0000;
                    expect[i] = Float.intBitsToFloat(bits);
                    src.set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(LE), i * 2L, (short) (bits >>> 16));
                }
                try (Tensor t = cpu.upload(src, DType.BF16, n)) {
                    float[] got = download(t);
                    for (int i = 0; i < n; i++) assertEquals(expect[i], got[i], "bf16 element " + i);
                }
            }
        }
    }

    @Test
    void float64RoundsToNearestFloat() {
        Random rnd = new Random(4);
        for (int n : COUNTS) {
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment src = arena.allocate(n * 8L);
                double[] values = new double[n];
                for (int i = 0; i < n; i++) {
                    values[i] = rnd.nextGaussian() * 1e5;
                    src.set(ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(LE), i * 8L, values[i]);
                }
                try (Tensor t = cpu.upload(src, DType.F64, n)) {
                    float[] got = download(t);
                    for (int i = 0; i < n; i++) assertEquals((float) values[i], got[i]);
                }
            }
        }
    }

    @Test
    void rejectsShortSourcesAndNonFloatTypes() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment src = arena.allocate(10);
            var e = assertThrows(IllegalArgumentException.class, () -> cpu.upload(src, DType.F32, 3));
            assertTrue(e.getMessage().startsWith("upload: src has 10 bytes, needs count*4 = 12"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> cpu.upload(src, DType.I32, 1));
            assertThrows(IllegalArgumentException.class, () -> cpu.upload(src, DType.F16, -1));
            try (Tensor empty = cpu.upload(src, DType.BF16, 0)) {
                assertEquals(0, empty.size());
            }
        }
    }
}
