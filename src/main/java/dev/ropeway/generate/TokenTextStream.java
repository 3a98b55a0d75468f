package dev.ropeway.generate;

import dev.ropeway.io.Tokenizer;

import java.util.Arrays;
import java.util.Objects;

/**
 * Turns generated token ids into text as they come, never emitting half a character.
 *
 * <p>A token need not end on a character boundary: byte-level BPE splits an emoji's four UTF-8 bytes over
 * several tokens, and a token alone may decode differently than in context (SentencePiece drops the leading space
 * of the first token). So each step decodes a short window of recent tokens twice, without and with the new ones,
 * and emits the difference, but only once the decoded text no longer ends in U+FFFD, which is what the decoders
 * make of an incomplete byte sequence. The window then moves on, so a step costs the same however long the
 * sequence grows.
 */
public final class TokenTextStream {
    private final Tokenizer tokenizer;
    private final boolean skipSpecialTokens;
    private final int contextLength;
    private int[] tokens;
    private int size;
    /** Start of the window decoded as context: its text up to {@code readOffset} has been emitted already. */
    private int prefixOffset;
    /** The tokens before it have been emitted. */
    private int readOffset;

    /** A stream for generated tokens only, with no prompt as decoding context. */
    public TokenTextStream(Tokenizer tokenizer, boolean skipSpecialTokens) {
        this(tokenizer, skipSpecialTokens, new int[0]);
    }

    /**
     * A stream whose first tokens decode in the context of {@code context} (say, the last few prompt tokens), so
     * that a leading space the decoder would drop at the start of a text is kept. The context is not emitted.
     */
    public TokenTextStream(Tokenizer tokenizer, boolean skipSpecialTokens, int[] context) {
        this.tokenizer = Objects.requireNonNull(tokenizer, "tokenizer");
        this.skipSpecialTokens = skipSpecialTokens;
        this.tokens = Arrays.copyOf(context, Math.max(16, context.length * 2));
        this.size = context.length;
        this.contextLength = context.length;
        this.prefixOffset = 0;
        this.readOffset = context.length;
    }

    /** Adds one token and returns the text that is now complete (often empty while a character is split). */
    public String push(int tokenId) {
        if (size == tokens.length) tokens = Arrays.copyOf(tokens, size * 2);
        tokens[size++] = tokenId;
        String before = decode(prefixOffset, readOffset);
        String after = decode(prefixOffset, size);
        if (after.length() > before.length() && !after.endsWith("\uFFFD")) {
            prefixOffset = readOffset;
            readOffset = size;
            return after.substring(before.length());
        }
        return "";
    }

    /**
     * Whatever is still held back, at the end of generation: an incomplete character comes out as U+FFFD, as
     * decoding the whole sequence would give it.
     */
    public String flush() {
        if (readOffset == size) return "";
        String before = decode(prefixOffset, readOffset);
        String after = decode(prefixOffset, size);
        prefixOffset = readOffset;
        readOffset = size;
        return after.length() > before.length() ? after.substring(before.length()) : "";
    }

    /** The number of generated tokens pushed so far (the context not counted). */
    public int tokenCount() {
        return size - contextLength;
    }

    private String decode(int from, int to) {
        if (from == to) return "";
        return tokenizer.decode(Arrays.copyOfRange(tokens, from, to), skipSpecialTokens);
    }
}
