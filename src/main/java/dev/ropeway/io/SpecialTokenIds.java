package dev.ropeway.io;

import com.fasterxml.jackson.databind.JsonNode;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.OptionalInt;

/**
 * Finds a model's BOS and EOS ids the way its folder declares them: by text in {@code tokenizer_config.json}
 * (a string, or an object with "content"), resolved through the vocabulary; failing that, by id in the model's
 * {@code config.json}.
 */
record SpecialTokenIds(OptionalInt bos, OptionalInt eos) {

    static SpecialTokenIds resolve(Path folder, TokenizerVocabulary vocabulary) {
        Path tokenizerConfig = folder.resolve("tokenizer_config.json");
        Path modelConfig = folder.resolve("config.json");
        JsonNode byText = Files.isRegularFile(tokenizerConfig) ? Json.readObjectNode(tokenizerConfig) : null;
        JsonNode byId = Files.isRegularFile(modelConfig) ? Json.readObjectNode(modelConfig) : null;
        return new SpecialTokenIds(
                find(byText, "bos_token", byId, "bos_token_id", vocabulary),
                find(byText, "eos_token", byId, "eos_token_id", vocabulary));
    }

    private static OptionalInt find(JsonNode tokenizerConfig, String tokenKey, JsonNode modelConfig, String idKey,
                                    TokenizerVocabulary vocabulary) {
        if (tokenizerConfig != null) {
            JsonNode token = tokenizerConfig.path(tokenKey);
            if (token.isObject()) token = token.path("content");
            if (token.isTextual()) {
                OptionalInt id = vocabulary.idOf(token.textValue());
                if (id.isPresent()) return id;
            }
        }
        if (modelConfig != null) {
            JsonNode id = modelConfig.path(idKey);
            // Some models list several end tokens (Llama 3: end of text, end of turn); the first is the primary one.
            if (id.isArray() && !id.isEmpty()) id = id.get(0);
            if (id.isIntegralNumber() && id.canConvertToInt() && id.intValue() >= 0) return OptionalInt.of(id.intValue());
        }
        return OptionalInt.empty();
    }
}
