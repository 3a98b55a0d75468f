package dev.ropeway.io;

import dev.ropeway.tensor.IqGrids;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.EnumSet;
import java.util.Set;

/**
 * ggml tensor data back to float32: the plain types (F32, F16, BF16), the legacy block quantisations (Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0), the k-quants (Q2_K to Q6_K), the non-linear 4-bit ones (IQ4_NL, IQ4_XS), the lattice ones (IQ1_S,
 * IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S), the ternary ones (TQ1_0, TQ2_0) and MXFP4. Each value
 * is computed with the same float operations in the same order as ggml's reference {@code dequantize_row_*}, so the
 * results are bit for bit ggml's.
 *
 * <p>The block layouts (little-endian, {@code d}/{@code dmin} float16, QK_K = 256):
 * <ul>
 *   <li>Q4_0 {d, qs[16]}: x = d (q - 8); Q4_1 {d, m, qs[16]}: x = d q + m (low nibbles are elements 0..15, high
 *   nibbles 16..31);</li>
 *   <li>Q5_0 {d, qh[4], qs[16]} and Q5_1 {d, m, qh[4], qs[16]}: a fifth bit per element from the 32-bit qh;</li>
 *   <li>Q8_0 {d, qs[32] int8}: x = d q;</li>
 *   <li>Q2_K {scales[16], qs[64], d, dmin}: 16 sub-blocks of 16 with 4-bit scale and min;</li>
 *   <li>Q3_K {hmask[32], qs[64], scales[12], d}: 3-bit values, 6-bit signed sub-block scales;</li>
 *   <li>Q4_K {d, dmin, scales[12], qs[128]} and Q5_K {d, dmin, scales[12], qh[32], qs[128]}: 8 sub-blocks of 32
 *   with 6-bit scale and min;</li>
 *   <li>Q6_K {ql[128], qh[64], scales[16] int8, d}: 6-bit values, 16 sub-blocks of 16;</li>
 *   <li>IQ4_NL {d, qs[16]} and IQ4_XS {d, scales_h, scales_l[4], qs[128]}: 4-bit indices into a fixed table;</li>
 *   <li>MXFP4 {e, qs[16]}: FP4 (E2M1) values times the power of two e8m0 {@code e}.</li>
 *   <li>IQ2_XXS {d, qs[64]}, IQ2_XS {d, qs[32] uint16, scales[8]}, IQ2_S {d, qs[32], signs[32], qh[8], scales[8]}: each
 *   group of 8 values is an entry of a fixed table of 8 magnitudes (8, 25 or 43) with 8 signs (7 stored, the eighth
 *   making their count even, or all 8 for IQ2_S), times d (1/2 + a 4-bit scale) / 4;</li>
 *   <li>IQ3_XXS {d, qs[64], scales and signs[32]} and IQ3_S {d, qs[64], qh[8], signs[32], scales[4]}: groups of 4
 *   values from tables of 4 magnitudes, with signs as IQ2's, times d (1/2 + scale) / 2 or d (1 + 2 scale);</li>
 *   <li>IQ1_S {d, qs[32], qh[8] uint16} and IQ1_M {qs[32], qh[16], scales[8] holding d}: groups of 8 values from a table
 *   of -1, 0 and 1, each plus or minus 1/8, times d (2 scale + 1);</li>
 *   <li>TQ1_0 {qs[48], qh[4], d} (5 or 4 base-3 digits per byte) and TQ2_0 {qs[64], d} (2 bits each): -1, 0 or 1
 *   times d.</li>
 * </ul>
 * The lattice tables are {@link IqGrids}'.
 */
public final class GgmlDequant {
    private GgmlDequant() {}

    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);

    private static final Set<GgmlType> SUPPORTED = EnumSet.of(GgmlType.F32, GgmlType.F16, GgmlType.BF16,
            GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0, GgmlType.Q2_K, GgmlType.Q3_K,
            GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS, GgmlType.MXFP4,
            GgmlType.IQ2_XXS, GgmlType.IQ2_XS, GgmlType.IQ2_S, GgmlType.IQ3_XXS, GgmlType.IQ3_S, GgmlType.IQ1_S,
            GgmlType.IQ1_M, GgmlType.TQ1_0, GgmlType.TQ2_0);

    /** The table IQ4_NL and IQ4_XS index. */
    private static final byte[] IQ4 = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    /** E2M1 values, doubled (MXFP4's scale is halved to match). */
    private static final byte[] FP4 = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

    /** Bytes decoded per step: whole blocks of every type, about a quarter megabyte. */
    private static final int CHUNK_BLOCKS = 1024;

    /** Whether {@link #toFloats} converts {@code type}. */
    public static boolean supports(GgmlType type) {
        return SUPPORTED.contains(type);
    }

    /** The types {@link #toFloats} converts, in ggml id order. */
    public static Set<GgmlType> supported() {
        return EnumSet.copyOf(SUPPORTED);
    }

    /**
     * Converts {@code n} elements stored as {@code type} in {@code src} (a whole number of blocks) into
     * {@code out[outOffset ..]}.
     */
    public static void toFloats(GgmlType type, MemorySegment src, long n, float[] out, int outOffset) {
        if (!supports(type)) throw new IllegalArgumentException(type + " is not converted to floats");
        if (n % type.blockSize() != 0)
            throw new IllegalArgumentException(n + " elements are not whole blocks of " + type.blockSize() + " (" + type + ")");
        long blocks = n / type.blockSize();
        if (src.byteSize() < blocks * type.blockBytes())
            throw new IllegalArgumentException(src.byteSize() + " bytes hold fewer than " + blocks + " blocks of " + type);
        if (outOffset < 0 || outOffset + n > out.length)
            throw new IllegalArgumentException(n + " values do not fit in " + out.length + " floats from " + outOffset);
        if (type == GgmlType.F32) {
            MemorySegment.copy(src, F32, 0, out, outOffset, (int) n);
            return;
        }
        if (type == GgmlType.F16 || type == GgmlType.BF16) {
            short[] halves = new short[(int) Math.min(n, 1 << 18)];
            for (long first = 0; first < n; first += halves.length) {
                int count = (int) Math.min(halves.length, n - first);
                MemorySegment.copy(src, I16, 2 * first, halves, 0, count);
                int y = outOffset + (int) first;
                if (type == GgmlType.F16) for (int i = 0; i < count; i++) out[y + i] = Float.float16ToFloat(halves[i]);
                else for (int i = 0; i < count; i++) out[y + i] = Float.intBitsToFloat(halves[i] << 16);
            }
            return;
        }
        byte[] chunk = new byte[(int) Math.min(blocks, CHUNK_BLOCKS) * type.blockBytes()];
        int perChunk = chunk.length / type.blockBytes();
        for (long first = 0; first < blocks; first += perChunk) {
            int count = (int) Math.min(perChunk, blocks - first);
            MemorySegment.copy(src, ValueLayout.JAVA_BYTE, first * type.blockBytes(), chunk, 0, count * type.blockBytes());
            int y = outOffset + (int) (first * type.blockSize());
            for (int b = 0; b < count; b++, y += type.blockSize()) block(type, chunk, b * type.blockBytes(), out, y);
        }
    }

    /** Decodes one block starting at {@code x[at]} into {@code y[o .. o + blockSize)}. */
    private static void block(GgmlType type, byte[] x, int at, float[] y, int o) {
        switch (type) {
            case F32 -> y[o] = Float.intBitsToFloat(i32(x, at));
            case F16 -> y[o] = f16(x, at);
            case BF16 -> y[o] = Float.intBitsToFloat(u16(x, at) << 16);
            case Q4_0 -> {
                float d = f16(x, at);
                for (int j = 0; j < 16; j++) {
                    int q = x[at + 2 + j] & 0xFF;
                    y[o + j] = ((q & 0xF) - 8) * d;
                    y[o + j + 16] = ((q >> 4) - 8) * d;
                }
            }
            case Q4_1 -> {
                float d = f16(x, at), m = f16(x, at + 2);
                for (int j = 0; j < 16; j++) {
                    int q = x[at + 4 + j] & 0xFF;
                    y[o + j] = (q & 0xF) * d + m;
                    y[o + j + 16] = (q >> 4) * d + m;
                }
            }
            case Q5_0 -> {
                float d = f16(x, at);
                int qh = i32(x, at + 2);
                for (int j = 0; j < 16; j++) {
                    int q = x[at + 6 + j] & 0xFF;
                    int h0 = ((qh >>> j) << 4) & 0x10, h1 = (qh >>> (j + 12)) & 0x10;
                    y[o + j] = (((q & 0xF) | h0) - 16) * d;
                    y[o + j + 16] = (((q >> 4) | h1) - 16) * d;
                }
            }
            case Q5_1 -> {
                float d = f16(x, at), m = f16(x, at + 2);
                int qh = i32(x, at + 4);
                for (int j = 0; j < 16; j++) {
                    int q = x[at + 8 + j] & 0xFF;
                    int h0 = ((qh >>> j) << 4) & 0x10, h1 = (qh >>> (j + 12)) & 0x10;
                    y[o + j] = ((q & 0xF) | h0) * d + m;
                    y[o + j + 16] = ((q >> 4) | h1) * d + m;
                }
            }
            case Q8_0 -> {
                float d = f16(x, at);
                for (int j = 0; j < 32; j++) y[o + j] = x[at + 2 + j] * d;
            }
            case Q2_K -> q2k(x, at, y, o);
            case Q3_K -> q3k(x, at, y, o);
            case Q4_K -> q45k(x, at, y, o, false);
            case Q5_K -> q45k(x, at, y, o, true);
            case Q6_K -> q6k(x, at, y, o);
            case IQ4_NL -> {
                float d = f16(x, at);
                for (int j = 0; j < 16; j++) {
                    int q = x[at + 2 + j] & 0xFF;
                    y[o + j] = d * IQ4[q & 0xF];
                    y[o + j + 16] = d * IQ4[q >> 4];
                }
            }
            case IQ4_XS -> {
                float d = f16(x, at);
                int scalesH = u16(x, at + 2);
                for (int ib = 0; ib < 8; ib++) {
                    int ls = (((x[at + 4 + ib / 2] & 0xFF) >> (4 * (ib % 2))) & 0xF) | (((scalesH >> (2 * ib)) & 3) << 4);
                    float dl = d * (ls - 32);
                    int qs = at + 8 + 16 * ib, yo = o + 32 * ib;
                    for (int j = 0; j < 16; j++) {
                        int q = x[qs + j] & 0xFF;
                        y[yo + j] = dl * IQ4[q & 0xF];
                        y[yo + j + 16] = dl * IQ4[q >> 4];
                    }
                }
            }
            case MXFP4 -> {
                // e8m0 halved: 2^(e - 128), as a float whose exponent field is e - 1 (e = 0, 1 are subnormal).
                int e = x[at] & 0xFF;
                float d = e < 2 ? Float.intBitsToFloat(0x0020_0000 << e) : Float.intBitsToFloat((e - 1) << 23);
                for (int j = 0; j < 16; j++) {
                    int q = x[at + 1 + j] & 0xFF;
                    y[o + j] = FP4[q & 0xF] * d;
                    y[o + j + 16] = FP4[q >> 4] * d;
                }
            }
            case IQ2_XXS -> iq2xxs(x, at, y, o);
            case IQ2_XS -> iq2xs(x, at, y, o);
            case IQ2_S -> iq2s(x, at, y, o);
            case IQ3_XXS -> iq3xxs(x, at, y, o);
            case IQ3_S -> iq3s(x, at, y, o);
            case IQ1_S -> iq1s(x, at, y, o);
            case IQ1_M -> iq1m(x, at, y, o);
            case TQ1_0 -> tq1(x, at, y, o);
            case TQ2_0 -> tq2(x, at, y, o);
            default -> throw new IllegalArgumentException(type + " is not converted to floats");
        }
    }

    // ---- Lattice (IQ1, IQ2, IQ3) and ternary (TQ) types ----

    /** 8 values: {@code scale * table byte * sign}, in ggml's order of products. */
    private static void group8(long[] table, int entry, float scale, int signs, float[] y, int o) {
        long g = table[entry];
        for (int j = 0; j < 8; j++)
            y[o + j] = scale * (int) (g >>> 8 * j & 0xFF) * ((signs >> j & 1) != 0 ? -1f : 1f);
    }

    private static void iq2xxs(byte[] x, int at, float[] y, int o) {
        float d = f16(x, at);
        for (int ib = 0; ib < 8; ib++) {
            int q = at + 2 + 8 * ib, aux = i32(x, q + 4);
            float db = d * (0.5f + (aux >>> 28)) * 0.25f;
            for (int l = 0; l < 4; l++, o += 8) group8(IqGrids.IQ2_XXS, x[q + l] & 0xFF, db, IqGrids.signs7(aux >>> 7 * l & 127), y, o);
        }
    }

    private static void iq2xs(byte[] x, int at, float[] y, int o) {
        float d = f16(x, at);
        for (int ib = 0; ib < 8; ib++) {
            int sc = x[at + 66 + ib] & 0xFF;
            float db0 = d * (0.5f + (sc & 0xF)) * 0.25f, db1 = d * (0.5f + (sc >> 4)) * 0.25f;
            for (int l = 0; l < 4; l++, o += 8) {
                int q = u16(x, at + 2 + 2 * (4 * ib + l));
                group8(IqGrids.IQ2_XS, q & 511, l < 2 ? db0 : db1, IqGrids.signs7(q >> 9), y, o);
            }
        }
    }

    private static void iq2s(byte[] x, int at, float[] y, int o) {
        float d = f16(x, at);
        for (int ib = 0; ib < 8; ib++) {
            int sc = x[at + 74 + ib] & 0xFF, qh = x[at + 66 + ib] & 0xFF;
            float db0 = d * (0.5f + (sc & 0xF)) * 0.25f, db1 = d * (0.5f + (sc >> 4)) * 0.25f;
            for (int l = 0; l < 4; l++, o += 8) {
                int entry = (x[at + 2 + 4 * ib + l] & 0xFF) | (qh << (8 - 2 * l) & 0x300);
                group8(IqGrids.IQ2_S, entry, l < 2 ? db0 : db1, x[at + 34 + 4 * ib + l] & 0xFF, y, o);
            }
        }
    }

    /** 4 + 4 values of two 4-byte entries: {@code scale * table byte * sign} with signs j and j + 4 of {@code signs}. */
    private static void groups4(int[] table, int e1, int e2, float scale, int signs, float[] y, int o) {
        int g1 = table[e1], g2 = table[e2];
        for (int j = 0; j < 4; j++) {
            y[o + j] = scale * (g1 >>> 8 * j & 0xFF) * ((signs >> j & 1) != 0 ? -1f : 1f);
            y[o + j + 4] = scale * (g2 >>> 8 * j & 0xFF) * ((signs >> j + 4 & 1) != 0 ? -1f : 1f);
        }
    }

    private static void iq3xxs(byte[] x, int at, float[] y, int o) {
        float d = f16(x, at);
        for (int ib = 0; ib < 8; ib++) {
            int qs = at + 2 + 8 * ib, aux = i32(x, at + 66 + 4 * ib);
            float db = d * (0.5f + (aux >>> 28)) * 0.5f;
            for (int l = 0; l < 4; l++, o += 8)
                groups4(IqGrids.IQ3_XXS, x[qs + 2 * l] & 0xFF, x[qs + 2 * l + 1] & 0xFF, db, IqGrids.signs7(aux >>> 7 * l & 127), y, o);
        }
    }

    private static void iq3s(byte[] x, int at, float[] y, int o) {
        float d = f16(x, at);
        for (int ib = 0; ib < 8; ib++) {
            int sc = x[at + 106 + ib / 2] & 0xFF, qh = x[at + 66 + ib] & 0xFF;
            float db = d * (1 + 2 * ((ib & 1) == 0 ? sc & 0xF : sc >> 4));
            int qs = at + 2 + 8 * ib, signs = at + 74 + 4 * ib;
            for (int l = 0; l < 4; l++, o += 8) {
                int e1 = (x[qs + 2 * l] & 0xFF) | (qh << (8 - 2 * l) & 256);
                int e2 = (x[qs + 2 * l + 1] & 0xFF) | (qh << (7 - 2 * l) & 256);
                groups4(IqGrids.IQ3_S, e1, e2, db, x[signs + l] & 0xFF, y, o);
            }
        }
    }

    /** ggml's IQ1S_DELTA. */
    private static final float IQ1_DELTA = 0.125f;

    /** 8 values: {@code scale * (table entry + delta)}. */
    private static void group8Ternary(int entry, float scale, float delta, float[] y, int o) {
        long g = IqGrids.IQ1_S[entry];
        for (int j = 0; j < 8; j++) y[o + j] = scale * ((byte) (g >>> 8 * j) + delta);
    }

    private static void iq1s(byte[] x, int at, float[] y, int o) {
        float d = f16(x, at);
        for (int ib = 0; ib < 8; ib++) {
            int qh = u16(x, at + 34 + 2 * ib);
            float dl = d * (2 * ((qh >> 12) & 7) + 1);
            float delta = (qh & 0x8000) != 0 ? -IQ1_DELTA : IQ1_DELTA;
            for (int l = 0; l < 4; l++, o += 8)
                group8Ternary((x[at + 2 + 4 * ib + l] & 0xFF) | ((qh >> 3 * l) & 7) << 8, dl, delta, y, o);
        }
    }

    private static void iq1m(byte[] x, int at, float[] y, int o) {
        int[] sc = {u16(x, at + 48), u16(x, at + 50), u16(x, at + 52), u16(x, at + 54)};
        float d = Float.float16ToFloat((short) ((sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000)));
        for (int ib = 0; ib < 8; ib++) {
            int s = sc[ib / 2] >> 6 * (ib % 2);
            float dl1 = d * (2 * (s & 7) + 1), dl2 = d * (2 * ((s >> 3) & 7) + 1);
            int qs = at + 4 * ib, h0 = x[at + 32 + 2 * ib] & 0xFF, h1 = x[at + 33 + 2 * ib] & 0xFF;
            group8Ternary((x[qs] & 0xFF) | (h0 << 8 & 0x700), dl1, (h0 & 0x08) != 0 ? -IQ1_DELTA : IQ1_DELTA, y, o);
            group8Ternary((x[qs + 1] & 0xFF) | (h0 << 4 & 0x700), dl1, (h0 & 0x80) != 0 ? -IQ1_DELTA : IQ1_DELTA, y, o + 8);
            group8Ternary((x[qs + 2] & 0xFF) | (h1 << 8 & 0x700), dl2, (h1 & 0x08) != 0 ? -IQ1_DELTA : IQ1_DELTA, y, o + 16);
            group8Ternary((x[qs + 3] & 0xFF) | (h1 << 4 & 0x700), dl2, (h1 & 0x80) != 0 ? -IQ1_DELTA : IQ1_DELTA, y, o + 24);
            o += 32;
        }
    }

    /** A base-3 digit: the top one of the byte's fraction {@code q / 256} (q already multiplied by a power of 3, mod 256), less 1. */
    private static int trit(int q) {
        return ((q & 0xFF) * 3 >> 8) - 1;
    }

    private static final int[] POW3 = {1, 3, 9, 27, 81};

    private static void tq1(byte[] x, int at, float[] y, int o) {
        float d = f16(x, at + 52);
        for (int n = 0; n < 5; n++)
            for (int m = 0; m < 32; m++) y[o++] = (float) trit((x[at + m] & 0xFF) * POW3[n]) * d;
        for (int n = 0; n < 5; n++)
            for (int m = 0; m < 16; m++) y[o++] = (float) trit((x[at + 32 + m] & 0xFF) * POW3[n]) * d;
        for (int n = 0; n < 4; n++)
            for (int j = 0; j < 4; j++) y[o++] = (float) trit((x[at + 48 + j] & 0xFF) * POW3[n]) * d;
    }

    private static void tq2(byte[] x, int at, float[] y, int o) {
        float d = f16(x, at + 64);
        for (int j = 0; j < 64; j += 32)
            for (int l = 0; l < 4; l++)
                for (int m = 0; m < 32; m++) y[o++] = (float) (((x[at + j + m] & 0xFF) >> 2 * l & 3) - 1) * d;
    }

    private static void q2k(byte[] x, int at, float[] y, int o) {
        int scales = at, qs = at + 16;
        float d = f16(x, at + 80), min = f16(x, at + 82);
        int is = 0;
        for (int n = 0; n < 256; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                for (int half = 0; half < 2; half++) {
                    int sc = x[scales + is++] & 0xFF;
                    float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                    int q = qs + 16 * half;
                    for (int l = 0; l < 16; l++) y[o++] = dl * (((x[q + l] & 0xFF) >> shift) & 3) - ml;
                }
                shift += 2;
            }
            qs += 32;
        }
    }

    private static void q3k(byte[] x, int at, float[] y, int o) {
        int hm = at, qs = at + 32;
        float dAll = f16(x, at + 108);
        int a0 = i32(x, at + 96), a1 = i32(x, at + 100), tmp = i32(x, at + 104);
        int kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
        int[] aux = {
                (a0 & kmask2) | ((tmp & kmask1) << 4),
                (a1 & kmask2) | (((tmp >>> 2) & kmask1) << 4),
                ((a0 >>> 4) & kmask2) | (((tmp >>> 4) & kmask1) << 4),
                ((a1 >>> 4) & kmask2) | (((tmp >>> 6) & kmask1) << 4)};
        int is = 0, m = 1;
        for (int n = 0; n < 256; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                for (int half = 0; half < 2; half++) {
                    int scale = (byte) (aux[is / 4] >>> (8 * (is % 4)));
                    is++;
                    float dl = dAll * (scale - 32);
                    int q = qs + 16 * half, h = hm + 16 * half;
                    for (int l = 0; l < 16; l++)
                        y[o++] = dl * ((((x[q + l] & 0xFF) >> shift) & 3) - ((x[h + l] & m) != 0 ? 0 : 4));
                }
                shift += 2;
                m <<= 1;
            }
            qs += 32;
        }
    }

    private static void q45k(byte[] x, int at, float[] y, int o, boolean five) {
        float d = f16(x, at), min = f16(x, at + 2);
        int scales = at + 4, qh = at + 16, ql = five ? at + 48 : at + 16;
        int is = 0, u1 = 1, u2 = 2;
        for (int j = 0; j < 256; j += 64) {
            float d1 = d * scale(x, scales, is), m1 = min * min(x, scales, is);
            float d2 = d * scale(x, scales, is + 1), m2 = min * min(x, scales, is + 1);
            for (int l = 0; l < 32; l++) {
                int q = (x[ql + l] & 0xF) + (five && (x[qh + l] & u1) != 0 ? 16 : 0);
                y[o++] = d1 * q - m1;
            }
            for (int l = 0; l < 32; l++) {
                int q = ((x[ql + l] & 0xFF) >> 4) + (five && (x[qh + l] & u2) != 0 ? 16 : 0);
                y[o++] = d2 * q - m2;
            }
            ql += 32;
            is += 2;
            u1 <<= 2;
            u2 <<= 2;
        }
    }

    /** The 6-bit scale of sub-block j of a Q4_K / Q5_K block's 12 scale bytes. */
    private static int scale(byte[] x, int q, int j) {
        return j < 4 ? x[q + j] & 63 : (x[q + j + 4] & 0xF) | (((x[q + j - 4] & 0xFF) >> 6) << 4);
    }

    /** The 6-bit min of sub-block j. */
    private static int min(byte[] x, int q, int j) {
        return j < 4 ? x[q + j + 4] & 63 : ((x[q + j + 4] & 0xFF) >> 4) | (((x[q + j] & 0xFF) >> 6) << 4);
    }

    private static void q6k(byte[] x, int at, float[] y, int o) {
        int ql = at, qh = at + 128, sc = at + 192;
        float d = f16(x, at + 208);
        for (int n = 0; n < 256; n += 128) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int lo0 = x[ql + l] & 0xFF, lo1 = x[ql + l + 32] & 0xFF, h = x[qh + l] & 0xFF;
                int q1 = ((lo0 & 0xF) | ((h & 3) << 4)) - 32;
                int q2 = ((lo1 & 0xF) | (((h >> 2) & 3) << 4)) - 32;
                int q3 = ((lo0 >> 4) | (((h >> 4) & 3) << 4)) - 32;
                int q4 = ((lo1 >> 4) | (((h >> 6) & 3) << 4)) - 32;
                y[o + l] = d * x[sc + is] * q1;
                y[o + l + 32] = d * x[sc + is + 2] * q2;
                y[o + l + 64] = d * x[sc + is + 4] * q3;
                y[o + l + 96] = d * x[sc + is + 6] * q4;
            }
            o += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }

    private static int u16(byte[] x, int at) {
        return (x[at] & 0xFF) | (x[at + 1] & 0xFF) << 8;
    }

    private static int i32(byte[] x, int at) {
        return (x[at] & 0xFF) | (x[at + 1] & 0xFF) << 8 | (x[at + 2] & 0xFF) << 16 | (x[at + 3] & 0xFF) << 24;
    }

    private static float f16(byte[] x, int at) {
        return Float.float16ToFloat((short) u16(x, at));
    }
}
