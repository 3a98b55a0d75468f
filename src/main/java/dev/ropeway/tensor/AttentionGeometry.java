package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;

/** An {@link AttentionShape} bound to its buffers, with the derived group size; {@code lse} may be null. */
record AttentionGeometry(AttentionShape shape, MemorySegment out, MemorySegment q, MemorySegment k, MemorySegment v,
                         MemorySegment lse) {
    int batch() { return shape.batch(); }
    long seqQ() { return shape.seqQ(); }
    long kvRowsPerBatch() { return shape.kvRowsPerBatch(); }
    long qStart() { return shape.qStart(); }
    int heads() { return shape.heads(); }
    int kvHeads() { return shape.kvHeads(); }
    int headDim() { return shape.headDim(); }
    float scale() { return shape.scale(); }
    long window() { return shape.window(); }

    /** Query heads per key/value head. */
    int group() { return shape.heads() / shape.kvHeads(); }

    /** Lanes (query, head-in-group pairs) per sequence and key/value head. */
    long lanesPerKvHead() { return shape.seqQ() * group(); }
}
