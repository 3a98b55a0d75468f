package dev.ropeway.tensor;

import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import static java.lang.foreign.ValueLayout.JAVA_SHORT;

/** Rows of a bfloat16 KV cache ({@link CpuBackend#allocateKv}) as the attention kernels read them. */
final class Bf16Rows {
    private static final int LANES = VectorMath.LANES;
    private static final VectorSpecies<Short> S = VectorSpecies.of(short.class, VectorShape.forBitSize(VectorMath.F.vectorBitSize() / 2));
    private static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, VectorMath.F.vectorShape());
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();

    private Bf16Rows() {}

    /** {@code count} bfloat16 values from byte {@code from} of {@code src} into {@code dst[at, at + count)}, widened. */
    static void widen(MemorySegment src, long from, float[] dst, int at, int count) {
        int i = 0;
        // Written out here rather than through a helper returning the vector: one the JIT leaves out of line boxes
        // the vector on every call.
        for (int bound = count - count % LANES; i < bound; i += LANES)
            ((IntVector) ShortVector.fromMemorySegment(S, src, from + 2L * i, NATIVE).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().intoArray(dst, at + i);
        for (; i < count; i++) dst[at + i] = Float.intBitsToFloat(src.get(JAVA_SHORT, from + 2L * i) << 16);
    }

    /**
     * Puts each 32 values of {@code x[0, n)} (n a multiple of 32) in pair order: the 16 even-indexed ones, then the 16
     * odd-indexed ones. A little-endian 16-int load of 32 bfloat16 values holds the even ones in its low halves and the
     * odd ones in its high halves, so a shift and a mask give both as float vectors in this order.
     */
    static void pairOrder(float[] x, int n) {
        float[] block = new float[32];
        for (int i = 0; i < n; i += 32) {
            for (int j = 0; j < 16; j++) {
                block[j] = x[i + 2 * j];
                block[16 + j] = x[i + 2 * j + 1];
            }
            System.arraycopy(block, 0, x, i, 32);
        }
    }

    /** Undoes {@link #pairOrder}. */
    static void naturalOrder(float[] x, int n) {
        float[] block = new float[32];
        for (int i = 0; i < n; i += 32) {
            for (int j = 0; j < 16; j++) {
                block[2 * j] = x[i + j];
                block[2 * j + 1] = x[i + 16 + j];
            }
            System.arraycopy(block, 0, x, i, 32);
        }
    }
}
