package dev.ropeway.rope;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;
import java.util.OptionalDouble;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** toParameters() is a rope_parameters map that reads back to the same method, directly and through JSON. */
class RopeRoundTripTest {
    private static final RopeContext CTX = new RopeContext(8, 4096, 0, 10000);

    private static List<RopeScaling> everyType() {
        return List.of(
                new DefaultRope(5e5, 8),
                new LinearRope(1e4, 8, 4),
                new DynamicNtkRope(1e4, 8, 2, 4096),
                new StaticNtkRope(1e4, 8, 4),
                YarnRope.of(1e6, 8, 4, 1024),
                new YarnRope(1e4, 8, 40, 4096, 16, 2, OptionalDouble.of(1.1), OptionalDouble.of(0.707),
                        OptionalDouble.of(0.707), false),
                new Llama3Rope(5e5, 8, 8, 1, 4, 8192),
                new LongRope(1e4, 8, List.of(1.0, 1.1, 1.2, 1.3), List.of(2.0, 3.0, 4.0, 5.5), 32, 128,
                        OptionalDouble.empty()),
                new LongRope(1e4, 8, List.of(1.0, 1.1, 1.2, 1.3), List.of(2.0, 3.0, 4.0, 5.5), 32, 128,
                        OptionalDouble.of(1.25)));
    }

    @Test
    void parametersReadBackToAnEqualMethod() throws Exception {
        ObjectMapper json = new ObjectMapper();
        for (RopeScaling rope : everyType()) {
            Map<String, Object> parameters = rope.toParameters();
            assertEquals(rope.type(), parameters.get("rope_type"));
            assertEquals(rope, RopeScalings.fromParameters(parameters, CTX), rope.type());
            Map<String, Object> throughJson = json.readValue(json.writeValueAsString(parameters),
                    new TypeReference<Map<String, Object>>() {
                    });
            assertEquals(rope, RopeScalings.fromParameters(throughJson, CTX), rope.type() + " through JSON");
        }
    }

    @Test
    void parametersUseTransformersKeys() {
        assertEquals(Map.of("rope_type", "llama3", "rope_theta", 5e5, "factor", 8.0, "low_freq_factor", 1.0,
                        "high_freq_factor", 4.0, "original_max_position_embeddings", 8192L),
                new Llama3Rope(5e5, 8, 8, 1, 4, 8192).toParameters());
        assertEquals(Map.of("rope_type", "yarn", "rope_theta", 1e4, "factor", 4.0,
                        "original_max_position_embeddings", 1024L, "beta_fast", 32.0, "beta_slow", 1.0),
                YarnRope.of(1e4, 8, 4, 1024).toParameters());
    }
}
