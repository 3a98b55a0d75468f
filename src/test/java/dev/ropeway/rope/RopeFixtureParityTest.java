package dev.ropeway.rope;

import dev.ropeway.testutil.FixtureFiles;
import dev.ropeway.testutil.FixtureFiles.F32Tensor;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every Hugging Face fixture case, read from its 5.x config.json and from 4.x rewrites of it, must give the
 * inverse frequencies, attention scaling and cos/sin tables transformers computed.
 */
class RopeFixtureParityTest {

    static Stream<Arguments> configForms() {
        List<Path> folders = FixtureFiles.caseFolders("llama-", "qwen2-");
        assertFalse(folders.isEmpty(), "no llama-*/qwen2-* fixtures under " + FixtureFiles.ROOT.toAbsolutePath());
        List<Arguments> out = new ArrayList<>();
        for (Path folder : folders) {
            Map<String, Object> config = FixtureFiles.readJson(folder.resolve("config.json"));
            String name = folder.getFileName().toString();
            out.add(Arguments.of(name, "5.x rope_parameters", config));
            out.add(Arguments.of(name, "4.x rope_scaling.type", legacyForm(config, "type")));
            out.add(Arguments.of(name, "4.x rope_scaling.rope_type", legacyForm(config, "rope_type")));
            if (isDefault(config)) {
                Map<String, Object> nulled = legacyForm(config, "type");
                nulled.put("rope_scaling", null);
                out.add(Arguments.of(name, "4.x rope_scaling null", nulled));
            }
        }
        return out.stream();
    }

    @SuppressWarnings("unchecked")
    private static boolean isDefault(Map<String, Object> config) {
        return "default".equals(((Map<String, Object>) config.get("rope_parameters")).get("rope_type"));
    }

    /** The same settings as transformers 4.x wrote them: rope_scaling without rope_theta, rope_theta at top level. */
    @SuppressWarnings("unchecked")
    private static Map<String, Object> legacyForm(Map<String, Object> config, String typeKey) {
        Map<String, Object> legacy = new HashMap<>(config);
        Map<String, Object> scaling = new LinkedHashMap<>((Map<String, Object>) legacy.remove("rope_parameters"));
        legacy.put("rope_theta", scaling.remove("rope_theta"));
        scaling.put(typeKey, scaling.remove("rope_type"));
        legacy.put("rope_scaling", scaling);
        return legacy;
    }

    private static int rotaryDim(Map<String, Object> config) {
        if (config.get("head_dim") instanceof Number n) return n.intValue();
        return ((Number) config.get("hidden_size")).intValue() / ((Number) config.get("num_attention_heads")).intValue();
    }

    @SuppressWarnings("unchecked")
    @ParameterizedTest(name = "{0} from {1}")
    @MethodSource("configForms")
    void matchesTransformersTables(String caseName, String form, Map<String, Object> config) {
        Path folder = FixtureFiles.ROOT.resolve(caseName);
        Map<String, Object> reference = FixtureFiles.readJson(folder.resolve("reference.json"));
        Path tensors = folder.resolve("reference.safetensors");
        int seq = ((List<Object>) ((List<Object>) reference.get("input_ids")).get(0)).size();
        int d = rotaryDim(config);

        RopeScaling rope = RopeScalings.fromConfig(config, d);

        float[] inv = rope.inverseFrequencies(seq);
        float[] refInv = FixtureFiles.readF32(tensors, "rope.inv_freq").values();
        assertEquals(refInv.length, inv.length, "number of rotary pairs");
        double maxRel = 0;
        int maxUlps = 0;
        for (int j = 0; j < inv.length; j++) {
            maxRel = Math.max(maxRel, Math.abs(inv[j] - refInv[j]) / Math.abs(refInv[j]));
            maxUlps = Math.max(maxUlps, Math.abs(Float.floatToIntBits(inv[j]) - Float.floatToIntBits(refInv[j])));
        }
        assertTrue(maxRel <= 1e-6, "inv_freq relative error " + maxRel);
        // Every case is reproduced bit for bit; a last-ulp drift (e.g. a float32-rounded exponent in the dynamic
        // base) stays far inside 1e-6 and would only show here.
        assertEquals(0, maxUlps, "inv_freq differs from transformers by up to " + maxUlps + " ulp");

        double refScaling = ((Number) reference.get("attention_scaling")).doubleValue();
        assertEquals(refScaling, rope.attentionScaling(), 1e-6, "attention_scaling");

        F32Tensor refCos = FixtureFiles.readF32(tensors, "rope.cos");
        F32Tensor refSin = FixtureFiles.readF32(tensors, "rope.sin");
        assertArrayEquals(new long[] {seq, d}, refCos.shape(), "rope.cos shape");
        float[][] table = cosSin(inv, rope.attentionScaling(), seq);
        double maxCos = 0, maxSin = 0;
        for (int i = 0; i < seq * d; i++) {
            maxCos = Math.max(maxCos, Math.abs(table[0][i] - refCos.values()[i]));
            maxSin = Math.max(maxSin, Math.abs(table[1][i] - refSin.values()[i]));
        }
        assertTrue(maxCos <= 1e-5, "cos max abs error " + maxCos);
        assertTrue(maxSin <= 1e-5, "sin max abs error " + maxSin);
    }

    /** HF layout: row p is cat(freqs, freqs) with freqs[j] = (float) p * inv[j], times the attention scaling. */
    private static float[][] cosSin(float[] inv, float scale, int seq) {
        int half = inv.length, d = 2 * half;
        float[] cos = new float[seq * d], sin = new float[seq * d];
        for (int p = 0; p < seq; p++) {
            for (int j = 0; j < half; j++) {
                float angle = (float) p * inv[j];
                float c = (float) Math.cos(angle) * scale, s = (float) Math.sin(angle) * scale;
                cos[p * d + j] = c;
                cos[p * d + j + half] = c;
                sin[p * d + j] = s;
                sin[p * d + j + half] = s;
            }
        }
        return new float[][] {cos, sin};
    }
}
