package dev.ropeway.tensor;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The fixed tables ggml's lattice quantisations index (read from {@code ggml-iq-grids.bin} beside this class, written
 * by the tests' {@code IqGridTables} from ggml's own dequantisation): a group of 8 values of IQ2_XXS, IQ2_XS or IQ2_S
 * is one entry of 8 magnitudes (bytes 8, 25 or 43) with separate signs, a group of 4 of IQ3_XXS or IQ3_S one entry of 4
 * (odd or 4 + 8k magnitudes up to 62), and a group of 8 of IQ1_S or IQ1_M one entry of 8 values -1, 0 or 1 (signed
 * bytes). Entries are little-endian: value j of entry e is byte j of {@code table[e]}.
 */
public final class IqGrids {
    private IqGrids() {}

    /** IQ2_XXS (256 entries), IQ2_XS (512), IQ2_S (1024) and IQ1_S / IQ1_M (2048): 8 bytes each. */
    public static final long[] IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S;
    /** IQ3_XXS (256 entries) and IQ3_S (512): 4 bytes each. */
    public static final int[] IQ3_XXS, IQ3_S;

    static {
        byte[] all;
        try (InputStream in = IqGrids.class.getResourceAsStream("ggml-iq-grids.bin")) {
            if (in == null) throw new IllegalStateException("ggml-iq-grids.bin is missing from the class path");
            all = in.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        int expected = (256 + 512 + 1024 + 2048) * 8 + (256 + 512) * 4;
        if (all.length != expected)
            throw new IllegalStateException("ggml-iq-grids.bin has " + all.length + " bytes, not " + expected);
        ByteBuffer b = ByteBuffer.wrap(all).order(ByteOrder.LITTLE_ENDIAN);
        IQ2_XXS = longs(b, 256);
        IQ2_XS = longs(b, 512);
        IQ2_S = longs(b, 1024);
        IQ3_XXS = ints(b, 256);
        IQ3_S = ints(b, 512);
        IQ1_S = longs(b, 2048);
    }

    private static long[] longs(ByteBuffer b, int n) {
        long[] out = new long[n];
        for (int i = 0; i < n; i++) out[i] = b.getLong();
        return out;
    }

    private static int[] ints(ByteBuffer b, int n) {
        int[] out = new int[n];
        for (int i = 0; i < n; i++) out[i] = b.getInt();
        return out;
    }

    /** The 7 stored signs of a group of 8 (IQ2_XXS, IQ2_XS, IQ3_XXS) with the eighth, which makes the count of minus signs even. */
    public static int signs7(int i) {
        return i | (Integer.bitCount(i) & 1) << 7;
    }
}
