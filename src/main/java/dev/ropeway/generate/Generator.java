package dev.ropeway.generate;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.model.Decoder;

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
     * @param maxTokens tokens to generate at most
     * @param sampling  how each token is picked
     * @param stop      strings that end generation (not included in the text)
     * @param ignoreEos keep going past the end-of-sequence token
     */
    public record Settings(int maxTokens, SamplingSettings sampling, List<String> stop, boolean ignoreEos) {
        public Settings {
            if (maxTokens < 1) throw new RopewayException("max tokens must be at least 1, got " + maxTokens);
            stop = List.copyOf(stop);
            for (String s : stop) if (s.isEmpty()) throw new RopewayException("a stop string must not be empty");
        }
    }

    /**
     * A finished generation: its tokens and text, why it stopped, the prompt's length, how many of the prompt's tokens
     * were already cached on the decoder (not computed again), and the time of its prefill and of its decode steps.
     */
    public record Result(int[] tokens, String text, Finish finish, int promptTokens, int cachedTokens, long prefillNanos,
                         long decodeNanos) {
        public double decodeTokensPerSecond() {
            return tokens.length <= 1 || decodeNanos == 0 ? 0 : (tokens.length - 1) / (decodeNanos / 1e9);
        }
    }

    /** Receives the text as it becomes final. */
    @FunctionalInterface
    public interface Listener {
        void text(String piece);
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
        if (room < 1)
            throw new RopewayException("the prompt has " + prompt.length + " tokens; the context holds " + decoder.capacity());
        int budget = (int) Math.min(settings.maxTokens(), room + 1);
        int[] stopTokens = settings.ignoreEos() || tokenizer.eosId().isEmpty() ? new int[0] : new int[]{tokenizer.eosId().getAsInt()};
        long start = System.nanoTime();
        int cached = decoder.reusablePrefix(prompt);
        decoder.truncate(cached);
        float[] logits = decoder.append(Arrays.copyOfRange(prompt, cached, prompt.length));
        long prefilled = System.nanoTime();
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
                prefilled - start, end - prefilled);
    }

    private static void emit(String piece, StringBuilder all, Listener listener) {
        if (piece.isEmpty()) return;
        all.append(piece);
        listener.text(piece);
    }
}
