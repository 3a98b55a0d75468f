package dev.ropeway.model;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Json;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ModelConfigTest {
    static final Path FIXTURES = Path.of("../shared/fixtures");

    static Map<String, Object> fixtureConfig(String name) {
        return Json.readObject(FIXTURES.resolve(name).resolve("config.json"));
    }

    @Test
    void readsLlamaQwenAndMistralShapes() {
        ModelConfig llama = ModelConfig.parse(fixtureConfig("llama-headdim"), "llama-headdim");
        assertEquals(Architecture.LLAMA, llama.architecture());
        assertEquals(64, llama.headDim());
        assertEquals(96, llama.hiddenSize());
        assertEquals(128, llama.qDim());
        assertEquals(64, llama.kvDim());
        assertFalse(llama.qkvBias());

        ModelConfig qwen = ModelConfig.parse(fixtureConfig("qwen2-bias"), "qwen2-bias");
        assertEquals(Architecture.QWEN2, qwen.architecture());
        assertTrue(qwen.qkvBias());
        assertFalse(qwen.outputBias());
        assertEquals(0, qwen.slidingWindow());

        Map<String, Object> mistral = fixtureConfig("llama-default");
        mistral.put("architectures", List.of("MistralForCausalLM"));
        mistral.put("model_type", "mistral");
        mistral.put("sliding_window", 4096);
        ModelConfig m = ModelConfig.parse(mistral, "mistral");
        assertEquals(Architecture.MISTRAL, m.architecture());
        assertEquals(4096, m.slidingWindow());
        assertFalse(m.qkvBias());
    }

    @Test
    void tiedEmbeddingsAreCountedOnce() {
        ModelConfig tied = ModelConfig.parse(fixtureConfig("llama-tied"), "t");
        ModelConfig untied = ModelConfig.parse(fixtureConfig("llama-default"), "u");
        assertEquals(untied.parameterCount() - 320L * 64, tied.parameterCount());
    }

    @Test
    void badConfigsNameTheKey() {
        Map<String, Object> c = fixtureConfig("llama-default");
        c.put("num_key_value_heads", 3);
        var e = assertThrows(RopewayException.class, () -> ModelConfig.parse(c, "cfg"));
        assertTrue(e.getMessage().contains("num_key_value_heads"), e.getMessage());

        Map<String, Object> c2 = fixtureConfig("llama-default");
        c2.remove("hidden_size");
        e = assertThrows(RopewayException.class, () -> ModelConfig.parse(c2, "cfg"));
        assertTrue(e.getMessage().contains("'hidden_size'"), e.getMessage());

        Map<String, Object> c3 = fixtureConfig("llama-default");
        c3.put("vocab_size", "many");
        e = assertThrows(RopewayException.class, () -> ModelConfig.parse(c3, "cfg"));
        assertTrue(e.getMessage().contains("vocab_size") && e.getMessage().contains("many"), e.getMessage());

        Map<String, Object> c4 = fixtureConfig("llama-default");
        c4.put("hidden_act", "gelu");
        e = assertThrows(RopewayException.class, () -> ModelConfig.parse(c4, "cfg"));
        assertTrue(e.getMessage().contains("gelu"), e.getMessage());

        Map<String, Object> c5 = fixtureConfig("llama-default");
        c5.put("architectures", List.of("FalconForCausalLM"));
        e = assertThrows(RopewayException.class, () -> ModelConfig.parse(c5, "cfg"));
        assertTrue(e.getMessage().contains("FalconForCausalLM"), e.getMessage());
    }
}
