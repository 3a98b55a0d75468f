package dev.ropeway.io;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import dev.ropeway.RopewayException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.OptionalInt;

/** A Hugging Face {@code tokenizer.json}, run by the native tokenizers library that DJL bundles. */
public final class HfTokenizer implements Tokenizer {
    private final HuggingFaceTokenizer tokenizer;
    private final int vocabSize;
    private final SpecialTokenIds special;
    private final int[] endIds;
    /** Each token's raw bytes, or null where the decoder gives none. */
    private final byte[][] pieces;

    private HfTokenizer(HuggingFaceTokenizer tokenizer, int vocabSize, SpecialTokenIds special, byte[][] pieces,
                        int[] endIds) {
        this.tokenizer = tokenizer;
        this.vocabSize = vocabSize;
        this.special = special;
        this.pieces = pieces;
        this.endIds = endIds;
    }

    /** Loads {@code tokenizer.json} from a checkpoint folder, or the given tokenizer file itself. */
    public static HfTokenizer load(Path dirOrTokenizerJson) {
        Path folder;
        Path json;
        if (Files.isDirectory(dirOrTokenizerJson)) {
            folder = dirOrTokenizerJson;
            json = folder.resolve("tokenizer.json");
            if (!Files.isRegularFile(json)) throw new CheckpointException("no tokenizer.json in " + folder
                    + ": text needs the model's tokenizer (the Hugging Face tokenizer.json saved with it)");
        } else {
            json = dirOrTokenizerJson;
            folder = json.toAbsolutePath().getParent();
            if (!Files.isRegularFile(json))
                throw new CheckpointException((Files.exists(json) ? "not a tokenizer file: " : "no such folder or file: ") + json);
        }
        // Read with Jackson first: a broken file then gets a message with line and column, not a native error.
        JsonNode root = Json.readObjectNode(json);
        TokenizerVocabulary vocabulary = TokenizerVocabulary.read(root, json);
        byte[][] pieces = TokenPieces.read(root, vocabulary);
        SpecialTokenIds special = SpecialTokenIds.resolve(folder, vocabulary);
        // DJL otherwise probes cloud metadata endpoints on first use, which stalls on a machine without network.
        if (System.getProperty("ai.djl.offline") == null) System.setProperty("ai.djl.offline", "true");
        HuggingFaceTokenizer tokenizer;
        try {
            tokenizer = HuggingFaceTokenizer.builder()
                    .optTokenizerPath(json)
                    // DJL's defaults truncate to 512 tokens and pad; a long-context tool must see every token.
                    .optTruncation(false)
                    .optPadding(false)
                    .optAddSpecialTokens(true)
                    .build();
        } catch (IOException | RuntimeException e) {
            throw new CheckpointException("cannot load tokenizer " + json + ": " + e.getMessage(), e);
        }
        return new HfTokenizer(tokenizer, vocabulary.size(), special, pieces,
                EndTokens.of(folder, special.eos(), vocabulary.size()));
    }

    @Override
    public int[] encode(String text, boolean addSpecialTokens) {
        long[] ids = tokenizer.encode(wellFormed(Objects.requireNonNull(text, "text")), addSpecialTokens, false).getIds();
        int[] out = new int[ids.length];
        for (int i = 0; i < ids.length; i++) out[i] = Math.toIntExact(ids[i]);
        return out;
    }

    /**
     * The ids of several texts, encoded by the native library on its own threads: faster than one call per text
     * when there are many.
     */
    public int[][] encodeAll(List<String> texts, boolean addSpecialTokens) {
        List<String> clean = texts.stream().map(HfTokenizer::wellFormed).toList();
        Encoding[] encodings = tokenizer.batchEncode(clean, addSpecialTokens, false);
        int[][] out = new int[encodings.length][];
        for (int t = 0; t < encodings.length; t++) {
            long[] ids = encodings[t].getIds();
            out[t] = new int[ids.length];
            for (int i = 0; i < ids.length; i++) out[t][i] = Math.toIntExact(ids[i]);
        }
        return out;
    }

    /**
     * {@code text} with each unpaired surrogate replaced by U+FFFD. Such a string has no UTF-8 form; passed as is,
     * the native side would turn each into three replacement characters.
     */
    public static String wellFormed(String text) {
        StringBuilder fixed = null;
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            boolean paired = Character.isHighSurrogate(c) && i + 1 < text.length() && Character.isLowSurrogate(text.charAt(i + 1));
            if (paired) {
                if (fixed != null) fixed.append(c).append(text.charAt(i + 1));
                i++;
            } else if (Character.isSurrogate(c)) {
                if (fixed == null) fixed = new StringBuilder(text.length()).append(text, 0, i);
                fixed.append('\uFFFD');
            } else if (fixed != null) {
                fixed.append(c);
            }
        }
        return fixed == null ? text : fixed.toString();
    }

    @Override
    public String decode(int[] ids, boolean skipSpecialTokens) {
        long[] wide = new long[ids.length];
        for (int i = 0; i < ids.length; i++) {
            // The native decoder silently drops unknown ids; a wrong id is the caller's mistake and should say so.
            if (ids[i] < 0 || ids[i] >= vocabSize) {
                throw new RopewayException("token id " + ids[i] + " is outside the vocabulary (0.." + (vocabSize - 1) + ")");
            }
            wide[i] = ids[i];
        }
        return tokenizer.decode(wide, skipSpecialTokens);
    }

    @Override
    public Optional<byte[]> tokenBytes(int id) {
        if (id < 0 || id >= vocabSize) throw new RopewayException("token id " + id + " is outside the vocabulary (0.." + (vocabSize - 1) + ")");
        return pieces == null || pieces[id] == null ? Optional.empty() : Optional.of(pieces[id].clone());
    }

    @Override
    public int vocabSize() {
        return vocabSize;
    }

    @Override
    public OptionalInt bosId() {
        return special.bos();
    }

    @Override
    public OptionalInt eosId() {
        return special.eos();
    }

    @Override
    public int[] endIds() {
        return endIds.clone();
    }

    @Override
    public void close() {
        tokenizer.close();
    }
}
