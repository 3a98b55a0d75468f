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
    SLIDING;

    public static PerplexityProtocol parse(String name) {
        return switch (name.toLowerCase(Locale.ROOT)) {
            case "chunks" -> CHUNKS;
            case "sliding" -> SLIDING;
            case "prefill" -> throw new RopewayException("the prefill protocol needs the KV cache, which is not in this "
                    + "version; use chunks or sliding");
            default -> throw new RopewayException("unknown protocol '" + name + "' (chunks, sliding)");
        };
    }

    public String label() {
        return name().toLowerCase(Locale.ROOT);
    }
}
