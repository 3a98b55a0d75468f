package dev.ropeway.generate;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.model.Decoder;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.BooleanSupplier;

/**
 * The generation loop: prefill the prompt through a {@link Decoder}, then sample one token at a time until the token
 * budget, an end-of-sequence token, a stop string or a cancellation, streaming the text as it becomes final (never a
 * broken UTF-8 character, never the start of what may become a stop string).
 */
public final class Generator {

    /** Why generation ended, named as the OpenAI API names it ("cancelled" is Ropeway's own). */
    public enum Finish {
        STOP, LENGTH, CANCELLED;

        public String label() {
            return name().toLowerCase(java.util.Locale.ROOT);
        }
    }

    /**
     * @param maxTokens      tokens to generate at most (0 only to score the prompt)
     * @param sampling       how each token is picked
     * @param stop           strings that end generation (not included in the text)
     * @param ignoreEos      keep going past the end-of-sequence token
     * @param logprobs       for each generated token, its log-probability and this many most likely alternatives
     *                       ({@link TokenLogprob}, at most {@link TokenLogprob#MAX_TOP}); -1: none
     * @param promptLogprobs the same for every prompt token after the first (with {@code logprobs}' alternatives); the
     *                       prompt is then computed whole, none of it kept from the cache, since the logits of its
     *                       earlier tokens are needed
     */
    public record Settings(int maxTokens, SamplingSettings sampling, List<String> stop, boolean ignoreEos, int logprobs,
                           boolean promptLogprobs) {
        public Settings {
            if (maxTokens < 0 || maxTokens == 0 && !promptLogprobs)
                throw new RopewayException("max tokens must be at least 1 (0 only to score the prompt), got " + maxTokens);
            if (logprobs < -1 || logprobs > TokenLogprob.MAX_TOP)
                throw new RopewayException("log-probabilities: 0 to " + TokenLogprob.MAX_TOP + " alternatives, got " + logprobs);
            if (promptLogprobs && logprobs < 0) throw new RopewayException("prompt log-probabilities need logprobs >= 0");
            stop = List.copyOf(stop);
            for (String s : stop) if (s.isEmpty()) throw new RopewayException("a stop string must not be empty");
        }

        /** Without log-probabilities. */
        public Settings(int maxTokens, SamplingSettings sampling, List<String> stop, boolean ignoreEos) {
            this(maxTokens, sampling, stop, ignoreEos, -1, false);
        }
    }

    /**
     * A finished generation: its tokens and text, why it stopped, the prompt's length, how many of the prompt's tokens
     * were already cached on the decoder (not computed again), the time of its prefill and of its decode steps, and,
     * when the settings asked for them (else null), each generated token's log-probability and those of the prompt's
     * tokens after the first.
     */
    public record Result(int[] tokens, String text, Finish finish, int promptTokens, int cachedTokens, long prefillNanos,
                         long decodeNanos, List<TokenLogprob> logprobs, List<TokenLogprob> promptLogprobs) {
        public double decodeTokensPerSecond() {
            return tokens.length <= 1 || decodeNanos == 0 ? 0 : (tokens.length - 1) / (decodeNanos / 1e9);
        }
    }

    /** Receives the text as it becomes final, and each generated token's log-probability when they were asked for. */
    @FunctionalInterface
    public interface Listener {
        void text(String piece);

        /** A generated token's log-probability, before the text it makes final (if any) is given to {@link #text}. */
        default void logprob(TokenLogprob token) {}

        /** The prompt's log-probabilities (its tokens after the first), once it is prefilled, when they were asked for. */
        default void promptLogprobs(List<TokenLogprob> tokens) {}
    }

    /** How a generation takes its decode steps: one by one on its decoder, or batched with other generations'. */
    public interface Steps {
        /** Appends {@code token} to {@code decoder}'s sequence; returns the logits for the token after it. */
        float[] next(Decoder decoder, int token);

        /** {@code decoder}'s generation has ended (after its last step, or instead of any). */
        default void done(Decoder decoder) {}

        /** Each step on its own decoder. */
        Steps ALONE = Decoder::next;
    }

    private final Tokenizer tokenizer;

    public Generator(Tokenizer tokenizer) {
        this.tokenizer = tokenizer;
    }

    public Tokenizer tokenizer() { return tokenizer; }

    /**
     * Generates after {@code prompt} on {@code decoder}. The decoder keeps what it has cached of the prompt's beginning
     * ({@link Decoder#reusablePrefix}: a chat's earlier turns, a shared system prompt) and prefills only the rest; a
     * fresh decoder prefills it all. {@code cancelled} is polled before every token; a cancelled run returns what it has.
     */
    public Result generate(Decoder decoder, int[] prompt, Settings settings, Listener listener, BooleanSupplier cancelled) {
        return generate(decoder, prompt, settings, listener, cancelled, Steps.ALONE);
    }

    /** As above, with the decode steps taken through {@code steps} (for example batched with other generations'). */
    public Result generate(Decoder decoder, int[] prompt, Settings settings, Listener listener, BooleanSupplier cancelled,
                           Steps steps) {
        try {
            return run(decoder, prompt, settings, listener, cancelled, steps);
        } finally {
            steps.done(decoder);
        }
    }

    private Result run(Decoder decoder, int[] prompt, Settings settings, Listener listener, BooleanSupplier cancelled,
                       Steps steps) {
        if (prompt.length == 0) throw new RopewayException("the prompt has no tokens");
        long room = decoder.capacity() - prompt.length;
        if (room < Math.min(1, settings.maxTokens()))
            throw new RopewayException("the prompt has " + prompt.length + " tokens; the context holds " + decoder.capacity());
        int budget = (int) Math.min(settings.maxTokens(), room + 1);
        int[] stopTokens = settings.ignoreEos() ? new int[0] : tokenizer.endIds();
        int vocabulary = Math.min(tokenizer.vocabSize(), decoder.config().vocabSize()), top = Math.max(0, settings.logprobs());
        long start = System.nanoTime();
        float[] logits;
        int cached;
        List<TokenLogprob> promptLogprobs = null;
        if (settings.promptLogprobs()) {
            cached = 0;
            decoder.truncate(0);
            Scored scored = scorePrompt(decoder, prompt, vocabulary, top);
            promptLogprobs = scored.logprobs();
            logits = scored.last();
            listener.promptLogprobs(promptLogprobs);
        } else {
            cached = decoder.reusablePrefix(prompt);
            decoder.truncate(cached);
            logits = decoder.append(Arrays.copyOfRange(prompt, cached, prompt.length));
        }
        long prefilled = System.nanoTime();
        List<TokenLogprob> logprobs = settings.logprobs() >= 0 ? new ArrayList<>() : null;
        if (budget == 0) {
            return new Result(new int[0], "", Finish.LENGTH, prompt.length, cached, prefilled - start, 0, logprobs, promptLogprobs);
        }
        Sampler sampler = new Sampler(settings.sampling());
        int[] history = Arrays.copyOf(prompt, prompt.length + budget);
        int length = prompt.length, generated = 0;
        // The last prompt tokens are the decoding context of the first generated ones (a leading space survives).
        int[] context = Arrays.copyOfRange(prompt, Math.max(0, prompt.length - 4), prompt.length);
        StreamingText text = new StreamingText(new TokenTextStream(tokenizer, true, context), new StopStrings(settings.stop()), stopTokens);
        StringBuilder all = new StringBuilder();
        Finish finish = Finish.LENGTH;
        while (true) {
            if (cancelled.getAsBoolean()) {
                finish = Finish.CANCELLED;
                break;
            }
            // A model whose vocabulary is padded past its tokenizer's (rows for alignment, or a random model) never
            // gets an id the tokenizer cannot turn into text.
            if (logits.length > tokenizer.vocabSize())
                Arrays.fill(logits, tokenizer.vocabSize(), logits.length, Float.NEGATIVE_INFINITY);
            int next = sampler.sample(logits, history, length);
            StreamingText.Step step = text.push(next);
            if (!step.stopped() || !step.stop().byToken()) {
                history[length++] = next;
                generated++;
                if (logprobs != null) {
                    TokenLogprob lp = TokenLogprob.of(logits, 0, vocabulary, next, top);
                    logprobs.add(lp);
                    listener.logprob(lp);
                }
            }
            emit(step.text(), all, listener);
            if (step.stopped()) {
                finish = Finish.STOP;
                break;
            }
            if (generated == budget) break;
            logits = steps.next(decoder, next);
        }
        if (finish != Finish.STOP) {
            StreamingText.Step tail = text.finish();
            emit(tail.text(), all, listener);
            if (tail.stopped()) finish = Finish.STOP;
        }
        long end = System.nanoTime();
        return new Result(Arrays.copyOfRange(history, prompt.length, length), all.toString(), finish, prompt.length, cached,
                prefilled - start, end - prefilled, logprobs, promptLogprobs);
    }

    /** A prompt's log-probabilities, and the logits after its last token. */
    private record Scored(List<TokenLogprob> logprobs, float[] last) {}

    /**
     * Prefills the whole prompt with the logits of every row: the log-probability of each prompt token after the first
     * (and {@code top} alternatives), and the last row's logits.
     */
    private static Scored scorePrompt(Decoder decoder, int[] prompt, int vocabulary, int top) {
        List<TokenLogprob> out = new ArrayList<>(prompt.length - 1);
        int vocab = decoder.config().vocabSize();
        float[][] last = new float[1][];
        decoder.append(prompt, (first, rows, logits) -> {
            float[] host = new float[Math.multiplyExact(rows, vocab)];
            decoder.backend().download(logits, 0, host, 0, host.length);
            for (int r = 0; r < rows; r++) {
                long position = first + r;
                if (position + 1 < prompt.length) {
                    out.add(TokenLogprob.of(host, r * vocab, vocabulary, prompt[(int) position + 1], top));
                } else {
                    last[0] = Arrays.copyOfRange(host, r * vocab, (r + 1) * vocab);
                }
            }
        });
        return new Scored(out, last[0]);
    }

    private static void emit(String piece, StringBuilder all, Listener listener) {
        if (piece.isEmpty()) return;
        all.append(piece);
        listener.text(piece);
    }
}
