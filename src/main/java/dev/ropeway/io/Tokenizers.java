package dev.ropeway.io;

import dev.ropeway.RopewayException;
import dev.ropeway.io.bpe.BpeEncoder;

import java.nio.file.Path;

/** Opening the tokenizer of a checkpoint folder. */
public final class Tokenizers {
    private Tokenizers() {}

    /**
     * The folder's {@code tokenizer.json}: through the pure-Java byte-level BPE encoder when it supports the file (the
     * same ids as the tokenizers library, an order of magnitude faster), otherwise through the tokenizers library (DJL).
     */
    public static Tokenizer open(Path dir) {
        try {
            return BpeEncoder.load(dir);
        } catch (RopewayException unsupported) {
            return HfTokenizer.load(dir);
        }
    }
}
