package dev.ropeway.generate;

import dev.ropeway.RopewayException;

import java.util.List;
import java.util.Objects;

/**
 * Finds stop strings in streamed text. Fed the text pieces of generation one by one, it returns what can be shown
 * now: everything except a tail that might still grow into a stop string, which is held back until the next
 * piece decides. When a stop string completes, the text before it is returned and the stop string and anything
 * after it are dropped; the stream is then finished and takes no more pieces.
 *
 * <p>When several stop strings occur in the same text, the one that completes first wins (of two ending together,
 * the longer), as if the text had come one character at a time; so the result does not depend on how the text
 * is cut into pieces, and a stop string that is a prefix of another stops generation as soon as it appears.
 */
public final class StopStrings {
    private final List<String> stops;
    private final int longest;
    private final StringBuilder held = new StringBuilder();
    private String matched;

    public StopStrings(List<String> stops) {
        Objects.requireNonNull(stops, "stops");
        for (String s : stops) {
            if (s == null || s.isEmpty()) throw new RopewayException("a stop string must not be empty");
        }
        this.stops = List.copyOf(stops);
        this.longest = this.stops.stream().mapToInt(String::length).max().orElse(0);
    }

    /** What {@link #push} returns: the text safe to show now, and the stop string when one completed. */
    public record Piece(String text, String stop) {
        public boolean stopped() {
            return stop != null;
        }
    }

    /** Adds a piece of generated text; once a stop string has completed, more pieces are an error. */
    public Piece push(String piece) {
        Objects.requireNonNull(piece, "piece");
        if (matched != null) throw new IllegalStateException("stop string '" + matched + "' already ended this stream");
        // Only a stop string overlapping the new piece can be new: the held text alone contains none.
        int searchFrom = Math.max(0, held.length() - longest + 1);
        held.append(piece);
        int bestAt = -1;
        String best = null;
        for (String stop : stops) {
            int at = held.indexOf(stop, searchFrom);
            if (at < 0) continue;
            int end = at + stop.length(), bestEnd = bestAt + (best == null ? 0 : best.length());
            if (best == null || end < bestEnd || (end == bestEnd && at < bestAt)) {
                bestAt = at;
                best = stop;
            }
        }
        if (best != null) {
            matched = best;
            String before = held.substring(0, bestAt);
            held.setLength(0);
            return new Piece(before, best);
        }
        int keep = heldBackLength();
        String ready = held.substring(0, held.length() - keep);
        held.delete(0, held.length() - keep);
        return new Piece(ready, null);
    }

    /** The text held back, at the end of generation (no stop string came): it is shown after all. */
    public String flush() {
        String rest = held.toString();
        held.setLength(0);
        return rest;
    }

    /** The stop string that ended the stream, or null. */
    public String matched() {
        return matched;
    }

    public List<String> stops() {
        return stops;
    }

    /** The longest tail of the held text that is the start of some stop string. */
    private int heldBackLength() {
        int max = Math.min(held.length(), longest - 1);
        for (int k = max; k > 0; k--) {
            int from = held.length() - k;
            for (String stop : stops) {
                if (stop.length() > k && regionMatches(from, stop, k)) return k;
            }
        }
        return 0;
    }

    private boolean regionMatches(int from, String stop, int length) {
        for (int i = 0; i < length; i++) if (held.charAt(from + i) != stop.charAt(i)) return false;
        return true;
    }
}
