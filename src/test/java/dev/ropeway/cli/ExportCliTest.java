package dev.ropeway.cli;

import dev.ropeway.io.GgufFile;
import dev.ropeway.io.Json;
import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.ClexRope;
import dev.ropeway.rope.E2Rope;
import dev.ropeway.rope.LinearRope;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ExportCliTest {

    @Test
    void anE2ModelExportsAsFixedPositionInterpolationWithTheSameLoss(@TempDir Path tmp) throws Exception {
        Path e2 = tmp.resolve("e2"), hf = tmp.resolve("hf");
        CheckpointWriter.writeRandom(e2, CheckpointWriter.withRope(
                CheckpointWriter.llamaConfig(50, 32, 64, 2, 2, 2, 16, 32, new E2Rope(10000, 16, 32, 0, 8), false),
                new E2Rope(10000, 16, 32, 0, 8), 256), 3);
        CliRunner.Result r = CliRunner.run("export", "--model", e2.toString(), "--out", hf.toString(), "--factor", "4");
        assertEquals(0, r.exitCode(), r.err());
        LinearRope pi = assertInstanceOf(LinearRope.class, Transformer.loadConfig(hf).rope());
        assertEquals(4.0, pi.factor());
        assertEquals(128, Transformer.loadConfig(hf).maxPositionEmbeddings());
        // At 4 x L0 the e2 model picks g = 4: both give the same loss.
        int[] ids = new SplittableRandom(1).ints(128, 0, 50).toArray();
        Path idsFile = tmp.resolve("ids.json");
        Files.writeString(idsFile, Json.mapper().writeValueAsString(new int[][]{ids}));
        double a = loss(CliRunner.run("score", "--model", e2.toString(), "--ids", idsFile.toString(), "--json"));
        double b = loss(CliRunner.run("score", "--model", hf.toString(), "--ids", idsFile.toString(), "--json"));
        assertEquals(a, b, 1e-9);
    }

    /**
     * {@code --dtype bf16} writes the weights as bfloat16 (half the bytes, config.json saying so), which load as
     * bfloat16 and score what the float32 model scores to bfloat16's precision; back to f32 the values are the bfloat16
     * ones exactly; a sharded checkpoint keeps its shards and its index (with the new total size).
     */
    @Test
    void hfExportConvertsTheWeightsToAnotherType(@TempDir Path tmp) throws Exception {
        Path m = tmp.resolve("m"), bf = tmp.resolve("bf16"), back = tmp.resolve("f32");
        CheckpointWriter.writeRandom(m, CheckpointWriter.llamaConfig(300, 32, 64, 2, 2, 2, 16, 64,
                new dev.ropeway.rope.DefaultRope(10000, 16), false), 3);
        CliRunner.Result r = CliRunner.run("export", "--model", m.toString(), "--out", bf.toString(), "--dtype", "bf16");
        assertEquals(0, r.exitCode(), r.err());
        assertTrue(r.out().contains("weights bf16"), r.out());
        assertEquals("bfloat16", Json.readObject(bf.resolve("config.json")).get("torch_dtype"));
        long f32Bytes = Files.size(m.resolve("model.safetensors")), bf16Bytes = Files.size(bf.resolve("model.safetensors"));
        assertTrue(bf16Bytes < f32Bytes * 0.51, bf16Bytes + " bytes against " + f32Bytes);
        try (dev.ropeway.io.SafeTensors in = dev.ropeway.io.SafeTensors.open(m.resolve("model.safetensors"));
             dev.ropeway.io.SafeTensors out = dev.ropeway.io.SafeTensors.open(bf.resolve("model.safetensors"))) {
            assertEquals(in.tensors().size(), out.tensors().size());
            for (dev.ropeway.io.TensorInfo t : out.tensors()) {
                assertEquals(dev.ropeway.tensor.DType.BF16, t.dtype(), t.name());
                float[] wide = in.readFloats(t.name()), narrow = out.readFloats(t.name());
                for (int i = 0; i < wide.length; i++)
                    assertEquals(wide[i], narrow[i], Math.abs(wide[i]) / 256 + 1e-30, t.name() + "[" + i + "]");
            }
        }
        int[] ids = new SplittableRandom(2).ints(48, 0, 300).toArray();
        Path idsFile = tmp.resolve("ids.json");
        Files.writeString(idsFile, Json.mapper().writeValueAsString(new int[][]{ids}));
        double a = loss(CliRunner.run("score", "--model", m.toString(), "--ids", idsFile.toString(), "--json"));
        double b = loss(CliRunner.run("score", "--model", bf.toString(), "--ids", idsFile.toString(), "--json"));
        assertEquals(a, b, 1e-2 * Math.abs(a));
        assertTrue(a != b, "the bfloat16 weights are rounded");

        r = CliRunner.run("export", "--model", bf.toString(), "--out", back.toString(), "--dtype", "f32");
        assertEquals(0, r.exitCode(), r.err());
        assertEquals("float32", Json.readObject(back.resolve("config.json")).get("torch_dtype"));
        try (dev.ropeway.io.SafeTensors in = dev.ropeway.io.SafeTensors.open(bf.resolve("model.safetensors"));
             dev.ropeway.io.SafeTensors out = dev.ropeway.io.SafeTensors.open(back.resolve("model.safetensors"))) {
            for (dev.ropeway.io.TensorInfo t : out.tensors()) {
                assertEquals(dev.ropeway.tensor.DType.F32, t.dtype(), t.name());
                org.junit.jupiter.api.Assertions.assertArrayEquals(in.readFloats(t.name()), out.readFloats(t.name()), t.name());
            }
        }
        assertEquals(b, loss(CliRunner.run("score", "--model", back.toString(), "--ids", idsFile.toString(), "--json")), 1e-6);

        // Two shards and their index: each shard converted, the index's total size the new one.
        Path sharded = tmp.resolve("sharded"), shardedBf = tmp.resolve("sharded-bf16");
        Files.createDirectories(sharded);
        Files.copy(m.resolve("config.json"), sharded.resolve("config.json"));
        java.util.Map<String, Object> weightMap = new java.util.LinkedHashMap<>();
        try (dev.ropeway.io.SafeTensors in = dev.ropeway.io.SafeTensors.open(m.resolve("model.safetensors"))) {
            dev.ropeway.io.SafeTensorsWriter[] shards = {new dev.ropeway.io.SafeTensorsWriter(), new dev.ropeway.io.SafeTensorsWriter()};
            int i = 0;
            for (dev.ropeway.io.TensorInfo t : in.tensors()) {
                int s = i++ % 2;
                shards[s].add(t.name(), t.dtype(), in.data(t.name()), t.shape());
                weightMap.put(t.name(), "model-0000" + (s + 1) + "-of-00002.safetensors");
            }
            for (int s = 0; s < 2; s++) shards[s].write(sharded.resolve("model-0000" + (s + 1) + "-of-00002.safetensors"));
        }
        Json.writeAtomic(sharded.resolve("model.safetensors.index.json"),
                Map.of("metadata", Map.of("total_size", f32Bytes), "weight_map", weightMap));
        r = CliRunner.run("export", "--model", sharded.toString(), "--out", shardedBf.toString(), "--dtype", "bf16");
        assertEquals(0, r.exitCode(), r.err());
        Map<String, Object> index = Json.readObject(shardedBf.resolve("model.safetensors.index.json"));
        long tensorBytes = 0;
        for (String shard : new String[] {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"})
            try (dev.ropeway.io.SafeTensors s = dev.ropeway.io.SafeTensors.open(shardedBf.resolve(shard))) {
                for (dev.ropeway.io.TensorInfo t : s.tensors()) {
                    assertEquals(dev.ropeway.tensor.DType.BF16, t.dtype());
                    tensorBytes += t.byteSize();
                }
            }
        assertEquals(tensorBytes, ((Number) ((Map<?, ?>) index.get("metadata")).get("total_size")).longValue());
        assertEquals(b, loss(CliRunner.run("score", "--model", shardedBf.toString(), "--ids", idsFile.toString(), "--json")), 1e-6);
    }

    @Test
    void clexCannotBeExportedToStockTransformers(@TempDir Path tmp) {
        Path clex = tmp.resolve("clex");
        ClexRope rope = new ClexRope(10000, 16, 32, 8, 1, "tanh", 0.01, false, null);
        CheckpointWriter.writeRandom(clex, CheckpointWriter.withRope(
                CheckpointWriter.llamaConfig(50, 32, 64, 2, 2, 2, 16, 32, rope, false), rope, 32), 3);
        CliRunner.Result r = CliRunner.run("export", "--model", clex.toString(), "--out", tmp.resolve("o").toString());
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("CLEX has no stock transformers equivalent"), r.err());
    }

    @Test
    void anE2ModelExportsToGgufAsLinearWithTheContextItReaches(@TempDir Path tmp) throws Exception {
        Path e2 = tmp.resolve("e2");
        E2Rope rope = new E2Rope(10000, 16, 32, 0, 8);
        CheckpointWriter.writeRandom(e2, CheckpointWriter.withRope(
                CheckpointWriter.llamaConfig(300, 32, 48, 2, 2, 2, 16, 32, rope, false), rope, 256), 3);
        dev.ropeway.testutil.TinyTokenizer.write(e2);
        Path gguf = tmp.resolve("out/e2.gguf");
        CliRunner.Result r = CliRunner.run("export", "--model", e2.toString(), "--format", "gguf", "--out", gguf.toString(),
                "--factor", "4");
        assertEquals(0, r.exitCode(), r.err());
        assertTrue(r.out().contains("GGUF llama") && r.out().contains("(f16)") && r.out().contains("context_length 128"), r.out());
        try (GgufFile g = GgufFile.open(gguf)) {
            assertEquals("linear", g.value("llama.rope.scaling.type").asString());
            assertEquals(4f, (float) g.value("llama.rope.scaling.factor").asDouble());
            assertEquals(128L, g.value("llama.context_length").asLong(), "L0 x g");
            assertEquals(1L, g.value("general.file_type").asLong(), "f16 by default");
            assertEquals("e2", g.value("general.name").asString());
        }
        r = CliRunner.run("export", "--model", e2.toString(), "--format", "gguf", "--out", gguf.toString(),
                "--dtype", "q8_0", "--context-length", "4096");
        assertEquals(0, r.exitCode(), r.err());
        assertTrue(r.out().contains("blk.1.ffn_down.weight stored as F16"), "rows of 48 are not whole Q8_0 blocks: " + r.out());
        try (GgufFile g = GgufFile.open(gguf)) {
            assertEquals(dev.ropeway.io.GgmlType.F16, g.tensor("blk.0.ffn_down.weight").type());
            assertEquals(dev.ropeway.io.GgmlType.Q8_0, g.tensor("blk.0.ffn_up.weight").type());
            assertEquals(4096L, g.value("llama.context_length").asLong());
            assertEquals(8f, (float) g.value("llama.rope.scaling.factor").asDouble(), "the trained maximum G by default");
        }
        CliRunner.Result info = CliRunner.run("info", gguf.toString(), "--json");
        assertEquals(0, info.exitCode(), info.err());
        Map<?, ?> summary = Json.mapper().readValue(info.out(), Map.class);
        assertEquals("gguf", summary.get("format"));
        assertEquals(3, summary.get("version"));
        assertEquals("llama", ((Map<?, ?>) summary.get("metadata")).get("general.architecture"));
    }

    @Test
    void ggufExportRefusesBadOptionsWithTheReason(@TempDir Path tmp) {
        Path m = tmp.resolve("m");
        CheckpointWriter.writeRandom(m, CheckpointWriter.llamaConfig(300, 32, 64, 2, 2, 2, 16, 32,
                new dev.ropeway.rope.DefaultRope(10000, 16), false), 3);
        dev.ropeway.testutil.TinyTokenizer.write(m);
        String model = m.toString(), out = tmp.resolve("m.gguf").toString();
        assertRefused("unknown --dtype 'q4_k'", "export", "--model", model, "--format", "gguf", "--out", out, "--dtype", "q4_k");
        assertRefused("unknown --format 'onnx'", "export", "--model", model, "--format", "onnx", "--out", out);
        assertRefused("--out must differ from --model", "export", "--model", model, "--format", "gguf", "--out", model);
        assertRefused("is a folder", "export", "--model", model, "--format", "gguf", "--out", tmp.toString());
        assertRefused("unknown --dtype 'q8_0' for --format hf (f32, bf16 or f16)", "export", "--model", model, "--out",
                tmp.resolve("hf").toString(), "--dtype", "q8_0");
        assertRefused("--context-length applies to --format gguf only", "export", "--model", model, "--out",
                tmp.resolve("hf").toString(), "--context-length", "64");
        assertRefused("dynamic NTK has no GGUF form", "export", "--model", model, "--format", "gguf", "--out", out, "--rope", "dynamic:factor=4");
        assertRefused("--context-length must be in", "export", "--model", model, "--format", "gguf", "--out", out, "--context-length", "0");
        assertFalse(Files.exists(Path.of(out)));

        Path clex = tmp.resolve("clex");
        ClexRope rope = new ClexRope(10000, 16, 32, 8, 1, "tanh", 0.01, false, null);
        CheckpointWriter.writeRandom(clex, CheckpointWriter.withRope(
                CheckpointWriter.llamaConfig(50, 32, 64, 2, 2, 2, 16, 32, rope, false), rope, 32), 3);
        assertRefused("CLEX has no stock transformers equivalent", "export", "--model", clex.toString(), "--format", "gguf", "--out", out);
    }

    private static void assertRefused(String message, String... args) {
        CliRunner.Result r = CliRunner.run(args);
        assertEquals(1, r.exitCode(), String.join(" ", args) + "\n" + r.out() + r.err());
        assertTrue(r.err().contains(message), r.err());
    }

    private static double loss(CliRunner.Result r) throws Exception {
        assertEquals(0, r.exitCode(), r.err());
        return ((Number) Json.mapper().readValue(r.out(), Map.class).get("loss")).doubleValue();
    }
}
