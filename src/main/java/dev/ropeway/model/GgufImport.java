package dev.ropeway.model;

import dev.ropeway.RopewayException;
import dev.ropeway.io.CheckpointException;
import dev.ropeway.io.GgmlDequant;
import dev.ropeway.io.GgmlType;
import dev.ropeway.io.GgufFile;
import dev.ropeway.io.GgufParts;
import dev.ropeway.io.GgufTokenizerFiles;
import dev.ropeway.io.GgufValue;
import dev.ropeway.io.Json;
import dev.ropeway.io.SafeTensorsWriter;
import dev.ropeway.io.WeightStore;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.rope.LinearRope;
import dev.ropeway.rope.Llama3Rope;
import dev.ropeway.rope.LongRope;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.rope.RopeSpec;
import dev.ropeway.rope.YarnRope;
import dev.ropeway.tensor.DType;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalDouble;
import java.util.Set;
import java.util.function.Supplier;

/**
 * A GGUF file (llama.cpp's format) as a Hugging Face checkpoint folder that every Ropeway command reads:
 * {@code config.json} from the {@code <arch>.*} keys, {@code model.safetensors} from the tensors (every quantised
 * type {@link dev.ropeway.io.GgmlDequant} knows converted back to floats, unless {@link Options#keepQuantised()} keeps
 * the blocks of those Ropeway computes with), and the tokenizer files from
 * {@code tokenizer.ggml.*}. The inverse of {@link GgufExport}: the architectures are GGUF's {@code llama} (Llama,
 * Mistral and kin), {@code qwen2}, {@code qwen3} and {@code phi3}.
 *
 * <p>The {@code llama} architecture stores Q and K with each head's rotary pairs interleaved (feature i at 2i and
 * i + d/2 at 2i + 1); their rows go back to Hugging Face's half-split order. The RoPE method comes from the
 * {@code rope.scaling.*} keys (none, linear, yarn) or from per-pair divisors: a {@code rope_freqs.weight} tensor is
 * recognised as Llama 3 scaling when Llama 3's formula reproduces it, and is otherwise kept exactly as LongRoPE with
 * one factor set; Phi-3's {@code rope_factors_short} / {@code rope_factors_long} are LongRoPE as Phi-3 defines it.
 */
public final class GgufImport {
    private GgufImport() {}

    /**
     * @param dtype     how the matrices are stored; null picks the narrowest type that holds the file's values
     *                  (F32 stays F32, F16 and BF16 stay so, quantised types become F16, which represents their
     *                  values to within 2^-12)
     * @param tokenizer whether to write the tokenizer files (a file without a tokenizer gets none either way)
     * @param keepQuantised whether matrices in a block type Ropeway computes with ({@link #KEPT}: every quantised type
     *                  but MXFP4; {@link #kept}) keep their blocks (a U8
     *                  tensor named by a {@code ggml_type:} metadata entry, which other programs do not read as a
     *                  matrix) instead of becoming {@code dtype}
     */
    public record Options(DType dtype, boolean tokenizer, boolean keepQuantised) {
        public Options {
            if (dtype != null && dtype != DType.F32 && dtype != DType.BF16 && dtype != DType.F16)
                throw new RopewayException("imported weights are stored as f32, bf16 or f16, not " + dtype);
        }

        /** Every matrix as {@code dtype}: a folder any Hugging Face reader loads. */
        public Options(DType dtype, boolean tokenizer) {
            this(dtype, tokenizer, false);
        }
    }

    /**
     * The GGUF block types whose matrices an import may keep as blocks, those the CPU backend computes with: every
     * matrix type but MXFP4: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL; Q2_K to Q6_K, IQ4_XS; the lattice types IQ1_S, IQ1_M,
     * IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S; the ternary TQ1_0, TQ2_0.
     */
    public static final Set<GgmlType> KEPT = Collections.unmodifiableSet(EnumSet.of(GgmlType.Q4_0, GgmlType.Q4_1,
            GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K,
            GgmlType.Q6_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS, GgmlType.IQ2_XXS, GgmlType.IQ2_XS, GgmlType.IQ2_S,
            GgmlType.IQ3_XXS, GgmlType.IQ3_S, GgmlType.IQ1_S, GgmlType.IQ1_M, GgmlType.TQ1_0, GgmlType.TQ2_0));

    /**
     * The tensor type a matrix of {@code type} with rows of {@code cols} values becomes when kept: the same type; null
     * when it is not kept (not in {@link #KEPT}, or rows that are not whole blocks).
     */
    public static DType kept(GgmlType type, long cols) {
        if (!KEPT.contains(type) || cols % type.blockSize() != 0) return null;
        return DType.valueOf(type.name());
    }

    /** What was written. */
    public record Result(Path dir, String architecture, String hfArchitecture, String rope, long parameters,
                         long bytes, DType dtype, Map<String, Integer> sourceTypes, GgufTokenizerFiles.Written tokenizer,
                         List<String> notes) {}

    private static final Map<String, String> ARCHITECTURES = Map.of(
            "llama", "LlamaForCausalLM", "qwen2", "Qwen2ForCausalLM", "qwen3", "Qwen3ForCausalLM",
            "phi3", "Phi3ForCausalLM");

    public static Result write(Path ggufPath, Path out, Options o) {
        if (Files.isRegularFile(out.resolve("config.json")))
            throw new RopewayException(out + " already holds a checkpoint (config.json); choose another --out or remove it");
        try (GgufParts g = GgufParts.open(ggufPath)) {
            return write(g, out, o);
        }
    }

    /** As above, from an open file. */
    static Result write(GgufParts g, Path out, Options o) {
        Keys k = new Keys(g);
        String arch = k.string("general.architecture");
        String hfArch = ARCHITECTURES.get(arch);
        if (hfArch == null)
            throw new CheckpointException(g.path() + " is a '" + arch + "' model; import reads the GGUF architectures "
                    + new java.util.TreeSet<>(ARCHITECTURES.keySet()) + " (Llama, Mistral, Qwen2, Qwen3, Phi-3 and kin)");
        if (k.count(arch + ".expert_count", 0) > 0)
            throw new CheckpointException(g.path() + " is a mixture-of-experts model (" + arch + ".expert_count "
                    + k.count(arch + ".expert_count", 0) + "); Ropeway runs dense models only");
        List<String> notes = new ArrayList<>();
        if (g.count() > 1) notes.add("read from the " + g.count() + " parts of a split file");
        int hidden = k.positive(arch + ".embedding_length");
        int layers = k.positive(arch + ".block_count");
        int ffn = k.perLayer(arch + ".feed_forward_length", layers, -1);
        int heads = k.perLayer(arch + ".attention.head_count", layers, -1);
        int kvHeads = k.perLayer(arch + ".attention.head_count_kv", layers, heads);
        if (hidden % heads != 0 && !g.metadata().containsKey(arch + ".attention.key_length"))
            throw new CheckpointException(g.path() + ": embedding_length " + hidden + " is not a multiple of head_count "
                    + heads + " and no attention.key_length is given");
        int headDim = (int) k.count(arch + ".attention.key_length", hidden / heads);
        int valueDim = (int) k.count(arch + ".attention.value_length", headDim);
        if (valueDim != headDim)
            throw new CheckpointException(g.path() + ": key_length " + headDim + " differs from value_length " + valueDim
                    + "; Ropeway's attention uses one head size for keys and values");
        if (heads % kvHeads != 0)
            throw new CheckpointException(g.path() + ": head_count " + heads + " is not a multiple of head_count_kv " + kvHeads);
        int rotary = (int) k.count(arch + ".rope.dimension_count", headDim);
        if (rotary != headDim)
            throw new CheckpointException(g.path() + ": RoPE over " + rotary + " of " + headDim + " head features "
                    + "(partial rotary) is not imported for the " + arch + " architecture");
        double eps = k.number(arch + ".attention.layer_norm_rms_epsilon", Double.NaN);
        if (!(eps > 0)) throw new CheckpointException(g.path() + " has no positive " + arch + ".attention.layer_norm_rms_epsilon");
        long context = k.count(arch + ".context_length", -1);
        if (context < 1) throw new CheckpointException(g.path() + " has no " + arch + ".context_length");

        GgufFile.Tensor embedding = k.tensor("token_embd.weight");
        if (embedding.ne().length != 2 || embedding.ne()[0] != hidden)
            throw new CheckpointException(g.path() + ": token_embd.weight is " + java.util.Arrays.toString(embedding.shape())
                    + ", not [vocab, " + hidden + "]");
        int vocab = Math.toIntExact(embedding.ne()[1]);
        boolean tied = !g.tensors().containsKey("output.weight");
        boolean interleaved = arch.equals("llama");
        boolean fusedQkv = g.tensors().containsKey("blk.0.attn_qkv.weight");
        boolean qkvBias = g.tensors().containsKey("blk.0.attn_q.bias") || g.tensors().containsKey("blk.0.attn_qkv.bias");
        boolean outBias = g.tensors().containsKey("blk.0.attn_output.bias");
        boolean mlpBias = g.tensors().containsKey("blk.0.ffn_up.bias");
        boolean qkNorm = g.tensors().containsKey("blk.0.attn_q_norm.weight");
        switch (arch) {
            case "qwen2" -> {
                if (!qkvBias) notes.add("qwen2 without q/k/v biases: written as zeros (Qwen2 always has them)");
                if (outBias || mlpBias || qkNorm) throw unexpected(g, arch, "output, MLP biases or q/k norms");
            }
            case "qwen3" -> {
                if (!qkNorm) throw new CheckpointException(g.path() + ": a qwen3 file needs blk.N.attn_q_norm.weight and attn_k_norm.weight");
                if (qkvBias != outBias) notes.add("attention biases on only some projections: the others written as zeros");
                if (mlpBias) throw unexpected(g, arch, "MLP biases");
            }
            case "phi3" -> {
                if (qkvBias || outBias || mlpBias || qkNorm) throw unexpected(g, arch, "biases or q/k norms");
            }
            default -> {
                if (qkNorm) throw unexpected(g, arch, "q/k norms");
                if (qkvBias != outBias) notes.add("attention biases on only some projections: the others written as zeros");
            }
        }
        boolean attentionBias = arch.equals("qwen2") ? true : qkvBias || outBias;

        RopeScaling rope = rope(g, k, arch, rotary, context, notes);
        Map<String, Object> config = CheckpointWriter.llamaConfig(vocab, hidden, ffn, layers, heads, kvHeads, headDim,
                context, rope, tied);
        config.put("architectures", List.of(hfArch));
        config.put("model_type", arch);
        config.put("rms_norm_eps", eps);
        config.put("attention_bias", attentionBias);
        config.put("mlp_bias", mlpBias);
        if (!arch.equals("llama")) config.remove("mlp_bias");
        if (arch.equals("qwen2")) config.remove("attention_bias");
        if (arch.equals("qwen2") || arch.equals("qwen3")) config.put("use_sliding_window", false);
        if (arch.equals("phi3")) {
            config.remove("attention_bias");
            long window = k.count("phi3.attention.sliding_window", 0);
            if (window > 0) {
                config.put("sliding_window", window);
                notes.add("sliding_window " + window + " kept from phi3.attention.sliding_window (llama.cpp ignores it "
                        + "for phi3 and attends over the whole context; Hugging Face and Ropeway use it)");
            }
        }
        String name = g.metadata().get("general.name") instanceof GgufValue v && v.type() == GgufValue.Type.STRING ? v.asString() : null;
        if (name != null) config.put("_name_or_path", name);

        Map<String, Integer> sourceTypes = new java.util.TreeMap<>();
        for (GgufFile.Tensor t : g.tensors().values()) sourceTypes.merge(t.type().name(), 1, Integer::sum);
        DType matrixType = o.dtype() != null ? o.dtype() : autoType(g);
        config.put("torch_dtype", CheckpointWriter.torchDtype(matrixType));

        GgufTokenizerFiles.Written tokenizer = null;
        try {
            Files.createDirectories(out);
        } catch (IOException e) {
            throw new RopewayException("cannot create " + out + ": " + e.getMessage(), e);
        }
        if (o.tokenizer() && GgufTokenizerFiles.present(g.first())) {
            tokenizer = GgufTokenizerFiles.write(g.first(), out, context);
            if (tokenizer.tokens() > vocab)
                throw new CheckpointException(g.path() + ": the tokenizer has " + tokenizer.tokens() + " tokens but "
                        + "token_embd.weight only " + vocab + " rows");
            notes.addAll(tokenizer.notes());
        } else if (o.tokenizer()) {
            notes.add("the file carries no tokenizer: put the model's tokenizer.json beside the weights");
        }
        Integer bos = k.optionalId("tokenizer.ggml.bos_token_id"), eos = k.optionalId("tokenizer.ggml.eos_token_id");
        if (bos != null) config.put("bos_token_id", bos); else config.remove("bos_token_id");
        if (eos != null) config.put("eos_token_id", eos); else config.remove("eos_token_id");

        Tensors t = new Tensors(g, new SafeTensorsWriter().metadata("format", "pt"), matrixType, o.keepQuantised());
        t.matrix("model.embed_tokens.weight", "token_embd.weight", vocab, hidden);
        for (int i = 0; i < layers; i++) {
            String p = "model.layers." + i + ".", a = p + "self_attn.", m = p + "mlp.", b = "blk." + i + ".";
            t.vector(p + "input_layernorm.weight", b + "attn_norm.weight", hidden);
            int q = heads * headDim, kv = kvHeads * headDim;
            if (fusedQkv) {
                if (!arch.equals("phi3"))
                    throw new CheckpointException(g.path() + ": a fused attn_qkv.weight in a " + arch + " file is not imported");
                t.matrix(a + "qkv_proj.weight", b + "attn_qkv.weight", q + 2L * kv, hidden);
            } else if (arch.equals("phi3")) {
                // Hugging Face's Phi-3 stacks q, k and v in one qkv_proj.
                t.stacked(a + "qkv_proj.weight", hidden, b + "attn_q.weight", q, b + "attn_k.weight", kv, b + "attn_v.weight", kv);
            } else {
                t.rotary(a + "q_proj.weight", b + "attn_q.weight", heads, headDim, hidden, interleaved);
                t.rotary(a + "k_proj.weight", b + "attn_k.weight", kvHeads, headDim, hidden, interleaved);
                t.matrix(a + "v_proj.weight", b + "attn_v.weight", kv, hidden);
            }
            t.matrix(a + "o_proj.weight", b + "attn_output.weight", hidden, q);
            if (attentionBias) {
                t.rotaryBias(a + "q_proj.bias", b + "attn_q.bias", heads, headDim, interleaved);
                t.rotaryBias(a + "k_proj.bias", b + "attn_k.bias", kvHeads, headDim, interleaved);
                t.vectorOrZeros(a + "v_proj.bias", b + "attn_v.bias", kv);
                if (!arch.equals("qwen2")) t.vectorOrZeros(a + "o_proj.bias", b + "attn_output.bias", hidden);
            }
            if (qkNorm) {
                t.vector(a + "q_norm.weight", b + "attn_q_norm.weight", headDim);
                t.vector(a + "k_norm.weight", b + "attn_k_norm.weight", headDim);
            }
            t.vector(p + "post_attention_layernorm.weight", b + "ffn_norm.weight", hidden);
            if (arch.equals("phi3") && !g.tensors().containsKey(b + "ffn_gate.weight")) {
                // llama.cpp's Phi-3 keeps Hugging Face's gate_up_proj as ffn_up: gate rows first, then up.
                t.matrix(m + "gate_up_proj.weight", b + "ffn_up.weight", 2L * ffn, hidden);
            } else if (arch.equals("phi3")) {
                t.stacked(m + "gate_up_proj.weight", hidden, b + "ffn_gate.weight", ffn, b + "ffn_up.weight", ffn);
            } else {
                t.matrix(m + "gate_proj.weight", b + "ffn_gate.weight", ffn, hidden);
                t.matrix(m + "up_proj.weight", b + "ffn_up.weight", ffn, hidden);
            }
            t.matrix(m + "down_proj.weight", b + "ffn_down.weight", hidden, ffn);
            if (mlpBias) {
                t.vector(m + "gate_proj.bias", b + "ffn_gate.bias", ffn);
                t.vector(m + "up_proj.bias", b + "ffn_up.bias", ffn);
                t.vector(m + "down_proj.bias", b + "ffn_down.bias", hidden);
            }
        }
        t.vector("model.norm.weight", "output_norm.weight", hidden);
        if (!tied) t.matrix("lm_head.weight", "output.weight", vocab, hidden);
        t.writer.write(out.resolve("model.safetensors"));

        if (tokenizer != null && tokenizer.endIds().length > 0) {
            Map<String, Object> generation = new LinkedHashMap<>();
            if (bos != null) generation.put("bos_token_id", bos);
            int[] ends = tokenizer.endIds();
            generation.put("eos_token_id", ends.length == 1 ? (Object) ends[0] : java.util.Arrays.stream(ends).boxed().toList());
            Json.writeAtomic(out.resolve("generation_config.json"), generation);
        }
        // config.json last: a folder without it is not taken for a checkpoint, so an interrupted import can be rerun.
        Json.writeAtomic(out.resolve("config.json"), config);
        ModelConfig parsed = Transformer.loadConfig(out);
        try (WeightStore store = StackedProjections.open(out, parsed)) {
            store.require("model.embed_tokens.weight", vocab, hidden);
        }
        return new Result(out, arch, hfArch, RopeSpec.describe(rope), parsed.parameterCount(), t.bytes, matrixType,
                sourceTypes, tokenizer, List.copyOf(notes));
    }

    private static CheckpointException unexpected(GgufParts g, String arch, String what) {
        return new CheckpointException(g.path() + ": a " + arch + " file with " + what + " is not a model this version imports");
    }

    /** F32 when every matrix is F32, F16 or BF16 when all are that, else F16 (quantised values within 2^-12). */
    private static DType autoType(GgufParts g) {
        java.util.Set<GgmlType> types = java.util.EnumSet.noneOf(GgmlType.class);
        for (GgufFile.Tensor t : g.tensors().values()) if (t.ne().length == 2) types.add(t.type());
        if (types.equals(java.util.EnumSet.of(GgmlType.BF16))) return DType.BF16;
        if (types.contains(GgmlType.F32) || types.contains(GgmlType.BF16)) return DType.F32;
        return DType.F16;
    }

    /** The RoPE method the file's keys and frequency tensors describe. */
    static RopeScaling rope(GgufParts g, Keys k, String arch, int rotary, long context, List<String> notes) {
        String p = arch + ".rope.";
        double theta = k.number(p + "freq_base", 10000.0);
        String type = g.metadata().containsKey(p + "scaling.type") ? k.string(p + "scaling.type") : "none";
        double factor = k.number(p + "scaling.factor", 0);
        double attnFactor = k.number(p + "scaling.attn_factor", 1.0);
        long original = k.count(p + "scaling.original_context_length", 0);
        boolean freqs = g.tensors().containsKey("rope_freqs.weight");
        boolean phiFactors = g.tensors().containsKey("rope_factors_long.weight") || g.tensors().containsKey("rope_factors_short.weight");
        if (g.metadata().containsKey(p + "scaling.yarn_beta_fast") || g.metadata().containsKey(p + "scaling.yarn_beta_slow"))
            notes.add("yarn_beta keys ignored, as llama.cpp does for " + arch + ": YaRN with beta_fast 32 and beta_slow 1");
        if ((freqs || phiFactors) && !type.equals("none") && !type.equals("longrope"))
            throw new CheckpointException(g.path() + ": per-pair RoPE factors together with rope.scaling.type '" + type
                    + "' are not imported");
        if (phiFactors) {
            float[] shortF = k.floats("rope_factors_short.weight", rotary / 2), longF = k.floats("rope_factors_long.weight", rotary / 2);
            if (original == 0) throw new CheckpointException(g.path() + ": LongRoPE factors without " + p + "scaling.original_context_length");
            double scale = (double) context / original;
            // The file states the attention factor; leave it implicit when it is LongRoPE's own for this scale.
            double implied = scale <= 1 ? 1 : Math.sqrt(1 + Math.log(scale) / Math.log(original));
            boolean stated = g.metadata().containsKey(p + "scaling.attn_factor") && Math.abs(attnFactor - implied) > 1e-6 * implied;
            return new LongRope(theta, rotary, doubles(shortF), doubles(longF), scale, original,
                    stated ? OptionalDouble.of(attnFactor) : OptionalDouble.empty());
        }
        if (freqs) return fromDivisors(theta, rotary, k.floats("rope_freqs.weight", rotary / 2), context, attnFactor, notes);
        return switch (type) {
            case "none" -> new DefaultRope(theta, rotary);
            case "linear" -> {
                if (!(factor > 0)) throw new CheckpointException(g.path() + ": linear RoPE scaling without a positive " + p + "scaling.factor");
                yield factor == 1 ? new DefaultRope(theta, rotary) : new LinearRope(theta, rotary, factor);
            }
            case "yarn" -> {
                if (!(factor > 0) || original < 1)
                    throw new CheckpointException(g.path() + ": YaRN needs " + p + "scaling.factor and scaling.original_context_length");
                // GGUF engines multiply by attn_factor x (1 + 0.1 ln factor); transformers' attention_factor is the product.
                OptionalDouble attention = Math.abs(attnFactor - 1) > 1e-9
                        ? OptionalDouble.of(attnFactor * (1 + 0.1 * Math.log(factor))) : OptionalDouble.empty();
                yield new YarnRope(theta, rotary, factor, original, YarnRope.DEFAULT_BETA_FAST, YarnRope.DEFAULT_BETA_SLOW,
                        attention, OptionalDouble.empty(), OptionalDouble.empty(), true);
            }
            default -> throw new CheckpointException(g.path() + ": RoPE scaling type '" + type + "' is not imported "
                    + "(none, linear, yarn, and per-pair factors are)");
        };
    }

    /**
     * Per-pair divisors as Llama 3 scaling when its formula (low_freq_factor 1, the others fitted from the pairs
     * between the two bands, or high_freq_factor 4 and the original length a blended pair or a power of two gives)
     * reproduces every divisor to 1e-5; otherwise LongRoPE with the
     * divisors as both factor sets, which computes the same frequencies at every length.
     */
    static RopeScaling fromDivisors(double theta, int rotary, float[] divisors, long context, double attnFactor,
                                    List<String> notes) {
        float[] plain = new DefaultRope(theta, rotary).inverseFrequencies(0);
        double factor = 0;
        for (float d : divisors) factor = Math.max(factor, d);
        if (Math.abs(attnFactor - 1) < 1e-9 && factor > 1 + 1e-6) {
            List<double[]> candidates = new ArrayList<>();
            List<Integer> middle = new ArrayList<>();
            for (int j = 0; j < divisors.length; j++)
                if (divisors[j] > 1 + 1e-4 && divisors[j] < factor * (1 - 1e-4)) middle.add(j);
            if (middle.size() >= 2) {
                int j1 = middle.getFirst(), j2 = middle.getLast();
                double x1 = plain[j1] / (2 * Math.PI), x2 = plain[j2] / (2 * Math.PI);
                double s1 = (factor / divisors[j1] - 1) / (factor - 1), s2 = (factor / divisors[j2] - 1) / (factor - 1);
                double a = (s2 - s1) / (x2 - x1), b = s1 - a * x1;
                if (b < 0) {
                    double high = 1 - 1 / b, original = Math.rint(-a / b);
                    candidates.add(new double[]{1, Math.rint(high * 1e4) / 1e4, original});
                }
            }
            // Llama 3's low_freq_factor 1 and high_freq_factor 4: each blended pair then names the original length.
            for (int j : middle) {
                double s = (factor / divisors[j] - 1) / (factor - 1);
                candidates.add(new double[]{1, 4, Math.rint((3 * s + 1) / (plain[j] / (2 * Math.PI)))});
            }
            for (int power = 5; power <= 20; power++) candidates.add(new double[]{1, 4, 1 << power});
            for (double[] c : candidates) {
                if (!(c[1] > c[0]) || !(c[2] >= 1)) continue;
                Llama3Rope r = new Llama3Rope(theta, rotary, factor, c[0], c[1], (long) c[2]);
                if (reproduces(r, plain, divisors)) return r;
            }
        }
        notes.add("rope_freqs.weight kept as LongRoPE with one factor set for every length (it is not Llama 3 scaling)");
        return new LongRope(theta, rotary, doubles(divisors), doubles(divisors), 1.0, context, OptionalDouble.of(attnFactor));
    }

    private static boolean reproduces(RopeScaling r, float[] plain, float[] divisors) {
        float[] inv = r.inverseFrequencies(0);
        for (int j = 0; j < plain.length; j++) {
            double expected = plain[j] / divisors[j];
            if (Math.abs(inv[j] - expected) > 1e-5 * expected) return false;
        }
        return true;
    }

    /** Float32 values as the shortest decimals that read back as them (1.2, not 1.2000000476837158). */
    private static List<Double> doubles(float[] v) {
        List<Double> out = new ArrayList<>(v.length);
        for (float f : v) out.add(Double.parseDouble(Float.toString(f)));
        return out;
    }

    /**
     * Reorders the rows of an interleaved Q or K (GGUF's llama layout, feature i of a head at row 2i and feature
     * i + headDim/2 at 2i + 1) back to Hugging Face's half-split order; the inverse of
     * {@link GgufExport#interleaveRotaryRows}.
     */
    public static float[] deinterleaveRotaryRows(float[] w, int heads, int headDim, int cols) {
        return GgufExport.moveRotaryRows(w, heads, headDim, cols, false);
    }

    /** {@link #deinterleaveRotaryRows(float[], int, int, int)} for rows of bytes (rows of quantised blocks). */
    static MemorySegment deinterleaveRotaryRows(MemorySegment w, int heads, int headDim) {
        int rows = heads * headDim;
        long rowBytes = w.byteSize() / rows;
        MemorySegment out = MemorySegment.ofArray(new byte[Math.toIntExact(w.byteSize())]);
        for (int row = 0; row < rows; row++)
            out.asSlice(row * rowBytes, rowBytes).copyFrom(w.asSlice(GgufExport.rotarySource(row, headDim, false) * rowBytes, rowBytes));
        return out;
    }

    /** Typed metadata access whose errors name the file and the key. */
    static final class Keys {
        private final GgufParts g;

        Keys(GgufParts g) {
            this.g = g;
        }

        String string(String key) {
            GgufValue v = g.value(key);
            if (v.type() != GgufValue.Type.STRING) throw wrong(key, v, "a string");
            return v.asString();
        }

        long count(String key, long fallback) {
            GgufValue v = g.metadata().get(key);
            if (v == null) return fallback;
            if (!v.type().isInteger() || v.asLong() < 0) throw wrong(key, v, "a non-negative integer");
            return v.asLong();
        }

        int positive(String key) {
            GgufValue v = g.value(key);
            if (!v.type().isInteger() || v.asLong() < 1 || v.asLong() > Integer.MAX_VALUE) throw wrong(key, v, "a positive integer");
            return (int) v.asLong();
        }

        /** An integer that some files give per layer (an array): every layer must agree. */
        int perLayer(String key, int layers, int fallback) {
            GgufValue v = g.metadata().get(key);
            if (v == null) {
                if (fallback < 0) throw new CheckpointException(g.path() + " has no metadata key " + key);
                return fallback;
            }
            if (v.type() == GgufValue.Type.ARRAY) {
                List<?> values = v.asList();
                if (values.size() != layers || values.stream().distinct().count() != 1 || !(values.getFirst() instanceof Long n) || n < 1)
                    throw new CheckpointException(g.path() + ": " + key + " differs between layers (" + values + "); "
                            + "Ropeway runs models whose layers all have one shape");
                return Math.toIntExact((Long) values.getFirst());
            }
            return positive(key);
        }

        double number(String key, double fallback) {
            GgufValue v = g.metadata().get(key);
            if (v == null) return fallback;
            if (v.type() == GgufValue.Type.FLOAT32 || v.type() == GgufValue.Type.FLOAT64) return v.asDouble();
            if (v.type().isInteger()) return v.asLong();
            throw wrong(key, v, "a number");
        }

        Integer optionalId(String key) {
            GgufValue v = g.metadata().get(key);
            if (v == null) return null;
            if (!v.type().isInteger() || v.asLong() < 0) throw wrong(key, v, "a token id");
            return Math.toIntExact(v.asLong());
        }

        GgufFile.Tensor tensor(String name) {
            return g.tensor(name);
        }

        float[] floats(String name, int n) {
            GgufFile.Tensor t = g.tensor(name);
            if (t.elements() != n)
                throw new CheckpointException(g.path() + ": " + name + " has " + t.elements() + " values, not " + n + " (one per rotary pair)");
            return g.floats(name);
        }

        private CheckpointException wrong(String key, GgufValue v, String expected) {
            return new CheckpointException(g.path() + ": " + key + " is " + v.describe() + " " + v.value() + ", not " + expected);
        }
    }

    /** Queues GGUF tensors on the safetensors writer under their Hugging Face names, each shape checked now. */
    private static final class Tensors {
        final GgufParts g;
        final SafeTensorsWriter writer;
        final DType matrixType;
        final boolean keepQuantised;
        long bytes;

        Tensors(GgufParts g, SafeTensorsWriter writer, DType matrixType, boolean keepQuantised) {
            this.g = g;
            this.writer = writer;
            this.matrixType = matrixType;
            this.keepQuantised = keepQuantised;
        }

        private GgufFile.Tensor require(String gguf, long... shape) {
            GgufFile.Tensor t = g.tensor(gguf);
            if (!java.util.Arrays.equals(t.shape(), shape))
                throw new CheckpointException(g.path() + ": " + gguf + " is " + java.util.Arrays.toString(t.shape())
                        + " where the hyperparameters give " + java.util.Arrays.toString(shape));
            if (!dev.ropeway.io.GgmlDequant.supports(t.type())) g.floats(gguf); // names the type and what is read
            return t;
        }

        /** The type these GGUF matrices (rows of {@code cols}) keep their blocks as, or null: not all one kept type. */
        private DType keeps(long cols, String... gguf) {
            if (!keepQuantised) return null;
            GgmlType type = g.tensor(gguf[0]).type();
            for (String name : gguf) if (g.tensor(name).type() != type) return null;
            return kept(type, cols);
        }

        void matrix(String hf, String gguf, long rows, long cols) {
            require(gguf, rows, cols);
            DType as = keeps(cols, gguf);
            if (as != null) addBlocks(hf, as, () -> g.data(gguf), rows, cols);
            else add(hf, matrixType, () -> g.floats(gguf), rows, cols);
        }

        void rotary(String hf, String gguf, int heads, int headDim, long cols, boolean interleaved) {
            long rows = (long) heads * headDim;
            require(gguf, rows, cols);
            DType as = keeps(cols, gguf);
            if (as != null) {
                // Each row is whole blocks, so moving rows moves their bytes.
                addBlocks(hf, as, interleaved ? () -> deinterleaveRotaryRows(g.data(gguf), heads, headDim)
                        : () -> g.data(gguf), rows, cols);
                return;
            }
            add(hf, matrixType, interleaved ? () -> deinterleaveRotaryRows(g.floats(gguf), heads, headDim, (int) cols)
                    : () -> g.floats(gguf), rows, cols);
        }

        void rotaryBias(String hf, String gguf, int heads, int headDim, boolean interleaved) {
            long n = (long) heads * headDim;
            if (!g.tensors().containsKey(gguf)) {
                add(hf, DType.F32, () -> new float[(int) n], n);
                return;
            }
            require(gguf, n);
            add(hf, DType.F32, interleaved ? () -> deinterleaveRotaryRows(g.floats(gguf), heads, headDim, 1)
                    : () -> g.floats(gguf), n);
        }

        void vector(String hf, String gguf, long n) {
            require(gguf, n);
            add(hf, DType.F32, () -> g.floats(gguf), n);
        }

        void vectorOrZeros(String hf, String gguf, long n) {
            if (g.tensors().containsKey(gguf)) vector(hf, gguf, n);
            else add(hf, DType.F32, () -> new float[(int) n], n);
        }

        /** Row blocks of several GGUF tensors stacked into one Hugging Face matrix. */
        void stacked(String hf, long cols, Object... namesAndRows) {
            long rows = 0;
            String[] names = new String[namesAndRows.length / 2];
            for (int i = 0; i < namesAndRows.length; i += 2) {
                long r = ((Number) namesAndRows[i + 1]).longValue();
                names[i / 2] = (String) namesAndRows[i];
                require(names[i / 2], r, cols);
                rows += r;
            }
            DType type = keeps(cols, names);
            if (type != null) {
                addBlocks(hf, type, () -> {
                    MemorySegment out = MemorySegment.ofArray(new byte[Math.toIntExact(
                            type.byteSize(java.util.Arrays.stream(names).mapToLong(n -> g.tensor(n).elements()).sum()))]);
                    long at = 0;
                    for (String name : names) {
                        MemorySegment part = g.data(name);
                        out.asSlice(at, part.byteSize()).copyFrom(part);
                        at += part.byteSize();
                    }
                    return out;
                }, rows, cols);
                return;
            }
            long total = rows * cols;
            add(hf, matrixType, () -> {
                float[] out = new float[Math.toIntExact(total)];
                int at = 0;
                for (String name : names) {
                    float[] part = g.floats(name);
                    System.arraycopy(part, 0, out, at, part.length);
                    at += part.length;
                }
                return out;
            }, rows, cols);
        }

        private void addBlocks(String hf, DType type, Supplier<MemorySegment> blocks, long rows, long cols) {
            writer.addQuantisedLater(hf, type, blocks, rows, cols);
            bytes += type.byteSize(rows * cols);
        }

        private void add(String hf, DType type, Supplier<float[]> values, long... shape) {
            Supplier<float[]> checked = type == DType.F16 ? () -> fitsHalf(hf, values.get()) : values;
            writer.addLater(hf, type, checked, shape);
            long n = 1;
            for (long d : shape) n *= d;
            bytes += n * type.bytes();
        }

        private float[] fitsHalf(String hf, float[] v) {
            for (float x : v)
                if (Math.abs(x) > 65504f && !Float.isInfinite(x))
                    throw new CheckpointException(g.path() + ": " + hf + " has a value " + x + " beyond float16's range; "
                            + "import with --dtype bf16 or f32");
            return v;
        }
    }
}
