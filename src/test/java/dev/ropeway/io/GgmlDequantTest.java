package dev.ropeway.io;

import dev.ropeway.testutil.LlamaCppNative;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * {@link GgmlDequant} against ggml itself (llama.cpp's libraries, where the peer is installed): ggml quantises random
 * rows to every type Ropeway reads, and Ropeway's floats from those bytes equal ggml's own dequantiser bit for bit.
 * Hand-made blocks check the layouts without ggml.
 */
class GgmlDequantTest {
    @Test
    void everyTypeHasGgmlsBlockGeometry() {
        LlamaCppNative ggml = LlamaCppNative.load();
        assumeTrue(ggml != null, "llama.cpp is not installed for the tests (bin/llama-cpp-peer install)");
        for (GgmlType t : GgmlType.values()) {
            LlamaCppNative.Traits traits = ggml.traits(t.id());
            assertEquals(t.name().toLowerCase(java.util.Locale.ROOT), traits.name().toLowerCase(java.util.Locale.ROOT), "id " + t.id());
            assertEquals(t.blockSize(), traits.blockSize(), t + " block size");
            assertEquals(t.blockBytes(), traits.typeSize(), t + " block bytes");
        }
    }

    @TestFactory
    Stream<DynamicTest> ropewayDequantisesAsGgmlDoes() {
        LlamaCppNative ggml = LlamaCppNative.load();
        assumeTrue(ggml != null, "llama.cpp is not installed for the tests (bin/llama-cpp-peer install)");
        return GgmlDequant.supported().stream().filter(t -> t != GgmlType.F32).map(t -> DynamicTest.dynamicTest(t.name(), () -> {
            int rows = 8, perRow = 512;
            float[] x = new float[rows * perRow];
            Random r = new Random(t.id());
            for (int i = 0; i < x.length; i++) {
                // Rows of different scales, a few outliers, and exact zeros: every scale and min path is taken.
                double scale = Math.pow(10, (i / perRow) % 4 - 2);
                x[i] = (float) (i % 97 == 0 ? 0 : scale * (r.nextGaussian() + (i % 61 == 0 ? 8 : 0) + (i / perRow == 5 ? 0.7 : 0)));
            }
            // The lattice types are quantised with an importance matrix (ggml needs one for some of them).
            float[] importance = new float[perRow];
            java.util.Arrays.fill(importance, 1f);
            byte[] bytes = ggml.quantize(t.id(), x, rows, perRow, t.name().startsWith("IQ") && t.blockSize() == 256
                    && t != GgmlType.IQ4_XS ? importance : null);
            float[] theirs = ggml.dequantize(t.id(), bytes, x.length);
            float[] ours = new float[x.length];
            GgmlDequant.toFloats(t, MemorySegment.ofArray(bytes), x.length, ours, 0);
            for (int i = 0; i < x.length; i++)
                assertEquals(Float.floatToRawIntBits(theirs[i]), Float.floatToRawIntBits(ours[i]),
                        t + " value " + i + ": ggml " + theirs[i] + ", Ropeway " + ours[i]);
            double err = 0, norm = 0;
            for (int i = 0; i < x.length; i++) {
                err += (ours[i] - x[i]) * (ours[i] - x[i]);
                norm += x[i] * x[i];
            }
            // About 1.6 bits per value (IQ1, the ternary types) keep less of Gaussian values than 2 bits and more do.
            boolean ternary = t == GgmlType.IQ1_S || t == GgmlType.IQ1_M || t == GgmlType.TQ1_0 || t == GgmlType.TQ2_0;
            assertTrue(Math.sqrt(err / norm) < (ternary ? 0.8 : 0.6), t + " reconstructs its input (relative rms " + Math.sqrt(err / norm) + ")");
        }));
    }

    /**
     * The lattice and ternary types from random bytes (every table entry, sign pattern, scale and high bit; the float16
     * factors of realistic size), decoded as ggml decodes them: this checks each entry of the tables Ropeway reads from
     * its resource, which quantising real values would not all reach.
     */
    @TestFactory
    Stream<DynamicTest> latticeAndTernaryBlocksFromRandomBytes() {
        LlamaCppNative ggml = LlamaCppNative.load();
        assumeTrue(ggml != null, "llama.cpp is not installed for the tests (bin/llama-cpp-peer install)");
        List<GgmlType> types = List.of(GgmlType.IQ2_XXS, GgmlType.IQ2_XS, GgmlType.IQ2_S, GgmlType.IQ3_XXS, GgmlType.IQ3_S,
                GgmlType.IQ1_S, GgmlType.IQ1_M, GgmlType.TQ1_0, GgmlType.TQ2_0);
        return types.stream().map(t -> DynamicTest.dynamicTest(t.name(), () -> {
            int blocks = 3000;
            byte[] bytes = new byte[blocks * t.blockBytes()];
            Random r = new Random(t.id());
            r.nextBytes(bytes);
            for (int b = 0; b < blocks; b++) {
                int p = b * t.blockBytes();
                short d = Float.floatToFloat16((float) ((r.nextBoolean() ? 1 : -1) * Math.pow(10, -3 + 2 * r.nextDouble())));
                switch (t) {
                    case TQ1_0 -> setHalf(bytes, p + 52, d);
                    case TQ2_0 -> setHalf(bytes, p + 64, d);
                    case IQ1_M -> {
                        // d's four nibbles are the top nibbles of the four 16-bit scale words.
                        for (int i = 0; i < 4; i++) bytes[p + 49 + 2 * i] = (byte) (bytes[p + 49 + 2 * i] & 0x0F | (d >> 4 * i & 0xF) << 4);
                    }
                    default -> setHalf(bytes, p, d);
                }
            }
            int n = blocks * 256;
            float[] theirs = ggml.dequantize(t.id(), bytes, n), ours = new float[n];
            GgmlDequant.toFloats(t, MemorySegment.ofArray(bytes), n, ours, 0);
            for (int i = 0; i < n; i++)
                assertEquals(Float.floatToRawIntBits(theirs[i]), Float.floatToRawIntBits(ours[i]),
                        t + " value " + i + ": ggml " + theirs[i] + ", Ropeway " + ours[i]);
        }));
    }

    private static void setHalf(byte[] b, int at, short h) {
        b[at] = (byte) h;
        b[at + 1] = (byte) (h >> 8);
    }

    @Test
    void q4_0AndQ8_0BlocksByHand() {
        // Q4_0: d = 0.5 (float16 0x3800), nibbles j and j + 16 in byte j: low nibble 9 -> +0.5, high nibble 2 -> -3.
        byte[] q4 = new byte[18];
        q4[0] = 0x00;
        q4[1] = 0x38;
        for (int j = 0; j < 16; j++) q4[2 + j] = (byte) (0x29);
        float[] y = new float[32];
        GgmlDequant.toFloats(GgmlType.Q4_0, MemorySegment.ofArray(q4), 32, y, 0);
        for (int j = 0; j < 16; j++) {
            assertEquals(0.5f, y[j]);
            assertEquals(-3f, y[j + 16]);
        }
        // Q8_0: d = 2 (0x4000), values -128 .. 127 stepping.
        byte[] q8 = new byte[34];
        q8[1] = 0x40;
        for (int j = 0; j < 32; j++) q8[2 + j] = (byte) (j * 8 - 128);
        GgmlDequant.toFloats(GgmlType.Q8_0, MemorySegment.ofArray(q8), 32, y, 0);
        for (int j = 0; j < 32; j++) assertEquals(2f * (j * 8 - 128), y[j]);
    }

    @Test
    void q6_KBlockByHand() {
        // d = 1, every scale 2, every 6-bit value 33 (low nibble 1, high bits 2): x = 1 * 2 * (33 - 32) = 2.
        byte[] b = new byte[210];
        for (int i = 0; i < 128; i++) b[i] = 0x11;
        for (int i = 128; i < 192; i++) b[i] = (byte) 0xAA;
        for (int i = 192; i < 208; i++) b[i] = 2;
        b[208] = 0x00;
        b[209] = 0x3C;
        float[] y = new float[256];
        GgmlDequant.toFloats(GgmlType.Q6_K, MemorySegment.ofArray(b), 256, y, 0);
        for (float v : y) assertEquals(2f, v);
    }

    @Test
    void wrongSizesAndTypesAreRefused() {
        float[] y = new float[64];
        assertThrows(IllegalArgumentException.class, () -> GgmlDequant.toFloats(GgmlType.Q4_0, MemorySegment.ofArray(new byte[18]), 33, y, 0));
        assertThrows(IllegalArgumentException.class, () -> GgmlDequant.toFloats(GgmlType.Q4_0, MemorySegment.ofArray(new byte[18]), 64, y, 0));
        assertThrows(IllegalArgumentException.class, () -> GgmlDequant.toFloats(GgmlType.Q8_K, MemorySegment.ofArray(new byte[292]), 256, new float[256], 0));
        assertThrows(IllegalArgumentException.class, () -> GgmlDequant.toFloats(GgmlType.Q8_0, MemorySegment.ofArray(new byte[34]), 32, y, 40));
    }
}
