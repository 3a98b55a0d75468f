package dev.ropeway.eval;

import dev.ropeway.RopewayException;
import dev.ropeway.model.Decoder;
import dev.ropeway.model.Scorer;
import dev.ropeway.tensor.Backend;
import dev.ropeway.model.TokenBatch;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.RopeScaling;

import java.util.ArrayList;
import java.util.List;
import java.util.function.LongConsumer;

/**
 * Perplexity of a model on long documents at one context length, by a {@link PerplexityProtocol}. The model sees
 * each window with its RoPE method chosen for that window's length (E²-LLM's g, CLEX's t, dynamic NTK's base follow
 * it). Windows never cross documents. Memory stays linear in the length: one window at a time.
 */
public final class Perplexity {

    /** Mean next-token loss over {@code tokens} scored tokens, from {@code windows} windows. */
    public record Result(int length, double loss, long tokens, int windows) {
        public double perplexity() {
            return Math.exp(loss);
        }

        public java.util.Map<String, Object> toJson() {
            java.util.Map<String, Object> m = new java.util.LinkedHashMap<>();
            m.put("length", length);
            m.put("loss", loss);
            m.put("perplexity", perplexity());
            m.put("tokens", tokens);
            m.put("windows", windows);
            return m;
        }

        public static Result fromJson(java.util.Map<String, Object> m) {
            return new Result(((Number) m.get("length")).intValue(), ((Number) m.get("loss")).doubleValue(),
                    ((Number) m.get("tokens")).longValue(), ((Number) m.get("windows")).intValue());
        }
    }

    private Perplexity() {}

    /**
     * Scores documents at {@code length} tokens until about {@code maxTokens} tokens are scored (0: all).
     * {@code stride} is the sliding protocol's step S or the prefill protocol's block size (ignored by chunks).
     * {@code progress} receives tokens scored.
     */
    public static Result evaluate(Transformer model, RopeScaling rope, List<int[]> documents, int length,
                                  PerplexityProtocol protocol, int stride, long maxTokens, LongConsumer progress) {
        if (length < 2) throw new RopewayException("a perplexity window needs at least 2 tokens, got " + length);
        if (protocol == PerplexityProtocol.SLIDING && (stride < 1 || stride > length))
            throw new RopewayException("the sliding stride must be in [1, " + length + "], got " + stride);
        if (protocol == PerplexityProtocol.PREFILL) {
            if (stride < 1) throw new RopewayException("the prefill block must be at least 1 token, got " + stride);
            return prefill(model, rope, documents, length, stride, maxTokens, progress);
        }
        Scorer scorer = new Scorer(model);
        double sum = 0;
        long tokens = 0;
        int windows = 0;
        for (int[] doc : documents) {
            if (doc.length < length) continue;
            List<int[]> spans = protocol == PerplexityProtocol.CHUNKS ? chunks(doc.length, length) : sliding(doc.length, length, stride);
            for (int[] span : spans) {
                int from = span[0], scoredFrom = span[1];
                int[] window = java.util.Arrays.copyOfRange(doc, from, from + length);
                Scorer.Score score = scorer.score(TokenBatch.of(window, 1, length), rope, false);
                // Row i predicts token i + 1: the window's tokens from scoredFrom on are predicted by rows scoredFrom - 1...
                for (int i = Math.max(0, scoredFrom - 1); i < length - 1; i++) {
                    sum += score.tokenLosses()[i];
                    tokens++;
                }
                windows++;
                progress.accept(tokens);
                if (maxTokens > 0 && tokens >= maxTokens) return new Result(length, sum / tokens, tokens, windows);
            }
        }
        if (tokens == 0)
            throw new RopewayException("no document has " + length + " tokens; use shorter lengths or longer documents");
        return new Result(length, sum / tokens, tokens, windows);
    }

    /** The prefill protocol: each chunk-protocol window through a KV cache, {@code block} tokens per forward. */
    private static Result prefill(Transformer model, RopeScaling rope, List<int[]> documents, int length, int block,
                                  long maxTokens, LongConsumer progress) {
        int vocab = model.config().vocabSize();
        Backend backend = model.backend();
        double sum = 0;
        long tokens = 0;
        int windows = 0;
        try (Decoder decoder = new Decoder(model, rope, length, Decoder.RopeChange.REROTATE, Math.min(block, length))) {
            for (int[] doc : documents) {
                if (doc.length < length) continue;
                for (int[] span : chunks(doc.length, length)) {
                    decoder.reset();
                    int[] window = java.util.Arrays.copyOfRange(doc, span[0], span[0] + length);
                    double[] windowSum = {0};
                    for (int from = 0; from < length; from += block) {
                        int to = Math.min(length, from + block), base = from;
                        decoder.append(java.util.Arrays.copyOfRange(window, from, to), (first, n, logits) -> {
                            int rows = (int) Math.min(n, length - 1 - (base + first));
                            if (rows <= 0) return;
                            int[] targets = java.util.Arrays.copyOfRange(window, (int) (base + first + 1), (int) (base + first + 1 + rows));
                            for (double loss : backend.crossEntropy(logits, targets, rows, vocab)) windowSum[0] += loss;
                        });
                    }
                    sum += windowSum[0];
                    tokens += length - 1;
                    windows++;
                    progress.accept(tokens);
                    if (maxTokens > 0 && tokens >= maxTokens) return new Result(length, sum / tokens, tokens, windows);
                }
            }
        }
        if (tokens == 0)
            throw new RopewayException("no document has " + length + " tokens; use shorter lengths or longer documents");
        return new Result(length, sum / tokens, tokens, windows);
    }

    /** {start, first scored index within the window}: whole windows, all scored. */
    static List<int[]> chunks(int docLength, int length) {
        List<int[]> out = new ArrayList<>();
        for (int start = 0; start + length <= docLength; start += length) out.add(new int[]{start, 0});
        return out;
    }

    /**
     * Windows every {@code stride} tokens; the first scores all its tokens, each later one only the tokens past the
     * previous window's end (the last window is aligned to the document's end so no tail is left unscored).
     */
    static List<int[]> sliding(int docLength, int length, int stride) {
        List<int[]> out = new ArrayList<>();
        int scoredEnd = 0;
        for (int start = 0; ; start += stride) {
            int s = Math.min(start, docLength - length);
            int end = s + length;
            if (end <= scoredEnd) break;
            out.add(new int[]{s, scoredEnd - s < 0 ? 0 : scoredEnd - s});
            scoredEnd = end;
            if (end >= docLength) break;
        }
        return out;
    }
}
