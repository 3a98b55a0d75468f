package dev.ropeway.model;

import dev.ropeway.RopewayException;

/**
 * Token ids of {@code batch} sequences of {@code seq} tokens each, row-major, with the position of every token.
 * Positions are floats because RoPE methods may shift or sample them; {@code ropeLength} is the sequence length the
 * RoPE method should assume (max position + 1 for ordinary inputs), which length-dependent methods (dynamic NTK,
 * LongRoPE) use to pick their frequencies.
 */
public record TokenBatch(int[] ids, int batch, int seq, float[] positions, long ropeLength) {

    public TokenBatch {
        if (batch <= 0 || seq <= 0) throw new RopewayException("a batch needs at least one sequence of at least one token");
        if ((long) batch * seq != ids.length)
            throw new IllegalArgumentException(ids.length + " ids is not batch " + batch + " x seq " + seq);
        if (positions.length != ids.length)
            throw new IllegalArgumentException(positions.length + " positions for " + ids.length + " ids");
    }

    /** Sequences whose tokens sit at positions 0, 1, ..., seq - 1. */
    public static TokenBatch of(int[] ids, int batch, int seq) {
        float[] pos = new float[ids.length];
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < seq; i++) pos[b * seq + i] = i;
        return new TokenBatch(ids, batch, seq, pos, seq);
    }

    /** Builds a batch from equal-length sequences, with a clear error when they differ. */
    public static TokenBatch of(int[][] sequences) {
        if (sequences.length == 0) throw new RopewayException("no sequences given");
        int seq = sequences[0].length;
        int[] ids = new int[Math.multiplyExact(sequences.length, seq)];
        for (int b = 0; b < sequences.length; b++) {
            if (sequences[b].length != seq)
                throw new RopewayException("all sequences in a batch must have the same length: sequence 0 has " + seq
                        + " tokens, sequence " + b + " has " + sequences[b].length);
            System.arraycopy(sequences[b], 0, ids, b * seq, seq);
        }
        return of(ids, sequences.length, seq);
    }

    public int rows() { return ids.length; }

    /** Fails with the first id outside [0, vocabSize), naming where it is. */
    public void checkVocabulary(int vocabSize) {
        for (int r = 0; r < ids.length; r++)
            if (ids[r] < 0 || ids[r] >= vocabSize)
                throw new RopewayException("token id " + ids[r] + " (sequence " + r / seq + ", position " + r % seq
                        + ") is outside the model's vocabulary [0, " + vocabSize + ")");
    }
}
