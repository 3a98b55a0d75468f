package dev.ropeway.rope;

import java.util.Map;

/**
 * A RoPE method: given the length of the sequence being processed, it yields the inverse frequencies and
 * the attention scaling. Implementations are small immutable records, one per method, matching
 * Hugging Face transformers 5.x bit for bit in float32.
 */
public sealed interface RopeScaling
        permits DefaultRope, LinearRope, DynamicNtkRope, StaticNtkRope, YarnRope, Llama3Rope, LongRope, E2Rope, ClexRope {

    /** The rope_type name as Hugging Face writes it ("default", "linear", "dynamic", "yarn", "llama3", "longrope", ...). */
    String type();

    /** rope_theta (the base). */
    double theta();

    /** Rotary dimension d; there are d/2 inverse frequencies. */
    int rotaryDim();

    /**
     * Inverse frequencies for a forward pass whose largest position id is {@code seqLen - 1}. Methods whose
     * frequencies do not depend on length (most of them) ignore it; dynamic NTK and LongRoPE use it as HF does.
     */
    float[] inverseFrequencies(long seqLen);

    /** Factor multiplying cos and sin (1 for most methods). */
    default float attentionScaling() {
        return 1f;
    }

    /** The parameters as a Hugging Face 5.x {@code rope_parameters} map (including rope_type and rope_theta). */
    Map<String, Object> toParameters();

    /** A plan for token rows with the given positions, whose sequence length (max position + 1) is {@code seqLen}. */
    default RopePlan plan(float[] positions, long seqLen) {
        return new RopePlan(inverseFrequencies(seqLen), positions, attentionScaling());
    }
}
