package dev.ropeway.testutil;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * Test access to the shared reference fixtures beside every checkout: case folders, their JSON files and float32
 * tensors from a safetensors file (8-byte little-endian header length, JSON header, raw data).
 */
public final class FixtureFiles {
    /** Tests run with the project root as working directory; the fixtures sit beside it. */
    public static final Path ROOT = Path.of("../shared/fixtures");

    private static final ObjectMapper JSON = new ObjectMapper();

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
        try {
            return JSON.readValue(file.toFile(), new TypeReference<Map<String, Object>>() {
            });
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file, e);
        }
    }

    /** One F32 tensor from a safetensors file. */
    @SuppressWarnings("unchecked")
    public static F32Tensor readF32(Path file, String name) {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            readFully(ch, len, 0);
            long headerLength = len.flip().getLong();
            ByteBuffer header = ByteBuffer.allocate(Math.toIntExact(headerLength));
            readFully(ch, header, 8);
            Map<String, Object> entries = JSON.readValue(header.array(), new TypeReference<Map<String, Object>>() {
            });
            Map<String, Object> entry = (Map<String, Object>) entries.get(name);
            if (entry == null) throw new IllegalArgumentException(file + " has no tensor '" + name + "'");
            if (!"F32".equals(entry.get("dtype")))
                throw new IllegalArgumentException(name + " in " + file + " is " + entry.get("dtype") + ", not F32");
            long[] shape = ((List<Number>) entry.get("shape")).stream().mapToLong(Number::longValue).toArray();
            List<Number> offsets = (List<Number>) entry.get("data_offsets");
            long begin = offsets.get(0).longValue(), end = offsets.get(1).longValue();
            ByteBuffer data = ByteBuffer.allocate(Math.toIntExact(end - begin)).order(ByteOrder.LITTLE_ENDIAN);
            readFully(ch, data, 8 + headerLength + begin);
            float[] values = new float[data.capacity() / Float.BYTES];
            data.flip().asFloatBuffer().get(values);
            long count = 1;
            for (long s : shape) count *= s;
            if (count != values.length)
                throw new IllegalArgumentException(name + " in " + file + ": shape and data length disagree");
            return new F32Tensor(shape, values);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file, e);
        }
    }

    private static void readFully(FileChannel ch, ByteBuffer buf, long position) throws IOException {
        while (buf.hasRemaining()) {
            int n = ch.read(buf, position + buf.position());
            if (n < 0) throw new IOException("unexpected end of file");
        }
    }
}
