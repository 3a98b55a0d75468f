package dev.ropeway.cli;

import com.fasterxml.jackson.core.JsonProcessingException;
import dev.ropeway.io.Json;

/** Formatting shared by commands. */
final class Output {
    private Output() {}

    /** One pretty-printed JSON document. */
    static String json(Object value) {
        try {
            return Json.mapper().writerWithDefaultPrettyPrinter().writeValueAsString(value);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot render JSON", e);
        }
    }
}
