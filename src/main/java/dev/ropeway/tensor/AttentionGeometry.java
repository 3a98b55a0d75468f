package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;

/**
 * An {@link AttentionShape} bound to its buffers, with the derived group size; {@code lse} may be null. Keys and values
 * are float32, or bfloat16 ({@code kvType} BF16: a bfloat16 KV cache), widened as they are read.
 */
record AttentionGeometry(AttentionShape shape, MemorySegment out, MemorySegment q, MemorySegment k, MemorySegment v,
                         MemorySegment lse, DType kvType) {
    /** Float32 keys and values. */
    AttentionGeometry(AttentionShape shape, MemorySegment out, MemorySegment q, MemorySegment k, MemorySegment v,
                      MemorySegment lse) {
        this(shape, out, q, k, v, lse, DType.F32);
    }

    /** Bytes per key or value element: 4, or 2 for a bfloat16 cache. */
    int kvBytes() { return kvType == DType.F32 ? Float.BYTES : 2; }

    int batch() { return shape.batch(); }
    long seqQ() { return shape.seqQ(); }
    long kvRowsPerBatch() { return shape.kvRowsPerBatch(); }
    long qStart() { return shape.qStart(); }
    int heads() { return shape.heads(); }
    int kvHeads() { return shape.kvHeads(); }
    int headDim() { return shape.headDim(); }
    float scale() { return shape.scale(); }
    long window() { return shape.window(); }

    /** Bytes between consecutive keys (or values) of one key/value head: whole rows, or one head's slice when head-major. */
    long kvStrideBytes() { return shape.kvRowStride() * kvBytes(); }

    /** Bytes from the start of {@code k} (or {@code v}) to key 0 of key/value head {@code kvh} of sequence {@code b}. */
    long kvHeadBytes(int b, int kvh) { return shape.kvHeadOffset(b, kvh) * kvBytes(); }

    /** Query heads per key/value head. */
    int group() { return shape.heads() / shape.kvHeads(); }

    /** Lanes (query, head-in-group pairs) per sequence and key/value head. */
    long lanesPerKvHead() { return shape.seqQ() * group(); }
}
