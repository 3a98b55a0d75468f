package dev.ropeway.model;

import dev.ropeway.RopewayException;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.rope.RopeScalings;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The shape of a decoder checkpoint, parsed from Hugging Face {@code config.json} (4.x {@code rope_scaling} and
 * 5.x {@code rope_parameters} forms alike).
 *
 * @param slidingWindow attention window in tokens, 0 for full causal attention
 * @param rotaryDim     features of each head that are rotated (head_dim x partial_rotary_factor)
 */
public record ModelConfig(
        Architecture architecture,
        int vocabSize,
        int hiddenSize,
        int intermediateSize,
        int numLayers,
        int numHeads,
        int numKvHeads,
        int headDim,
        int rotaryDim,
        float rmsNormEps,
        long maxPositionEmbeddings,
        boolean tieWordEmbeddings,
        boolean qkvBias,
        boolean outputBias,
        boolean mlpBias,
        long slidingWindow,
        RopeScaling rope,
        Integer bosTokenId,
        Integer eosTokenId,
        String dtype,
        Map<String, Object> raw) {

    public ModelConfig {
        if (numHeads % numKvHeads != 0)
            throw new RopewayException("config.json: num_attention_heads (" + numHeads
                    + ") must be a multiple of num_key_value_heads (" + numKvHeads + ")");
        if (headDim % 2 != 0) throw new RopewayException("config.json: head_dim must be even, got " + headDim);
        raw = Collections.unmodifiableMap(new LinkedHashMap<>(raw));
    }

    /** Parses a config.json map; {@code source} names the file in error messages. */
    public static ModelConfig parse(Map<String, Object> json, String source) {
        ConfigReader c = new ConfigReader(json, source);
        Architecture arch = Architecture.resolve(c.firstString("architectures"), c.string("model_type", null), source);
        int hidden = c.positiveInt("hidden_size");
        int heads = c.positiveInt("num_attention_heads");
        int kvHeads = c.positiveInt("num_key_value_heads", heads);
        if (!c.has("head_dim") && hidden % heads != 0)
            throw new RopewayException(source + ": hidden_size (" + hidden + ") is not divisible by num_attention_heads ("
                    + heads + ") and no head_dim is given");
        int headDim = c.positiveInt("head_dim", hidden / heads);
        double partial = c.positiveDouble("partial_rotary_factor", 1.0);
        if (partial > 1.0) throw new RopewayException(source + ": partial_rotary_factor must be in (0, 1], got " + partial);
        int rotaryDim = (int) (headDim * partial);
        if (rotaryDim < 2 || rotaryDim % 2 != 0)
            throw new RopewayException(source + ": head_dim x partial_rotary_factor = " + rotaryDim + " must be even and at least 2");
        String activation = c.string("hidden_act", "silu");
        if (!activation.equals("silu") && !activation.equals("swish"))
            throw new RopewayException(source + ": hidden_act '" + activation + "' is not supported (only silu)");
        boolean qkvBias, outBias;
        switch (arch) {
            case LLAMA, QWEN3 -> qkvBias = outBias = c.bool("attention_bias", false);
            case QWEN2 -> { qkvBias = true; outBias = false; }
            default -> qkvBias = outBias = false;
        }
        boolean mlpBias = arch == Architecture.LLAMA && c.bool("mlp_bias", false);
        long window = 0;
        if ((arch == Architecture.MISTRAL || arch == Architecture.PHI3) && c.has("sliding_window"))
            window = c.positiveLong("sliding_window");
        if (arch == Architecture.QWEN2 || arch == Architecture.QWEN3) window = qwenWindow(c, source);
        RopeScaling rope;
        try {
            rope = RopeScalings.fromConfig(json, rotaryDim);
        } catch (RopewayException e) {
            throw new RopewayException(source + ": " + e.getMessage(), e);
        }
        String dtype = c.string("torch_dtype", c.string("dtype", "float32"));
        return new ModelConfig(arch, c.positiveInt("vocab_size"), hidden, c.positiveInt("intermediate_size"),
                c.positiveInt("num_hidden_layers"), heads, kvHeads, headDim, rotaryDim,
                (float) c.positiveDouble("rms_norm_eps", 1e-6), c.positiveLong("max_position_embeddings"),
                c.bool("tie_word_embeddings", false), qkvBias, outBias, mlpBias, window, rope,
                c.optionalTokenId("bos_token_id"), c.optionalTokenId("eos_token_id"), dtype, json);
    }

    /**
     * The RoPE method a {@code --rope} spec names, read with this model's context (theta, rotary dimension,
     * max_position_embeddings); the model's own method when {@code spec} is null.
     */
    public RopeScaling ropeOrSpec(String spec) {
        return spec == null ? rope : dev.ropeway.rope.RopeSpec.parse(spec, RopeScalings.context(raw, rotaryDim));
    }

    /** This config with a different RoPE method (for `--rope` experiments). */
    public ModelConfig withRope(RopeScaling newRope) {
        return new ModelConfig(architecture, vocabSize, hiddenSize, intermediateSize, numLayers, numHeads, numKvHeads,
                headDim, rotaryDim, rmsNormEps, maxPositionEmbeddings, tieWordEmbeddings, qkvBias, outputBias, mlpBias,
                slidingWindow, newRope, bosTokenId, eosTokenId, dtype, raw);
    }

    /**
     * Qwen2's and Qwen3's window: with use_sliding_window, layers from max_window_layers on attend within
     * sliding_window tokens and the ones before it attend to everything (transformers' layer_types, which a config
     * may also list itself). Ropeway runs one kind of attention in every layer, so a mix is refused.
     */
    private static long qwenWindow(ConfigReader c, String source) {
        int layers = c.positiveInt("num_hidden_layers");
        java.util.List<String> types = new java.util.ArrayList<>();
        if (c.raw("layer_types") instanceof java.util.List<?> listed) {
            for (Object t : listed) types.add(String.valueOf(t));
        } else if (c.bool("use_sliding_window", false) && c.has("sliding_window")) {
            Object max = c.raw("max_window_layers");
            int from = max instanceof Number n ? n.intValue() : 0;
            for (int i = 0; i < layers; i++) types.add(i >= from ? "sliding_attention" : "full_attention");
        }
        long sliding = types.stream().filter("sliding_attention"::equals).count();
        if (sliding == 0) return 0;
        if (sliding != types.size())
            throw new RopewayException(source + ": " + sliding + " of " + types.size() + " layers use sliding-window "
                    + "attention and the others full attention; Ropeway runs one kind of attention in every layer");
        if (!c.has("sliding_window"))
            throw new RopewayException(source + ": layer_types asks for sliding-window attention but no sliding_window is given");
        return c.positiveLong("sliding_window");
    }

    /** Whether each head's queries and keys are RMS-normed before RoPE (Qwen3's q_norm and k_norm). */
    public boolean qkNorm() { return architecture.normsQueriesAndKeys(); }

    public int qDim() { return numHeads * headDim; }

    public int kvDim() { return numKvHeads * headDim; }

    /** Parameter count implied by the shapes (the tied head counted once). */
    public long parameterCount() {
        long h = hiddenSize, perLayer = 2 * h                           // two norms
                + h * qDim() + 2L * h * kvDim() + (long) qDim() * h   // q, k, v, o
                + 3L * h * intermediateSize;                           // gate, up, down
        if (qkvBias) perLayer += qDim() + 2L * kvDim();
        if (outputBias) perLayer += h;
        if (mlpBias) perLayer += 2L * intermediateSize + h;
        if (qkNorm()) perLayer += 2L * headDim;
        long embed = (long) vocabSize * h;
        return embed + (tieWordEmbeddings ? 0 : embed) + h + numLayers * perLayer;
    }
}
