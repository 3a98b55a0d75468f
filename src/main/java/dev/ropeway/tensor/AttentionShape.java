package dev.ropeway.tensor;

/**
 * Shape of one causal attention call.
 *
 * <p>Queries: {@code q[batch * seqQ, heads * headDim]}. Keys and values of sequence b start at row
 * {@code b * kvRowsPerBatch} of {@code k} / {@code v}, whose rows are {@code kvHeads * headDim} wide; keys
 * {@code [0, seqKv)} are valid. Query i of a sequence sits at key index {@code qStart + i} and attends to keys
 * {@code j <= qStart + i} (so {@code qStart = seqKv - seqQ} for a prefill chunk appended to a KV cache, and 0
 * for a whole sequence). Query head h reads key/value head {@code h / (heads / kvHeads)} (grouped-query attention).
 * Scores are multiplied by {@code scale} (usually 1/sqrt(headDim)) before the softmax. With a {@code window} W > 0
 * (sliding-window attention, as Mistral uses), query position p sees only keys {@code p - W < j <= p}; 0 means no
 * window.
 *
 * <p>With {@code kvHeadMajor}, {@code k} and {@code v} are laid out head by head instead,
 * {@code [batch][kvHeads][kvRowsPerBatch][headDim]}: the keys of one key/value head of one sequence are contiguous
 * (how the CPU backend keeps a KV cache, {@link Backend#kvHeadMajor}, so that a decode step streams each head's keys
 * and values in order rather than picking one head's slice out of every row).
 */
public record AttentionShape(int batch, long seqQ, long seqKv, long kvRowsPerBatch, long qStart,
                             int heads, int kvHeads, int headDim, float scale, long window, boolean kvHeadMajor) {

    public AttentionShape(int batch, long seqQ, long seqKv, long kvRowsPerBatch, long qStart,
                          int heads, int kvHeads, int headDim, float scale) {
        this(batch, seqQ, seqKv, kvRowsPerBatch, qStart, heads, kvHeads, headDim, scale, 0);
    }

    public AttentionShape(int batch, long seqQ, long seqKv, long kvRowsPerBatch, long qStart,
                          int heads, int kvHeads, int headDim, float scale, long window) {
        this(batch, seqQ, seqKv, kvRowsPerBatch, qStart, heads, kvHeads, headDim, scale, window, false);
    }

    public AttentionShape {
        if (window < 0) throw new IllegalArgumentException("attention window must be >= 0 (0 = none), got " + window);
        if (batch <= 0 || seqQ <= 0 || seqKv <= 0 || heads <= 0 || kvHeads <= 0 || headDim <= 0)
            throw new IllegalArgumentException("attention dimensions must be positive: " + this);
        if (heads % kvHeads != 0)
            throw new IllegalArgumentException("heads (" + heads + ") must be a multiple of kvHeads (" + kvHeads + ")");
        if (qStart < 0 || qStart + seqQ > seqKv)
            throw new IllegalArgumentException("queries [" + qStart + ", " + (qStart + seqQ) + ") fall outside keys [0, " + seqKv + ")");
        if (kvRowsPerBatch < seqKv)
            throw new IllegalArgumentException("kvRowsPerBatch " + kvRowsPerBatch + " < seqKv " + seqKv);
    }

    /** A whole-sequence causal self-attention (no cache). */
    public static AttentionShape selfAttention(int batch, long seq, int heads, int kvHeads, int headDim) {
        return new AttentionShape(batch, seq, seq, seq, 0, heads, kvHeads, headDim, (float) (1.0 / Math.sqrt(headDim)));
    }

    /** This shape with a sliding window of {@code w} keys (0 = none). */
    public AttentionShape withWindow(long w) {
        return new AttentionShape(batch, seqQ, seqKv, kvRowsPerBatch, qStart, heads, kvHeads, headDim, scale, w, kvHeadMajor);
    }

    /** This shape with keys and values laid out head by head ({@code true}) or row by row. */
    public AttentionShape withKvHeadMajor(boolean headMajor) {
        return new AttentionShape(batch, seqQ, seqKv, kvRowsPerBatch, qStart, heads, kvHeads, headDim, scale, window, headMajor);
    }

    /**
     * Values {@code k} and {@code v} must hold at least: rows up to the last valid key of the last sequence, in this
     * shape's layout.
     */
    public long kvValuesNeeded() {
        long perRow = Math.multiplyExact((long) kvHeads, headDim);
        if (!kvHeadMajor) return Math.multiplyExact(Math.addExact(Math.multiplyExact(batch - 1L, kvRowsPerBatch), seqKv), perRow);
        long heads = Math.multiplyExact((long) batch, kvHeads);
        return Math.multiplyExact(Math.addExact(Math.multiplyExact(heads - 1, kvRowsPerBatch), seqKv), (long) headDim);
    }

    /** Values from the start of {@code k} (or {@code v}) to key 0 of key/value head {@code kvh} of sequence {@code b}. */
    public long kvHeadOffset(int b, int kvh) {
        return kvHeadMajor ? (((long) b * kvHeads + kvh) * kvRowsPerBatch) * headDim
                : ((long) b * kvRowsPerBatch * kvHeads + kvh) * headDim;
    }

    /** Values between consecutive keys of one key/value head. */
    public long kvRowStride() {
        return kvHeadMajor ? headDim : (long) kvHeads * headDim;
    }

    /** One query at position {@code p} over keys {@code [0, p]} of this shape's cache (a decode step). */
    public AttentionShape atPosition(long p) {
        if (batch != 1 || seqQ != 1)
            throw new IllegalArgumentException("attention: a decode step is one query of one sequence, got " + this);
        if (p < 0 || p >= kvRowsPerBatch)
            throw new IllegalArgumentException("attention: position " + p + " is outside the cache's " + kvRowsPerBatch + " rows");
        return new AttentionShape(1, 1, p + 1, kvRowsPerBatch, p, heads, kvHeads, headDim, scale, window, kvHeadMajor);
    }

    /** The first key position {@code p} can see. */
    public long firstVisibleKey(long p) {
        return window == 0 ? 0 : Math.max(0, p - window + 1);
    }
}
