package dev.ropeway.tensor;

import jdk.incubator.vector.FloatVector;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import static dev.ropeway.tensor.VectorMath.F;
import static dev.ropeway.tensor.VectorMath.LANES;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/** Element-wise kernels over flat float ranges. */
final class Elementwise {
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    private static final long MIN_CHUNK = 1 << 15;
    private static final FloatVector ONE = FloatVector.broadcast(F, 1f);
    private static final int BLOCK = 4096;

    private Elementwise() {}

    /**
     * {@code out = silu(gate) * up} with silu(g) = g * (1 / (1 + e^-g)), as torch's SiLU computes it. Only e^-g is
     * staged through a heap block (the exp is an array routine, see {@link VectorMath}); gate and up are read, and
     * out written, in place.
     */
    static void swiglu(WorkerPool pool, MemorySegment out, MemorySegment gate, MemorySegment up, long n) {
        pool.forRange(n, MIN_CHUNK, (from, to) -> {
            float[] e = new float[BLOCK];
            for (long start = from; start < to; start += BLOCK) {
                int len = (int) Math.min(BLOCK, to - start), bound = F.loopBound(len);
                long base = start * 4;
                int i = 0;
                for (; i < bound; i += LANES) FloatVector.fromMemorySegment(F, gate, base + i * 4L, NATIVE).neg().intoArray(e, i);
                for (; i < len; i++) e[i] = -gate.get(JAVA_FLOAT, base + i * 4L);
                VectorMath.expInPlace(e, 0, len);
                for (i = 0; i < bound; i += LANES) {
                    FloatVector g = FloatVector.fromMemorySegment(F, gate, base + i * 4L, NATIVE);
                    FloatVector u = FloatVector.fromMemorySegment(F, up, base + i * 4L, NATIVE);
                    FloatVector sigmoid = ONE.div(FloatVector.fromArray(F, e, i).add(1f));
                    g.mul(sigmoid).mul(u).intoMemorySegment(out, base + i * 4L, NATIVE);
                }
                for (; i < len; i++) {
                    float g = gate.get(JAVA_FLOAT, base + i * 4L);
                    out.set(JAVA_FLOAT, base + i * 4L, g * (1f / (1f + e[i])) * up.get(JAVA_FLOAT, base + i * 4L));
                }
            }
        });
    }

    /** {@code y += x}. */
    static void addInPlace(WorkerPool pool, MemorySegment y, MemorySegment x, long n) {
        pool.forRange(n, MIN_CHUNK, (from, to) -> {
            long i = from;
            for (long bound = from + F.loopBound(to - from); i < bound; i += LANES) {
                FloatVector a = FloatVector.fromMemorySegment(F, y, i * 4, NATIVE);
                a.add(FloatVector.fromMemorySegment(F, x, i * 4, NATIVE)).intoMemorySegment(y, i * 4, NATIVE);
            }
            for (; i < to; i++) y.setAtIndex(JAVA_FLOAT, i, y.getAtIndex(JAVA_FLOAT, i) + x.getAtIndex(JAVA_FLOAT, i));
        });
    }

    /** {@code y[r, :] += bias} for rows [rowFrom, rowTo), columns [colFrom, colTo) of a [*, ld] matrix. */
    static void addBias(MemorySegment y, long yOffset, int ld, MemorySegment bias, long rowFrom, long rowTo,
                        int colFrom, int colTo) {
        int width = colTo - colFrom;
        int bound = F.loopBound(width);
        for (long r = rowFrom; r < rowTo; r++) {
            long base = (yOffset + r * ld + colFrom) * 4;
            int j = 0;
            for (; j < bound; j += LANES) {
                FloatVector a = FloatVector.fromMemorySegment(F, y, base + j * 4L, NATIVE);
                a.add(FloatVector.fromMemorySegment(F, bias, (colFrom + j) * 4L, NATIVE)).intoMemorySegment(y, base + j * 4L, NATIVE);
            }
            for (; j < width; j++)
                y.set(JAVA_FLOAT, base + j * 4L, y.get(JAVA_FLOAT, base + j * 4L) + bias.getAtIndex(JAVA_FLOAT, colFrom + j));
        }
    }
}
