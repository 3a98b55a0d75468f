package dev.ropeway.generate;

import dev.ropeway.io.Tokenizer;

import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.stream.IntStream;

/**
 * The text side of generation: takes each new token id and says what text to show and whether generation is over,
 * by a stop token (end of sequence, end of turn) or a stop string. Stop tokens and stop strings are never shown.
 */
public final class StreamingText {
    private final TokenTextStream text;
    private final StopStrings stops;
    private final int[] stopTokens;
    private Stop stop;

    public StreamingText(TokenTextStream text, StopStrings stops, int... stopTokens) {
        this.text = Objects.requireNonNull(text, "text");
        this.stops = Objects.requireNonNull(stops, "stops");
        this.stopTokens = IntStream.of(stopTokens).sorted().distinct().toArray();
    }

    /**
     * A stream over {@code tokenizer}, special tokens left out of the text, stopping at its end tokens
     * ({@link Tokenizer#endIds}), at any of {@code extraStopTokens} and at any of {@code stopStrings}.
     */
    public static StreamingText of(Tokenizer tokenizer, List<String> stopStrings, int... extraStopTokens) {
        int[] ids = IntStream.concat(IntStream.of(tokenizer.endIds()), IntStream.of(extraStopTokens)).toArray();
        return new StreamingText(new TokenTextStream(tokenizer, true), new StopStrings(stopStrings), ids);
    }

    /** Why generation stopped: a stop token (its id, {@code string} null) or a stop string ({@code tokenId} -1). */
    public record Stop(int tokenId, String string) {
        public static Stop token(int id) {
            return new Stop(id, null);
        }

        public static Stop string(String s) {
            return new Stop(-1, s);
        }

        public boolean byToken() {
            return string == null;
        }
    }

    /** The text to show after one token, and the stop when that token ended generation (else null). */
    public record Step(String text, Stop stop) {
        public boolean stopped() {
            return stop != null;
        }
    }

    /** Takes the next generated token. */
    public Step push(int tokenId) {
        if (stop != null) throw new IllegalStateException("generation already stopped (" + stop + ")");
        if (Arrays.binarySearch(stopTokens, tokenId) >= 0) {
            Step last = drain();
            if (last.stopped()) return last;
            stop = Stop.token(tokenId);
            return new Step(last.text(), stop);
        }
        StopStrings.Piece piece = stops.push(text.push(tokenId));
        if (piece.stopped()) stop = Stop.string(piece.stop());
        return new Step(piece.text(), stop);
    }

    /**
     * Ends a generation that stopped for another reason (a length limit): the text still held back, which may yet
     * complete a stop string.
     */
    public Step finish() {
        if (stop != null) return new Step("", stop);
        return drain();
    }

    /** The stop that ended generation, or null while it goes on. */
    public Stop stop() {
        return stop;
    }

    private Step drain() {
        StopStrings.Piece piece = stops.push(text.flush());
        if (piece.stopped()) {
            stop = Stop.string(piece.stop());
            return new Step(piece.text(), stop);
        }
        return new Step(piece.text() + stops.flush(), null);
    }
}
