package dev.ropeway.model;

import dev.ropeway.io.Json;
import dev.ropeway.io.SafeTensors;
import dev.ropeway.rope.RopePlan;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.tensor.RotaryTable;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The production path (config.json -> RoPE method -> plan -> the backend's rotary table) against transformers'
 * {@code rope.inv_freq}, {@code rope.cos} and {@code rope.sin}, in both config forms.
 */
class RotaryTableParityTest {

    @TestFactory
    Stream<DynamicTest> rotaryTablesMatchTransformers() throws IOException {
        List<DynamicTest> tests = new ArrayList<>();
        for (Path dir : FixtureParityTest.cases()) {
            Map<String, Object> modern = Json.readObject(dir.resolve("config.json"));
            tests.add(DynamicTest.dynamicTest(dir.getFileName() + " (rope_parameters)", () -> check(dir, modern)));
            tests.add(DynamicTest.dynamicTest(dir.getFileName() + " (rope_scaling)", () -> check(dir, FixtureParityTest.legacyForm(modern))));
        }
        return tests.stream();
    }

    private static void check(Path dir, Map<String, Object> configMap) {
        ModelConfig c = ModelConfig.parse(configMap, dir + "/config.json");
        Map<String, Object> ref = Json.readObject(dir.resolve("reference.json"));
        int seq = ((List<?>) ((List<?>) ref.get("input_ids")).getFirst()).size();
        float[] positions = new float[seq];
        for (int i = 0; i < seq; i++) positions[i] = i;
        RopePlan plan = c.rope().plan(positions, seq);
        assertEquals(((Number) ref.get("attention_scaling")).doubleValue(), plan.attentionScale(), 1e-6, "attention scaling");
        try (SafeTensors refs = SafeTensors.open(dir.resolve("reference.safetensors"));
             CpuBackend backend = new CpuBackend(1);
             RotaryTable table = backend.rotaryTable(plan.positions(), plan.invFreq(), plan.attentionScale())) {
            float[] inv = refs.readFloats("rope.inv_freq");
            assertEquals(inv.length, plan.invFreq().length);
            for (int j = 0; j < inv.length; j++)
                assertTrue(Math.abs(plan.invFreq()[j] - inv[j]) <= 1e-6 * Math.abs(inv[j]),
                        "inv_freq[" + j + "] " + plan.invFreq()[j] + " vs " + inv[j]);
            int half = inv.length, d = 2 * half;
            float[] cos = new float[seq * half], sin = new float[seq * half];
            backend.download(table.cos(), 0, cos, 0, cos.length);
            backend.download(table.sin(), 0, sin, 0, sin.length);
            float[] refCos = refs.readFloats("rope.cos"), refSin = refs.readFloats("rope.sin");
            double worst = 0;
            for (int p = 0; p < seq; p++)
                for (int j = 0; j < d; j++) {
                    worst = Math.max(worst, Math.abs(cos[p * half + j % half] - refCos[p * d + j]));
                    worst = Math.max(worst, Math.abs(sin[p * half + j % half] - refSin[p * d + j]));
                }
            assertTrue(worst <= 1e-5, dir.getFileName() + ": cos/sin max abs error " + worst);
        }
    }
}
