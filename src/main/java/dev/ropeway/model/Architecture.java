package dev.ropeway.model;

import dev.ropeway.RopewayException;

import java.util.Arrays;
import java.util.stream.Collectors;

/**
 * The decoder families Ropeway runs. They share one transformer (pre-norm, RMSNorm, rotary attention with
 * grouped-query heads, SwiGLU MLP) and differ in which projections carry biases, where a sliding window comes from,
 * how the checkpoint stores the projections (Phi-3 stacks q, k and v in one matrix, and gate and up in another), and
 * whether each head's queries and keys are RMS-normed before the rotation (Qwen3).
 */
public enum Architecture {
    LLAMA("LlamaForCausalLM", "llama"),
    MISTRAL("MistralForCausalLM", "mistral"),
    QWEN2("Qwen2ForCausalLM", "qwen2"),
    QWEN3("Qwen3ForCausalLM", "qwen3"),
    PHI3("Phi3ForCausalLM", "phi3");

    private final String hfClass;
    private final String modelType;

    Architecture(String hfClass, String modelType) {
        this.hfClass = hfClass;
        this.modelType = modelType;
    }

    public String hfClass() { return hfClass; }

    public String modelType() { return modelType; }

    /** Whether checkpoints store {@code qkv_proj} and {@code gate_up_proj} (stacked) instead of the separate matrices. */
    public boolean stacksProjections() { return this == PHI3; }

    /** Whether each head's queries and keys go through an RMSNorm of their own ({@code q_norm}, {@code k_norm}) before RoPE. */
    public boolean normsQueriesAndKeys() { return this == QWEN3; }

    /** Resolves from the config's "architectures" entry, falling back to "model_type". */
    public static Architecture resolve(String hfClass, String modelType, String source) {
        for (Architecture a : values()) if (a.hfClass.equals(hfClass)) return a;
        if (hfClass == null) for (Architecture a : values()) if (a.modelType.equals(modelType)) return a;
        String known = Arrays.stream(values()).map(Architecture::hfClass).collect(Collectors.joining(", "));
        String what = hfClass != null ? "architecture '" + hfClass + "'" : "model_type '" + modelType + "'";
        throw new RopewayException(source + ": unsupported " + what + " (supported: " + known + ")");
    }
}
