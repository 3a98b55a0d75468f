package dev.ropeway.io;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.math.BigInteger;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class JsonTest {
    @TempDir Path dir;

    private Path file(String content) throws IOException {
        return Files.writeString(dir.resolve("config.json"), content);
    }

    private String errorOf(String content) throws IOException {
        Path file = file(content);
        CheckpointException e = assertThrows(CheckpointException.class, () -> Json.readObject(file));
        assertTrue(e.getMessage().contains(file.toString()), e.getMessage());
        return e.getMessage();
    }

    @Test
    void readsAnObjectInFileOrderWithNaturalNumberTypes() throws IOException {
        Map<String, Object> config = Json.readObject(file("""
                {"vocab_size": 32000, "rope_theta": 10000.0, "big": 12345678901, "huge": 123456789012345678901234,
                 "list": [1, "a", null], "nested": {"type": "yarn"}, "eps": NaN, "a": true}
                """));
        assertEquals(List.of("vocab_size", "rope_theta", "big", "huge", "list", "nested", "eps", "a"), List.copyOf(config.keySet()));
        assertEquals(32000, config.get("vocab_size"));
        assertEquals(10000.0, config.get("rope_theta"));
        assertEquals(12345678901L, config.get("big"));
        assertEquals(new BigInteger("123456789012345678901234"), config.get("huge"));
        assertEquals(java.util.Arrays.asList(1, "a", null), config.get("list"));
        assertEquals(Map.of("type", "yarn"), config.get("nested"));
        assertTrue(Double.isNaN((Double) config.get("eps")), "Python writes NaN for a float field");
        assertEquals(true, config.get("a"));
    }

    @Test
    void badJsonNamesTheFileAndPosition() throws IOException {
        String message = errorOf("{\n  \"a\": 1,\n  \"b\": [1, 2\n}\n");
        assertTrue(message.contains("is not valid JSON") && message.contains("line 4, column"), message);
        assertTrue(errorOf("{\"a\": 1} trailing").contains("is not valid JSON"));
    }

    @Test
    void nonObjectsAndEmptyFilesAreRefused() throws IOException {
        assertTrue(errorOf("[1, 2]").endsWith("must hold a JSON object but holds array"));
        assertTrue(errorOf("\"text\"").endsWith("must hold a JSON object but holds string"));
        assertTrue(errorOf("").endsWith("is empty; expected a JSON object"));
        assertTrue(errorOf("   \n").endsWith("is empty; expected a JSON object"));
    }

    @Test
    void missingFileIsNamed() {
        Path missing = dir.resolve("nope.json");
        CheckpointException e = assertThrows(CheckpointException.class, () -> Json.readObject(missing));
        assertEquals("no such file: " + missing, e.getMessage());
        CheckpointException folder = assertThrows(CheckpointException.class, () -> Json.readObject(dir));
        assertTrue(folder.getMessage().startsWith("cannot read " + dir), folder.getMessage());
    }

    @Test
    void writesPrettyPrintedJsonThatReadsBack() throws IOException {
        Map<String, Object> value = new LinkedHashMap<>();
        value.put("name", "ropeway ✓");
        value.put("lengths", List.of(1024, 2048));
        value.put("nested", Map.of("ppl", 7.25));
        Path file = dir.resolve("out.json");
        Json.writeAtomic(file, value);
        String text = Files.readString(file);
        assertTrue(text.contains("\n"), "pretty-printed: " + text);
        assertEquals(value, Json.readObject(file));
        assertEquals("{\"a\":[1,2]}", Json.mapper().writeValueAsString(Map.of("a", List.of(1, 2))), "the mapper itself writes one line");
    }
}
