package dev.ropeway.train.tokenizer;

import dev.ropeway.io.bpe.*;
import dev.ropeway.RopewayException;
import dev.ropeway.io.Json;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Writes a trained tokenizer as a Hugging Face tokenizer folder: {@code tokenizer.json} (the tokenizers library's
 * format) and {@code tokenizer_config.json} (what transformers' {@code AutoTokenizer} and {@link dev.ropeway.io.HfTokenizer}
 * read for the special tokens). Both are replaced atomically, and both depend only on the model, so the same training
 * gives the same bytes.
 */
public final class TokenizerFiles {
    public static final String TOKENIZER_JSON = "tokenizer.json", TOKENIZER_CONFIG = "tokenizer_config.json";

    private TokenizerFiles() {}

    /** Writes a model from {@link BpeTrainer} (its special-token layout) into {@code dir}, creating it if needed. */
    public static void write(Path dir, BpeModel model, int modelMaxLength) {
        if (modelMaxLength < 1) throw new RopewayException("model_max_length must be positive, not " + modelMaxLength);
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new RopewayException("cannot create " + dir + ": " + e.getMessage(), e);
        }
        Json.writeAtomic(dir.resolve(TOKENIZER_JSON), model.toJson());
        Json.writeAtomic(dir.resolve(TOKENIZER_CONFIG), config(model, modelMaxLength));
    }

    static Map<String, Object> config(BpeModel model, int modelMaxLength) {
        Map<String, Object> decoder = new LinkedHashMap<>();
        for (BpeModel.AddedToken t : model.addedTokens()) {
            Map<String, Object> token = new LinkedHashMap<>();
            token.put("content", t.content());
            token.put("lstrip", false);
            token.put("normalized", false);
            token.put("rstrip", false);
            token.put("single_word", false);
            token.put("special", t.special());
            decoder.put(Integer.toString(t.id()), token);
        }
        Map<String, Object> config = new LinkedHashMap<>();
        config.put("add_bos_token", true);
        config.put("add_eos_token", false);
        config.put("added_tokens_decoder", decoder);
        config.put("bos_token", model.token(BpeTrainer.BOS));
        // Decoding must give back the text byte for byte; the clean-up would glue " ." and " 's" to the word before.
        config.put("clean_up_tokenization_spaces", false);
        config.put("eos_token", model.token(BpeTrainer.EOS));
        config.put("model_max_length", modelMaxLength);
        config.put("pad_token", model.token(BpeTrainer.PAD));
        config.put("tokenizer_class", "PreTrainedTokenizerFast");
        config.put("unk_token", model.token(BpeTrainer.UNK));
        return config;
    }
}
