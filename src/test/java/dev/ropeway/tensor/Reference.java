package dev.ropeway.tensor;

/** Straightforward double-precision versions of the backend's ops, written for clarity, not speed. */
final class Reference {
    private Reference() {}

    /**
     * Causal grouped-query attention for one (batch, head, query) row: returns the output row of headDim values and,
     * in {@code lseOut[0]}, the log-sum-exp of the scaled scores.
     */
    static double[] attentionRow(float[] q, float[] k, float[] v, AttentionShape s, int b, long i, int h, double[] lseOut) {
        int d = s.headDim();
        int kvh = h / (s.heads() / s.kvHeads());
        long qBase = ((b * s.seqQ() + i) * s.heads() + h) * d;
        long pos = s.qStart() + i;
        long first = s.window() == 0 ? 0 : Math.max(0, pos - s.window() + 1);
        double[] scores = new double[(int) (pos + 1)];
        double max = Double.NEGATIVE_INFINITY;
        for (long j = first; j <= pos; j++) {
            long kBase = ((b * s.kvRowsPerBatch() + j) * s.kvHeads() + kvh) * d;
            double dot = 0;
            for (int x = 0; x < d; x++) dot += (double) q[(int) (qBase + x)] * k[(int) (kBase + x)];
            scores[(int) j] = dot * s.scale();
            max = Math.max(max, scores[(int) j]);
        }
        double sum = 0;
        double[] out = new double[d];
        for (long j = first; j <= pos; j++) {
            double p = Math.exp(scores[(int) j] - max);
            sum += p;
            long vBase = ((b * s.kvRowsPerBatch() + j) * s.kvHeads() + kvh) * d;
            for (int x = 0; x < d; x++) out[x] += p * v[(int) (vBase + x)];
        }
        for (int x = 0; x < d; x++) out[x] /= sum;
        if (lseOut != null) lseOut[0] = max + Math.log(sum);
        return out;
    }

    /** C = alpha * op(A) * op(B) + beta * C on row-major matrices with leading dimensions and offsets. */
    static void gemm(boolean ta, boolean tb, int m, int n, int k, float alpha, float[] a, int aOff, int lda,
                     float[] b, int bOff, int ldb, float beta, float[] c, int cOff, int ldc) {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double sum = 0;
                for (int p = 0; p < k; p++) {
                    double av = ta ? a[aOff + p * lda + i] : a[aOff + i * lda + p];
                    double bv = tb ? b[bOff + j * ldb + p] : b[bOff + p * ldb + j];
                    sum += av * bv;
                }
                int ci = cOff + i * ldc + j;
                c[ci] = (float) (alpha * sum + (beta == 0 ? 0 : beta * (double) c[ci]));
            }
    }
}
