package dev.ropeway.io;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.json.JsonReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/** Reads and writes the JSON files of a checkpoint folder (config, index, tokenizer settings) and reports. */
public final class Json {
    private static final ObjectMapper MAPPER = JsonMapper.builder()
            // Python's json module writes NaN and Infinity for float fields; Hugging Face configs can hold them.
            .enable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    private Json() {}

    /**
     * The shared mapper: reads NaN and Infinity, refuses trailing garbage, and writes compact single-line JSON (so it
     * also serves JSON-lines logs); {@link #writeAtomic} pretty-prints.
     */
    public static ObjectMapper mapper() {
        return MAPPER;
    }

    /**
     * The top-level object of a JSON file, in file order, with numbers as Integer, Long, BigInteger or Double.
     * A missing file, bad JSON (with its line and column) or a non-object is a {@link CheckpointException}.
     */
    public static Map<String, Object> readObject(Path file) {
        @SuppressWarnings("unchecked")
        Map<String, Object> map = MAPPER.convertValue(readObjectNode(file), LinkedHashMap.class);
        return map;
    }

    /** Like {@link #readObject}, as a tree: for callers that walk large files (a tokenizer's vocabulary). */
    static JsonNode readObjectNode(Path file) {
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(file);
        } catch (NoSuchFileException e) {
            throw new CheckpointException("no such file: " + file, e);
        } catch (IOException e) {
            throw new CheckpointException("cannot read " + file + ": " + e, e);
        }
        JsonNode root;
        try {
            root = MAPPER.readTree(bytes);
        } catch (JacksonException e) {
            throw new CheckpointException(file + " is not valid JSON: " + e.getOriginalMessage() + where(e), e);
        } catch (IOException e) {
            throw new CheckpointException("cannot read " + file + ": " + e, e);
        }
        if (root == null || root.isMissingNode()) throw new CheckpointException(file + " is empty; expected a JSON object");
        if (!root.isObject()) {
            throw new CheckpointException(file + " must hold a JSON object but holds "
                    + root.getNodeType().name().toLowerCase(Locale.ROOT));
        }
        return root;
    }

    /** Writes {@code value} as pretty-printed JSON, replacing {@code file} atomically. */
    public static void writeAtomic(Path file, Object value) {
        byte[] bytes;
        try {
            bytes = MAPPER.writerWithDefaultPrettyPrinter().writeValueAsBytes(value);
        } catch (JsonProcessingException e) {
            throw new IllegalArgumentException("cannot write " + value.getClass().getName() + " as JSON: " + e.getOriginalMessage(), e);
        }
        AtomicFiles.write(file, channel -> {
            ByteBuffer buffer = ByteBuffer.wrap(bytes);
            while (buffer.hasRemaining()) channel.write(buffer);
        });
    }

    private static String where(JacksonException e) {
        JsonLocation at = e.getLocation();
        return at == null ? "" : " (line " + at.getLineNr() + ", column " + at.getColumnNr() + ")";
    }

    /**
     * A map with the given keys and values in that order ({@code "a", 1, "b", 2}): JSON written from it comes out in
     * a fixed field order, byte-identical from run to run, as {@code Map.of} does not guarantee.
     */
    public static Map<String, Object> ordered(Object... keysAndValues) {
        if (keysAndValues.length % 2 != 0) throw new IllegalArgumentException("keys and values come in pairs");
        Map<String, Object> map = new java.util.LinkedHashMap<>();
        for (int i = 0; i < keysAndValues.length; i += 2) map.put((String) keysAndValues[i], keysAndValues[i + 1]);
        return map;
    }
}
