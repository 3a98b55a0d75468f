package dev.ropeway.model;

import dev.ropeway.RopewayException;
import dev.ropeway.io.GgmlType;
import dev.ropeway.io.GgufValue;
import dev.ropeway.io.GgufVocabulary;
import dev.ropeway.io.GgufWriter;
import dev.ropeway.io.WeightStore;
import dev.ropeway.rope.ClexRope;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.rope.DynamicNtkRope;
import dev.ropeway.rope.E2Rope;
import dev.ropeway.rope.LinearRope;
import dev.ropeway.rope.Llama3Rope;
import dev.ropeway.rope.LongRope;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.rope.StaticNtkRope;
import dev.ropeway.rope.YarnRope;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * A Hugging Face checkpoint as one GGUF file that llama.cpp and other GGUF engines run: the hyperparameters and the
 * RoPE method as {@code <arch>.*} keys, the tokenizer as {@code tokenizer.ggml.*}, and the weights under GGUF's tensor
 * names.
 *
 * <p>The rotary layout is the one conversion that changes numbers' places. Hugging Face rotates feature j of a head
 * with feature j + d/2 ({@code rotate_half}); llama.cpp's "llama" architecture rotates features 2i and 2i+1. Both
 * are the same rotation if Q and K put feature i at 2i and feature i + d/2 at 2i + 1, so the rows of q_proj and
 * k_proj (and their biases) are reordered that way within each head; q·k is unchanged because both sides move
 * alike. Its "qwen2" and "qwen3" architectures rotate j with j + d/2 already, so Qwen2 and Qwen3 weights are written as
 * they are (Qwen3's per-head query and key norms as attn_q_norm and attn_k_norm).
 */
public final class GgufExport {
    private GgufExport() {}

    /** The storage type of the matrices; norms and biases are always F32. */
    public enum Dtype {
        F32(GgmlType.F32, 0), F16(GgmlType.F16, 1), Q8_0(GgmlType.Q8_0, 7);

        final GgmlType matrixType;
        /** llama.cpp's {@code general.file_type} (its {@code llama_ftype}: ALL_F32, MOSTLY_F16, MOSTLY_Q8_0). */
        final int fileType;

        Dtype(GgmlType matrixType, int fileType) {
            this.matrixType = matrixType;
            this.fileType = fileType;
        }

        public static Dtype parse(String s) {
            return switch (s.toLowerCase(Locale.ROOT)) {
                case "f32" -> F32;
                case "f16" -> F16;
                case "q8_0" -> Q8_0;
                default -> throw new RopewayException("unknown --dtype '" + s + "' (GGUF export writes f32, f16 or q8_0)");
            };
        }
    }

    /**
     * @param rope          the RoPE method to write (already resolved from the checkpoint or a --rope spec)
     * @param contextLength the context the file declares ({@code <arch>.context_length})
     */
    public record Options(RopeScaling rope, long contextLength, Dtype dtype, String name) {}

    /** What was written. */
    public record Result(Path file, String architecture, long bytes, int tensors, int keys, String rope,
                         List<String> notes) {}

    /** The GGUF architecture name a config maps to. */
    public static String architectureOf(ModelConfig c) {
        return switch (c.architecture()) {
            case QWEN2 -> "qwen2";
            case QWEN3 -> "qwen3";
            case LLAMA, MISTRAL, PHI3 -> "llama";
        };
    }

    public static Result write(Path modelDir, Path out, Options o) {
        ModelConfig c = dev.ropeway.model.Transformer.loadConfig(modelDir);
        String source = modelDir.resolve("config.json").toString();
        String arch = architectureOf(c);
        boolean interleave = arch.equals("llama");
        List<String> notes = new ArrayList<>();
        checkShape(c, o, source);

        GgufWriter w = new GgufWriter();
        w.put("general.architecture", GgufValue.string(arch));
        w.put("general.name", GgufValue.string(o.name()));
        w.put("general.file_type", GgufValue.uint32(o.dtype().fileType));
        w.put("general.quantization_version", GgufValue.uint32(2));
        w.put(arch + ".vocab_size", GgufValue.uint32(c.vocabSize()));
        w.put(arch + ".context_length", GgufValue.uint32(o.contextLength()));
        w.put(arch + ".embedding_length", GgufValue.uint32(c.hiddenSize()));
        w.put(arch + ".block_count", GgufValue.uint32(c.numLayers()));
        w.put(arch + ".feed_forward_length", GgufValue.uint32(c.intermediateSize()));
        w.put(arch + ".attention.head_count", GgufValue.uint32(c.numHeads()));
        w.put(arch + ".attention.head_count_kv", GgufValue.uint32(c.numKvHeads()));
        if ((long) c.headDim() * c.numHeads() != c.hiddenSize()) {
            // Engines assume head_dim = hidden / heads unless told otherwise.
            w.put(arch + ".attention.key_length", GgufValue.uint32(c.headDim()));
            w.put(arch + ".attention.value_length", GgufValue.uint32(c.headDim()));
        }
        w.put(arch + ".attention.layer_norm_rms_epsilon", GgufValue.float32(c.rmsNormEps()));
        w.put(arch + ".rope.dimension_count", GgufValue.uint32(c.rotaryDim()));
        float[] ropeFactors = ropeKeys(w, arch, o.rope(), c.rotaryDim(), o.contextLength(), notes);

        GgufVocabulary vocabulary = GgufVocabulary.read(modelDir).paddedTo(c.vocabSize(), source);
        vocabulary.metadata().forEach(w::put);

        try (WeightStore store = StackedProjections.open(modelDir, c)) {
            Tensors t = new Tensors(w, store, o.dtype(), notes);
            long h = c.hiddenSize(), v = c.vocabSize(), ffn = c.intermediateSize(), qd = c.qDim(), kvd = c.kvDim();
            t.matrix("token_embd.weight", "model.embed_tokens.weight", v, h);
            if (ropeFactors != null) w.tensor("rope_freqs.weight", GgmlType.F32, new long[]{ropeFactors.length}, () -> ropeFactors);
            for (int i = 0; i < c.numLayers(); i++) {
                String p = "model.layers." + i + ".", a = p + "self_attn.", m = p + "mlp.", b = "blk." + i + ".";
                t.vector(b + "attn_norm.weight", p + "input_layernorm.weight", h);
                if (interleave) {
                    t.rotary(b + "attn_q.weight", a + "q_proj.weight", c.numHeads(), c.headDim(), h);
                    t.rotary(b + "attn_k.weight", a + "k_proj.weight", c.numKvHeads(), c.headDim(), h);
                } else {
                    t.matrix(b + "attn_q.weight", a + "q_proj.weight", qd, h);
                    t.matrix(b + "attn_k.weight", a + "k_proj.weight", kvd, h);
                }
                t.matrix(b + "attn_v.weight", a + "v_proj.weight", kvd, h);
                t.matrix(b + "attn_output.weight", a + "o_proj.weight", h, qd);
                if (c.qkvBias()) {
                    if (interleave) {
                        t.rotaryBias(b + "attn_q.bias", a + "q_proj.bias", c.numHeads(), c.headDim());
                        t.rotaryBias(b + "attn_k.bias", a + "k_proj.bias", c.numKvHeads(), c.headDim());
                    } else {
                        t.vector(b + "attn_q.bias", a + "q_proj.bias", qd);
                        t.vector(b + "attn_k.bias", a + "k_proj.bias", kvd);
                    }
                    t.vector(b + "attn_v.bias", a + "v_proj.bias", kvd);
                }
                if (c.outputBias()) t.vector(b + "attn_output.bias", a + "o_proj.bias", h);
                if (c.qkNorm()) {
                    // Per-head weights, the same for every head: unchanged by the row order of q and k.
                    t.vector(b + "attn_q_norm.weight", a + "q_norm.weight", c.headDim());
                    t.vector(b + "attn_k_norm.weight", a + "k_norm.weight", c.headDim());
                }
                t.vector(b + "ffn_norm.weight", p + "post_attention_layernorm.weight", h);
                t.matrix(b + "ffn_gate.weight", m + "gate_proj.weight", ffn, h);
                t.matrix(b + "ffn_up.weight", m + "up_proj.weight", ffn, h);
                t.matrix(b + "ffn_down.weight", m + "down_proj.weight", h, ffn);
                if (c.mlpBias()) {
                    t.vector(b + "ffn_gate.bias", m + "gate_proj.bias", ffn);
                    t.vector(b + "ffn_up.bias", m + "up_proj.bias", ffn);
                    t.vector(b + "ffn_down.bias", m + "down_proj.bias", h);
                }
            }
            t.vector("output_norm.weight", "model.norm.weight", h);
            // A tied model has no output.weight: GGUF engines then use token_embd.weight for the head.
            if (!c.tieWordEmbeddings()) t.matrix("output.weight", "lm_head.weight", v, h);
            GgufWriter.Written written = w.write(out);
            return new Result(out, arch, written.bytes(), written.tensors(), written.keys(),
                    dev.ropeway.rope.RopeSpec.describe(o.rope()), List.copyOf(notes));
        }
    }

    /**
     * Reorders the rows of a q_proj or k_proj matrix (or bias, with {@code cols} = 1) from Hugging Face's rotary
     * layout to the interleaved one: within each head of {@code headDim} rows, row i goes to 2i and row
     * i + headDim/2 to 2i + 1.
     */
    public static float[] interleaveRotaryRows(float[] w, int heads, int headDim, int cols) {
        return moveRotaryRows(w, heads, headDim, cols, true);
    }

    /** Row i of each head to 2i and row i + headDim/2 to 2i + 1 ({@code interleave}), or back. */
    static float[] moveRotaryRows(float[] w, int heads, int headDim, int cols, boolean interleave) {
        if ((long) heads * headDim * cols != w.length)
            throw new IllegalArgumentException(w.length + " values are not " + heads + " heads x " + headDim + " rows x " + cols);
        float[] out = new float[w.length];
        for (int row = 0; row < heads * headDim; row++)
            System.arraycopy(w, rotarySource(row, headDim, interleave) * cols, out, row * cols, cols);
        return out;
    }

    /** The row that {@link #moveRotaryRows} moves to {@code row}. */
    static int rotarySource(int row, int headDim, boolean interleave) {
        int base = row - row % headDim, j = row % headDim, half = headDim / 2;
        return base + (interleave ? (j % 2 == 0 ? j / 2 : j / 2 + half) : (j < half ? 2 * j : 2 * (j - half) + 1));
    }

    private static void checkShape(ModelConfig c, Options o, String source) {
        if (c.rotaryDim() != c.headDim())
            throw new RopewayException(source + ": partial rotary embeddings (rotary " + c.rotaryDim() + " of head_dim "
                    + c.headDim() + ") are not exported: llama.cpp's " + architectureOf(c) + " architecture rotates whole heads");
        if (o.contextLength() < 1 || o.contextLength() > 0xFFFF_FFFFL)
            throw new RopewayException("--context-length must be in 1.." + 0xFFFF_FFFFL + ", got " + o.contextLength());
        if (c.slidingWindow() > 0 && c.slidingWindow() < o.contextLength())
            throw new RopewayException(source + ": sliding-window attention over " + c.slidingWindow() + " tokens has no "
                    + "equivalent in GGUF's " + architectureOf(c) + " architecture, which attends over the whole context; "
                    + "export with --context-length " + c.slidingWindow() + " or less, where both agree");
    }

    /**
     * Writes the {@code <arch>.rope.*} keys for {@code rope}; returns per-pair frequency divisors for a
     * {@code rope_freqs.weight} tensor when the method needs one (Llama 3 scaling, LongRoPE), else null.
     */
    static float[] ropeKeys(GgufWriter w, String arch, RopeScaling rope, int rotaryDim, long contextLength,
                            List<String> notes) {
        String k = arch + ".rope.";
        w.put(k + "freq_base", GgufValue.float32((float) rope.theta()));
        switch (rope) {
            case DefaultRope r -> { }
            case LinearRope r -> {
                w.put(k + "scaling.type", GgufValue.string("linear"));
                w.put(k + "scaling.factor", GgufValue.float32((float) r.factor()));
            }
            case StaticNtkRope r -> w.put(k + "freq_base", GgufValue.float32((float) r.base()));
            case YarnRope r -> {
                if (!r.truncate())
                    throw new RopewayException("YaRN with truncate: false has no GGUF form (GGUF engines round the ramp's "
                            + "ends to whole pairs); export it with --rope yarn:... without truncate");
                w.put(k + "scaling.type", GgufValue.string("yarn"));
                w.put(k + "scaling.factor", GgufValue.float32((float) r.factor()));
                w.put(k + "scaling.original_context_length", GgufValue.uint32(r.originalMaxPositionEmbeddings()));
                // GGUF engines multiply cos and sin by attn_factor x (1 + 0.1 ln factor) themselves; write the rest.
                double builtIn = 1 + 0.1 * Math.log(r.factor());
                double attnFactor = r.resolvedAttentionFactor() / builtIn;
                if (Math.abs(attnFactor - 1) > 1e-6) w.put(k + "scaling.attn_factor", GgufValue.float32((float) attnFactor));
                if (r.betaFast() != YarnRope.DEFAULT_BETA_FAST || r.betaSlow() != YarnRope.DEFAULT_BETA_SLOW)
                    throw new RopewayException("YaRN with beta_fast " + number(r.betaFast()) + " and beta_slow "
                            + number(r.betaSlow()) + " has no GGUF form for the " + arch + " architecture: llama.cpp "
                            + "reads its yarn_beta keys only for a few other architectures and runs " + arch + " with "
                            + "beta_fast " + number(YarnRope.DEFAULT_BETA_FAST) + " and beta_slow "
                            + number(YarnRope.DEFAULT_BETA_SLOW) + ", so the file would compute other frequencies; "
                            + "export with --rope yarn:factor=" + number(r.factor()) + ",original_max_position_embeddings="
                            + r.originalMaxPositionEmbeddings() + " (the default betas) or serve the model with Ropeway");
            }
            case Llama3Rope r -> {
                requireRopeFreqs(arch, "Llama 3 scaling");
                return divisors(r, rotaryDim, 0);
            }
            case LongRope r -> {
                requireRopeFreqs(arch, "LongRoPE");
                // One factor set for every length, as llama.cpp keeps (it picks one by its context size): the long
                // factors when the file's context passes the original one, as a pass that long uses them.
                boolean longFactors = r.usesLongFactors(contextLength);
                notes.add("LongRoPE written with its " + (longFactors ? "long" : "short") + " factors for every length "
                        + "(context_length " + contextLength + (longFactors ? " > " : " <= ") + "original "
                        + r.originalMaxPositionEmbeddings() + "): Hugging Face switches to the "
                        + (longFactors ? "short factors for sequences of up to " + r.originalMaxPositionEmbeddings()
                        + " tokens" : "long factors past " + r.originalMaxPositionEmbeddings() + " tokens")
                        + ", a GGUF file keeps one set");
                double attnFactor = r.resolvedAttentionFactor();
                if (Math.abs(attnFactor - 1) > 1e-9) w.put(k + "scaling.attn_factor", GgufValue.float32((float) attnFactor));
                return divisors(r, rotaryDim, contextLength);
            }
            case DynamicNtkRope r -> throw new RopewayException("dynamic NTK has no GGUF form: GGUF engines keep one "
                    + "frequency table for every length. Export with --rope default (identical up to max_position_embeddings "
                    + r.maxPositionEmbeddings() + "), or a fixed method such as --rope ntk:factor=" + number(r.factor())
                    + " or --rope yarn:factor=" + number(r.factor()) + ",original_max_position_embeddings="
                    + r.maxPositionEmbeddings());
            case E2Rope r -> throw new RopewayException("an e2 RoPE has no GGUF form as such; export the e2 model without "
                    + "--rope and it becomes linear (position interpolation) with --factor g");
            case ClexRope r -> throw new RopewayException("CLEX has no GGUF equivalent (its frequencies come from a trained "
                    + "ODE layer); serve it with Ropeway, or export with --rope to approximate it");
        }
        return null;
    }

    /** Per-pair factors travel as a rope_freqs.weight tensor, which llama.cpp loads for its llama architecture only. */
    private static void requireRopeFreqs(String arch, String method) {
        if (!arch.equals("llama"))
            throw new RopewayException(method + " has no GGUF form for the " + arch + " architecture: its per-pair "
                    + "frequency factors go in a rope_freqs.weight tensor, which llama.cpp loads for llama models only "
                    + "(it refuses a " + arch + " file that has one); export with --rope yarn:... or --rope linear:...");
    }

    /** GGUF engines divide each pair's angle by {@code rope_freqs[j]}: the ratio of plain to scaled frequency. */
    private static float[] divisors(RopeScaling rope, int rotaryDim, long seqLen) {
        float[] plain = new DefaultRope(rope.theta(), rotaryDim).inverseFrequencies(0);
        float[] scaled = rope.inverseFrequencies(seqLen);
        float[] divisors = new float[plain.length];
        for (int j = 0; j < plain.length; j++) divisors[j] = plain[j] / scaled[j];
        return divisors;
    }

    private static String number(double v) {
        return v == Math.rint(v) ? Long.toString((long) v) : Double.toString(v);
    }

    /** Queues checkpoint tensors on the writer, checking each shape now and reading the floats when written. */
    private record Tensors(GgufWriter w, WeightStore store, Dtype dtype, List<String> notes) {
        void matrix(String gguf, String hf, long rows, long cols) {
            store.require(hf, rows, cols);
            w.tensor(gguf, matrixType(gguf, cols), new long[]{rows, cols}, () -> store.readFloats(hf));
        }

        void rotary(String gguf, String hf, int heads, int headDim, long cols) {
            store.require(hf, (long) heads * headDim, cols);
            w.tensor(gguf, matrixType(gguf, cols), new long[]{(long) heads * headDim, cols},
                    () -> interleaveRotaryRows(store.readFloats(hf), heads, headDim, (int) cols));
        }

        void rotaryBias(String gguf, String hf, int heads, int headDim) {
            store.require(hf, (long) heads * headDim);
            w.tensor(gguf, GgmlType.F32, new long[]{(long) heads * headDim},
                    () -> interleaveRotaryRows(store.readFloats(hf), heads, headDim, 1));
        }

        void vector(String gguf, String hf, long n) {
            store.require(hf, n);
            w.tensor(gguf, GgmlType.F32, new long[]{n}, () -> store.readFloats(hf));
        }

        private GgmlType matrixType(String gguf, long cols) {
            GgmlType t = dtype.matrixType;
            if (cols % t.blockSize() != 0) {
                notes.add(gguf + " stored as F16: its rows of " + cols + " are not a multiple of " + t.blockSize());
                return GgmlType.F16;
            }
            return t;
        }
    }
}
