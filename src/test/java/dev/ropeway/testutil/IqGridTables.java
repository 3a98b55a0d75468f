package dev.ropeway.testutil;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Writes {@code src/main/resources/dev/ropeway/tensor/ggml-iq-grids.bin}, the lattice tables ggml's IQ1, IQ2 and IQ3 types
 * index, as ggml's own dequantisers give them: each table is read back by dequantising blocks whose every index names
 * one entry in turn, with the block's factors set so that a value is the entry times a known power of two. The file
 * holds, in order and little-endian, IQ2_XXS's 256 entries of 8 bytes, IQ2_XS's 512 of 8, IQ2_S's 1024 of 8,
 * IQ3_XXS's 256 of 4, IQ3_S's 512 of 4 and IQ1_S's (also IQ1_M's) 2048 of 8 (signed bytes). {@code GgmlDequantTest}
 * checks every entry through random blocks against ggml.
 *
 * <p>Run: {@code java --enable-native-access=ALL-UNNAMED -cp target/test-classes:target/classes
 * dev.ropeway.testutil.IqGridTables [out-file]} where the llama.cpp peer is installed.
 */
public final class IqGridTables {
    private IqGridTables() {}

    public static void main(String[] args) throws IOException {
        LlamaCppNative ggml = LlamaCppNative.load();
        if (ggml == null) throw new IllegalStateException("llama.cpp is not installed (bin/llama-cpp-peer install)");
        Path out = Path.of(args.length > 0 ? args[0] : "src/main/resources/dev/ropeway/tensor/ggml-iq-grids.bin");
        ByteBuffer b = ByteBuffer.allocate(256 * 8 + 512 * 8 + 1024 * 8 + 256 * 4 + 512 * 4 + 2048 * 8).order(ByteOrder.LITTLE_ENDIAN);
        b.put(iq2(ggml, 16, 256, 66));
        b.put(iq2(ggml, 17, 512, 74));
        b.put(iq2(ggml, 22, 1024, 82));
        b.put(iq3(ggml, 18, 256, 98));
        b.put(iq3(ggml, 21, 512, 110));
        b.put(iq1(ggml));
        Files.write(out, b.array());
        System.out.println("wrote " + out + " (" + b.capacity() + " bytes)");
    }

    /** d = 1 as float16 at byte 0 of a block. */
    private static void one(byte[] block, int at) {
        block[at] = 0x00;
        block[at + 1] = 0x3C;
    }

    /** IQ2 tables: 8 bytes per entry; blocks with d = 1, scales 0 (factor 1/8) and no signs. */
    private static byte[] iq2(LlamaCppNative ggml, int type, int entries, int blockBytes) {
        int blocks = entries / 32;
        byte[] data = new byte[blocks * blockBytes];
        for (int blk = 0; blk < blocks; blk++) {
            int p = blk * blockBytes;
            one(data, p);
            for (int g = 0; g < 32; g++) {
                int e = blk * 32 + g, ib = g / 4, l = g % 4;
                switch (type) {
                    case 16 -> data[p + 2 + 8 * ib + l] = (byte) e;                 // grid bytes, then a zero word
                    case 17 -> {                                                    // 9-bit index, sign index 0
                        data[p + 2 + 2 * g] = (byte) e;
                        data[p + 3 + 2 * g] = (byte) (e >> 8 & 1);
                    }
                    default -> {                                                    // low 8 bits, 2 high bits in qh
                        data[p + 2 + g] = (byte) e;
                        data[p + 66 + ib] |= (byte) ((e >> 8 & 3) << 2 * l);
                    }
                }
            }
        }
        float[] y = ggml.dequantize(type, data, blocks * 256);
        byte[] table = new byte[entries * 8];
        for (int i = 0; i < table.length; i++) table[i] = exact(y[i] * 8, "IQ2 type " + type);
        return table;
    }

    /** IQ3 tables: 4 bytes per entry; IQ3_XXS with d = 1 and scale 0 (factor 1/4), IQ3_S with scale 0 (factor 1). */
    private static byte[] iq3(LlamaCppNative ggml, int type, int entries, int blockBytes) {
        int blocks = entries / 64;
        byte[] data = new byte[blocks * blockBytes];
        for (int blk = 0; blk < blocks; blk++) {
            int p = blk * blockBytes;
            one(data, p);
            for (int g = 0; g < 64; g++) {
                int e = blk * 64 + g;
                data[p + 2 + g] = (byte) e;
                // IQ3_S: bit 8 of index g (qs[2l + h] of 32-value group ib) is bit (2l + h) of qh[ib].
                if (type == 21 && (e & 256) != 0) data[p + 66 + g / 8] |= (byte) (1 << g % 8);
            }
        }
        float[] y = ggml.dequantize(type, data, blocks * 256);
        float factor = type == 18 ? 4 : 1;
        byte[] table = new byte[entries * 4];
        for (int i = 0; i < table.length; i++) table[i] = exact(y[i] * factor, "IQ3 type " + type);
        return table;
    }

    /** IQ1_S's table: 8 signed bytes per entry; blocks with d = 1, scale 0 (factor 1) and delta +1/8. */
    private static byte[] iq1(LlamaCppNative ggml) {
        int entries = 2048, blocks = entries / 32, blockBytes = 50;
        byte[] data = new byte[blocks * blockBytes];
        for (int blk = 0; blk < blocks; blk++) {
            int p = blk * blockBytes;
            one(data, p);
            for (int g = 0; g < 32; g++) {
                int e = blk * 32 + g, ib = g / 4, l = g % 4;
                data[p + 2 + g] = (byte) e;
                int qh = (data[p + 34 + 2 * ib] & 0xFF) | (data[p + 35 + 2 * ib] & 0xFF) << 8;
                qh |= (e >> 8 & 7) << 3 * l;
                data[p + 34 + 2 * ib] = (byte) qh;
                data[p + 35 + 2 * ib] = (byte) (qh >> 8);
            }
        }
        float[] y = ggml.dequantize(19, data, blocks * 256);
        byte[] table = new byte[entries * 8];
        for (int i = 0; i < table.length; i++) table[i] = exact(y[i] - 0.125f, "IQ1_S");
        return table;
    }

    private static byte exact(float v, String what) {
        if (v != Math.rint(v) || v < -128 || v > 255) throw new IllegalStateException(what + ": " + v + " is not a table byte");
        return (byte) (int) v;
    }
}
