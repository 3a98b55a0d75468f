package dev.ropeway.eval;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ropeway.RopewayException;
import dev.ropeway.io.Json;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;

/**
 * Evaluation results kept one file per cell ({@code <dir>/<group>/<cell>.json}), each with the key it was computed
 * for: the model's fingerprint, the RoPE method and the task's settings. A saved cell is reused only when its key
 * equals the one asked for, so changing a model or a setting recomputes exactly the cells it affects, and an
 * interrupted run continues from the last cell it finished.
 */
public final class CellStore {
    private final Path dir;

    public CellStore(Path dir) {
        this.dir = dir;
    }

    public Path dir() {
        return dir;
    }

    public Path file(String group, String cell) {
        return dir.resolve(group).resolve(cell + ".json");
    }

    /** A saved cell: its result and the seconds it took to compute. */
    public record Saved(Map<String, Object> result, double seconds) {}

    /** The saved result of {@code cell}, when one was saved for exactly {@code key}. */
    public Optional<Saved> load(String group, String cell, Map<String, Object> key) {
        Path f = file(group, cell);
        if (!Files.isRegularFile(f)) return Optional.empty();
        Map<String, Object> saved;
        try {
            saved = Json.readObject(f);
        } catch (RuntimeException unreadable) {
            // Files are replaced atomically, so this is a file someone else wrote or edited: compute it again.
            return Optional.empty();
        }
        if (!(saved.get("result") instanceof Map<?, ?> result) || !normal(saved.get("key")).equals(normal(key)))
            return Optional.empty();
        @SuppressWarnings("unchecked")
        Map<String, Object> r = (Map<String, Object>) result;
        return Optional.of(new Saved(r, saved.get("seconds") instanceof Number n ? n.doubleValue() : 0));
    }

    /** Saves {@code cell}'s result for {@code key}, replacing the file atomically. */
    public void save(String group, String cell, Map<String, Object> key, Map<String, Object> result, double seconds) {
        Path f = file(group, cell);
        try {
            Files.createDirectories(f.getParent());
        } catch (IOException e) {
            throw new RopewayException("cannot create " + f.getParent() + ": " + e.getMessage());
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("key", key);
        m.put("result", result);
        m.put("seconds", seconds);
        Json.writeAtomic(f, m);
    }

    /** {@code result} as it reads back from a saved cell (numbers as JSON gives them), so fresh and reused results compare. */
    public static Map<String, Object> asSaved(Map<String, Object> result) {
        try {
            @SuppressWarnings("unchecked")
            Map<String, Object> m = Json.mapper().readValue(Json.mapper().writeValueAsBytes(result), LinkedHashMap.class);
            return m;
        } catch (IOException e) {
            throw new IllegalArgumentException("a cell result must be plain JSON: " + e.getMessage(), e);
        }
    }

    /** A value as JSON text would give it back, so that saved and fresh keys compare equal number types included. */
    private static JsonNode normal(Object value) {
        try {
            return Json.mapper().readTree(Json.mapper().writeValueAsBytes(value));
        } catch (IOException e) {
            throw new IllegalArgumentException("a cell key must be plain JSON: " + e.getMessage(), e);
        }
    }
}
