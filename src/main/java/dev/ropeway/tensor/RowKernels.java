package dev.ropeway.tensor;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import static dev.ropeway.tensor.VectorMath.F;
import static dev.ropeway.tensor.VectorMath.LANES;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/** Kernels that work row by row on [rows, dim] matrices: RMS normalisation and the rotary embedding. */
final class RowKernels {
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    /** Rows per parallel chunk are chosen so that a chunk holds at least this many floats. */
    static final long MIN_CHUNK_FLOATS = 1 << 14;

    private RowKernels() {}

    static long rowsPerChunk(long dim) {
        return Math.max(1, MIN_CHUNK_FLOATS / Math.max(1, dim));
    }

    /**
     * Hugging Face's LlamaRMSNorm in float32: the mean of squares (summed in vector lanes), then
     * {@code (x * (1 / sqrt(mean + eps))) * weight}, each product rounded to float as torch does.
     */
    static void rmsNorm(WorkerPool pool, MemorySegment out, MemorySegment x, MemorySegment weight,
                        long rows, int dim, float eps) {
        pool.forRange(rows, rowsPerChunk(dim), (from, to) -> {
            for (long r = from; r < to; r++) rmsNormRow(out, x, weight, r * dim * Float.BYTES, dim, eps);
        });
    }

    private static void rmsNormRow(MemorySegment out, MemorySegment x, MemorySegment w, long base, int dim, float eps) {
        FloatVector acc = FloatVector.zero(F);
        int bound = F.loopBound(dim);
        int i = 0;
        for (; i < bound; i += LANES) {
            FloatVector v = FloatVector.fromMemorySegment(F, x, base + i * 4L, NATIVE);
            acc = v.fma(v, acc);
        }
        float sum = VectorMath.sumLanes(acc);
        for (; i < dim; i++) {
            float v = x.get(JAVA_FLOAT, base + i * 4L);
            sum += v * v;
        }
        float mean = sum / dim;
        float inv = (float) (1.0 / Math.sqrt(mean + eps));
        i = 0;
        for (; i < bound; i += LANES) {
            FloatVector v = FloatVector.fromMemorySegment(F, x, base + i * 4L, NATIVE);
            FloatVector g = FloatVector.fromMemorySegment(F, w, i * 4L, NATIVE);
            v.mul(inv).mul(g).intoMemorySegment(out, base + i * 4L, NATIVE);
        }
        for (; i < dim; i++)
            out.set(JAVA_FLOAT, base + i * 4L, x.get(JAVA_FLOAT, base + i * 4L) * inv * w.get(JAVA_FLOAT, i * 4L));
    }

    /** cos and sin of {@code (float) positions[r] * invFreq[j]}, each times {@code scale}, rows in parallel. */
    static void rotaryTable(WorkerPool pool, MemorySegment cos, MemorySegment sin, float[] positions,
                            float[] invFreq, float scale) {
        int half = invFreq.length;
        pool.forRange(positions.length, Math.max(1, 2048 / Math.max(1, half)), (from, to) -> {
            float[] c = new float[half], s = new float[half];
            for (long r = from; r < to; r++) {
                float p = positions[(int) r];
                for (int j = 0; j < half; j++) {
                    float angle = p * invFreq[j];
                    c[j] = (float) Math.cos(angle) * scale;
                    s[j] = (float) Math.sin(angle) * scale;
                }
                MemorySegment.copy(c, 0, cos, JAVA_FLOAT, r * half * Float.BYTES, half);
                MemorySegment.copy(s, 0, sin, JAVA_FLOAT, r * half * Float.BYTES, half);
            }
        });
    }

    /**
     * Rotates, in place, features j and j + half of every head ("rotate_half" pairing):
     * {@code y1 = x1*c - x2*s, y2 = x2*c + x1*s}, as separate products and a sum (no fused multiply-add), which is
     * what torch computes.
     */
    static void rotary(WorkerPool pool, MemorySegment x, MemorySegment cos, MemorySegment sin,
                       long rows, int heads, int headDim, int half) {
        pool.forRange(rows, rowsPerChunk((long) heads * headDim), (from, to) -> {
            int bound = F.loopBound(half);
            for (long r = from; r < to; r++) {
                long table = r * half * 4L;
                for (int h = 0; h < heads; h++) {
                    long b1 = (r * heads + h) * headDim * 4L, b2 = b1 + half * 4L;
                    int j = 0;
                    for (; j < bound; j += LANES) {
                        long o = j * 4L;
                        FloatVector c = FloatVector.fromMemorySegment(F, cos, table + o, NATIVE);
                        FloatVector s = FloatVector.fromMemorySegment(F, sin, table + o, NATIVE);
                        FloatVector x1 = FloatVector.fromMemorySegment(F, x, b1 + o, NATIVE);
                        FloatVector x2 = FloatVector.fromMemorySegment(F, x, b2 + o, NATIVE);
                        x1.mul(c).sub(x2.mul(s)).intoMemorySegment(x, b1 + o, NATIVE);
                        x2.mul(c).add(x1.mul(s)).intoMemorySegment(x, b2 + o, NATIVE);
                    }
                    for (; j < half; j++) {
                        long o = j * 4L;
                        float c = cos.get(JAVA_FLOAT, table + o), s = sin.get(JAVA_FLOAT, table + o);
                        float x1 = x.get(JAVA_FLOAT, b1 + o), x2 = x.get(JAVA_FLOAT, b2 + o);
                        x.set(JAVA_FLOAT, b1 + o, x1 * c - x2 * s);
                        x.set(JAVA_FLOAT, b2 + o, x2 * c + x1 * s);
                    }
                }
            }
        });
    }
}
