package dev.ropeway.io;

import dev.ropeway.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class WeightStoreTest {
    @TempDir Path dir;

    private static float[] ramp(int n, float start) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = start + i;
        return v;
    }

    /** Three shards as save_pretrained writes them, with the index that maps each tensor to its shard. */
    private Map<String, String> writeShardedCheckpoint() {
        new SafeTensorsWriter().metadata("format", "pt")
                .add("model.embed_tokens.weight", ramp(12, 0), 4, 3)
                .add("model.norm.weight", ramp(3, 100), 3)
                .write(dir.resolve("model-00001-of-00003.safetensors"));
        new SafeTensorsWriter().metadata("format", "pt")
                .add("model.layers.0.mlp.up_proj.weight", ramp(6, 200), 2, 3)
                .add("model.layers.0.self_attn.q_proj.bias", DType.BF16, MemorySegment.ofArray(new byte[] {0, 0x3f, 0, 0x40}), 2)
                .write(dir.resolve("model-00002-of-00003.safetensors"));
        new SafeTensorsWriter().metadata("format", "pt")
                .add("lm_head.weight", ramp(12, 300), 4, 3)
                .add("extra.not.in.index", ramp(1, 0), 1)
                .write(dir.resolve("model-00003-of-00003.safetensors"));
        Map<String, String> weightMap = new LinkedHashMap<>();
        weightMap.put("model.embed_tokens.weight", "model-00001-of-00003.safetensors");
        weightMap.put("model.norm.weight", "model-00001-of-00003.safetensors");
        weightMap.put("model.layers.0.mlp.up_proj.weight", "model-00002-of-00003.safetensors");
        weightMap.put("model.layers.0.self_attn.q_proj.bias", "model-00002-of-00003.safetensors");
        weightMap.put("lm_head.weight", "model-00003-of-00003.safetensors");
        writeIndex(weightMap);
        return weightMap;
    }

    private void writeIndex(Object weightMap) {
        Json.writeAtomic(dir.resolve("model.safetensors.index.json"),
                Map.of("metadata", Map.of("total_size", 1234), "weight_map", weightMap));
    }

    @Test
    void shardedCheckpointResolvesEveryTensor() {
        Map<String, String> weightMap = writeShardedCheckpoint();
        try (WeightStore store = WeightStore.open(dir)) {
            assertEquals(dir, store.directory());
            assertEquals(weightMap.keySet(), store.names());
            assertEquals(List.copyOf(new java.util.TreeSet<>(weightMap.keySet())), List.copyOf(store.names()), "sorted");
            assertFalse(store.contains("extra.not.in.index"), "the index, not the shards, defines the checkpoint");
            assertArrayEquals(ramp(12, 0), store.readFloats("model.embed_tokens.weight"));
            assertArrayEquals(ramp(3, 100), store.readFloats("model.norm.weight"));
            assertArrayEquals(ramp(6, 200), store.readFloats("model.layers.0.mlp.up_proj.weight"));
            assertArrayEquals(new float[] {0.5f, 2f}, store.readFloats("model.layers.0.self_attn.q_proj.bias"));
            assertArrayEquals(ramp(12, 300), store.readFloats("lm_head.weight"));
            assertEquals(4 * 3 * 4, store.data("lm_head.weight").byteSize());
            assertEquals(300f, store.data("lm_head.weight").get(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN), 0));
            assertEquals(12 + 3 + 6 + 2 + 12, store.totalElements());
            assertEquals(DType.F32, store.dominantDtype());
            assertEquals(DType.BF16, store.info("model.layers.0.self_attn.q_proj.bias").dtype());
            assertArrayEquals(new long[] {2, 3}, store.require("model.layers.0.mlp.up_proj.weight", 2, 3).shape());
            CheckpointException e = assertThrows(CheckpointException.class, () -> store.info("model.layers.1.mlp.up_proj.weight"));
            assertEquals("missing tensor model.layers.1.mlp.up_proj.weight in " + dir, e.getMessage());
        }
    }

    @Test
    void singleFileWinsOverAnIndexAndCanBeOpenedDirectly() {
        writeShardedCheckpoint();
        new SafeTensorsWriter().add("only", ramp(2, 7), 2).write(dir.resolve("model.safetensors"));
        try (WeightStore store = WeightStore.open(dir)) {
            assertEquals(Set.of("only"), store.names());
        }
        try (WeightStore store = WeightStore.open(dir.resolve("model-00002-of-00003.safetensors"))) {
            assertEquals(dir, store.directory());
            assertEquals(2, store.names().size());
        }
    }

    @Test
    void missingShardIsNamed() throws IOException {
        writeShardedCheckpoint();
        Files.delete(dir.resolve("model-00002-of-00003.safetensors"));
        CheckpointException e = assertThrows(CheckpointException.class, () -> WeightStore.open(dir));
        assertTrue(e.getMessage().contains("shard model-00002-of-00003.safetensors named by")
                && e.getMessage().contains("is missing"), e.getMessage());
    }

    @Test
    void indexNamingATensorItsShardLacksIsAnError() {
        Map<String, String> weightMap = writeShardedCheckpoint();
        weightMap.put("model.layers.9.ghost.weight", "model-00001-of-00003.safetensors");
        writeIndex(weightMap);
        CheckpointException e = assertThrows(CheckpointException.class, () -> WeightStore.open(dir));
        assertTrue(e.getMessage().contains("maps tensor 'model.layers.9.ghost.weight' to model-00001-of-00003.safetensors,"
                + " which does not contain it"), e.getMessage());
    }

    @Test
    void badIndexesAreRefused() {
        writeShardedCheckpoint();
        writeIndex(List.of("not", "a", "map"));
        assertTrue(assertThrows(CheckpointException.class, () -> WeightStore.open(dir)).getMessage().contains("no \"weight_map\""));
        writeIndex(Map.of("w", 3));
        assertTrue(assertThrows(CheckpointException.class, () -> WeightStore.open(dir)).getMessage().contains("must name a shard file"));
        writeIndex(Map.of("w", "../elsewhere.safetensors"));
        assertTrue(assertThrows(CheckpointException.class, () -> WeightStore.open(dir)).getMessage().contains("not a file in"));
    }

    @Test
    void aCorruptShardFailsTheOpenAndNamesTheShard() throws IOException {
        writeShardedCheckpoint();
        Path shard = dir.resolve("model-00003-of-00003.safetensors");
        byte[] content = Files.readAllBytes(shard);
        Files.write(shard, java.util.Arrays.copyOf(content, content.length - 4));
        CheckpointException e = assertThrows(CheckpointException.class, () -> WeightStore.open(dir));
        assertTrue(e.getMessage().contains(shard.toString()) && e.getMessage().contains("points past the end"), e.getMessage());
    }

    @Test
    void folderWithoutWeightsIsExplained() throws IOException {
        CheckpointException empty = assertThrows(CheckpointException.class, () -> WeightStore.open(dir));
        assertEquals("no model.safetensors or model.safetensors.index.json in " + dir
                + ": not a Hugging Face safetensors checkpoint", empty.getMessage());
        CheckpointException missing = assertThrows(CheckpointException.class, () -> WeightStore.open(dir.resolve("nope")));
        assertEquals("checkpoint folder " + dir.resolve("nope") + " does not exist", missing.getMessage());
        Files.writeString(dir.resolve("model.safetensors.index.json"), "{\"weight_map\": {");
        CheckpointException broken = assertThrows(CheckpointException.class, () -> WeightStore.open(dir));
        assertTrue(broken.getMessage().contains("is not valid JSON") && broken.getMessage().contains("line 1"), broken.getMessage());
    }

    @Test
    void dominantDtypeCountsOnlyFloatingTensorsAndBreaksTiesTowardsTheWiderType() {
        new SafeTensorsWriter()
                .add("a", DType.BF16, MemorySegment.ofArray(new byte[2]), 1)
                .add("b", DType.BF16, MemorySegment.ofArray(new byte[2]), 1)
                .add("c", ramp(1, 0), 1)
                .add("d", ramp(1, 0), 1)
                .add("i1", DType.I64, MemorySegment.ofArray(new byte[8]), 1)
                .add("i2", DType.I64, MemorySegment.ofArray(new byte[8]), 1)
                .add("i3", DType.I64, MemorySegment.ofArray(new byte[8]), 1)
                .write(dir.resolve("model.safetensors"));
        try (WeightStore store = WeightStore.open(dir)) {
            assertEquals(DType.F32, store.dominantDtype());
        }
        new SafeTensorsWriter().add("i", DType.I32, MemorySegment.ofArray(new byte[4]), 1).write(dir.resolve("model.safetensors"));
        try (WeightStore store = WeightStore.open(dir)) {
            assertNull(store.dominantDtype());
        }
    }

    @Test
    void closeUnmapsEveryShard() {
        writeShardedCheckpoint();
        MemorySegment first;
        MemorySegment last;
        try (WeightStore store = WeightStore.open(dir)) {
            first = store.data("model.embed_tokens.weight");
            last = store.data("lm_head.weight");
        }
        assertThrows(IllegalStateException.class, () -> first.get(ValueLayout.JAVA_BYTE, 0));
        assertThrows(IllegalStateException.class, () -> last.get(ValueLayout.JAVA_BYTE, 0));
    }
}
