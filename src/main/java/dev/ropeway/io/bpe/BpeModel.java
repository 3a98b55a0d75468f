package dev.ropeway.io.bpe;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ropeway.RopewayException;
import dev.ropeway.io.Json;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A byte-level BPE tokenizer as data: the vocabulary (token strings in {@link ByteAlphabet} form, by id), the merges
 * in rank order, the added (special) tokens, and the ids the post-processor puts around a text when special tokens are
 * asked for. Read from and written to Hugging Face's {@code tokenizer.json}; only the GPT-2 layout is accepted (no
 * normalizer, ByteLevel pre-tokenizer with its regex and without a prefix space), since that is what
 * {@link BpeEncoder} reproduces exactly.
 */
public final class BpeModel {
    /** A token matched in raw text before pre-tokenization, e.g. {@code <s>}. */
    public record AddedToken(int id, String content, boolean special) {}

    private final String[] vocab;
    private final int[] mergeLeft, mergeRight;
    private final List<AddedToken> addedTokens;
    private final int[] prefix, suffix;

    public BpeModel(String[] vocab, int[] mergeLeft, int[] mergeRight, List<AddedToken> addedTokens, int[] prefix, int[] suffix) {
        this.vocab = vocab;
        this.mergeLeft = mergeLeft;
        this.mergeRight = mergeRight;
        this.addedTokens = List.copyOf(addedTokens);
        this.prefix = prefix;
        this.suffix = suffix;
    }

    /** The number of ids (highest id plus one). */
    public int vocabSize() {
        return vocab.length;
    }

    /** The token string of {@code id}, or null for an unused id. */
    public String token(int id) {
        return id >= 0 && id < vocab.length ? vocab[id] : null;
    }

    public int mergeCount() {
        return mergeLeft.length;
    }

    /** The left id of the merge of rank {@code rank} (0 is applied first). */
    public int mergeLeft(int rank) {
        return mergeLeft[rank];
    }

    public int mergeRight(int rank) {
        return mergeRight[rank];
    }

    public List<AddedToken> addedTokens() {
        return addedTokens;
    }

    /** The ids put before a text when special tokens are asked for (typically BOS). */
    public int[] prefix() {
        return prefix.clone();
    }

    /** The ids put after a text when special tokens are asked for. */
    public int[] suffix() {
        return suffix.clone();
    }

    /** The id of a token string, or -1. */
    public int idOf(String token) {
        for (AddedToken t : addedTokens) if (t.content.equals(token)) return t.id;
        for (int id = 0; id < vocab.length; id++) if (token.equals(vocab[id])) return id;
        return -1;
    }

    /** The contents of {@code tokenizer.json}, in the field order the tokenizers library writes. */
    public Map<String, Object> toJson() {
        Map<String, Object> byteLevel = new LinkedHashMap<>();
        byteLevel.put("type", "ByteLevel");
        byteLevel.put("add_prefix_space", false);
        byteLevel.put("trim_offsets", true);
        byteLevel.put("use_regex", true);
        List<Object> added = new ArrayList<>();
        for (AddedToken t : addedTokens) {
            Map<String, Object> token = new LinkedHashMap<>();
            token.put("id", t.id);
            token.put("content", t.content);
            token.put("single_word", false);
            token.put("lstrip", false);
            token.put("rstrip", false);
            token.put("normalized", false);
            token.put("special", t.special);
            added.add(token);
        }
        Map<String, Object> root = new LinkedHashMap<>();
        root.put("version", "1.0");
        root.put("truncation", null);
        root.put("padding", null);
        root.put("added_tokens", added);
        root.put("normalizer", null);
        root.put("pre_tokenizer", byteLevel);
        root.put("post_processor", template());
        root.put("decoder", byteLevel);
        Map<String, Object> model = new LinkedHashMap<>();
        model.put("type", "BPE");
        model.put("dropout", null);
        model.put("unk_token", null);
        model.put("continuing_subword_prefix", null);
        model.put("end_of_word_suffix", null);
        model.put("fuse_unk", false);
        model.put("byte_fallback", false);
        model.put("ignore_merges", false);
        Map<String, Integer> vocabulary = new LinkedHashMap<>();
        for (int id = 0; id < vocab.length; id++) if (vocab[id] != null) vocabulary.putIfAbsent(vocab[id], id);
        model.put("vocab", vocabulary);
        List<String> merges = new ArrayList<>(mergeLeft.length);
        for (int r = 0; r < mergeLeft.length; r++) merges.add(vocab[mergeLeft[r]] + " " + vocab[mergeRight[r]]);
        model.put("merges", merges);
        root.put("model", model);
        return root;
    }

    /**
     * A TemplateProcessing post-processor: prefix ids, the text, suffix ids; for a pair, the same again around the
     * second text with type id 1 (Llama's layout). Maps are ordered ones throughout: {@code Map.of} iterates in an
     * order that changes from run to run, and the file must come out byte-identical.
     */
    private Map<String, Object> template() {
        Map<String, Object> specials = new LinkedHashMap<>();
        List<Object> first = new ArrayList<>(), second = new ArrayList<>();
        for (int typeId = 0; typeId < 2; typeId++) {
            List<Object> items = typeId == 0 ? first : second;
            for (int id : prefix) items.add(specialItem(id, typeId, specials));
            items.add(Json.ordered("Sequence", Json.ordered("id", typeId == 0 ? "A" : "B", "type_id", typeId)));
            for (int id : suffix) items.add(specialItem(id, typeId, specials));
        }
        List<Object> pair = new ArrayList<>(first);
        pair.addAll(second);
        return Json.ordered("type", "TemplateProcessing", "single", first, "pair", pair, "special_tokens", specials);
    }

    private Map<String, Object> specialItem(int id, int typeId, Map<String, Object> specials) {
        String content = vocab[id];
        specials.put(content, Json.ordered("id", content, "ids", List.of(id), "tokens", List.of(content)));
        return Json.ordered("SpecialToken", Json.ordered("id", content, "type_id", typeId));
    }


    /** Reads a byte-level BPE {@code tokenizer.json}, or the one in a folder. */
    public static BpeModel read(Path dirOrFile) {
        Path file = Files.isDirectory(dirOrFile) ? dirOrFile.resolve("tokenizer.json") : dirOrFile;
        if (!Files.isRegularFile(file)) throw new RopewayException("no tokenizer file " + file);
        JsonNode root;
        try {
            root = Json.mapper().readTree(file.toFile());
        } catch (IOException e) {
            throw new RopewayException("cannot read " + file + ": " + e.getMessage(), e);
        }
        if (root == null || !root.isObject()) throw new RopewayException(file + " does not hold a JSON object");
        return fromJson(root, file.toString());
    }

    static BpeModel fromJson(JsonNode root, String where) {
        JsonNode model = root.path("model");
        require(model.path("type").asText("").equals("BPE"), where, "the model is not BPE");
        require(root.path("normalizer").isNull() || root.path("normalizer").isMissingNode(), where, "it has a normalizer");
        JsonNode pre = root.path("pre_tokenizer");
        require(pre.path("type").asText("").equals("ByteLevel") && !pre.path("add_prefix_space").asBoolean(true)
                && pre.path("use_regex").asBoolean(true), where,
                "the pre-tokenizer is not ByteLevel with use_regex and without add_prefix_space");
        require(isNullOrEmpty(model.path("dropout")) && isNullOrEmpty(model.path("continuing_subword_prefix"))
                && isNullOrEmpty(model.path("end_of_word_suffix")) && !model.path("byte_fallback").asBoolean(false)
                && !model.path("ignore_merges").asBoolean(false), where,
                "it uses dropout, subword affixes, byte fallback or ignore_merges");
        JsonNode decoder = root.path("decoder");
        require(decoder.isNull() || decoder.isMissingNode() || decoder.path("type").asText("").equals("ByteLevel"), where,
                "the decoder is not ByteLevel");

        Map<String, Integer> ids = new LinkedHashMap<>();
        int size = 0;
        require(model.path("vocab").isObject(), where, "model.vocab is not an object");
        for (Map.Entry<String, JsonNode> e : model.path("vocab").properties()) {
            int id = id(e.getValue(), where);
            ids.put(e.getKey(), id);
            size = Math.max(size, id + 1);
        }
        List<AddedToken> added = new ArrayList<>();
        for (JsonNode t : root.path("added_tokens")) {
            require(t.path("content").isTextual(), where, "an added token has no content");
            require(!t.path("lstrip").asBoolean(false) && !t.path("rstrip").asBoolean(false)
                    && !t.path("single_word").asBoolean(false), where, "an added token uses lstrip, rstrip or single_word");
            int id = id(t.path("id"), where);
            added.add(new AddedToken(id, t.path("content").textValue(), t.path("special").asBoolean(false)));
            size = Math.max(size, id + 1);
        }
        String[] vocab = new String[size];
        for (Map.Entry<String, Integer> e : ids.entrySet()) vocab[e.getValue()] = e.getKey();
        for (AddedToken t : added) vocab[t.id] = t.content;
        for (int b = 0; b < 256; b++)
            require(ids.containsKey(String.valueOf(ByteAlphabet.symbol(b))), where, "the vocabulary lacks byte " + b);

        JsonNode merges = model.path("merges");
        int[] left = new int[merges.size()], right = new int[merges.size()];
        for (int r = 0; r < merges.size(); r++) {
            JsonNode m = merges.get(r);
            String a, b;
            if (m.isTextual()) {
                String[] parts = m.textValue().split(" ", -1);
                require(parts.length == 2, where, "merge " + r + " is not two tokens: " + m);
                a = parts[0];
                b = parts[1];
            } else {
                require(m.isArray() && m.size() == 2, where, "merge " + r + " is not two tokens: " + m);
                a = m.get(0).asText();
                b = m.get(1).asText();
            }
            Integer ia = ids.get(a), ib = ids.get(b);
            require(ia != null && ib != null && ids.containsKey(a + b), where, "merge " + r + " uses a token missing from the vocabulary");
            left[r] = ia;
            right[r] = ib;
        }

        int[][] template = readTemplate(root.path("post_processor"), where);
        return new BpeModel(vocab, left, right, added, template[0], template[1]);
    }

    /** The prefix and suffix ids of a single text, from a TemplateProcessing (or no ids for null / ByteLevel). */
    private static int[][] readTemplate(JsonNode processor, String where) {
        if (processor.isNull() || processor.isMissingNode() || processor.path("type").asText("").equals("ByteLevel"))
            return new int[][] {new int[0], new int[0]};
        require(processor.path("type").asText("").equals("TemplateProcessing"), where,
                "the post-processor is neither TemplateProcessing nor ByteLevel");
        List<Integer> before = new ArrayList<>(), after = new ArrayList<>();
        boolean seenText = false;
        for (JsonNode item : processor.path("single")) {
            if (item.has("Sequence")) {
                seenText = true;
                continue;
            }
            String name = item.path("SpecialToken").path("id").asText();
            JsonNode special = processor.path("special_tokens").path(name);
            require(special.path("ids").isArray(), where, "the template names an unknown special token " + name);
            for (JsonNode id : special.path("ids")) (seenText ? after : before).add(id(id, where));
        }
        return new int[][] {before.stream().mapToInt(Integer::intValue).toArray(), after.stream().mapToInt(Integer::intValue).toArray()};
    }

    private static boolean isNullOrEmpty(JsonNode node) {
        return node.isNull() || node.isMissingNode() || (node.isTextual() && node.textValue().isEmpty());
    }

    private static int id(JsonNode node, String where) {
        require(node.isIntegralNumber() && node.canConvertToInt() && node.intValue() >= 0, where, "a token has no valid id: " + node);
        return node.intValue();
    }

    private static void require(boolean ok, String where, String problem) {
        if (!ok) throw new RopewayException(where + " is not a byte-level BPE tokenizer this encoder supports: " + problem);
    }
}
