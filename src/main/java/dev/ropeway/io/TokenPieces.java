package dev.ropeway.io;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ropeway.io.bpe.ByteAlphabet;

import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The raw bytes of every token of a {@code tokenizer.json}, read from how its decoder turns tokens into text: a
 * ByteLevel decoder maps each character of a token to one byte (GPT-2's alphabet); a SentencePiece-style one
 * (Metaspace, or Replace of '▁' by a space) makes '▁' a space, and with ByteFallback a piece {@code <0xNN>} is the
 * byte NN. Added tokens are their content's UTF-8. Other decoders (WordPiece's "##" joins, for one) give no
 * per-token bytes.
 */
final class TokenPieces {
    private static final Pattern BYTE_PIECE = Pattern.compile("<0x([0-9A-Fa-f]{2})>");

    private TokenPieces() {}

    /** Bytes by id (null entries for unused ids), or null when the decoder gives tokens no bytes of their own. */
    static byte[][] read(JsonNode root, TokenizerVocabulary vocabulary) {
        Style style = new Style();
        style.scan(root.path("decoder"));
        if (root.path("model").path("byte_fallback").asBoolean(false)) style.byteFallback = true;
        if (!style.byteLevel && style.space == null) return null;
        byte[][] out = new byte[vocabulary.size()][];
        for (Map.Entry<String, Integer> e : vocabulary.ids().entrySet()) out[e.getValue()] = style.bytes(e.getKey());
        for (JsonNode added : root.path("added_tokens")) {
            int id = added.path("id").asInt(-1);
            if (id >= 0 && id < out.length) out[id] = added.path("content").asText().getBytes(StandardCharsets.UTF_8);
        }
        return out;
    }

    private static final class Style {
        boolean byteLevel, byteFallback;
        String space;

        void scan(JsonNode decoder) {
            switch (decoder.path("type").asText("")) {
                case "ByteLevel" -> byteLevel = true;
                case "ByteFallback" -> byteFallback = true;
                case "Metaspace" -> space = decoder.path("replacement").asText("\u2581");
                case "Replace" -> {
                    if (decoder.path("content").asText().equals(" ") && decoder.path("pattern").has("String"))
                        space = decoder.path("pattern").path("String").asText();
                }
                case "Sequence" -> {
                    for (JsonNode d : decoder.path("decoders")) scan(d);
                }
                default -> { }
            }
        }

        byte[] bytes(String token) {
            if (byteLevel) {
                byte[] b = ByteAlphabet.decode(token);
                if (b != null) return b;
            }
            if (byteFallback) {
                Matcher m = BYTE_PIECE.matcher(token);
                if (m.matches()) return new byte[]{(byte) Integer.parseInt(m.group(1), 16)};
            }
            String text = space == null || space.isEmpty() ? token : token.replace(space, " ");
            return text.getBytes(StandardCharsets.UTF_8);
        }
    }
}
