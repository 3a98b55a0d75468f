package dev.ropeway.tensor;

import jdk.incubator.vector.FloatVector;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import static dev.ropeway.tensor.VectorMath.F;
import static dev.ropeway.tensor.VectorMath.LANES;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/** Backward of the embedding gather: a scatter-add of gradient rows into the table. */
final class EmbeddingBackward {
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();

    private EmbeddingBackward() {}

    /**
     * Each task owns a range of table rows and walks all ids in order, adding the rows whose id it owns. No two
     * tasks write the same row, and every table row receives its additions in id order, so the result is the same
     * for any number of threads.
     */
    static void run(WorkerPool pool, MemorySegment dTable, MemorySegment dOut, int[] ids, int dim, long vocab) {
        // Below a few tens of thousands of floats the work is not worth waking the workers for.
        long minChunk = (long) ids.length * dim < (1 << 15) ? vocab : 1;
        Split split = Split.of(pool, vocab, minChunk);
        pool.run(split.count(), c -> {
            long from = split.from(c), to = split.to(c);
            int bound = F.loopBound(dim);
            for (int r = 0; r < ids.length; r++) {
                int id = ids[r];
                if (id < from || id >= to) continue;
                long t = (long) id * dim * 4, o = (long) r * dim * 4;
                int i = 0;
                for (; i < bound; i += LANES)
                    FloatVector.fromMemorySegment(F, dTable, t + i * 4L, NATIVE)
                            .add(FloatVector.fromMemorySegment(F, dOut, o + i * 4L, NATIVE))
                            .intoMemorySegment(dTable, t + i * 4L, NATIVE);
                for (; i < dim; i++)
                    dTable.set(JAVA_FLOAT, t + i * 4L, dTable.get(JAVA_FLOAT, t + i * 4L) + dOut.get(JAVA_FLOAT, o + i * 4L));
            }
        });
    }
}
