package dev.ropeway.io;

import com.fasterxml.jackson.databind.JsonNode;

import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.OptionalInt;

/**
 * The token-to-id table of a Hugging Face {@code tokenizer.json}: the model's vocabulary plus its added tokens.
 * The native tokenizer does not expose it, and it is needed to size the vocabulary and to resolve special tokens
 * named by text in {@code tokenizer_config.json}.
 */
final class TokenizerVocabulary {
    private final Map<String, Integer> ids;
    private final int size;

    private TokenizerVocabulary(Map<String, Integer> ids, int size) {
        this.ids = ids;
        this.size = size;
    }

    static TokenizerVocabulary read(Path tokenizerJson) {
        return read(Json.readObjectNode(tokenizerJson), tokenizerJson);
    }

    /** The table of {@code root}, the parsed {@code tokenizerJson} (named in messages). */
    static TokenizerVocabulary read(JsonNode root, Path tokenizerJson) {
        Map<String, Integer> ids = new HashMap<>();
        JsonNode model = root.path("model");
        JsonNode vocab = model.path("vocab");
        if (vocab.isObject()) {
            // BPE, WordPiece and WordLevel: {"token": id, ...}
            for (Map.Entry<String, JsonNode> e : vocab.properties()) {
                ids.put(e.getKey(), id(tokenizerJson, e.getValue(), e.getKey()));
            }
        } else if (vocab.isArray()) {
            // Unigram: [["token", score], ...], the id being the position.
            for (int i = 0; i < vocab.size(); i++) {
                JsonNode piece = vocab.get(i);
                if (!piece.isArray() || piece.isEmpty() || !piece.get(0).isTextual()) {
                    throw new CheckpointException(tokenizerJson + ": vocabulary entry " + i + " is not [token, score]");
                }
                ids.put(piece.get(0).textValue(), i);
            }
        } else {
            throw new CheckpointException(tokenizerJson + " has no model.vocab; it is not a Hugging Face tokenizer");
        }
        for (JsonNode added : root.path("added_tokens")) {
            JsonNode content = added.path("content");
            if (!content.isTextual()) throw new CheckpointException(tokenizerJson + ": an added token has no content");
            ids.put(content.textValue(), id(tokenizerJson, added.path("id"), content.textValue()));
        }
        // Ids index the embedding matrix, so the size is the highest id plus one; Hugging Face numbers tokens
        // contiguously, and then this is also the number of tokens.
        int size = ids.values().stream().mapToInt(Integer::intValue).max().orElse(-1) + 1;
        return new TokenizerVocabulary(ids, size);
    }

    private static int id(Path file, JsonNode node, String token) {
        if (!node.isIntegralNumber() || !node.canConvertToInt() || node.intValue() < 0) {
            throw new CheckpointException(file + ": token '" + token + "' has no valid id (" + node + ")");
        }
        return node.intValue();
    }

    int size() {
        return size;
    }

    /** Every token with its id. */
    Map<String, Integer> ids() {
        return java.util.Collections.unmodifiableMap(ids);
    }

    OptionalInt idOf(String token) {
        Integer id = ids.get(token);
        return id == null ? OptionalInt.empty() : OptionalInt.of(id);
    }
}
