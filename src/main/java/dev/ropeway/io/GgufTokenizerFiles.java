package dev.ropeway.io;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static dev.ropeway.io.GgufVocabulary.CONTROL;
import static dev.ropeway.io.GgufVocabulary.SPACE;
import static dev.ropeway.io.GgufVocabulary.UNKNOWN;
import static dev.ropeway.io.GgufVocabulary.USER_DEFINED;

/**
 * A GGUF file's {@code tokenizer.ggml.*} metadata as a Hugging Face tokenizer folder: {@code tokenizer.json},
 * {@code tokenizer_config.json} (special tokens, BOS/EOS flags, the chat template) and the end ids for
 * {@code generation_config.json}. Two GGUF tokenizer models have a Hugging Face form that tokenizes as the GGUF
 * engines do:
 * <ul>
 *   <li>{@code gpt2} (byte-level BPE, as Llama 3, Qwen2 and Qwen3 ship): the vocabulary and merges as they are, with the
 *   pre-tokenizer that {@code tokenizer.ggml.pre} names (GPT-2's ByteLevel regex, SmolLM's digits then that regex, or
 *   the split patterns of Llama 3, DBRX, Qwen2, Mistral's Tekken, GPT-4o, DeepSeek Coder and DeepSeek LLM; Llama 3's and Tekken's
 *   also skip merges for words already in the vocabulary, as llama.cpp does). Other pre-tokenizer names are refused
 *   rather than tokenized differently.</li>
 *   <li>{@code llama} (SentencePiece BPE with byte fallback, as Llama 2, Mistral and Phi-3 ship): a BPE whose merges
 *   are every split of a vocabulary piece into two pieces, ranked by the merged piece's score (highest first), with
 *   '\u2581' for spaces, a prefix space unless {@code tokenizer.ggml.add_space_prefix} is false, and byte fallback.
 *   SentencePiece merges the best-scoring adjacent pair first, which that ranking reproduces.</li>
 * </ul>
 */
public final class GgufTokenizerFiles {
    private GgufTokenizerFiles() {}

    /** What was written. */
    public record Written(String model, String pre, int tokens, int merges, int addedTokens, boolean chatTemplate,
                          int[] endIds, List<String> notes) {}

    /** Mistral's Tekken tokenizer's split pattern: letters in runs of capitals then lower case, digits one by one. */
    private static final String TEKKEN_PATTERN = "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
            + "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}"
            + "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    /** The o200k split pattern (GPT-4o's, Phi-4-mini's): Tekken's letter runs with contractions, digits in threes. */
    private static final String GPT4O_PATTERN = "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
            + "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
            + "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

    /**
     * Pre-tokenizer families by what they run: GPT-2's ByteLevel regex (after splitting off every digit for
     * {@link #DIGITS}), or a split pattern then bytes; whether merges are skipped for a word already in the vocabulary
     * (llama.cpp's {@code ignore_merges}), and whether a BOS token is added when the file does not say.
     */
    /** The code points DeepSeek LLM's pre-tokenizer counts as letters (a fixed list of ranges, not a Unicode property). */
    private static final String DEEPSEEK_LLM_LETTERS = "A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}"
            + "\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}"
            + "\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}"
            + "\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}"
            + "\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}"
            + "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}"
            + "\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}"
            + "\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}"
            + "\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}"
            + "\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}"
            + "\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}"
            + "\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"
            + "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}"
            + "\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}"
            + "\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"
            + "\\x{1E900}-\\x{1E943}";

    private enum Pre {
        GPT2(false, false), DIGITS(false, false, "\\p{N}"),
        LLAMA3(true, true, GgufVocabulary.splitPattern("llama-bpe")), DBRX(false, false, GgufVocabulary.splitPattern("llama-bpe")),
        QWEN2(false, false, GgufVocabulary.splitPattern("qwen2")),
        TEKKEN(true, true, TEKKEN_PATTERN), GPT4O(false, false, GPT4O_PATTERN),
        /** DeepSeek Coder's: line breaks, letter runs, punctuation runs, CJK runs and digits, each cut off in turn. */
        DEEPSEEK_CODER(false, false, "[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+",
                "\\p{N}"),
        /**
         * DeepSeek LLM's: line breaks; runs of the cased letters of its own list (Latin, Greek, Cyrillic, Armenian,
         * Georgian, Cherokee, Glagolitic, Coptic, Deseret, Osage, Old Hungarian, Warang Citi, Adlam and the letterlike
         * symbols; no CJK), with a whitespace before; runs of ASCII and full-width punctuation; trailing whitespace;
         * CJK runs; digit runs.
         */
        DEEPSEEK_LLM(false, false, "[\\r\\n]", "\\s?[" + DEEPSEEK_LLM_LETTERS + "]+",
                "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+", "\\s+$",
                "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}+");

        /** Split patterns applied in turn, each to the pieces the one before left; none for GPT-2's regex alone. */
        final List<String> patterns;
        final boolean ignoreMerges, addBos;

        Pre(boolean ignoreMerges, boolean addBos, String... patterns) {
            this.patterns = List.of(patterns);
            this.ignoreMerges = ignoreMerges;
            this.addBos = addBos;
        }

        /** Whether GPT-2's regex cuts the pieces last (ByteLevel's use_regex), as it does for GPT2 and DIGITS. */
        boolean gpt2Words() {
            return this == GPT2 || this == DIGITS;
        }
    }

    /** The names llama.cpp gives the pre-tokenizers, each with the family it runs for that name. */
    private static final Map<String, Pre> PRE_NAMES = Map.ofEntries(
            Map.entry("gpt-2", Pre.GPT2), Map.entry("phi-2", Pre.GPT2),
            Map.entry("smollm", Pre.DIGITS),
            Map.entry("llama-bpe", Pre.LLAMA3), Map.entry("llama3", Pre.LLAMA3), Map.entry("llama-v3", Pre.LLAMA3),
            Map.entry("falcon3", Pre.LLAMA3), Map.entry("pixtral", Pre.LLAMA3),
            Map.entry("dbrx", Pre.DBRX), Map.entry("smaug-bpe", Pre.DBRX),
            Map.entry("qwen2", Pre.QWEN2), Map.entry("deepseek-r1-qwen", Pre.QWEN2),
            Map.entry("tekken", Pre.TEKKEN), Map.entry("gpt-4o", Pre.GPT4O), Map.entry("deepseek-coder", Pre.DEEPSEEK_CODER),
            Map.entry("deepseek-llm", Pre.DEEPSEEK_LLM));

    /** The split patterns the import writes for the pre-tokenizer llama.cpp calls {@code pre}; null for an unknown name. */
    static List<String> splitPatterns(String pre) {
        Pre family = PRE_NAMES.get(pre);
        return family == null ? null : family.patterns;
    }

    /** Whether the file carries a tokenizer at all. */
    public static boolean present(GgufFile g) {
        GgufValue model = g.metadata().get("tokenizer.ggml.model");
        return model != null && model.type() == GgufValue.Type.STRING
                && !model.asString().equals("none") && !model.asString().equals("no_vocab");
    }

    /**
     * Writes {@code tokenizer.json} and {@code tokenizer_config.json} into {@code dir} (atomically each).
     * {@code modelMaxLength} goes in the tokenizer config.
     */
    public static Written write(GgufFile g, Path dir, long modelMaxLength) {
        String kind = string(g, "tokenizer.ggml.model");
        List<String> tokens = strings(g, "tokenizer.ggml.tokens");
        int n = tokens.size();
        int[] types = ints(g, "tokenizer.ggml.token_type", n, 1);
        List<String> notes = new ArrayList<>();

        Map<String, Integer> vocab = new LinkedHashMap<>();
        int duplicates = 0;
        for (int id = 0; id < n; id++) if (vocab.putIfAbsent(tokens.get(id), id) != null) duplicates++;
        if (duplicates > 0)
            notes.add(duplicates + " token strings repeat an earlier one; tokenizer.json maps each string to its first id");

        Integer bos = optionalId(g, "tokenizer.ggml.bos_token_id", n), eos = optionalId(g, "tokenizer.ggml.eos_token_id", n);
        Integer unk = optionalId(g, "tokenizer.ggml.unknown_token_id", n), pad = optionalId(g, "tokenizer.ggml.padding_token_id", n);
        Set<Integer> ends = new LinkedHashSet<>();
        if (eos != null) ends.add(eos);
        for (String key : new String[]{"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
            Integer id = optionalId(g, key, n);
            if (id != null) ends.add(id);
        }

        List<Object> added = new ArrayList<>();
        Map<String, Object> addedDecoder = new LinkedHashMap<>();
        for (int id = 0; id < n; id++) {
            int t = types[id];
            if (t != CONTROL && t != USER_DEFINED && t != UNKNOWN) continue;
            boolean special = t != USER_DEFINED;
            Map<String, Object> token = Json.ordered("id", id, "content", tokens.get(id), "single_word", false,
                    "lstrip", false, "rstrip", false, "normalized", false, "special", special);
            added.add(token);
            Map<String, Object> decoded = new LinkedHashMap<>(token);
            decoded.remove("id");
            addedDecoder.put(Integer.toString(id), decoded);
        }

        Map<String, Object> root = new LinkedHashMap<>();
        root.put("version", "1.0");
        root.put("truncation", null);
        root.put("padding", null);
        root.put("added_tokens", added);
        boolean addBos, addEos = bool(g, "tokenizer.ggml.add_eos_token", false);
        String pre;
        int mergeCount;
        Map<String, Object> model = new LinkedHashMap<>();
        model.put("type", "BPE");
        model.put("dropout", null);
        switch (kind) {
            case "gpt2" -> {
                pre = g.metadata().containsKey("tokenizer.ggml.pre") ? string(g, "tokenizer.ggml.pre") : "default";
                Pre family = PRE_NAMES.get(pre);
                if (family == null)
                    throw new CheckpointException(g.path() + ": its tokenizer's pre-tokenizer '" + pre + "' has no "
                            + "Hugging Face form known here (GGUF names it; llama.cpp keeps the rules in code); known: "
                            + new java.util.TreeSet<>(PRE_NAMES.keySet()) + ". Import with --no-tokenizer and put the "
                            + "model's own tokenizer.json beside it");
                addBos = bool(g, "tokenizer.ggml.add_bos_token", family.addBos);
                root.put("normalizer", null);
                Map<String, Object> byteLevel = Json.ordered("type", "ByteLevel", "add_prefix_space", false,
                        "trim_offsets", true, "use_regex", family.gpt2Words());
                if (family.patterns.isEmpty()) {
                    root.put("pre_tokenizer", byteLevel);
                } else {
                    List<Object> steps = new ArrayList<>();
                    for (String pattern : family.patterns)
                        steps.add(Json.ordered("type", "Split", "pattern", Json.ordered("Regex", pattern), "behavior", "Isolated",
                                "invert", false));
                    steps.add(byteLevel);
                    root.put("pre_tokenizer", Json.ordered("type", "Sequence", "pretokenizers", steps));
                }
                root.put("post_processor", template(tokens, addBos ? bos : null, addEos ? eos : null));
                root.put("decoder", Json.ordered("type", "ByteLevel", "add_prefix_space", true, "trim_offsets", true,
                        "use_regex", true));
                List<String> merges = g.metadata().containsKey("tokenizer.ggml.merges")
                        ? strings(g, "tokenizer.ggml.merges") : List.of();
                if (merges.isEmpty()) notes.add("the tokenizer has no merges: every word is split into single bytes");
                mergeCount = merges.size();
                model.put("unk_token", unk == null ? null : tokens.get(unk));
                model.put("continuing_subword_prefix", null);
                model.put("end_of_word_suffix", null);
                model.put("fuse_unk", false);
                model.put("byte_fallback", false);
                model.put("ignore_merges", family.ignoreMerges);
                model.put("vocab", vocab);
                model.put("merges", merges);
            }
            case "llama" -> {
                pre = null;
                addBos = bool(g, "tokenizer.ggml.add_bos_token", true);
                boolean prefix = bool(g, "tokenizer.ggml.add_space_prefix", true);
                Map<String, Object> replace = Json.ordered("type", "Replace", "pattern", Json.ordered("String", " "), "content", SPACE);
                root.put("normalizer", prefix
                        ? Json.ordered("type", "Sequence", "normalizers", List.of(Json.ordered("type", "Prepend", "prepend", SPACE), replace))
                        : replace);
                root.put("pre_tokenizer", null);
                root.put("post_processor", template(tokens, addBos ? bos : null, addEos ? eos : null));
                List<Object> decoders = new ArrayList<>(List.of(
                        Json.ordered("type", "Replace", "pattern", Json.ordered("String", SPACE), "content", " "),
                        Json.ordered("type", "ByteFallback"), Json.ordered("type", "Fuse")));
                if (prefix) decoders.add(Json.ordered("type", "Strip", "content", " ", "start", 1, "stop", 0));
                root.put("decoder", Json.ordered("type", "Sequence", "decoders", decoders));
                float[] scores = floats(g, "tokenizer.ggml.scores", n);
                List<String> merges = sentencePieceMerges(tokens, vocab, scores);
                mergeCount = merges.size();
                model.put("unk_token", unk == null ? null : tokens.get(unk));
                model.put("continuing_subword_prefix", null);
                model.put("end_of_word_suffix", null);
                model.put("fuse_unk", true);
                model.put("byte_fallback", true);
                model.put("ignore_merges", false);
                model.put("vocab", vocab);
                model.put("merges", merges);
            }
            default -> throw new CheckpointException(g.path() + ": its tokenizer model is '" + kind + "'; this version "
                    + "imports 'gpt2' (byte-level BPE) and 'llama' (SentencePiece BPE) tokenizers. Import with "
                    + "--no-tokenizer and put the model's own tokenizer.json beside it");
        }
        root.put("model", model);
        Json.writeAtomic(dir.resolve("tokenizer.json"), root);

        Map<String, Object> config = new LinkedHashMap<>();
        config.put("add_bos_token", addBos);
        config.put("add_eos_token", addEos);
        config.put("added_tokens_decoder", addedDecoder);
        if (bos != null) config.put("bos_token", tokens.get(bos));
        if (eos != null) config.put("eos_token", tokens.get(eos));
        if (unk != null) config.put("unk_token", tokens.get(unk));
        if (pad != null) config.put("pad_token", tokens.get(pad));
        GgufValue template = g.metadata().get("tokenizer.chat_template");
        boolean chat = template != null && template.type() == GgufValue.Type.STRING;
        if (chat) config.put("chat_template", template.asString());
        config.put("clean_up_tokenization_spaces", false);
        config.put("model_max_length", modelMaxLength);
        config.put("tokenizer_class", "PreTrainedTokenizerFast");
        Json.writeAtomic(dir.resolve("tokenizer_config.json"), config);
        return new Written(kind, pre, n, mergeCount, added.size(), chat,
                ends.stream().mapToInt(Integer::intValue).toArray(), List.copyOf(notes));
    }

    /**
     * SentencePiece's scores as BPE merges: for every piece, each split into two pieces that are both in the
     * vocabulary, ordered by the piece's score (highest first; ties by id), a piece's own splits by the ids of
     * their halves. Splits fall on code points, as the pieces are strings of characters.
     */
    static List<String> sentencePieceMerges(List<String> tokens, Map<String, Integer> vocab, float[] scores) {
        record Merge(String left, String right, int piece, int leftId, int rightId) {}
        List<Merge> merges = new ArrayList<>();
        for (Map.Entry<String, Integer> e : vocab.entrySet()) {
            String piece = e.getKey();
            for (int at = piece.offsetByCodePoints(0, 1); at < piece.length(); at = piece.offsetByCodePoints(at, 1)) {
                Integer l = vocab.get(piece.substring(0, at)), r = vocab.get(piece.substring(at));
                if (l != null && r != null) merges.add(new Merge(piece.substring(0, at), piece.substring(at), e.getValue(), l, r));
            }
        }
        merges.sort(Comparator.comparingDouble((Merge m) -> -scores[m.piece()]).thenComparingInt(Merge::piece)
                .thenComparingInt(Merge::leftId).thenComparingInt(Merge::rightId));
        List<String> out = new ArrayList<>(merges.size());
        for (Merge m : merges) out.add(m.left() + " " + m.right());
        return out;
    }

    /** The post-processor: BOS before the text and EOS after it when the file asks for them. */
    private static Map<String, Object> template(List<String> tokens, Integer bos, Integer eos) {
        Map<String, Object> specials = new LinkedHashMap<>();
        List<Object> single = new ArrayList<>(), pair = new ArrayList<>();
        for (int typeId = 0; typeId < 2; typeId++) {
            List<Object> items = new ArrayList<>();
            if (bos != null) items.add(special(tokens.get(bos), bos, typeId, specials));
            items.add(Json.ordered("Sequence", Json.ordered("id", typeId == 0 ? "A" : "B", "type_id", typeId)));
            if (eos != null) items.add(special(tokens.get(eos), eos, typeId, specials));
            if (typeId == 0) single.addAll(items);
            pair.addAll(items);
        }
        return Json.ordered("type", "TemplateProcessing", "single", single, "pair", pair, "special_tokens", specials);
    }

    private static Map<String, Object> special(String content, int id, int typeId, Map<String, Object> specials) {
        specials.put(content, Json.ordered("id", content, "ids", List.of(id), "tokens", List.of(content)));
        return Json.ordered("SpecialToken", Json.ordered("id", content, "type_id", typeId));
    }


    private static String string(GgufFile g, String key) {
        GgufValue v = g.value(key);
        if (v.type() != GgufValue.Type.STRING) throw wrongType(g, key, v, "a string");
        return v.asString();
    }

    private static List<String> strings(GgufFile g, String key) {
        GgufValue v = g.value(key);
        if (v.type() != GgufValue.Type.ARRAY || v.elementType() != GgufValue.Type.STRING)
            throw wrongType(g, key, v, "an array of strings");
        return v.asStrings();
    }

    private static boolean bool(GgufFile g, String key, boolean fallback) {
        GgufValue v = g.metadata().get(key);
        if (v == null) return fallback;
        if (v.type() != GgufValue.Type.BOOL) throw wrongType(g, key, v, "a bool");
        return v.asBool();
    }

    private static Integer optionalId(GgufFile g, String key, int n) {
        GgufValue v = g.metadata().get(key);
        if (v == null) return null;
        if (!v.type().isInteger()) throw wrongType(g, key, v, "an integer");
        long id = v.asLong();
        if (id < 0 || id >= n)
            throw new CheckpointException(g.path() + ": " + key + " is " + id + ", outside the " + n + " tokens");
        return (int) id;
    }

    /** An integer array of {@code n} entries, or {@code fallback} everywhere when the key is absent. */
    private static int[] ints(GgufFile g, String key, int n, int fallback) {
        int[] out = new int[n];
        GgufValue v = g.metadata().get(key);
        if (v == null) {
            java.util.Arrays.fill(out, fallback);
            return out;
        }
        if (v.type() != GgufValue.Type.ARRAY || !v.elementType().isInteger()) throw wrongType(g, key, v, "an integer array");
        List<?> list = v.asList();
        if (list.size() != n)
            throw new CheckpointException(g.path() + ": " + key + " has " + list.size() + " entries for " + n + " tokens");
        for (int i = 0; i < n; i++) out[i] = ((Number) list.get(i)).intValue();
        return out;
    }

    /** A float array of {@code n} entries; absent, minus the id (earlier pieces first, as SentencePiece orders them). */
    private static float[] floats(GgufFile g, String key, int n) {
        float[] out = new float[n];
        GgufValue v = g.metadata().get(key);
        if (v == null) {
            for (int i = 0; i < n; i++) out[i] = -i;
            return out;
        }
        if (v.type() != GgufValue.Type.ARRAY || (v.elementType() != GgufValue.Type.FLOAT32 && v.elementType() != GgufValue.Type.FLOAT64))
            throw wrongType(g, key, v, "a float array");
        List<?> list = v.asList();
        if (list.size() != n)
            throw new CheckpointException(g.path() + ": " + key + " has " + list.size() + " entries for " + n + " tokens");
        for (int i = 0; i < n; i++) out[i] = ((Number) list.get(i)).floatValue();
        return out;
    }

    private static CheckpointException wrongType(GgufFile g, String key, GgufValue v, String expected) {
        return new CheckpointException(g.path() + ": " + key + " is " + v.describe() + ", not " + expected);
    }
}
