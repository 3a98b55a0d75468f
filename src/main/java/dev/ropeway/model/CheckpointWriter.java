package dev.ropeway.model;

import dev.ropeway.RopewayException;
import dev.ropeway.io.CheckpointException;
import dev.ropeway.io.Json;
import dev.ropeway.io.SafeTensors;
import dev.ropeway.io.SafeTensorsWriter;
import dev.ropeway.io.TensorInfo;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.tensor.DType;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.function.BiConsumer;

/**
 * Writes Llama checkpoints in the Hugging Face layout: {@code config.json} (carrying the RoPE settings in both the
 * 5.x {@code rope_parameters} and the 4.x {@code rope_scaling} + {@code rope_theta} forms, so either generation of
 * transformers loads it) and {@code model.safetensors}.
 */
public final class CheckpointWriter {
    private CheckpointWriter() {}

    /** The config.json map of a Llama with the given sizes and RoPE method. */
    /**
     * {@link #llamaConfig} as a config.json of another architecture whose checkpoints keep separate projections
     * (Mistral without a sliding window, Qwen2 with its query, key and value biases, Qwen3 with its query and key
     * norms), with the keys and defaults transformers writes for it.
     */
    public static Map<String, Object> config(Architecture arch, int vocab, int hidden, int ffn, int layers, int heads,
                                             int kvHeads, int headDim, long maxPositions, RopeScaling rope, boolean tied) {
        requireWritable(arch);
        Map<String, Object> c = llamaConfig(vocab, hidden, ffn, layers, heads, kvHeads, headDim, maxPositions, rope, tied);
        c.put("architectures", List.of(arch.hfClass()));
        c.put("model_type", arch.modelType());
        switch (arch) {
            case MISTRAL -> {
                c.remove("attention_bias");
                c.remove("mlp_bias");
                c.put("sliding_window", null);   // transformers' default for Mistral is 4096; null is none
            }
            case QWEN2, QWEN3 -> {
                if (arch == Architecture.QWEN2) c.remove("attention_bias");   // Qwen2 always has q, k and v biases
                c.remove("mlp_bias");
                c.put("rms_norm_eps", 1e-6);
                c.put("use_sliding_window", false);
                c.put("sliding_window", null);
            }
            default -> { }
        }
        return c;
    }

    /** The architecture a fresh checkpoint of {@code modelType} (llama, mistral, qwen2 or qwen3) has. */
    public static Architecture freshArchitecture(String modelType) {
        for (Architecture a : Architecture.values()) {
            if (a.modelType().equals(modelType.toLowerCase(Locale.ROOT))) return requireWritable(a);
        }
        throw new RopewayException("unknown architecture '" + modelType + "' (llama, mistral, qwen2, qwen3)");
    }

    private static Architecture requireWritable(Architecture arch) {
        if (arch.stacksProjections())
            throw new RopewayException("a fresh checkpoint is llama, mistral, qwen2 or qwen3, not " + arch.modelType() + " ("
                    + arch.hfClass() + " stacks its projections; its checkpoints are read and fine-tuned, not created)");
        return arch;
    }

    public static Map<String, Object> llamaConfig(int vocab, int hidden, int ffn, int layers, int heads, int kvHeads,
                                                  int headDim, long maxPositions, RopeScaling rope, boolean tied) {
        Map<String, Object> c = new LinkedHashMap<>();
        c.put("architectures", java.util.List.of("LlamaForCausalLM"));
        c.put("model_type", "llama");
        c.put("vocab_size", vocab);
        c.put("hidden_size", hidden);
        c.put("intermediate_size", ffn);
        c.put("num_hidden_layers", layers);
        c.put("num_attention_heads", heads);
        c.put("num_key_value_heads", kvHeads);
        c.put("head_dim", headDim);
        c.put("hidden_act", "silu");
        c.put("max_position_embeddings", maxPositions);
        c.put("rms_norm_eps", 1e-5);
        c.put("initializer_range", 0.02);
        c.put("tie_word_embeddings", tied);
        c.put("attention_bias", false);
        c.put("mlp_bias", false);
        c.put("bos_token_id", 1);
        c.put("eos_token_id", 2);
        c.put("torch_dtype", "float32");
        Map<String, Object> params = rope.toParameters();
        c.put("rope_theta", rope.theta());
        Map<String, Object> legacy = new LinkedHashMap<>(params);
        legacy.remove("rope_theta");
        c.put("rope_scaling", rope.type().equals("default") ? null : legacy);
        c.put("rope_parameters", params);
        return c;
    }

    /**
     * {@code config} with its RoPE settings replaced by {@code rope} in both the 5.x and the 4.x forms, and
     * {@code max_position_embeddings} set to the context the method is meant for.
     */
    public static Map<String, Object> withRope(Map<String, Object> config, RopeScaling rope, long maxPositions) {
        Map<String, Object> c = new LinkedHashMap<>(config);
        Map<String, Object> params = rope.toParameters();
        c.put("max_position_embeddings", maxPositions);
        c.put("rope_theta", rope.theta());
        Map<String, Object> legacy = new LinkedHashMap<>(params);
        legacy.remove("rope_theta");
        c.put("rope_scaling", rope.type().equals("default") ? null : legacy);
        c.put("rope_parameters", params);
        if (rope instanceof dev.ropeway.rope.ClexRope clex) {
            // The released CLEX checkpoints: rope_scaling with "type", and log_scale at the top level.
            legacy.put("type", legacy.remove("rope_type"));
            c.put("log_scale", clex.logScale());
        }
        return c;
    }

    /**
     * Writes a freshly initialised model (normal(0, 0.02) matrices, unit norms, seeded) to {@code dir}.
     * Returns the parsed config.
     */
    public static ModelConfig writeRandom(Path dir, Map<String, Object> config, long seed) {
        ModelConfig c = ModelConfig.parse(config, "generated config");
        Random random = new Random(seed);
        SafeTensorsWriter w = new SafeTensorsWriter().metadata("format", "pt");
        BiConsumer<String, long[]> matrix = (name, shape) -> {
            float[] data = new float[Math.toIntExact(shape[0] * shape[1])];
            for (int i = 0; i < data.length; i++) data[i] = (float) (random.nextGaussian() * 0.02);
            w.add(name, data, shape);
        };
        BiConsumer<String, Integer> ones = (name, n) -> {
            float[] data = new float[n];
            java.util.Arrays.fill(data, 1f);
            w.add(name, data, n);
        };
        BiConsumer<String, Integer> zeros = (name, n) -> w.add(name, new float[n], n);
        long h = c.hiddenSize();
        int hidden = c.hiddenSize(), ffn = c.intermediateSize();
        requireWritable(c.architecture());
        matrix.accept("model.embed_tokens.weight", new long[]{c.vocabSize(), h});
        for (int i = 0; i < c.numLayers(); i++) {
            String p = "model.layers." + i + ".";
            ones.accept(p + "input_layernorm.weight", hidden);
            ones.accept(p + "post_attention_layernorm.weight", hidden);
            matrix.accept(p + "self_attn.q_proj.weight", new long[]{c.qDim(), h});
            matrix.accept(p + "self_attn.k_proj.weight", new long[]{c.kvDim(), h});
            matrix.accept(p + "self_attn.v_proj.weight", new long[]{c.kvDim(), h});
            matrix.accept(p + "self_attn.o_proj.weight", new long[]{h, c.qDim()});
            matrix.accept(p + "mlp.gate_proj.weight", new long[]{c.intermediateSize(), h});
            matrix.accept(p + "mlp.up_proj.weight", new long[]{c.intermediateSize(), h});
            matrix.accept(p + "mlp.down_proj.weight", new long[]{h, c.intermediateSize()});
            // Biases start at zero and norm weights at one, as transformers initialises them.
            if (c.qkvBias()) {
                zeros.accept(p + "self_attn.q_proj.bias", c.qDim());
                zeros.accept(p + "self_attn.k_proj.bias", c.kvDim());
                zeros.accept(p + "self_attn.v_proj.bias", c.kvDim());
            }
            if (c.outputBias()) zeros.accept(p + "self_attn.o_proj.bias", hidden);
            if (c.mlpBias()) {
                zeros.accept(p + "mlp.gate_proj.bias", ffn);
                zeros.accept(p + "mlp.up_proj.bias", ffn);
                zeros.accept(p + "mlp.down_proj.bias", hidden);
            }
            if (c.qkNorm()) {
                ones.accept(p + "self_attn.q_norm.weight", c.headDim());
                ones.accept(p + "self_attn.k_norm.weight", c.headDim());
            }
        }
        ones.accept("model.norm.weight", c.hiddenSize());
        if (!c.tieWordEmbeddings()) matrix.accept("lm_head.weight", new long[]{c.vocabSize(), h});
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create " + dir, e);
        }
        w.write(dir.resolve("model.safetensors"));
        Json.writeAtomic(dir.resolve("config.json"), config);
        return c;
    }

    /**
     * Writes the weight files of the checkpoint folder {@code from} (its {@code .safetensors} files but the optimizer
     * state, and the shard index) into {@code to} with every floating tensor stored as {@code dtype} (F32, BF16 or F16;
     * rounded to nearest even where narrower; ggml-quantised matrices are dequantised first), except the CLEX layer's, which keep their type; other tensors are copied
     * as they are. One tensor block at a time, so a large model is never held in memory; each file is written
     * atomically. Returns the bytes of tensor data written. {@code config.json} is the caller's.
     */
    public static long convertWeights(Path from, Path to, DType dtype) throws IOException {
        if (dtype != DType.F32 && dtype != DType.BF16 && dtype != DType.F16)
            throw new IllegalArgumentException("weights convert to F32, BF16 or F16, not " + dtype);
        Files.createDirectories(to);
        long total = 0;
        List<Path> files;
        try (var list = Files.list(from)) {
            files = list.filter(f -> f.getFileName().toString().endsWith(".safetensors")
                    && !f.getFileName().toString().equals("optimizer.safetensors")).sorted().toList();
        }
        if (files.isEmpty()) throw new CheckpointException("no .safetensors weights in " + from);
        for (Path f : files) {
            try (SafeTensors in = SafeTensors.open(f)) {
                SafeTensorsWriter w = new SafeTensorsWriter();
                // A quantised matrix is converted like the rest, so the entries naming block types go.
                in.metadata().forEach((k, v) -> { if (!k.startsWith("ggml_type:")) w.metadata(k, v); });
                for (TensorInfo t : in.tensors()) {
                    if (t.dtype().isQuantised()) {
                        w.addLater(t.name(), dtype, () -> in.readFloats(t.name()), t.shape());
                        total += t.elementCount() * dtype.bytes();
                        continue;
                    }
                    boolean keep = !t.dtype().isFloatWeight() || t.name().startsWith("model.clex_layer.");
                    if (keep) w.add(t.name(), t.dtype(), in.data(t.name()), t.shape());
                    else w.addConverted(t.name(), dtype, in.data(t.name()), t.dtype(), t.shape());
                    total += keep ? t.byteSize() : t.byteSize() / t.dtype().bytes() * dtype.bytes();
                }
                w.write(to.resolve(f.getFileName()));
            }
        }
        Path index = from.resolve("model.safetensors.index.json");
        if (Files.exists(index)) {
            Map<String, Object> json = Json.readObject(index);
            Object meta = json.get("metadata");
            Map<String, Object> metadata = new LinkedHashMap<>();
            if (meta instanceof Map<?, ?> m) m.forEach((k, v) -> metadata.put(String.valueOf(k), v));
            metadata.put("total_size", total);
            json.put("metadata", metadata);
            Json.writeAtomic(to.resolve(index.getFileName()), json);
        }
        return total;
    }

    /** The name transformers gives a weight type in config.json ({@code torch_dtype}). */
    public static String torchDtype(DType dtype) {
        return switch (dtype) {
            case F32 -> "float32";
            case BF16 -> "bfloat16";
            case F16 -> "float16";
            default -> throw new IllegalArgumentException("no torch dtype for " + dtype);
        };
    }
}
