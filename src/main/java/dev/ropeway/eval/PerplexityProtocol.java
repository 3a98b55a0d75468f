package dev.ropeway.eval;

import dev.ropeway.RopewayException;

import java.util.Locale;

/** How a long document is cut into scored windows, named as the papers that use them. */
public enum PerplexityProtocol {
    /** Non-overlapping windows of exactly L tokens, every predicted token scored (as CLEX reports). */
    CHUNKS,
    /**
     * Windows of L tokens every S tokens; each scores only the tokens it adds (the first scores all), so every token
     * is scored once with up to L − S tokens of context before it (as YaRN and E²-LLM report, S = 256 there).
     */
    SLIDING,
    /**
     * The chunks protocol's windows of exactly L tokens, each fed through the KV cache in blocks of B tokens, every
     * block one forward planned at the length so far (so CLEX's t and E²'s g grow block by block and earlier blocks'
     * values stay as they were computed, as CLEX's chunked evaluation does); every predicted token is scored, the
     * first of each block too.
     */
    PREFILL;

    public static PerplexityProtocol parse(String name) {
        return switch (name.toLowerCase(Locale.ROOT)) {
            case "chunks" -> CHUNKS;
            case "sliding" -> SLIDING;
            case "prefill" -> PREFILL;
            default -> throw new RopewayException("unknown protocol '" + name + "' (chunks, sliding, prefill)");
        };
    }

    public String label() {
        return name().toLowerCase(Locale.ROOT);
    }
}
