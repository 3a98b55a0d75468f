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
     * {@code out = silu(gate) * up} with silu(g) = g * (1 / (1 + e^-g)), as torch's SiLU computes it. Blocks are
     * staged through heap arrays so the exp runs as one array-level pass (see {@link VectorMath}).
     */
    static void swiglu(WorkerPool pool, MemorySegment out, MemorySegment gate, MemorySegment up, long n) {
        pool.forRange(n, MIN_CHUNK, (from, to) -> {
            float[] g = new float[BLOCK], e = new float[BLOCK], u = new float[BLOCK];
            for (long start = from; start < to; start += BLOCK) {
                int len = (int) Math.min(BLOCK, to - start);
                MemorySegment.copy(gate, JAVA_FLOAT, start * 4, g, 0, len);
                MemorySegment.copy(up, JAVA_FLOAT, start * 4, u, 0, len);
                for (int i = 0; i < len; i++) e[i] = -g[i];
                VectorMath.expInPlace(e, 0, len);
                int i = 0;
                for (int bound = F.loopBound(len); i < bound; i += LANES) {
                    FloatVector sigmoid = ONE.div(FloatVector.fromArray(F, e, i).add(1f));
                    FloatVector.fromArray(F, g, i).mul(sigmoid).mul(FloatVector.fromArray(F, u, i)).intoArray(e, i);
                }
                for (; i < len; i++) e[i] = g[i] * (1f / (1f + e[i])) * u[i];
                MemorySegment.copy(e, 0, out, JAVA_FLOAT, start * 4, len);
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
