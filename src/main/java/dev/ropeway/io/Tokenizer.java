package dev.ropeway.io;

import java.util.Optional;
import java.util.OptionalInt;

/** Text to token ids and back, for the model whose checkpoint folder the tokenizer came from. */
public interface Tokenizer extends AutoCloseable {

    /** The ids of {@code text}, never truncated; with {@code addSpecialTokens} the model's template (e.g. BOS) too. */
    int[] encode(String text, boolean addSpecialTokens);

    /** The text of {@code ids}; with {@code skipSpecialTokens} tokens such as BOS and EOS are left out. */
    String decode(int[] ids, boolean skipSpecialTokens);

    /** The number of token ids, added tokens included: every valid id is below it. */
    int vocabSize();

    /**
     * The raw bytes token {@code id} stands for, where the tokenizer defines them: a byte-level BPE token's bytes, a
     * SentencePiece piece with '▁' as a space and a byte-fallback piece ({@code <0xE2>}) as its byte. A token that
     * ends inside a UTF-8 character decodes to U+FFFD on its own; its bytes are what a client joins to rebuild the
     * character. Empty where the tokenizer's decoder gives no such meaning (WordPiece, for one).
     */
    default Optional<byte[]> tokenBytes(int id) {
        return Optional.empty();
    }

    /** The beginning-of-sequence token, when the tokenizer or model declares one. */
    OptionalInt bosId();

    /** The end-of-sequence token, when the tokenizer or model declares one. */
    OptionalInt eosId();

    /**
     * Every token that ends a generation: {@link #eosId} first, then the others the model folder declares
     * ({@code eos_token_id} lists in {@code generation_config.json} and {@code config.json}, as chat models have).
     */
    default int[] endIds() {
        return eosId().isPresent() ? new int[]{eosId().getAsInt()} : new int[0];
    }

    /** A document's ids with the BOS token in front (as training packs them), or without when there is none. */
    default int[] encodeWithBos(String text) {
        int[] ids = encode(text, false);
        int bos = bosId().orElse(-1);
        if (bos < 0) return ids;
        int[] out = new int[ids.length + 1];
        out[0] = bos;
        System.arraycopy(ids, 0, out, 1, ids.length);
        return out;
    }

    @Override
    void close();
}
