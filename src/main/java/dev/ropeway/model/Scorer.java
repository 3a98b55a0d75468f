package dev.ropeway.model;

import dev.ropeway.rope.RopeScaling;
import dev.ropeway.tensor.Backend;

/**
 * Next-token loss of token sequences, as Hugging Face computes it with {@code labels = input_ids}: the logits at
 * position i are scored against token i + 1 of the same sequence, and the loss is the mean over every predicted token
 * of every sequence.
 */
public final class Scorer {

    /**
     * Result of scoring: mean loss, number of predicted tokens, every row's next-token loss (NaN for each sequence's
     * last token, which predicts nothing), and optionally every logit.
     */
    public record Score(double loss, long tokens, double sumLoss, double[] tokenLosses, float[] logits) {
        public double perplexity() { return Math.exp(loss); }

        /** log p(token i+1 | tokens 0..i) of sequence b, for i in [0, seq - 1). */
        public double[] logProbs(int b, int seq) {
            double[] out = new double[seq - 1];
            for (int i = 0; i < seq - 1; i++) out[i] = -tokenLosses[b * seq + i];
            return out;
        }
    }

    private final Transformer model;

    public Scorer(Transformer model) {
        this.model = model;
    }

    /**
     * Scores a batch with the given RoPE method; when {@code keepLogits} is set the result holds the logits,
     * {@code [batch, seq, vocab]} row-major (so rows x vocab must fit in one Java array).
     */
    public Score score(TokenBatch in, RopeScaling rope, boolean keepLogits) {
        int vocab = model.config().vocabSize();
        long rows = in.rows();
        if (keepLogits && rows * vocab > Integer.MAX_VALUE - 8)
            throw new dev.ropeway.RopewayException("cannot keep " + rows + " x " + vocab
                    + " logits in memory; score fewer tokens or do not ask for the logits");
        int[] targets = nextTokenTargets(in);
        float[] logits = keepLogits ? new float[(int) (rows * vocab)] : null;
        Backend backend = model.backend();
        double[] sum = {0};
        long[] count = {0};
        double[] tokenLosses = new double[(int) rows];
        model.forward(in, rope, (first, n, block) -> {
            int[] t = new int[n];
            System.arraycopy(targets, (int) first, t, 0, n);
            double[] losses = backend.crossEntropy(block, t, n, vocab);
            for (int i = 0; i < n; i++) {
                tokenLosses[(int) first + i] = t[i] >= 0 ? losses[i] : Double.NaN;
                if (t[i] >= 0) {
                    sum[0] += losses[i];
                    count[0]++;
                }
            }
            if (logits != null) backend.download(block, 0, logits, (int) (first * vocab), n * vocab);
        });
        double loss = count[0] == 0 ? Double.NaN : sum[0] / count[0];
        return new Score(loss, count[0], sum[0], tokenLosses, logits);
    }

    /** Target of each row: the next token of the same sequence, or -1 for each sequence's last token. */
    static int[] nextTokenTargets(TokenBatch in) {
        int[] ids = in.ids(), t = new int[ids.length];
        for (int b = 0; b < in.batch(); b++)
            for (int i = 0; i < in.seq(); i++) {
                int r = b * in.seq() + i;
                t[r] = i + 1 < in.seq() ? ids[r + 1] : -1;
            }
        return t;
    }
}
