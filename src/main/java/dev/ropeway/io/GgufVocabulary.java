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
 * A checkpoint's BPE {@code tokenizer.json} as GGUF's {@code tokenizer.ggml.*} metadata: every token by id and its type,
 * the special ids and whether BOS is added, and then either
 * <ul>
 *   <li>for a byte-level BPE (GPT-2 style), GGUF's {@code gpt2} tokenizer: the merges in rank order and the
 *       pre-tokenizer's name. GGUF engines do not run the Hugging Face pre-tokenizer from its description but pick a
 *       built-in one by name ({@code tokenizer.ggml.pre}), so only pre-tokenizers whose name is known are exported;
 *       anything else is refused rather than tokenized wrongly; or</li>
 *   <li>for a SentencePiece-style BPE (Llama 2, Mistral, and whatever {@code import} made of a GGUF {@code llama}
 *       tokenizer: '\u2581' for spaces, a prefix space, byte fallback), GGUF's {@code llama} tokenizer: per-token
 *       scores instead of merges. llama.cpp merges the adjacent pair whose result scores highest (leftmost first
 *       among equals), so a token's score is minus the rank of the first merge that forms it, which makes it apply
 *       the merges in the order Hugging Face's BPE does; byte tokens {@code <0xXX>} are typed as bytes, for the same
 *       fallback. A multi-character token that no merge forms (none in a vocabulary SentencePiece made) gets the
 *       lowest score.</li>
 * </ul>
 */
public record GgufVocabulary(String model, String pre, List<String> tokens, int[] tokenTypes, float[] scores,
                             List<String> merges, OptionalInt bos, OptionalInt eos, OptionalInt unk, OptionalInt pad,
                             boolean addBos, boolean addEos, boolean addSpacePrefix) {

    /** llama.cpp's token types. */
    public static final int NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6;

    /** GGUF's two BPE tokenizer models. */
    public static final String GPT2 = "gpt2", LLAMA = "llama";

    /** SentencePiece's stand-in for a space. */
    static final String SPACE = "\u2581";

    /**
     * GPT-2's pre-tokenizer regex (what a ByteLevel pre-tokenizer with use_regex runs, and what Ropeway's tokenizer
     * trainer uses) has the name "gpt-2"; Llama 3's and Qwen2's split patterns have "llama-bpe" and "qwen2".
     */
    public static final Map<String, String> SPLIT_PATTERNS = Map.of(
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "llama-bpe",
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "qwen2");

    /** The split pattern {@link #SPLIT_PATTERNS} names {@code name}. */
    static String splitPattern(String name) {
        for (Map.Entry<String, String> e : SPLIT_PATTERNS.entrySet()) if (e.getValue().equals(name)) return e.getKey();
        throw new IllegalArgumentException("no split pattern named " + name);
    }

    public GgufVocabulary {
        if (!model.equals(GPT2) && !model.equals(LLAMA)) throw new IllegalArgumentException("tokenizer model " + model);
        tokens = List.copyOf(tokens);
        tokenTypes = tokenTypes.clone();
        scores = scores == null ? null : scores.clone();
        merges = List.copyOf(merges);
        if (tokens.size() != tokenTypes.length) throw new IllegalArgumentException("one type per token");
        if (model.equals(LLAMA) != (scores != null)) throw new IllegalArgumentException("scores go with the llama model only");
        if (scores != null && scores.length != tokens.size()) throw new IllegalArgumentException("one score per token");
    }

    @Override
    public int[] tokenTypes() { return tokenTypes.clone(); }

    @Override
    public float[] scores() { return scores == null ? null : scores.clone(); }

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
        boolean sentencePiece = sentencePieceStyle(root);
        String pre = null;
        boolean prefix = false;
        if (sentencePiece) {
            prefix = sentencePiecePrefix(root, json);
        } else {
            pre = preTokenizerName(root.path("pre_tokenizer"), json);
            JsonNode normalizer = root.path("normalizer");
            if (!normalizer.isNull() && !normalizer.isMissingNode() && !normalizer.path("type").asText().equals("NFC"))
                throw new CheckpointException(json + " has a '" + normalizer.path("type").asText() + "' normalizer, which GGUF "
                        + "engines do not apply; export needs a tokenizer without one (or NFC)");
        }

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

        float[] scores = null;
        if (sentencePiece) {
            // Ranks as scores: the token the earliest merge forms scores highest.
            Map<String, Integer> firstRank = new java.util.HashMap<>();
            for (int r = 0; r < merges.size(); r++) firstRank.putIfAbsent(merges.get(r).replace(" ", ""), r);
            for (int b = 0; b < 256; b++) {
                String name = String.format("<0x%02X>", b);
                OptionalInt id = vocabulary.idOf(name);
                if (id.isEmpty())
                    throw new CheckpointException(json + " falls back to bytes but has no token " + name + "; GGUF's 'llama' "
                            + "tokenizer needs all 256 byte tokens");
                if (types[id.getAsInt()] == NORMAL) types[id.getAsInt()] = BYTE;
            }
            scores = new float[size];
            for (int id = 0; id < size; id++) {
                String token = tokens.get(id);
                if (types[id] != NORMAL) continue;
                Integer rank = firstRank.get(token);
                if (rank != null) scores[id] = -1f - rank;
                else if (token.codePointCount(0, token.length()) > 1) scores[id] = -1f - merges.size() - id;
            }
        }

        SpecialTokenIds special = SpecialTokenIds.resolve(folder, vocabulary);
        Path configFile = folder.resolve("tokenizer_config.json");
        JsonNode config = Files.isRegularFile(configFile) ? Json.readObjectNode(configFile) : null;
        OptionalInt unk = byText(config, "unk_token", vocabulary);
        if (unk.isEmpty() && model.path("unk_token").isTextual()) unk = vocabulary.idOf(model.path("unk_token").textValue());
        OptionalInt pad = byText(config, "pad_token", vocabulary);
        if (sentencePiece && unk.isPresent() && (types[unk.getAsInt()] == CONTROL || types[unk.getAsInt()] == NORMAL))
            types[unk.getAsInt()] = UNKNOWN;
        boolean addBos = config != null && config.path("add_bos_token").isBoolean()
                ? config.path("add_bos_token").booleanValue()
                : templateAdds(root.path("post_processor"), special.bos(), byId, true);
        boolean addEos = config != null && config.path("add_eos_token").isBoolean()
                ? config.path("add_eos_token").booleanValue()
                : templateAdds(root.path("post_processor"), special.eos(), byId, false);
        return sentencePiece
                ? new GgufVocabulary(LLAMA, null, tokens, types, scores, List.of(), special.bos(), special.eos(), unk, pad,
                        addBos, addEos, prefix)
                : new GgufVocabulary(GPT2, pre, tokens, types, null, merges, special.bos(), special.eos(), unk, pad,
                        addBos, addEos, false);
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
        float[] paddedScores = scores == null ? null : java.util.Arrays.copyOf(scores, vocabSize);
        return new GgufVocabulary(model, pre, padded, types, paddedScores, merges, bos, eos, unk, pad, addBos, addEos,
                addSpacePrefix);
    }

    /** The {@code tokenizer.ggml.*} keys. */
    public Map<String, GgufValue> metadata() {
        Map<String, GgufValue> m = new LinkedHashMap<>();
        m.put("tokenizer.ggml.model", GgufValue.string(model));
        if (pre != null) m.put("tokenizer.ggml.pre", GgufValue.string(pre));
        m.put("tokenizer.ggml.tokens", GgufValue.strings(tokens));
        if (scores != null) m.put("tokenizer.ggml.scores", GgufValue.float32s(scores));
        m.put("tokenizer.ggml.token_type", GgufValue.int32s(tokenTypes));
        if (model.equals(GPT2)) m.put("tokenizer.ggml.merges", GgufValue.strings(merges));
        else m.put("tokenizer.ggml.add_space_prefix", GgufValue.bool(addSpacePrefix));
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

    /**
     * Whether a SentencePiece-style tokenizer puts '\u2581' in front of the text, from the two forms transformers
     * writes: a normalizer sequence of Prepend('\u2581') and Replace(' ', '\u2581') with no pre-tokenizer (Llama 2,
     * Mistral 7B v0.1), or a Metaspace pre-tokenizer that does not split (prepend_scheme first or always; never for
     * none). Anything else (other normalizers, a splitting Metaspace, byte fallback off) is refused, as llama.cpp's
     * tokenizer would give other ids.
     */
    private static boolean sentencePiecePrefix(JsonNode root, Path json) {
        if (!root.path("model").path("byte_fallback").asBoolean(false))
            throw new CheckpointException(json + " uses '\u2581' for spaces without byte fallback; GGUF's 'llama' tokenizer "
                    + "always falls back to bytes, so it would not give this tokenizer's ids");
        JsonNode normalizer = root.path("normalizer"), pre = root.path("pre_tokenizer");
        boolean noPre = pre.isNull() || pre.isMissingNode();
        boolean noNormalizer = normalizer.isNull() || normalizer.isMissingNode();
        if (noPre && !noNormalizer) {
            List<JsonNode> steps = new ArrayList<>();
            if (normalizer.path("type").asText().equals("Sequence")) normalizer.path("normalizers").forEach(steps::add);
            else steps.add(normalizer);
            boolean prepend = false, replace = false;
            for (JsonNode step : steps) {
                String type = step.path("type").asText();
                if (type.equals("Prepend") && step.path("prepend").asText().equals(SPACE) && !replace) prepend = true;
                else if (type.equals("Replace") && step.path("pattern").path("String").asText().equals(" ")
                        && step.path("content").asText().equals(SPACE)) replace = true;
                else throw new CheckpointException(json + " has a normalizer step GGUF's 'llama' tokenizer does not apply: "
                            + abbreviate(step.toString()));
            }
            if (replace) return prepend;
        } else if (noNormalizer && pre.path("type").asText().equals("Metaspace")
                && pre.path("replacement").asText(SPACE).equals(SPACE)) {
            if (pre.path("split").asBoolean(true))
                throw new CheckpointException(json + ": its Metaspace pre-tokenizer splits the text at every '\u2581', "
                        + "which GGUF's 'llama' tokenizer does not; export needs split: false");
            String scheme = pre.path("prepend_scheme").asText(pre.path("add_prefix_space").asBoolean(true) ? "always" : "never");
            return switch (scheme) {
                case "first", "always" -> true;
                case "never" -> false;
                default -> throw new CheckpointException(json + ": Metaspace prepend_scheme '" + scheme + "' is not known");
            };
        }
        throw new CheckpointException(json + " is a SentencePiece-style BPE whose spaces are not turned into '\u2581' by "
                + "a Prepend/Replace normalizer or a Metaspace pre-tokenizer (found normalizer " + abbreviate(normalizer.toString())
                + ", pre-tokenizer " + abbreviate(pre.toString()) + "); GGUF has no form for it");
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
