package dev.ropeway.cli;

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

    private static double loss(CliRunner.Result r) throws Exception {
        assertEquals(0, r.exitCode(), r.err());
        return ((Number) Json.mapper().readValue(r.out(), Map.class).get("loss")).doubleValue();
    }
}
