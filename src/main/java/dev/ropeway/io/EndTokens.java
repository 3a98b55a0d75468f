package dev.ropeway.io;

import com.fasterxml.jackson.databind.JsonNode;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.OptionalInt;
import java.util.Set;

/**
 * Every token that ends a generation for a model folder: the tokenizer's EOS first, then the ids that
 * {@code generation_config.json} and {@code config.json} give as {@code eos_token_id} (one id or a list). Chat models
 * list several there (Llama 3 Instruct: end of text, end of message, end of turn; Qwen: end of turn and end of text;
 * Phi-3: end of text and end of turn), and transformers' generate stops at any of them; the tokenizer config names only
 * one.
 */
public final class EndTokens {
    private EndTokens() {}

    /** The ids for the model folder {@code folder}, whose tokenizer's EOS is {@code eos}; ids past the vocabulary are left out. */
    public static int[] of(Path folder, OptionalInt eos, int vocabSize) {
        Set<Integer> ids = new LinkedHashSet<>();
        eos.ifPresent(ids::add);
        for (String file : new String[]{"generation_config.json", "config.json"}) {
            Path f = folder.resolve(file);
            if (!Files.isRegularFile(f)) continue;
            JsonNode id = Json.readObjectNode(f).path("eos_token_id");
            if (id.isArray()) id.forEach(e -> add(ids, e, vocabSize));
            else add(ids, id, vocabSize);
        }
        return ids.stream().mapToInt(Integer::intValue).toArray();
    }

    private static void add(Set<Integer> ids, JsonNode id, int vocabSize) {
        if (id.isIntegralNumber() && id.canConvertToInt() && id.intValue() >= 0 && id.intValue() < vocabSize)
            ids.add(id.intValue());
    }
}
