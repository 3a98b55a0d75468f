package dev.ropeway.io.bpe;

import java.util.Arrays;

/**
 * GPT-2's printable stand-in for each byte, the alphabet byte-level BPE vocabularies are written in. Printable
 * Latin-1 bytes stand for themselves; the other 68 (controls, space, DEL, NBSP, soft hyphen) take code points from
 * U+0100 up in byte order. Token strings so never hold whitespace or controls, and a merge line "a b" splits
 * unambiguously on its one space.
 */
public final class ByteAlphabet {
    private static final char[] SYMBOL = new char[256];
    private static final int[] BYTE = new int[512];

    static {
        Arrays.fill(BYTE, -1);
        int shifted = 0;
        for (int b = 0; b < 256; b++) {
            boolean printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            char c = (char) (printable ? b : 256 + shifted++);
            SYMBOL[b] = c;
            BYTE[c] = b;
        }
    }

    private ByteAlphabet() {}

    /** The character that stands for byte {@code b} (0..255). */
    public static char symbol(int b) {
        return SYMBOL[b & 0xFF];
    }

    /** The byte a character stands for, or -1 when it is not in the alphabet. */
    public static int byteOf(char c) {
        return c < BYTE.length ? BYTE[c] : -1;
    }

    /** The token string of a byte sequence. */
    public static String encode(byte[] bytes) {
        char[] out = new char[bytes.length];
        for (int i = 0; i < bytes.length; i++) out[i] = SYMBOL[bytes[i] & 0xFF];
        return new String(out);
    }

    /** The bytes of a token string, or null when one of its characters is not in the alphabet. */
    public static byte[] decode(String token) {
        byte[] out = new byte[token.length()];
        for (int i = 0; i < out.length; i++) {
            int b = byteOf(token.charAt(i));
            if (b < 0) return null;
            out[i] = (byte) b;
        }
        return out;
    }
}
