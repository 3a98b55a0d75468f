package dev.ropeway.io;

import com.fasterxml.jackson.databind.JsonNode;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;

/**
 * A checkpoint's byte-level BPE {@code tokenizer.json} as GGUF's {@code tokenizer.ggml.*} metadata: every token by
 * id, its type, the merges in rank order, the special ids and whether BOS is added. GGUF engines do not run the
 * Hugging Face pre-tokenizer from its description but pick a built-in one by name ({@code tokenizer.ggml.pre}),
 * so only pre-tokenizers whose name is known are exported; anything else is refused rather than tokenized wrongly.
 */
public record GgufVocabulary(String pre, List<String> tokens, int[] tokenTypes, List<String> merges,
                             OptionalInt bos, OptionalInt eos, OptionalInt unk, OptionalInt pad,
                             boolean addBos, boolean addEos) {

    /** llama.cpp's token types. */
    public static final int NORMAL = 1, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5;

    /**
     * GPT-2's pre-tokenizer regex (what a ByteLevel pre-tokenizer with use_regex runs, and what Ropeway's tokenizer
     * trainer uses) has the name "gpt-2"; Llama 3's and Qwen2's split patterns have "llama-bpe" and "qwen2".
     */
    public static final Map<String, String> SPLIT_PATTERNS = Map.of(
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "llama-bpe",
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "qwen2");

    public GgufVocabulary {
        tokens = List.copyOf(tokens);
        tokenTypes = tokenTypes.clone();
        merges = List.copyOf(merges);
        if (tokens.size() != tokenTypes.length) throw new IllegalArgumentException("one type per token");
    }

    @Override
    public int[] tokenTypes() { return tokenTypes.clone(); }

    /** Reads {@code tokenizer.json} (and {@code tokenizer_config.json} when present) from a checkpoint folder. */
    public static GgufVocabulary read(Path folder) {
        Path json = folder.resolve("tokenizer.json");
        if (!Files.isRegularFile(json))
            throw new CheckpointException("no tokenizer.json in " + folder + "; a GGUF file carries its tokenizer, so export needs one");
        JsonNode root = Json.readObjectNode(json);
        JsonNode model = root.path("model");
        String type = model.path("type").asText("");
        if (!type.equals("BPE"))
            throw new CheckpointException(json + " is a " + (type.isEmpty() ? "untyped" : type) + " tokenizer; GGUF export "
                    + "handles byte-level BPE (GPT-2 style) tokenizers only");
        if (sentencePieceStyle(root))
            throw new CheckpointException(json + " is a SentencePiece-style BPE (byte fallback, '\u2581' for spaces), as "
                    + "Llama 2 and Mistral ship; its GGUF form ('llama' tokenizer with per-token scores) is not written by "
                    + "this version, which exports byte-level (GPT-2 style) BPE tokenizers only");
        String pre = preTokenizerName(root.path("pre_tokenizer"), json);
        JsonNode normalizer = root.path("normalizer");
        if (!normalizer.isNull() && !normalizer.isMissingNode() && !normalizer.path("type").asText().equals("NFC"))
            throw new CheckpointException(json + " has a '" + normalizer.path("type").asText() + "' normalizer, which GGUF "
                    + "engines do not apply; export needs a tokenizer without one (or NFC)");

        TokenizerVocabulary vocabulary = TokenizerVocabulary.read(json);
        Map<Integer, String> byId = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> e : model.path("vocab").properties()) byId.put(e.getValue().intValue(), e.getKey());
        Map<Integer, Boolean> added = new LinkedHashMap<>();
        for (JsonNode t : root.path("added_tokens")) {
            int id = t.path("id").intValue();
            byId.put(id, t.path("content").textValue());
            added.put(id, t.path("special").asBoolean(false));
        }
        int size = vocabulary.size();
        List<String> tokens = new ArrayList<>(size);
        int[] types = new int[size];
        for (int id = 0; id < size; id++) {
            String token = byId.get(id);
            if (token == null) {
                tokens.add("[PAD" + id + "]");
                types[id] = UNUSED;
            } else {
                tokens.add(token);
                Boolean special = added.get(id);
                types[id] = special == null ? NORMAL : special ? CONTROL : USER_DEFINED;
            }
        }
        List<String> merges = new ArrayList<>();
        for (JsonNode m : model.path("merges")) {
            if (m.isTextual()) {
                merges.add(m.textValue());
            } else if (m.isArray() && m.size() == 2 && m.get(0).isTextual() && m.get(1).isTextual()) {
                merges.add(m.get(0).textValue() + " " + m.get(1).textValue());
            } else {
                throw new CheckpointException(json + ": merge " + merges.size() + " is neither \"a b\" nor [\"a\", \"b\"]");
            }
        }

        SpecialTokenIds special = SpecialTokenIds.resolve(folder, vocabulary);
        Path configFile = folder.resolve("tokenizer_config.json");
        JsonNode config = Files.isRegularFile(configFile) ? Json.readObjectNode(configFile) : null;
        OptionalInt unk = byText(config, "unk_token", vocabulary);
        if (unk.isEmpty() && model.path("unk_token").isTextual()) unk = vocabulary.idOf(model.path("unk_token").textValue());
        OptionalInt pad = byText(config, "pad_token", vocabulary);
        boolean addBos = config != null && config.path("add_bos_token").isBoolean()
                ? config.path("add_bos_token").booleanValue()
                : templateAdds(root.path("post_processor"), special.bos(), byId, true);
        boolean addEos = config != null && config.path("add_eos_token").isBoolean()
                ? config.path("add_eos_token").booleanValue()
                : templateAdds(root.path("post_processor"), special.eos(), byId, false);
        return new GgufVocabulary(pre, tokens, types, merges, special.bos(), special.eos(), unk, pad, addBos, addEos);
    }

    /** This vocabulary with unused placeholder tokens appended up to the model's embedding rows. */
    public GgufVocabulary paddedTo(int vocabSize, String source) {
        if (tokens.size() > vocabSize)
            throw new CheckpointException(source + ": the tokenizer has " + tokens.size() + " tokens but the model's "
                    + "vocab_size is " + vocabSize + "; ids past the embedding would crash a GGUF engine");
        if (tokens.size() == vocabSize) return this;
        List<String> padded = new ArrayList<>(tokens);
        int[] types = java.util.Arrays.copyOf(tokenTypes, vocabSize);
        for (int id = tokens.size(); id < vocabSize; id++) {
            padded.add("[PAD" + id + "]");
            types[id] = UNUSED;
        }
        return new GgufVocabulary(pre, padded, types, merges, bos, eos, unk, pad, addBos, addEos);
    }

    /** The {@code tokenizer.ggml.*} keys. */
    public Map<String, GgufValue> metadata() {
        Map<String, GgufValue> m = new LinkedHashMap<>();
        m.put("tokenizer.ggml.model", GgufValue.string("gpt2"));
        m.put("tokenizer.ggml.pre", GgufValue.string(pre));
        m.put("tokenizer.ggml.tokens", GgufValue.strings(tokens));
        m.put("tokenizer.ggml.token_type", GgufValue.int32s(tokenTypes));
        m.put("tokenizer.ggml.merges", GgufValue.strings(merges));
        bos.ifPresent(id -> m.put("tokenizer.ggml.bos_token_id", GgufValue.uint32(id)));
        eos.ifPresent(id -> m.put("tokenizer.ggml.eos_token_id", GgufValue.uint32(id)));
        unk.ifPresent(id -> m.put("tokenizer.ggml.unknown_token_id", GgufValue.uint32(id)));
        pad.ifPresent(id -> m.put("tokenizer.ggml.padding_token_id", GgufValue.uint32(id)));
        m.put("tokenizer.ggml.add_bos_token", GgufValue.bool(addBos));
        m.put("tokenizer.ggml.add_eos_token", GgufValue.bool(addEos));
        return m;
    }

    private static boolean sentencePieceStyle(JsonNode root) {
        if (root.path("model").path("byte_fallback").asBoolean(false)) return true;
        String text = root.path("pre_tokenizer").toString() + root.path("normalizer") + root.path("decoder");
        return text.contains("Metaspace") || text.contains("\u2581") || text.contains("ByteFallback");
    }

    private static String preTokenizerName(JsonNode pre, Path json) {
        String type = pre.path("type").asText("");
        if (type.equals("ByteLevel")) {
            if (pre.path("add_prefix_space").asBoolean(false))
                throw new CheckpointException(json + ": the ByteLevel pre-tokenizer adds a prefix space, which GGUF's "
                        + "'gpt-2' pre-tokenizer does not; export needs add_prefix_space: false");
            if (!pre.path("use_regex").asBoolean(true))
                throw new CheckpointException(json + ": a ByteLevel pre-tokenizer without its regex has no GGUF name");
            return "gpt-2";
        }
        if (type.equals("Sequence") && pre.path("pretokenizers").size() == 2) {
            JsonNode split = pre.path("pretokenizers").get(0), byteLevel = pre.path("pretokenizers").get(1);
            String pattern = split.path("pattern").path("Regex").asText("");
            String name = SPLIT_PATTERNS.get(pattern);
            if (split.path("type").asText().equals("Split") && byteLevel.path("type").asText().equals("ByteLevel")
                    && !byteLevel.path("use_regex").asBoolean(true) && name != null)
                return name;
        }
        throw new CheckpointException(json + " has a pre-tokenizer GGUF has no name for (" + abbreviate(pre.toString())
                + "); export knows GPT-2's ByteLevel regex ('gpt-2') and the Llama 3 and Qwen2 split patterns");
    }

    private static String abbreviate(String s) {
        return s.length() <= 120 ? s : s.substring(0, 117) + "...";
    }

    private static OptionalInt byText(JsonNode config, String key, TokenizerVocabulary vocabulary) {
        if (config == null) return OptionalInt.empty();
        JsonNode token = config.path(key);
        if (token.isObject()) token = token.path("content");
        return token.isTextual() ? vocabulary.idOf(token.textValue()) : OptionalInt.empty();
    }

    /** Whether the post-processor's single-sequence template starts (or ends) with {@code id}. */
    private static boolean templateAdds(JsonNode processor, OptionalInt id, Map<Integer, String> byId, boolean first) {
        if (id.isEmpty()) return false;
        if (processor.path("type").asText().equals("Sequence")) {
            for (JsonNode p : processor.path("processors")) if (templateAdds(p, id, byId, first)) return true;
            return false;
        }
        JsonNode single = processor.path("single");
        if (!processor.path("type").asText().equals("TemplateProcessing") || single.isEmpty()) return false;
        JsonNode piece = single.get(first ? 0 : single.size() - 1).path("SpecialToken");
        return piece.path("id").asText("").equals(byId.get(id.getAsInt()));
    }
}
