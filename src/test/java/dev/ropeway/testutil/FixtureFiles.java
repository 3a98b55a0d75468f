package dev.ropeway.testutil;

import dev.ropeway.io.Json;
import dev.ropeway.io.SafeTensors;
import dev.ropeway.io.TensorInfo;
import dev.ropeway.tensor.DType;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/** Test access to the shared reference fixtures beside every checkout: case folders, JSON files, float32 tensors. */
public final class FixtureFiles {
    /** Tests run with the project root as working directory; the fixtures sit beside it. */
    public static final Path ROOT = Path.of("../shared/fixtures");

    private FixtureFiles() {
    }

    /** A float32 tensor: its shape and its values in row-major order. */
    public record F32Tensor(long[] shape, float[] values) {
    }

    /** Fixture case folders whose names start with one of the prefixes, sorted by name. */
    public static List<Path> caseFolders(String... prefixes) {
        try (Stream<Path> entries = Files.list(ROOT)) {
            return entries.filter(Files::isDirectory)
                    .filter(p -> Stream.of(prefixes).anyMatch(pre -> p.getFileName().toString().startsWith(pre)))
                    .sorted()
                    .toList();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list fixtures in " + ROOT.toAbsolutePath(), e);
        }
    }

    /** A JSON object file as a mutable map (numbers as Integer/Long/Double, arrays as lists). */
    public static Map<String, Object> readJson(Path file) {
        return Json.readObject(file);
    }

    /** One F32 tensor from a safetensors file. */
    public static F32Tensor readF32(Path file, String name) {
        try (SafeTensors st = SafeTensors.open(file)) {
            TensorInfo info = st.info(name);
            if (info == null) throw new IllegalArgumentException(file + " has no tensor '" + name + "'");
            if (info.dtype() != DType.F32)
                throw new IllegalArgumentException(name + " in " + file + " is " + info.dtype() + ", not F32");
            return new F32Tensor(info.shape(), st.readFloats(name));
        }
    }

    /** A 5.x config rewritten in the 4.x form: rope_scaling (with "type") plus a top-level rope_theta. */
    public static Map<String, Object> legacyForm(Map<String, Object> config) {
        Map<String, Object> c = new LinkedHashMap<>(config);
        @SuppressWarnings("unchecked")
        Map<String, Object> params = new LinkedHashMap<>((Map<String, Object>) c.remove("rope_parameters"));
        c.put("rope_theta", params.remove("rope_theta"));
        Object type = params.remove("rope_type");
        if ("default".equals(type)) {
            c.put("rope_scaling", null);
        } else {
            params.put("type", type);
            c.put("rope_scaling", params);
        }
        return c;
    }
}
