package dev.ropeway.io;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small byte-level BPE {@code tokenizer.json} written by hand: ids 0 and 1 are {@code <s>} and {@code </s>},
 * then one token per byte (so any text encodes and round-trips), then four merges. The post-processor puts
 * {@code <s>} in front when special tokens are asked for, as Llama's does.
 */
public final class ByteLevelBpeFixture {
    static final int BOS = 0;
    static final int EOS = 1;
    static final int FIRST_BYTE = 2;
    static final int HE = 258;
    static final int SPACE_T = 259;
    static final int SPACE_THE = 260;
    public static final int VOCAB_SIZE = 262;

    private ByteLevelBpeFixture() {}

    /**
     * GPT-2's printable stand-in for each byte: printable Latin-1 bytes stand for themselves, the rest are
     * shifted to code points from 256 up, so that every token is visible text.
     */
    static String byteSymbol(int b) {
        boolean printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        if (printable) return Character.toString(b);
        int shifted = 0;
        for (int c = 0; c < b; c++) {
            if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) shifted++;
        }
        return Character.toString(256 + shifted);
    }

    /** The id of the single-byte token for {@code b}. */
    static int byteId(int b) {
        return FIRST_BYTE + b;
    }

    public static Path write(Path dir) {
        Map<String, Integer> vocab = new LinkedHashMap<>();
        vocab.put("<s>", BOS);
        vocab.put("</s>", EOS);
        for (int b = 0; b < 256; b++) vocab.put(byteSymbol(b), byteId(b));
        String space = byteSymbol(' ');
        vocab.put("he", HE);
        vocab.put(space + "t", SPACE_T);
        vocab.put(space + "the", SPACE_THE);
        vocab.put("er", 261);
        List<String> merges = List.of("h e", space + " t", space + "t he", "e r");

        Map<String, Object> byteLevel = Map.of("type", "ByteLevel", "add_prefix_space", false, "trim_offsets", true, "use_regex", true);
        Map<String, Object> bosTemplate = Map.of("SpecialToken", Map.of("id", "<s>", "type_id", 0));
        Map<String, Object> root = new LinkedHashMap<>();
        root.put("version", "1.0");
        root.put("truncation", null);
        root.put("padding", null);
        root.put("added_tokens", List.of(special(BOS, "<s>"), special(EOS, "</s>")));
        root.put("normalizer", null);
        root.put("pre_tokenizer", byteLevel);
        root.put("post_processor", Map.of(
                "type", "TemplateProcessing",
                "single", List.of(bosTemplate, Map.of("Sequence", Map.of("id", "A", "type_id", 0))),
                "pair", List.of(bosTemplate, Map.of("Sequence", Map.of("id", "A", "type_id", 0)),
                        Map.of("Sequence", Map.of("id", "B", "type_id", 1))),
                "special_tokens", Map.of("<s>", Map.of("id", "<s>", "ids", List.of(BOS), "tokens", List.of("<s>")))));
        root.put("decoder", byteLevel);
        Map<String, Object> model = new LinkedHashMap<>();
        model.put("type", "BPE");
        model.put("dropout", null);
        model.put("unk_token", null);
        model.put("continuing_subword_prefix", null);
        model.put("end_of_word_suffix", null);
        model.put("fuse_unk", false);
        model.put("byte_fallback", false);
        model.put("vocab", vocab);
        model.put("merges", merges);
        root.put("model", model);
        Path file = dir.resolve("tokenizer.json");
        Json.writeAtomic(file, root);
        return file;
    }

    private static Map<String, Object> special(int id, String content) {
        Map<String, Object> token = new LinkedHashMap<>();
        token.put("id", id);
        token.put("content", content);
        token.put("single_word", false);
        token.put("lstrip", false);
        token.put("rstrip", false);
        token.put("normalized", false);
        token.put("special", true);
        return token;
    }
}
