package dev.ropeway.tensor;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/**
 * {@code C = alpha A · Wᵀ + beta C} with W a bfloat16 matrix ({@link CpuBf16Tensor}, row-major [n, k]). A few rows of
 * A (a decode step) read W directly, widening it in registers: half the bytes of the float32 product for the same
 * sums in the same order. More rows widen W in chunks of columns into a float32 buffer for OpenBLAS. Widening is
 * exact, so both give what the float32 product of the widened weights gives.
 */
final class Bf16Gemm {
    private static final VectorSpecies<Float> F = VectorMath.F;
    private static final int LANES = VectorMath.LANES;
    private static final VectorSpecies<Short> S = VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    private static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, F.vectorShape());
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT;
    /** Columns of C (rows of W) widened at a time by one task: 256 x k floats stay in cache with the A block. */
    private static final int CHUNK = 256;

    private Bf16Gemm() {}

    /** Offsets and leading dimensions in elements: floats for A and C, bfloat16 values for W. */
    static void run(WorkerPool pool, int m, int n, int k, float alpha, MemorySegment a, long aOffset, int lda,
                    MemorySegment w, long wOffset, int ldw, float beta, MemorySegment c, long cOffset, int ldc,
                    ParallelGemm.Epilogue epilogue) {
        if (m == 0 || n == 0) return;
        if (k > 0 && Gemv.applies(false, true, m, alpha, beta)) {
            Gemv.forColumns(pool, m, n, k, (c0, c1) -> columns(m, c0, c1, k, a, aOffset, lda, w, wOffset, ldw, c, cOffset, ldc),
                    epilogue);
            return;
        }
        ParallelGemm.forBlocks(pool, m, n, k, (r0, r1, c0, c1) -> {
            MemorySegment wide = wideBuffer((long) Math.min(CHUNK, c1 - c0) * Math.max(k, 1) * Float.BYTES);
            for (int j0 = c0; j0 < c1; j0 += CHUNK) {
                int cols = Math.min(CHUNK, c1 - j0);
                for (int j = 0; j < cols; j++)
                    widen(w, (wOffset + (long) (j0 + j) * ldw) * 2, wide, (long) j * k * Float.BYTES, k);
                OpenBlas.sgemm(false, true, r1 - r0, cols, k, alpha, a.asSlice((aOffset + (long) r0 * lda) * Float.BYTES),
                        lda, wide, Math.max(k, 1), beta, c.asSlice((cOffset + (long) r0 * ldc + j0) * Float.BYTES), ldc);
            }
        }, epilogue);
    }

    /** Each worker's widening buffer, kept between calls (grown when a wider matrix needs more). */
    private static final ThreadLocal<MemorySegment[]> WIDE = ThreadLocal.withInitial(() -> new MemorySegment[1]);

    private static MemorySegment wideBuffer(long bytes) {
        MemorySegment[] held = WIDE.get();
        if (held[0] == null || held[0].byteSize() < bytes) held[0] = Arena.ofAuto().allocate(bytes, 64);
        return held[0];
    }

    /** {@code count} bfloat16 values at byte {@code from} of {@code src} as float32 at byte {@code to} of {@code dst}. */
    static void widen(MemorySegment src, long from, MemorySegment dst, long to, int count) {
        int i = 0;
        for (int bound = S.loopBound(count); i < bound; i += S.length())
            wide(src, from + 2L * i).intoMemorySegment(dst, to + 4L * i, NATIVE);
        for (; i < count; i++) dst.set(JAVA_FLOAT, to + 4L * i, Float.intBitsToFloat(src.get(SHORT, from + 2L * i) << 16));
    }

    /** {@code count} floats from byte {@code from} of {@code src} as bfloat16 values from byte {@code to} of {@code dst}. */
    static void narrow(MemorySegment src, long from, MemorySegment dst, long to, long count) {
        for (long i = 0; i < count; i++) dst.set(SHORT, to + 2 * i, Bfloat16.round(src.get(JAVA_FLOAT, from + 4 * i)));
    }

    /** LANES bfloat16 values at byte {@code offset}, widened: the bits moved to the top half of each float. */
    private static FloatVector wide(MemorySegment src, long offset) {
        ShortVector s = ShortVector.fromMemorySegment(S, src, offset, NATIVE);
        return ((IntVector) s.convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    /** The decode kernel of {@link Gemv}, with W read as bfloat16: same lanes, same order of sums. */
    private static void columns(int m, int c0, int c1, int k, MemorySegment a, long aOffset, int lda,
                                MemorySegment w, long wOffset, int ldw, MemorySegment c, long cOffset, int ldc) {
        float[] lanes = new float[LANES];
        int bound = F.loopBound(k);
        for (int r = 0; r < m; r++) {
            long aRow = (aOffset + (long) r * lda) * Float.BYTES;
            int j = c0;
            for (; j + 4 <= c1; j += 4) {
                long w0 = (wOffset + (long) j * ldw) * 2, step = (long) ldw * 2;
                FloatVector s0 = FloatVector.zero(F), s1 = FloatVector.zero(F), s2 = FloatVector.zero(F), s3 = FloatVector.zero(F);
                int i = 0;
                for (; i < bound; i += LANES) {
                    FloatVector x = FloatVector.fromMemorySegment(F, a, aRow + i * 4L, NATIVE);
                    s0 = wide(w, w0 + i * 2L).fma(x, s0);
                    s1 = wide(w, w0 + step + i * 2L).fma(x, s1);
                    s2 = wide(w, w0 + 2 * step + i * 2L).fma(x, s2);
                    s3 = wide(w, w0 + 3 * step + i * 2L).fma(x, s3);
                }
                float d0 = Gemv.sum(s0, lanes), d1 = Gemv.sum(s1, lanes), d2 = Gemv.sum(s2, lanes), d3 = Gemv.sum(s3, lanes);
                for (; i < k; i++) {
                    float x = a.get(JAVA_FLOAT, aRow + i * 4L);
                    d0 += x * value(w, w0 + i * 2L);
                    d1 += x * value(w, w0 + step + i * 2L);
                    d2 += x * value(w, w0 + 2 * step + i * 2L);
                    d3 += x * value(w, w0 + 3 * step + i * 2L);
                }
                long out = (cOffset + (long) r * ldc + j) * Float.BYTES;
                c.set(JAVA_FLOAT, out, d0);
                c.set(JAVA_FLOAT, out + 4, d1);
                c.set(JAVA_FLOAT, out + 8, d2);
                c.set(JAVA_FLOAT, out + 12, d3);
            }
            for (; j < c1; j++) {
                long w0 = (wOffset + (long) j * ldw) * 2;
                FloatVector s = FloatVector.zero(F);
                int i = 0;
                for (; i < bound; i += LANES)
                    s = wide(w, w0 + i * 2L).fma(FloatVector.fromMemorySegment(F, a, aRow + i * 4L, NATIVE), s);
                float d = Gemv.sum(s, lanes);
                for (; i < k; i++) d += a.get(JAVA_FLOAT, aRow + i * 4L) * value(w, w0 + i * 2L);
                c.set(JAVA_FLOAT, (cOffset + (long) r * ldc + j) * Float.BYTES, d);
            }
        }
    }

    private static float value(MemorySegment w, long byteOffset) {
        return Float.intBitsToFloat(w.get(SHORT, byteOffset) << 16);
    }
}
