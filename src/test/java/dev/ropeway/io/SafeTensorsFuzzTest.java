package dev.ropeway.io;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.ropeway.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Throws thousands of mangled variants of one valid file at the reader. Each must either open, and then every
 * tensor must be readable, or be refused with a {@link CheckpointException}: nothing else may escape.
 */
class SafeTensorsFuzzTest {
    private static final long SEED = 0x5afe7e45L;
    private static final int ATTEMPTS = 6000;
    private static final JsonNodeFactory NODES = JsonNodeFactory.instance;
    private static final String DEEP = "\"@@deep@@\"";

    @TempDir Path dir;

    private byte[] base;
    private long baseHeaderLength;
    private ObjectNode baseHeader;
    private Random random;

    @Test
    void mangledFilesOpenCleanlyOrFailWithACheckpointException() throws Exception {
        buildBase();
        random = new Random(SEED);
        Path file = dir.resolve("fuzz.safetensors");
        Map<String, int[]> outcomes = new TreeMap<>(); // mutation kind -> {opened, refused}
        Map<String, Integer> problems = new HashMap<>(); // kind of refusal -> count
        try (FileChannel out = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            for (int attempt = 0; attempt < ATTEMPTS; attempt++) {
                List<String> steps = new ArrayList<>();
                byte[] content = mutate(steps);
                overwrite(out, content);
                boolean opened;
                try (SafeTensors st = SafeTensors.open(file)) {
                    readEverything(st, content.length);
                    opened = true;
                } catch (CheckpointException e) {
                    opened = false;
                    problems.merge(category(e.getMessage().replace(file.toString(), "")), 1, Integer::sum);
                } catch (Throwable e) {
                    fail("attempt " + attempt + " (seed " + SEED + ", " + steps + ") escaped with " + e
                            + "\nheader: " + printable(content), e);
                    return;
                }
                outcomes.computeIfAbsent(steps.getFirst(), k -> new int[2])[opened ? 0 : 1]++;
            }
        }

        int opened = outcomes.values().stream().mapToInt(c -> c[0]).sum();
        int refused = outcomes.values().stream().mapToInt(c -> c[1]).sum();
        assertEquals(ATTEMPTS, opened + refused);
        // Both outcomes must be common, or the fuzzer is not exploring the boundary between them.
        assertTrue(opened > ATTEMPTS / 50 && refused > ATTEMPTS / 2, "opened " + opened + ", refused " + refused);
        for (Map.Entry<String, int[]> e : outcomes.entrySet()) {
            assertTrue(e.getValue()[1] > 0, "mutation " + e.getKey() + " never produced a bad file");
        }
        // The structured edits must reach each specific check, not only the JSON parser.
        for (String expected : List.of("too short", "absurdly large", "truncated", "UTF-8", "JSON", "must be a JSON object",
                "entry", "dtype", "shape", "64-bit", "64 bits", "data_offsets", "points past the end", "span", "overlap",
                "__metadata__")) {
            assertTrue(problems.containsKey(expected), "no mangled file was refused for '" + expected + "': " + problems);
        }
    }

    private static String category(String message) {
        for (String c : List.of("too short", "absurdly large", "truncated", "UTF-8", "must be a JSON object",
                "JSON", "empty", "entry", "points past the end", "overlap", "__metadata__", "64-bit", "64 bits", "dtype",
                "span", "shape",
                "data_offsets")) {
            if (message.contains(c)) return c;
        }
        return message;
    }

    /**
     * Rewrites the file in place: the variants are all about one block long, so unlike truncating to zero first,
     * this does not free and reallocate the block every time (slow on some file systems).
     */
    private static void overwrite(FileChannel channel, byte[] content) throws IOException {
        ByteBuffer buffer = ByteBuffer.wrap(content);
        while (buffer.hasRemaining()) channel.write(buffer, buffer.position());
        channel.truncate(content.length);
    }

    /** After a successful open every tensor must be in bounds and readable. */
    private static void readEverything(SafeTensors st, long fileSize) {
        long previousEnd = 0;
        for (TensorInfo t : st.tensors()) {
            assertTrue(t.offset() >= previousEnd || t.byteSize() == 0, "listed in file order, without overlap: " + t);
            if (t.byteSize() > 0) previousEnd = t.offset() + t.byteSize();
            assertTrue(t.offset() >= 8 && t.offset() + t.byteSize() <= fileSize, t.toString());
            assertEquals(t.elementCount() * t.dtype().bytes(), t.byteSize(), t.toString());
            assertEquals(t, st.info(t.name()));
            MemorySegment bytes = st.data(t.name());
            assertEquals(t.byteSize(), bytes.byteSize());
            if (t.byteSize() > 0) {
                bytes.get(ValueLayout.JAVA_BYTE, 0);
                bytes.get(ValueLayout.JAVA_BYTE, t.byteSize() - 1);
            }
            if (t.dtype().isFloatWeight()) assertEquals(t.elementCount(), st.readFloats(t.name()).length);
        }
        st.metadata().forEach((k, v) -> assertTrue(k != null && v != null));
    }

    private void buildBase() throws Exception {
        Path file = dir.resolve("base.safetensors");
        new SafeTensorsWriter()
                .metadata("format", "pt")
                .add("model.embed_tokens.weight", new float[] {1, 2, 3, 4, 5, 6}, 2, 3)
                .add("bf", DType.BF16, MemorySegment.ofArray(new byte[] {0, 0x3f, 0, 0x40, 0, (byte) 0xc0, 0, 0}), 4)
                .add("half", DType.F16, MemorySegment.ofArray(new byte[] {0, 0x3c, 0, 0x40, 0, 0x7c}), 3)
                .add("bytes", DType.U8, MemorySegment.ofArray(new byte[] {1, 2, 3, 4, 5}), 5)
                .add("ids", DType.I64, MemorySegment.ofArray(new byte[16]), 2)
                .add("double", DType.F64, MemorySegment.ofArray(new byte[8]), 1)
                .add("empty", new float[0], 0, 3)
                .write(file);
        base = Files.readAllBytes(file);
        baseHeaderLength = RawSafeTensors.headerLength(base);
        baseHeader = (ObjectNode) Json.mapper().readTree(new String(base, 8, (int) baseHeaderLength, StandardCharsets.UTF_8));
    }

    private byte[] mutate(List<String> steps) {
        int kind = random.nextInt(6);
        return switch (kind) {
            case 0 -> { steps.add("flip"); yield flipBytes(base.clone(), steps); }
            case 1 -> { steps.add("truncate"); yield Arrays.copyOf(base, random.nextInt(base.length)); }
            case 2 -> { steps.add("length-field"); yield RawSafeTensors.withHeaderLength(base, corruptLength()); }
            case 3 -> { steps.add("json"); yield structured(steps); }
            case 4 -> { steps.add("json+flip"); yield flipBytes(structured(steps), steps); }
            default -> { steps.add("splice"); yield splice(steps); }
        };
    }

    private byte[] flipBytes(byte[] content, List<String> steps) {
        int flips = 1 + random.nextInt(8);
        long headerEnd = Math.min(content.length, 8 + baseHeaderLength);
        for (int i = 0; i < flips && content.length > 0; i++) {
            // Mostly in the length field and header, where a flip changes meaning rather than just a weight.
            int at = random.nextInt(4) > 0 ? random.nextInt((int) Math.max(1, headerEnd)) : random.nextInt(content.length);
            content[at] = switch (random.nextInt(3)) {
                case 0 -> (byte) (content[at] ^ (1 << random.nextInt(8)));
                case 1 -> (byte) random.nextInt(256);
                // Printable ASCII keeps the header valid UTF-8, so the flip reaches the JSON and field checks.
                default -> (byte) (0x20 + random.nextInt(0x5f));
            };
            steps.add("byte " + at);
        }
        return content;
    }

    private long corruptLength() {
        long[] choices = {0, 1, 2, baseHeaderLength - 1, baseHeaderLength + 1, baseHeaderLength + random.nextInt(33) - 16,
                base.length, base.length - 8, base.length - 7, Long.MAX_VALUE, Long.MIN_VALUE, -1, -baseHeaderLength,
                SafeTensorsHeader.MAX_HEADER_BYTES, SafeTensorsHeader.MAX_HEADER_BYTES + 1, random.nextLong(),
                random.nextLong() & ((1L << 40) - 1), 1L << 32 | baseHeaderLength};
        return choices[random.nextInt(choices.length)];
    }

    /** Inserts bytes into the header, fixing the length field up so the parser sees them inside it. */
    private byte[] splice(List<String> steps) {
        byte[] garbage = switch (random.nextInt(4)) {
            case 0 -> randomText(1 + random.nextInt(6)).getBytes(StandardCharsets.UTF_8);
            // Overlong encodings, lone surrogates, bytes no UTF-8 may contain, a truncated sequence.
            case 1 -> pick(new byte[][] {{(byte) 0xC0, (byte) 0x80}, {(byte) 0xED, (byte) 0xA0, (byte) 0x80},
                    {(byte) 0xF8, 0x41}, {(byte) 0xE2, (byte) 0x82}, {(byte) 0xFF}, {0}});
            case 2 -> pick(new String[] {"{", "}", "[", "]", ",", ":", "\"", "\\", "null", "1e999", "-0", "\"a\":{}"})
                    .getBytes(StandardCharsets.UTF_8);
            default -> new byte[] {(byte) random.nextInt(256)};
        };
        int at = 8 + random.nextInt((int) baseHeaderLength + 1);
        steps.add("insert " + garbage.length + " at " + at);
        byte[] header = new byte[(int) baseHeaderLength + garbage.length];
        System.arraycopy(base, 8, header, 0, at - 8);
        System.arraycopy(garbage, 0, header, at - 8, garbage.length);
        System.arraycopy(base, at, header, at - 8 + garbage.length, (int) baseHeaderLength - (at - 8));
        return withData(header, steps);
    }

    /** Edits the header as JSON, then writes it back with a correct length field (so the edit is what is tested). */
    private byte[] structured(List<String> steps) {
        ObjectNode header = baseHeader.deepCopy();
        List<String> names = new ArrayList<>();
        header.fieldNames().forEachRemaining(n -> { if (!n.equals("__metadata__")) names.add(n); });
        int edits = 1 + (random.nextInt(4) == 0 ? random.nextInt(3) : 0);
        String deep = null;
        for (int i = 0; i < edits; i++) {
            String name = pick(names.toArray(String[]::new));
            ObjectNode entry = header.get(name) instanceof ObjectNode o ? o : null;
            int edit = random.nextInt(14);
            steps.add("edit " + edit + " on " + name);
            switch (edit) {
                case 0 -> { if (entry != null) entry.set("data_offsets", pair(interestingLong(header), interestingLong(header))); }
                case 1 -> { if (entry != null) shiftOffsets(entry); }
                case 2 -> { if (entry != null) entry.set("data_offsets", offsetsOf(header, pick(names.toArray(String[]::new)))); }
                case 3 -> { if (entry != null) entry.set("data_offsets", oddValue()); }
                case 4 -> { if (entry != null) entry.set("shape", randomShape()); }
                case 5 -> { if (entry != null) editDimension(entry); }
                case 6 -> { if (entry != null) entry.set("dtype", randomDtype()); }
                case 7 -> { if (entry != null) entry.remove(pick(new String[] {"dtype", "shape", "data_offsets"})); }
                case 8 -> { if (entry != null) entry.set(randomText(3), oddValue()); }
                case 9 -> header.set(name, oddValue());
                case 10 -> {
                    JsonNode value = header.remove(name);
                    header.set(randomText(1 + random.nextInt(8)), value);
                }
                case 11 -> header.set("__metadata__", randomMetadata());
                case 12 -> {
                    int depth = pick(new Integer[] {2, 50, 500, 999, 1000, 1001, 5000});
                    // Unbalanced now and then: one closing bracket short.
                    deep = "[".repeat(depth) + "]".repeat(random.nextInt(5) == 0 ? depth - 1 : depth);
                    if (entry != null) entry.put(pick(new String[] {"shape", "data_offsets", "extra"}), "@@deep@@");
                    else header.put("__metadata__", "@@deep@@");
                }
                default -> { // many legal empty tensors around the real ones
                    for (int k = 0; k < 1 + random.nextInt(50); k++) {
                        ObjectNode empty = header.putObject("z" + k);
                        empty.put("dtype", "F32");
                        empty.putArray("shape").add(0);
                        long at = random.nextInt((int) (base.length - 8 - baseHeaderLength) + 1);
                        empty.set("data_offsets", pair(NODES.numberNode(at), NODES.numberNode(at)));
                    }
                }
            }
        }
        String text = header.toString();
        if (deep != null) text = text.replace(DEEP, deep);
        // Legal and illegal padding after the object.
        text += pick(new String[] {"", "", "", "   ", "\n\t ", "\u0000", " x"});
        return withData(text.getBytes(StandardCharsets.UTF_8), steps);
    }

    /** The original data region, sometimes cut short or extended, behind a new header. */
    private byte[] withData(byte[] header, List<String> steps) {
        int dataLength = (int) (base.length - 8 - baseHeaderLength);
        int newLength = switch (random.nextInt(6)) {
            case 0 -> random.nextInt(dataLength + 1);
            case 1 -> dataLength + random.nextInt(16);
            default -> dataLength;
        };
        if (newLength != dataLength) steps.add("data " + newLength);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] length = RawSafeTensors.withHeaderLength(new byte[8], header.length);
        out.writeBytes(length);
        out.writeBytes(header);
        byte[] data = Arrays.copyOfRange(base, (int) (8 + baseHeaderLength), (int) (8 + baseHeaderLength) + newLength);
        out.writeBytes(data);
        return out.toByteArray();
    }

    private JsonNode interestingLong(ObjectNode header) {
        long dataLength = base.length - 8 - baseHeaderLength;
        return switch (random.nextInt(10)) {
            case 0 -> NODES.numberNode(0L);
            case 1 -> NODES.numberNode(dataLength);
            case 2 -> NODES.numberNode(dataLength + 1);
            case 3 -> NODES.numberNode(Long.MAX_VALUE);
            case 4 -> NODES.numberNode(-1L - random.nextInt(8));
            case 5 -> NODES.numberNode(BigInteger.ONE.shiftLeft(63 + random.nextInt(3)));
            case 6 -> {
                JsonNode offsets = header.path(pick(header.properties().stream().map(Map.Entry::getKey).toArray(String[]::new)))
                        .path("data_offsets");
                yield offsets.isArray() && offsets.size() == 2 ? offsets.get(random.nextInt(2)) : NODES.numberNode(3L);
            }
            default -> NODES.numberNode((long) random.nextInt((int) dataLength + 1));
        };
    }

    private void shiftOffsets(ObjectNode entry) {
        JsonNode offsets = entry.path("data_offsets");
        if (!offsets.isArray() || offsets.size() != 2) return;
        long delta = random.nextInt(33) - 16;
        entry.set("data_offsets", pair(NODES.numberNode(offsets.get(0).asLong() + delta), NODES.numberNode(offsets.get(1).asLong() + delta)));
    }

    private static JsonNode offsetsOf(ObjectNode header, String name) {
        JsonNode offsets = header.path(name).path("data_offsets");
        return offsets.isMissingNode() ? NODES.nullNode() : offsets.deepCopy();
    }

    private JsonNode oddValue() {
        return switch (random.nextInt(12)) {
            case 0 -> NODES.nullNode();
            case 1 -> NODES.booleanNode(true);
            case 2 -> NODES.textNode(randomText(4));
            case 3 -> NODES.numberNode(1.5);
            case 4 -> NODES.numberNode(-3L);
            case 5 -> NODES.arrayNode();
            case 6 -> NODES.arrayNode().add(1);
            case 7 -> NODES.arrayNode().add(1).add(2).add(3);
            case 8 -> NODES.arrayNode().add("0").add("4");
            case 9 -> NODES.objectNode().put("a", 1);
            case 10 -> NODES.numberNode(BigInteger.TEN.pow(30));
            default -> NODES.arrayNode().add(NODES.arrayNode().add(0)).add(4);
        };
    }

    private JsonNode randomShape() {
        ArrayNode shape = NODES.arrayNode();
        int rank = random.nextInt(5);
        for (int i = 0; i < rank; i++) {
            switch (random.nextInt(12)) {
                case 0 -> shape.add(-1);
                case 1 -> shape.add(0);
                case 2 -> shape.add(1L << 31);
                case 3 -> shape.add(1L << 62);
                case 4 -> shape.add(Long.MAX_VALUE);
                case 5 -> shape.add(BigInteger.ONE.shiftLeft(64));
                case 6 -> shape.add(2.5);
                case 7 -> shape.add("3");
                case 8 -> shape.addNull();
                case 9 -> shape.addArray().add(2);
                default -> shape.add(1 + random.nextInt(6));
            }
        }
        return random.nextInt(8) == 0 ? oddValue() : shape;
    }

    private void editDimension(ObjectNode entry) {
        if (!(entry.get("shape") instanceof ArrayNode shape)) return;
        switch (random.nextInt(3)) {
            case 0 -> shape.add(1 + random.nextInt(3));
            case 1 -> { if (!shape.isEmpty()) shape.remove(shape.size() - 1); }
            default -> { if (!shape.isEmpty()) shape.set(0, NODES.numberNode(shape.get(0).asLong() * 2)); }
        }
    }

    private JsonNode randomDtype() {
        if (random.nextInt(4) == 0) return oddValue();
        String[] names = {"F32", "BF16", "F16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2",
                "F31", "", "f32", "FLOAT", "U64", "C64"};
        return NODES.textNode(random.nextInt(10) == 0 ? randomText(3) : pick(names));
    }

    private JsonNode randomMetadata() {
        return switch (random.nextInt(5)) {
            case 0 -> oddValue();
            case 1 -> NODES.objectNode().put(randomText(3), randomText(5));
            case 2 -> NODES.objectNode().put("step", 3);
            case 3 -> NODES.objectNode().set("nested", NODES.objectNode());
            default -> NODES.objectNode().put("format", "pt").putNull("x");
        };
    }

    /** Text of random code points: ASCII, controls, accents, CJK, emoji, private use, noncharacters. */
    private String randomText(int length) {
        StringBuilder s = new StringBuilder();
        int[][] ranges = {{0x20, 0x7e}, {0, 0x1f}, {0xa0, 0x2ff}, {0x4e00, 0x4fff}, {0x1f600, 0x1f64f}, {0xe000, 0xe0ff},
                {0xfffe, 0xffff}, {0x10fff0, 0x10ffff}};
        for (int i = 0; i < length; i++) {
            int[] r = ranges[random.nextInt(ranges.length)];
            s.appendCodePoint(r[0] + random.nextInt(r[1] - r[0] + 1));
        }
        return s.toString();
    }

    private static ArrayNode pair(JsonNode a, JsonNode b) {
        return NODES.arrayNode().add(a).add(b);
    }

    private <T> T pick(T[] choices) {
        return choices[random.nextInt(choices.length)];
    }

    private static String printable(byte[] content) {
        int n = Math.min(content.length, 400);
        return new String(content, 0, n, StandardCharsets.ISO_8859_1).replaceAll("[^\\x20-\\x7e]", "?");
    }
}
