package dev.ropeway.cli;

import dev.ropeway.io.GgufFile;
import dev.ropeway.io.GgufValue;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;

/** {@code ropeway info <file.gguf>}: what a GGUF file declares, without its long token lists. */
final class GgufInfo {
    private GgufInfo() {}

    static int print(Path file, boolean json) {
        try (GgufFile g = GgufFile.open(file)) {
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("path", file.toAbsolutePath().normalize().toString());
            out.put("format", "gguf");
            out.put("version", g.version());
            out.put("file_bytes", g.fileSize());
            out.put("alignment", g.alignment());
            Map<String, Object> metadata = new LinkedHashMap<>();
            for (Map.Entry<String, GgufValue> e : g.metadata().entrySet()) {
                GgufValue v = e.getValue();
                // Token lists run to many thousands of entries: show their length.
                metadata.put(e.getKey(), v.type() == GgufValue.Type.ARRAY && v.asList().size() > 16
                        ? v.describe() + " of " + v.asList().size() : v.value());
            }
            out.put("metadata", metadata);
            long parameters = 0;
            Map<String, Integer> types = new TreeMap<>();
            for (GgufFile.Tensor t : g.tensors().values()) {
                parameters += t.elements();
                types.merge(t.type().name(), 1, Integer::sum);
            }
            out.put("tensors", g.tensors().size());
            out.put("tensor_types", types);
            out.put("parameters", parameters);
            if (json) {
                System.out.println(Output.json(out));
                return 0;
            }
            System.out.printf("%s  (GGUF v%d, %,d bytes, %d tensors, %,d parameters)%n", out.get("path"), g.version(),
                    g.fileSize(), g.tensors().size(), parameters);
            System.out.printf("  tensor types %s%n", types);
            for (Map.Entry<String, Object> e : metadata.entrySet()) System.out.printf("  %-44s %s%n", e.getKey(), e.getValue());
            return 0;
        }
    }

}
