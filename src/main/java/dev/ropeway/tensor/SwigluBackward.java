package dev.ropeway.tensor;

import jdk.incubator.vector.FloatVector;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import static dev.ropeway.tensor.VectorMath.F;
import static dev.ropeway.tensor.VectorMath.LANES;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/**
 * Backward of {@code out = silu(g) * u} with {@code silu(g) = g * sigmoid(g)}:
 * {@code dUp = dOut * silu(g)} and {@code dGate = dOut * u * sigmoid(g) * (1 + g * (1 - sigmoid(g)))}.
 */
final class SwigluBackward {
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    private static final long MIN_CHUNK = 1 << 15;
    private static final int BLOCK = 4096;

    private SwigluBackward() {}

    /**
     * As in the forward kernel, only e^-g goes through a heap block. All inputs of an element are read before its
     * outputs are written, so dGate or dUp may be the same tensor as any input.
     */
    static void run(WorkerPool pool, MemorySegment dGate, MemorySegment dUp, MemorySegment dOut,
                    MemorySegment gate, MemorySegment up, long n) {
        pool.forRange(n, MIN_CHUNK, (from, to) -> {
            float[] e = new float[BLOCK];
            FloatVector one = FloatVector.broadcast(F, 1f);
            for (long start = from; start < to; start += BLOCK) {
                int len = (int) Math.min(BLOCK, to - start), bound = F.loopBound(len);
                long base = start * 4;
                int i = 0;
                for (; i < bound; i += LANES) FloatVector.fromMemorySegment(F, gate, base + i * 4L, NATIVE).neg().intoArray(e, i);
                for (; i < len; i++) e[i] = -gate.get(JAVA_FLOAT, base + i * 4L);
                VectorMath.expInPlace(e, 0, len);
                for (i = 0; i < bound; i += LANES) {
                    long o = base + i * 4L;
                    FloatVector g = FloatVector.fromMemorySegment(F, gate, o, NATIVE);
                    FloatVector u = FloatVector.fromMemorySegment(F, up, o, NATIVE);
                    FloatVector dy = FloatVector.fromMemorySegment(F, dOut, o, NATIVE);
                    FloatVector sig = one.div(FloatVector.fromArray(F, e, i).add(1f));
                    FloatVector dGateV = dy.mul(u).mul(sig).mul(g.mul(one.sub(sig)).add(1f));
                    dy.mul(g.mul(sig)).intoMemorySegment(dUp, o, NATIVE);
                    dGateV.intoMemorySegment(dGate, o, NATIVE);
                }
                for (; i < len; i++) {
                    long o = base + i * 4L;
                    float g = gate.get(JAVA_FLOAT, o), u = up.get(JAVA_FLOAT, o), dy = dOut.get(JAVA_FLOAT, o);
                    float sig = 1f / (1f + e[i]);
                    float dg = dy * u * sig * (1f + g * (1f - sig));
                    dUp.set(JAVA_FLOAT, o, dy * (g * sig));
                    dGate.set(JAVA_FLOAT, o, dg);
                }
            }
        });
    }
}
