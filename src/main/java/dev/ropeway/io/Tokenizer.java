package dev.ropeway.io;

import java.util.OptionalInt;

/** Text to token ids and back, for the model whose checkpoint folder the tokenizer came from. */
public interface Tokenizer extends AutoCloseable {

    /** The ids of {@code text}, never truncated; with {@code addSpecialTokens} the model's template (e.g. BOS) too. */
    int[] encode(String text, boolean addSpecialTokens);

    /** The text of {@code ids}; with {@code skipSpecialTokens} tokens such as BOS and EOS are left out. */
    String decode(int[] ids, boolean skipSpecialTokens);

    /** The number of token ids, added tokens included: every valid id is below it. */
    int vocabSize();

    /** The beginning-of-sequence token, when the tokenizer or model declares one. */
    OptionalInt bosId();

    /** The end-of-sequence token, when the tokenizer or model declares one. */
    OptionalInt eosId();

    @Override
    void close();
}
