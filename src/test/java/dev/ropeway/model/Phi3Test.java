package dev.ropeway.model;

import dev.ropeway.io.CheckpointException;
import dev.ropeway.io.Json;
import dev.ropeway.io.SafeTensors;
import dev.ropeway.io.SafeTensorsWriter;
import dev.ropeway.io.TensorInfo;
import dev.ropeway.io.WeightStore;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.rope.LongRope;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.tensor.DType;
import dev.ropeway.testutil.Phi3Checkpoints;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Phi-3 is Llama with q, k, v stacked in one matrix ({@code qkv_proj}) and gate, up in another ({@code gate_up_proj}),
 * its LongRoPE settings in the 4.x form with {@code original_max_position_embeddings} at the top level. transformers'
 * fixtures rewritten that way must give the logits, loss and gradients transformers computed for them.
 */
class Phi3Test {
    static CpuBackend backend;

    @BeforeAll
    static void open() { backend = new CpuBackend(); }

    @AfterAll
    static void close() { backend.close(); }

    @TestFactory
    Stream<DynamicTest> logitsAndLossMatchTransformers(@TempDir Path tmp) {
        return Stream.of("llama-default", "llama-gqa-bf16", "llama-longrope", "llama-tied").map(name ->
                DynamicTest.dynamicTest(name + " as Phi-3", () -> {
                    Path phi3 = Phi3Checkpoints.write(FixtureParityTest.FIXTURES.resolve(name), tmp.resolve(name));
                    Map<String, Object> config = Json.readObject(phi3.resolve("config.json"));
                    assertEquals(Architecture.PHI3, ModelConfig.parse(config, "x").architecture());
                    try (SafeTensors st = SafeTensors.open(phi3.resolve("model.safetensors"))) {
                        assertTrue(st.info("model.layers.0.self_attn.qkv_proj.weight") != null);
                        assertEquals(null, st.info("model.layers.0.self_attn.q_proj.weight"));
                    }
                    FixtureParityTest.check(backend, phi3, config);
                    try (Transformer model = Transformer.load(backend, phi3)) {
                        if (name.equals("llama-longrope")) {
                            LongRope rope = assertInstanceOf(LongRope.class, model.config().rope());
                            assertEquals(64, rope.originalMaxPositionEmbeddings());
                        }
                    }
                }));
    }

    @Test
    void gradientsMatchTransformersAndASavedModelIsStackedAgain(@TempDir Path tmp) throws IOException {
        Path phi3 = Phi3Checkpoints.write(FixtureParityTest.FIXTURES.resolve("llama-default"), tmp.resolve("phi3"));
        GradientParityTest.check(backend, phi3, false);

        Path saved = tmp.resolve("saved");
        try (TrainableModel model = TrainableModel.load(backend, phi3)) {
            model.save(saved, Json.readObject(phi3.resolve("config.json")));
        }
        try (SafeTensors a = SafeTensors.open(phi3.resolve("model.safetensors"));
             SafeTensors b = SafeTensors.open(saved.resolve("model.safetensors"))) {
            Set<String> names = new java.util.TreeSet<>();
            for (TensorInfo t : b.tensors()) names.add(t.name());
            Set<String> expected = new java.util.TreeSet<>();
            for (TensorInfo t : a.tensors()) expected.add(t.name());
            assertEquals(expected, names, "a saved Phi-3 has the stacked tensors and no others");
            for (String n : names) assertArrayEquals(a.readFloats(n), b.readFloats(n), n);
        }
        FixtureParityTest.check(backend, copyReferences(phi3, saved), Json.readObject(saved.resolve("config.json")));
    }

    private static Path copyReferences(Path from, Path to) throws IOException {
        for (String f : List.of("reference.json", "reference.safetensors"))
            Files.copy(from.resolve(f), to.resolve(f));
        return to;
    }

    @Test
    void theStackedTensorsAreSeenAsTheirPartsWithoutCopies(@TempDir Path tmp) throws IOException {
        Path phi3 = Phi3Checkpoints.write(FixtureParityTest.FIXTURES.resolve("llama-gqa-bf16"), tmp.resolve("phi3"));
        ModelConfig c = Transformer.loadConfig(phi3);
        try (WeightStore split = StackedProjections.open(phi3, c);
             WeightStore llama = WeightStore.open(FixtureParityTest.FIXTURES.resolve("llama-gqa-bf16"))) {
            assertEquals(llama.names(), split.names());
            assertEquals(llama.totalElements(), split.totalElements());
            for (String n : llama.names()) {
                TensorInfo t = split.require(n, llama.info(n).shape());
                assertEquals(DType.BF16, t.dtype(), n);
                assertArrayEquals(llama.readFloats(n), split.readFloats(n), n);
                assertEquals(llama.data(n).byteSize(), split.data(n).byteSize());
                assertEquals(-1, llama.data(n).mismatch(split.data(n)), n);
            }
        }
    }

    @Test
    void aMissingOrMisshapenStackIsNamed(@TempDir Path tmp) throws IOException {
        Path phi3 = Phi3Checkpoints.write(FixtureParityTest.FIXTURES.resolve("llama-default"), tmp.resolve("phi3"));
        ModelConfig c = Transformer.loadConfig(phi3);
        // The config claims a wider MLP than the checkpoint stores.
        Map<String, Object> wide = Json.readObject(phi3.resolve("config.json"));
        wide.put("intermediate_size", c.intermediateSize() * 2);
        Json.writeAtomic(phi3.resolve("config.json"), wide);
        CheckpointException e = assertThrows(CheckpointException.class, () -> Transformer.load(backend, phi3).close());
        assertTrue(e.getMessage().contains("model.layers.0.mlp.gate_up_proj.weight has shape"), e.getMessage());

        // A checkpoint without the stacked attention matrix.
        Path broken = tmp.resolve("broken");
        Files.createDirectories(broken);
        Files.copy(FixtureParityTest.FIXTURES.resolve("llama-default/model.safetensors"), broken.resolve("model.safetensors"));
        Map<String, Object> config = Json.readObject(phi3.resolve("config.json"));
        config.put("intermediate_size", c.intermediateSize());
        Json.writeAtomic(broken.resolve("config.json"), config);
        // Separate matrices are accepted as they are (some conversions store them so)...
        try (Transformer model = Transformer.load(backend, broken)) {
            assertEquals(Architecture.PHI3, model.config().architecture());
        }
        // ...but neither form at all is an error that names both.
        try (WeightStore store = StackedProjections.open(broken, ModelConfig.parse(config, "x"))) {
            assertTrue(store.contains("model.layers.0.self_attn.q_proj.weight"));
            assertFalse(store.contains("model.layers.0.self_attn.qkv_proj.weight"));
        }
        Path empty = tmp.resolve("empty");
        Files.createDirectories(empty);
        new SafeTensorsWriter().add("model.embed_tokens.weight", new float[]{1}, 1, 1).write(empty.resolve("model.safetensors"));
        try (WeightStore store = StackedProjections.open(empty, ModelConfig.parse(config, "x"))) {
            CheckpointException missing = assertThrows(CheckpointException.class,
                    () -> store.require("model.layers.1.self_attn.k_proj.weight", c.kvDim(), c.hiddenSize()));
            assertTrue(missing.getMessage().contains("missing tensor model.layers.1.self_attn.qkv_proj.weight (or "
                    + "model.layers.1.self_attn.k_proj.weight)"), missing.getMessage());
        }
    }

    @Test
    void slidingWindowIsRead() {
        Map<String, Object> config = Json.readObject(FixtureParityTest.FIXTURES.resolve("llama-default/config.json"));
        config.put("architectures", List.of("Phi3ForCausalLM"));
        config.put("model_type", "phi3");
        config.put("sliding_window", 2047);
        assertEquals(2047, ModelConfig.parse(config, "x").slidingWindow());
        config.put("sliding_window", null);
        assertEquals(0, ModelConfig.parse(config, "x").slidingWindow());
    }

    /** A Phi-3 exports to GGUF as the Llama it equals: the same file, byte for byte. */
    @Test
    void ggufExportOfAPhi3IsTheLlamaExport(@TempDir Path tmp) throws IOException {
        Path llama = GgufExportTest.llama(tmp.resolve("llama"), new DefaultRope(10000, 16), false, 0);
        Path phi3 = Phi3Checkpoints.write(llama, tmp.resolve("phi3"));
        var options = new GgufExport.Options(new DefaultRope(10000, 16), 128, GgufExport.Dtype.F32, "tiny");
        GgufExport.write(llama, tmp.resolve("a.gguf"), options);
        GgufExport.write(phi3, tmp.resolve("b.gguf"), options);
        assertEquals(-1, Files.mismatch(tmp.resolve("a.gguf"), tmp.resolve("b.gguf")));
    }
}
