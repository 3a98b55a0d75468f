package dev.ropeway.model;

import dev.ropeway.rope.DefaultRope;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.tensor.DType;
import dev.ropeway.tensor.InstrumentedBackend;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.Map;
import java.util.OptionalLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The training pass's memory plan against what it allocates, and the recomputation choice made from it. */
class TrainingMemoryTest {
    static CpuBackend cpu;

    @BeforeAll
    static void open() { cpu = new CpuBackend(); }

    @AfterAll
    static void close() { cpu.close(); }

    static ModelConfig config(String type, boolean mlpBias) {
        Map<String, Object> json = CheckpointWriter.llamaConfig(96, 48, 80, 3, 6, 2, 8, 256, new DefaultRope(10000, 8), false);
        json.put("model_type", type);
        json.put("architectures", java.util.List.of(switch (type) {
            case "qwen2" -> "Qwen2ForCausalLM";
            case "qwen3" -> "Qwen3ForCausalLM";
            default -> "LlamaForCausalLM";
        }));
        if (mlpBias) json.put("mlp_bias", true);
        ModelConfig c = ModelConfig.parse(json, "test");
        assertEquals(type.equals("qwen2"), c.qkvBias(), type);
        assertEquals(type.equals("qwen3"), c.qkNorm(), type);
        assertEquals(mlpBias, c.mlpBias(), type);
        return c;
    }

    @Test
    void thePlanIsWhatAPassAllocates() {
        // GQA without biases, Qwen2's q/k/v biases, and MLP biases (which keep the gate and up activations float32 in
        // mixed precision); logits in blocks of 2 rows and in one block; float32 and bfloat16 operands; attention's
        // operands kept as float32 and narrower (16-bit: the planned bytes are the same for float16 and bfloat16, and
        // this backend stores bfloat16).
        for (ModelConfig c : new ModelConfig[] {config("llama", false), config("qwen2", false), config("llama", true),
                config("qwen3", false)})
            for (long blockFloats : new long[] {200, 1L << 22})
                for (DType operands : new DType[] {DType.F32, DType.BF16})
                    for (DType attention : new DType[] {DType.F32, DType.BF16})
                        for (boolean recompute : new boolean[] {false, true}) {
                            InstrumentedBackend counted = InstrumentedBackend.of(cpu).blockFloats(blockFloats)
                                    .attentionOperandType(attention);
                            Backend b = counted.backend();
                            try (TrainableModel model = TrainableModel.random(cpu, c, 1)) {
                                try (TrainingPass pass = new TrainingPass(b, c, model.weights(), model.gradientViews(), 3,
                                        10, recompute, operands)) {
                                    assertEquals(operands == DType.BF16, pass.mixedPrecision());
                                }
                            }
                            TrainingPass.Memory plan = TrainingPass.Memory.of(c, 3, 10, operands, attention, blockFloats);
                            String what = c.architecture() + " mlpBias=" + c.mlpBias() + " block " + blockFloats + " "
                                    + operands + " attention " + attention + " recompute=" + recompute;
                            assertEquals(recompute ? plan.recomputing() : plan.keeping(), counted.allocatedBytes(), what);
                            // Planned for the backend: its operand types (this one's products are float32).
                            assertEquals(TrainingPass.Memory.of(c, 3, 10, DType.F32, attention, blockFloats),
                                    TrainingPass.Memory.of(b, c, 3, 10), what);
                            assertTrue(plan.recomputing() < plan.keeping(), what);
                        }
    }

    @Test
    void autoKeepsActivationsWhenTheyFitAndRecomputesWhenTheyDoNot() {
        TrainingPass.Memory m = new TrainingPass.Memory(8L << 30, 2L << 30);
        TrainingPass.Decision roomy = m.decide(Recompute.AUTO, OptionalLong.of(40L << 30));
        assertFalse(roomy.recompute());
        assertTrue(roomy.explanation().contains("8.00 GiB") && roomy.explanation().contains("40.00 GiB available"),
                roomy.explanation());

        // 8 GiB plus the ops' reserve (a sixteenth, and 256 MiB) does not fit in 8.5 GiB; 2 GiB does.
        TrainingPass.Decision tight = m.decide(Recompute.AUTO, OptionalLong.of(17L << 29));
        assertTrue(tight.recompute());
        assertTrue(tight.explanation().contains("8.00 GiB with 8.50 GiB available")
                && tight.explanation().contains("recomputing takes 2.00 GiB")
                && !tight.explanation().contains("still more"), tight.explanation());

        TrainingPass.Decision short_ = m.decide(Recompute.AUTO, OptionalLong.of(1L << 30));
        assertTrue(short_.recompute());
        assertTrue(short_.explanation().contains("still more than is free"), short_.explanation());

        assertFalse(m.decide(Recompute.AUTO, OptionalLong.empty()).recompute(), "unknown memory: keep them");
        assertTrue(m.decide(Recompute.ON, OptionalLong.of(40L << 30)).recompute(), "asked for");
        assertFalse(m.decide(Recompute.OFF, OptionalLong.of(1L << 30)).recompute(), "asked for");
    }

    @Test
    void settingsParse() {
        assertEquals(Recompute.AUTO, Recompute.parse("auto"));
        assertEquals(Recompute.ON, Recompute.parse("ON"));
        assertEquals(Recompute.ON, Recompute.parse("true"));
        assertEquals(Recompute.OFF, Recompute.parse(" off "));
        var e = org.junit.jupiter.api.Assertions.assertThrows(dev.ropeway.RopewayException.class,
                () -> Recompute.parse("sometimes"));
        assertTrue(e.getMessage().contains("'sometimes'") && e.getMessage().contains("auto, on or off"), e.getMessage());
    }
}
