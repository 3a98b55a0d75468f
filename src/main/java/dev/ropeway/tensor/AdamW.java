package dev.ropeway.tensor;

import jdk.incubator.vector.FloatVector;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import static dev.ropeway.tensor.VectorMath.F;
import static dev.ropeway.tensor.VectorMath.LANES;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/**
 * One AdamW step (Adam with bias correction and decoupled weight decay) over flat float buffers. The bias
 * corrections {@code 1 / (1 - beta^t)} are computed once in double and applied as float factors.
 */
final class AdamW {
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    private static final long MIN_CHUNK = 1 << 14;

    private AdamW() {}

    static void step(WorkerPool pool, MemorySegment param, MemorySegment grad, MemorySegment m, MemorySegment v, long n,
                     float lr, float beta1, float beta2, float eps, float weightDecay, float gradScale, long step) {
        float correct1 = (float) (1 / (1 - Math.pow(beta1, step)));
        float correct2 = (float) (1 / (1 - Math.pow(beta2, step)));
        float keep1 = 1 - beta1, keep2 = 1 - beta2;
        pool.forRange(n, MIN_CHUNK, (from, to) -> {
            long i = from;
            for (long bound = from + F.loopBound(to - from); i < bound; i += LANES) {
                long o = i * 4;
                FloatVector g = FloatVector.fromMemorySegment(F, grad, o, NATIVE).mul(gradScale);
                FloatVector p = FloatVector.fromMemorySegment(F, param, o, NATIVE);
                FloatVector mv = FloatVector.fromMemorySegment(F, m, o, NATIVE).mul(beta1).add(g.mul(keep1));
                FloatVector vv = FloatVector.fromMemorySegment(F, v, o, NATIVE).mul(beta2).add(g.mul(g).mul(keep2));
                FloatVector update = mv.mul(correct1).div(vv.mul(correct2).sqrt().add(eps)).add(p.mul(weightDecay));
                mv.intoMemorySegment(m, o, NATIVE);
                vv.intoMemorySegment(v, o, NATIVE);
                p.sub(update.mul(lr)).intoMemorySegment(param, o, NATIVE);
            }
            for (; i < to; i++) {
                long o = i * 4;
                float g = grad.get(JAVA_FLOAT, o) * gradScale, p = param.get(JAVA_FLOAT, o);
                float mi = m.get(JAVA_FLOAT, o) * beta1 + g * keep1;
                float vi = v.get(JAVA_FLOAT, o) * beta2 + g * g * keep2;
                float update = mi * correct1 / ((float) Math.sqrt(vi * correct2) + eps) + p * weightDecay;
                m.set(JAVA_FLOAT, o, mi);
                v.set(JAVA_FLOAT, o, vi);
                param.set(JAVA_FLOAT, o, p - update * lr);
            }
        });
    }
}
