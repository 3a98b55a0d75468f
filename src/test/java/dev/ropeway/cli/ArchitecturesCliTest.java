package dev.ropeway.cli;

import dev.ropeway.io.Json;
import dev.ropeway.io.WeightStore;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code init --arch} and {@code pretrain --arch}: fresh Mistral, Qwen2 and Qwen3 models, written and trained. */
class ArchitecturesCliTest {

    @Test
    void initWritesEachArchitectureWithItsOwnTensors(@TempDir Path tmp) throws Exception {
        Path ids = tmp.resolve("ids.json");
        Files.writeString(ids, "[[1, 2, 3, 4, 5, 6, 7, 8]]");
        for (String arch : List.of("llama", "mistral", "qwen2", "qwen3")) {
            Path dir = tmp.resolve(arch);
            CliRunner.Result r = CliRunner.run("init", "--preset", "tiny", "--arch", arch, "--out", dir.toString());
            assertEquals(0, r.exitCode(), r.err());
            Map<?, ?> config = Json.readObject(dir.resolve("config.json"));
            assertEquals(arch, config.get("model_type"));
            try (WeightStore w = WeightStore.open(dir)) {
                assertEquals(arch.equals("qwen2"), w.contains("model.layers.1.self_attn.v_proj.bias"), arch);
                assertEquals(arch.equals("qwen3"), w.contains("model.layers.1.self_attn.k_norm.weight"), arch);
                if (arch.equals("qwen3")) assertEquals(1f, w.readFloats("model.layers.1.self_attn.k_norm.weight")[3]);
            }
            CliRunner.Result score = CliRunner.run("score", "--model", dir.toString(), "--ids", ids.toString(), "--json");
            assertEquals(0, score.exitCode(), arch + ": " + score.err());
        }
        CliRunner.Result phi3 = CliRunner.run("init", "--preset", "tiny", "--arch", "phi3", "--out", tmp.resolve("phi3").toString());
        assertEquals(1, phi3.exitCode());
        assertTrue(phi3.err().contains("stacks its projections"), phi3.err());
        assertFalse(Files.exists(tmp.resolve("phi3")));
    }

    private static double loss(String jsonLine) {
        try {
            return ((Number) Json.mapper().readValue(jsonLine, Map.class).get("loss")).doubleValue();
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    @Test
    void qwenModelsPretrainTheirBiasesAndNorms(@TempDir Path tmp) throws Exception {
        Path corpus = PretrainCliTest.corpus(tmp), tok = PretrainCliTest.tokenizer(tmp);
        for (String arch : List.of("qwen2", "qwen3")) {
            Path out = tmp.resolve(arch);
            CliRunner.Result r = CliRunner.run("pretrain", "--arch", arch, "--corpus", corpus.toString(), "--tokenizer",
                    tok.toString(), "--out", out.toString(), "--preset", "tiny", "--hidden", "32", "--ffn", "64", "--layers",
                    "2", "--heads", "2", "--seq", "32", "--batch", "4", "--steps", "8", "--eval-every", "8",
                    "--eval-sequences", "2", "--warmup", "2", "--lr", "3e-3", "--json");
            assertEquals(0, r.exitCode(), arch + ": " + r.err());
            assertEquals(arch, Json.readObject(out.resolve("config.json")).get("model_type"));
            List<Double> losses = Files.readAllLines(out.resolve("metrics.jsonl")).stream().filter(l -> l.contains("\"loss\""))
                    .map(ArchitecturesCliTest::loss).toList();
            assertEquals(8, losses.size());
            assertTrue(losses.get(7) < losses.get(0) - 0.5, arch + " learns: " + losses);
            // The architecture's own parameters were trained: the biases left zero, the norms left one.
            String name = arch.equals("qwen2") ? "model.layers.0.self_attn.q_proj.bias" : "model.layers.0.self_attn.q_norm.weight";
            float start = arch.equals("qwen2") ? 0f : 1f;
            try (WeightStore w = WeightStore.open(out)) {
                float moved = 0;
                for (float v : w.readFloats(name)) moved = Math.max(moved, Math.abs(v - start));
                assertTrue(moved > 1e-4, arch + ": " + name + " moved by at most " + moved);
            }
        }
    }
}
