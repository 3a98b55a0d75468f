package dev.ropeway.rope;

import dev.ropeway.RopewayException;
import org.junit.jupiter.api.Test;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalDouble;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

class LongRopeTest {
    private static final List<Double> SHORT = Collections.nCopies(48, 1.0);
    private static final List<Double> LONG = IntStream.range(0, 48).mapToObj(i -> 1.0 + i).toList();

    /** Phi-3-mini-128k: d 96, original 4096, max_position_embeddings 131072, factor left out. */
    private static Map<String, Object> phi3Config() {
        Map<String, Object> scaling = new LinkedHashMap<>();
        scaling.put("type", "longrope");
        scaling.put("short_factor", SHORT);
        scaling.put("long_factor", LONG);
        Map<String, Object> config = new LinkedHashMap<>();
        config.put("max_position_embeddings", 131072);
        config.put("original_max_position_embeddings", 4096);
        config.put("rope_theta", 10000.0);
        config.put("rope_scaling", scaling);
        return config;
    }

    @Test
    void phi3MiniAttentionFactor() {
        LongRope rope = (LongRope) RopeScalings.fromConfig(phi3Config(), 96);
        assertEquals(32.0, rope.factor());
        assertEquals(4096, rope.originalMaxPositionEmbeddings());
        assertEquals(1.190238, rope.resolvedAttentionFactor(), 5e-7);
    }

    @Test
    void longFactorsOnlyBeyondTheOriginalContext() {
        LongRope rope = new LongRope(1e4, 96, SHORT, LONG, 32, 4096, OptionalDouble.empty());
        float[] plain = new DefaultRope(1e4, 96).inverseFrequencies(1);
        assertArrayEquals(plain, rope.inverseFrequencies(4096), "short factors of 1 leave plain RoPE");
        float[] longInv = rope.inverseFrequencies(4097);
        float[] powers = RopeMath.basePowers(1e4, 96);
        for (int j = 0; j < 48; j++) assertEquals(1f / ((float) (1.0 + j) * powers[j]), longInv[j]);
    }

    @Test
    void attentionFactorIsOneWithoutExtensionAndExplicitWins() {
        assertEquals(1f, new LongRope(1e4, 96, SHORT, LONG, 1, 4096, OptionalDouble.empty()).attentionScaling());
        assertEquals(1.5f, new LongRope(1e4, 96, SHORT, LONG, 32, 4096, OptionalDouble.of(1.5)).attentionScaling());
    }

    @Test
    void legacyPhi3NamesMeanLongRope() {
        for (String legacy : List.of("su", "yarn")) {
            Map<String, Object> config = phi3Config();
            @SuppressWarnings("unchecked")
            Map<String, Object> scaling = (Map<String, Object>) config.get("rope_scaling");
            scaling.put("type", legacy);
            assertEquals("longrope", RopeScalings.fromConfig(config, 96).type(), legacy);
        }
    }

    @Test
    void topLevelOriginalContextWinsOverTheParameters() {
        Map<String, Object> config = phi3Config();
        @SuppressWarnings("unchecked")
        Map<String, Object> scaling = (Map<String, Object>) config.get("rope_scaling");
        scaling.put("original_max_position_embeddings", 2048);
        assertEquals(4096, ((LongRope) RopeScalings.fromConfig(config, 96)).originalMaxPositionEmbeddings());
    }

    @Test
    @SuppressWarnings("unchecked")
    void factorListsMustHaveOneEntryPerPair() {
        RopewayException e = assertThrows(RopewayException.class,
                () -> new LongRope(1e4, 96, SHORT.subList(0, 47), LONG, 32, 4096, OptionalDouble.empty()));
        assertEquals("rope_type 'longrope' needs 'short_factor' (a list of 48 numbers > 0, one per rotary pair), "
                + "got 47 numbers", e.getMessage());
        Map<String, Object> config = phi3Config();
        ((Map<String, Object>) config.get("rope_scaling")).remove("long_factor");
        e = assertThrows(RopewayException.class, () -> RopeScalings.fromConfig(config, 96));
        assertEquals("rope_type 'longrope' needs 'long_factor' (a list of 48 numbers > 0, one per rotary pair)",
                e.getMessage());
    }
}
