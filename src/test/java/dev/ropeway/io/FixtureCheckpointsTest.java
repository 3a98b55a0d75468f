package dev.ropeway.io;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ropeway.tensor.DType;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The checkpoints that Hugging Face itself wrote must open and read exactly. */
class FixtureCheckpointsTest {
    static final Path FIXTURES = Path.of("../shared/fixtures");

    private static List<Path> fixtureFolders() throws IOException {
        try (Stream<Path> s = Files.list(FIXTURES)) {
            return s.filter(p -> Files.isRegularFile(p.resolve("reference.safetensors"))).sorted().toList();
        }
    }

    /** The header as plain JSON, read without the reader under test. */
    private static JsonNode rawHeader(byte[] file) throws IOException {
        long n = ByteBuffer.wrap(file).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
        return Json.mapper().readTree(new String(file, 8, (int) n, StandardCharsets.UTF_8));
    }

    @Test
    void everyFixtureFileOpensAndEveryTensorReads() throws IOException {
        List<Path> folders = fixtureFolders();
        assertTrue(folders.size() >= 10, "fixtures found: " + folders);
        for (Path folder : folders) {
            for (String name : List.of("model.safetensors", "reference.safetensors")) {
                Path file = folder.resolve(name);
                if (!Files.exists(file)) continue;
                JsonNode header = rawHeader(Files.readAllBytes(file));
                try (SafeTensors st = SafeTensors.open(file)) {
                    TreeSet<String> expected = new TreeSet<>();
                    header.fieldNames().forEachRemaining(expected::add);
                    expected.remove("__metadata__");
                    assertEquals(expected, new TreeSet<>(st.tensors().stream().map(TensorInfo::name).toList()), file.toString());
                    for (TensorInfo t : st.tensors()) {
                        JsonNode entry = header.get(t.name());
                        assertEquals(entry.get("dtype").asText(), t.dtype().safetensorsName());
                        assertEquals(entry.get("shape").size(), t.rank());
                        float[] values = st.readFloats(t.name());
                        assertEquals(t.elementCount(), values.length);
                        for (float v : values) assertTrue(Float.isFinite(v), t + " in " + file);
                    }
                }
            }
        }
    }

    @Test
    void bfloat16WeightsWidenByShifting() throws IOException {
        Path folder = FIXTURES.resolve("llama-gqa-bf16");
        Map<String, Object> config = Json.readObject(folder.resolve("config.json"));
        long vocab = ((Number) config.get("vocab_size")).longValue();
        long hidden = ((Number) config.get("hidden_size")).longValue();
        byte[] raw = Files.readAllBytes(folder.resolve("model.safetensors"));
        try (WeightStore store = WeightStore.open(folder)) {
            assertEquals(DType.BF16, store.dominantDtype());
            TensorInfo embed = store.require("model.embed_tokens.weight", vocab, hidden);
            assertEquals(DType.BF16, embed.dtype());
            float[] widened = store.readFloats("model.embed_tokens.weight");
            ByteBuffer bytes = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
            float[] manual = new float[widened.length];
            int distinct = 0;
            for (int i = 0; i < manual.length; i++) {
                int bits = bytes.getShort((int) embed.offset() + 2 * i) & 0xFFFF;
                manual[i] = Float.intBitsToFloat(bits << 16);
                if (i > 0 && manual[i] != manual[i - 1]) distinct++;
            }
            assertArrayEquals(manual, widened);
            assertTrue(distinct > manual.length / 2, "real weights, not a constant");
            CheckpointException e = assertThrows(CheckpointException.class,
                    () -> store.require("model.embed_tokens.weight", hidden, vocab));
            assertEquals("tensor model.embed_tokens.weight has shape [" + vocab + ", " + hidden
                    + "] but the config implies [" + hidden + ", " + vocab + "]", e.getMessage());
        }
    }

    @Test
    void storeSummarisesAFloat32Checkpoint() throws IOException {
        Path folder = FIXTURES.resolve("qwen2-bias");
        JsonNode header = rawHeader(Files.readAllBytes(folder.resolve("model.safetensors")));
        long expectedElements = 0;
        int tensors = 0;
        for (Map.Entry<String, JsonNode> e : header.properties()) {
            if (e.getKey().equals("__metadata__")) continue;
            long n = 1;
            for (JsonNode d : e.getValue().get("shape")) n *= d.asLong();
            expectedElements += n;
            tensors++;
        }
        try (WeightStore store = WeightStore.open(folder)) {
            assertEquals(folder, store.directory());
            assertEquals(DType.F32, store.dominantDtype());
            assertEquals(expectedElements, store.totalElements());
            assertEquals(tensors, store.names().size());
            assertTrue(store.contains("model.layers.0.self_attn.q_proj.bias"));
            assertEquals(store.info("model.layers.1.self_attn.k_proj.bias").byteSize(), store.data("model.layers.1.self_attn.k_proj.bias").byteSize());
        }
    }

    @Test
    void tiedCheckpointHasNoOutputHead() {
        Path folder = FIXTURES.resolve("llama-tied");
        try (WeightStore store = WeightStore.open(folder)) {
            assertFalse(store.contains("lm_head.weight"));
            CheckpointException e = assertThrows(CheckpointException.class, () -> store.info("lm_head.weight"));
            assertEquals("missing tensor lm_head.weight in " + folder, e.getMessage());
            assertThrows(CheckpointException.class, () -> store.require("lm_head.weight", 320, 64));
            assertThrows(CheckpointException.class, () -> store.readFloats("lm_head.weight"));
        }
    }

    @Test
    void referenceLogitsHaveTheRecordedShape() throws IOException {
        Path folder = FIXTURES.resolve("llama-gqa-bf16");
        Map<String, Object> reference = Json.readObject(folder.resolve("reference.json"));
        long[] shape = ((List<?>) reference.get("logits_shape")).stream().mapToLong(x -> ((Number) x).longValue()).toArray();
        try (SafeTensors st = SafeTensors.open(folder.resolve("reference.safetensors"))) {
            assertArrayEquals(shape, st.info("logits").shape());
            assertEquals(DType.F32, st.info("logits").dtype());
        }
    }
}
