package dev.ropeway.rope;

import dev.ropeway.RopewayException;
import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** Reading config.json maps: both forms, transformers' standardisation, and the error messages. */
class RopeScalingsTest {

    private static Map<String, Object> config(Object... keyValues) {
        Map<String, Object> m = new HashMap<>();
        m.put("max_position_embeddings", 4096);
        for (int i = 0; i < keyValues.length; i += 2) m.put((String) keyValues[i], keyValues[i + 1]);
        return m;
    }

    private static Map<String, Object> map(Object... keyValues) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < keyValues.length; i += 2) m.put((String) keyValues[i], keyValues[i + 1]);
        return m;
    }

    @Test
    void noRopeSettingsMeansDefaultWithTheta10000() {
        assertEquals(new DefaultRope(10000, 64), RopeScalings.fromConfig(config(), 64));
        assertEquals(new DefaultRope(1e6, 64), RopeScalings.fromConfig(config("rope_theta", 1000000, "rope_scaling", null), 64));
    }

    @Test
    void bothConfigFormsGiveTheSameMethod() {
        LinearRope expected = new LinearRope(5e5, 64, 4);
        assertEquals(expected, RopeScalings.fromConfig(
                config("rope_parameters", map("rope_type", "linear", "rope_theta", 500000.0, "factor", 4.0)), 64));
        assertEquals(expected, RopeScalings.fromConfig(
                config("rope_theta", 500000L, "rope_scaling", map("type", "linear", "factor", 4)), 64));
        assertEquals(expected, RopeScalings.fromConfig(
                config("rope_theta", 500000, "rope_scaling", map("rope_type", "linear", "factor", 4)), 64));
    }

    @Test
    void ropeTypeWinsOverLegacyType() {
        RopeScaling rope = RopeScalings.fromConfig(
                config("rope_scaling", map("type", "linear", "rope_type", "dynamic", "factor", 2)), 64);
        assertEquals(new DynamicNtkRope(10000, 64, 2, 4096), rope);
    }

    @Test
    void originalContextDefaultsToMaxPositionsAndTopLevelWins() {
        Map<String, Object> llama3 = map("rope_type", "llama3", "factor", 8, "low_freq_factor", 1,
                "high_freq_factor", 4);
        assertEquals(4096, ((Llama3Rope) RopeScalings.fromConfig(config("rope_scaling", llama3), 128))
                .originalMaxPositionEmbeddings());
        llama3.put("original_max_position_embeddings", 8192);
        assertEquals(8192, ((Llama3Rope) RopeScalings.fromConfig(config("rope_scaling", llama3), 128))
                .originalMaxPositionEmbeddings());
        assertEquals(2048, ((Llama3Rope) RopeScalings.fromConfig(
                config("rope_scaling", llama3, "original_max_position_embeddings", 2048), 128))
                .originalMaxPositionEmbeddings());
    }

    @Test
    void contextReadsTheModelsTheta() {
        assertEquals(new RopeContext(64, 4096, 0, 1e6), RopeScalings.context(
                config("rope_parameters", map("rope_type", "default", "rope_theta", 1e6)), 64));
        assertEquals(new RopeContext(64, 4096, 8192, 5e5), RopeScalings.context(
                config("rope_theta", 5e5, "original_max_position_embeddings", 8192), 64));
    }

    @Test
    void unknownRopeTypeListsTheKnownOnes() {
        RopewayException e = assertThrows(RopewayException.class,
                () -> RopeScalings.fromConfig(config("rope_scaling", map("type", "xyz")), 64));
        assertEquals("unknown rope_type 'xyz' (known: default, linear, dynamic, yarn, llama3, longrope, ntk, e2, clex)",
                e.getMessage());
    }

    @Test
    void missingOrInvalidKeysNameTypeKeyAndExpectation() {
        assertMessage("rope_type 'linear' needs 'factor' (a number > 0)", map("rope_type", "linear"));
        assertMessage("rope_type 'dynamic' needs 'factor' (a number > 0), got -2.0",
                map("rope_type", "dynamic", "factor", -2));
        assertMessage("rope_type 'yarn' needs 'factor' (a number > 0), got 'four'",
                map("rope_type", "yarn", "factor", "four"));
        assertMessage("rope_type 'llama3' needs 'low_freq_factor' (a number > 0)",
                map("rope_type", "llama3", "factor", 8, "high_freq_factor", 4));
        assertMessage("rope_type 'yarn' needs 'original_max_position_embeddings' (a whole number > 0), got 2048.5",
                map("rope_type", "yarn", "factor", 2, "original_max_position_embeddings", 2048.5));
        assertMessage("rope_type 'yarn' needs 'truncate' (true or false), got 'yes'",
                map("rope_type", "yarn", "factor", 2, "truncate", "yes"));
        assertMessage("rope_type 'default' needs 'rope_theta' (a number > 0), got 0.0",
                map("rope_type", "default", "rope_theta", 0));
    }

    private static void assertMessage(String expected, Map<String, Object> parameters) {
        RopewayException e = assertThrows(RopewayException.class,
                () -> RopeScalings.fromConfig(config("rope_scaling", parameters), 64));
        assertEquals(expected, e.getMessage());
    }

    @Test
    void configWithoutMaxPositionsOrWithPerLayerParametersIsRejected() {
        Map<String, Object> noMax = config();
        noMax.remove("max_position_embeddings");
        assertEquals("config.json needs 'max_position_embeddings' (a whole number > 0)",
                assertThrows(RopewayException.class, () -> RopeScalings.fromConfig(noMax, 64)).getMessage());
        Map<String, Object> perLayer = config("rope_parameters",
                map("full_attention", map("rope_type", "default"), "sliding_attention", map("rope_type", "default")));
        assertThrows(RopewayException.class, () -> RopeScalings.fromConfig(perLayer, 64));
    }
}
