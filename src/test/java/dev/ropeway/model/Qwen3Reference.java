package dev.ropeway.model;

import dev.ropeway.io.Json;
import dev.ropeway.io.SafeTensorsWriter;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * A tiny Qwen3 written out as a checkpoint folder with its ground truth, in the fixtures' layout
 * ({@code reference.json}: input_ids and loss; {@code reference.safetensors}: logits and grad.NAME of every
 * parameter), computed here in float64 from the model's definition: transformers' Qwen3 is Llama with an RMSNorm over
 * each head's query and key (weights q_norm and k_norm, head_dim long) between the projections and the rotation.
 * The gradients are central finite differences of the float64 loss.
 */
final class Qwen3Reference {
    static final int HEAD_DIM = 16, HEADS = 2, KV_HEADS = 1, HIDDEN = 16, FFN = 24;
    static final double THETA = 10000, EPS = 1e-6;

    private final Map<String, double[]> w = new LinkedHashMap<>();
    private final boolean tied;
    private final int vocab, layers;

    /** Random weights of a model with {@code vocab} tokens and {@code layers} layers (heads of 16, grouped queries). */
    private Qwen3Reference(int vocab, int layers, long seed, boolean tied) {
        this.vocab = vocab;
        this.layers = layers;
        this.tied = tied;
        SplittableRandom r = new SplittableRandom(seed);
        put("model.embed_tokens.weight", vocab * HIDDEN, r, 0, 0.5);
        for (int i = 0; i < layers; i++) {
            String p = "model.layers." + i + ".", a = p + "self_attn.", m = p + "mlp.";
            put(p + "input_layernorm.weight", HIDDEN, r, 1, 0.1);
            put(a + "q_proj.weight", HEADS * HEAD_DIM * HIDDEN, r, 0, 0.25);
            put(a + "k_proj.weight", KV_HEADS * HEAD_DIM * HIDDEN, r, 0, 0.25);
            put(a + "v_proj.weight", KV_HEADS * HEAD_DIM * HIDDEN, r, 0, 0.25);
            put(a + "o_proj.weight", HIDDEN * HEADS * HEAD_DIM, r, 0, 0.15);
            // Far from 1, so that a model skipping the norms (or misplacing them) cannot match.
            put(a + "q_norm.weight", HEAD_DIM, r, 1, 0.5);
            put(a + "k_norm.weight", HEAD_DIM, r, 1, 0.5);
            put(p + "post_attention_layernorm.weight", HIDDEN, r, 1, 0.1);
            put(m + "gate_proj.weight", FFN * HIDDEN, r, 0, 0.2);
            put(m + "up_proj.weight", FFN * HIDDEN, r, 0, 0.2);
            put(m + "down_proj.weight", HIDDEN * FFN, r, 0, 0.15);
        }
        put("model.norm.weight", HIDDEN, r, 1, 0.1);
        if (!tied) put("lm_head.weight", vocab * HIDDEN, r, 0, 0.3);
    }

    /** Values rounded to float32 first: the checkpoint stores exactly these. */
    private void put(String name, int n, SplittableRandom r, double mean, double std) {
        double[] v = new double[n];
        for (int i = 0; i < n; i++) v[i] = (float) (mean + std * r.nextGaussian());
        w.put(name, v);
    }

    static Map<String, Object> config(int vocab, int layers, boolean tied) {
        Map<String, Object> c = new LinkedHashMap<>();
        c.put("architectures", List.of("Qwen3ForCausalLM"));
        c.put("model_type", "qwen3");
        c.put("vocab_size", vocab);
        c.put("hidden_size", HIDDEN);
        c.put("intermediate_size", FFN);
        c.put("num_hidden_layers", layers);
        c.put("num_attention_heads", HEADS);
        c.put("num_key_value_heads", KV_HEADS);
        c.put("head_dim", HEAD_DIM);
        c.put("hidden_act", "silu");
        c.put("max_position_embeddings", 64);
        c.put("rms_norm_eps", EPS);
        c.put("rope_theta", THETA);
        c.put("rope_scaling", null);
        c.put("attention_bias", false);
        c.put("use_sliding_window", false);
        c.put("sliding_window", null);
        c.put("max_window_layers", layers);
        c.put("tie_word_embeddings", tied);
        c.put("torch_dtype", "float32");
        return c;
    }

    /** Writes a checkpoint of random weights and no reference files. */
    static Path writeModel(Path dir, int vocab, int layers, boolean tied, long seed) {
        new Qwen3Reference(vocab, layers, seed, tied).writeCheckpoint(dir);
        return dir;
    }

    private void writeCheckpoint(Path dir) {
        SafeTensorsWriter model = new SafeTensorsWriter().metadata("format", "pt");
        w.forEach((name, v) -> model.add(name, floats(v), shape(name)));
        dir.toFile().mkdirs();
        model.write(dir.resolve("model.safetensors"));
        Json.writeAtomic(dir.resolve("config.json"), config(vocab, layers, tied));
    }

    /**
     * Writes the checkpoint (vocabulary of 32, two layers) and its reference files for a batch of {@code batch} random
     * sequences of {@code seq} tokens.
     */
    static Path write(Path dir, boolean tied, int batch, int seq, long seed) {
        Qwen3Reference ref = new Qwen3Reference(32, 2, seed, tied);
        ref.writeCheckpoint(dir);
        SplittableRandom r = new SplittableRandom(seed + 1);
        int[][] ids = new int[batch][seq];
        List<List<Integer>> idList = new ArrayList<>();
        for (int[] row : ids) {
            List<Integer> l = new ArrayList<>();
            for (int i = 0; i < seq; i++) l.add(row[i] = r.nextInt(ref.vocab));
            idList.add(l);
        }
        double[] logits = new double[batch * seq * ref.vocab];
        double loss = ref.loss(ids, logits);
        SafeTensorsWriter out = new SafeTensorsWriter();
        out.add("logits", floats(logits), batch, seq, ref.vocab);
        for (Map.Entry<String, double[]> e : ref.w.entrySet()) {
            double[] v = e.getValue(), grad = new double[v.length];
            for (int i = 0; i < v.length; i++) {
                double keep = v[i], step = 1e-5 * Math.max(1, Math.abs(keep));
                v[i] = keep + step;
                double up = ref.loss(ids, null);
                v[i] = keep - step;
                double down = ref.loss(ids, null);
                v[i] = keep;
                grad[i] = (up - down) / (2 * step);
            }
            out.add("grad." + e.getKey(), floats(grad), ref.shape(e.getKey()));
        }
        out.write(dir.resolve("reference.safetensors"));
        Map<String, Object> json = new LinkedHashMap<>();
        json.put("input_ids", idList);
        json.put("loss", loss);
        Json.writeAtomic(dir.resolve("reference.json"), json);
        return dir;
    }

    private long[] shape(String name) {
        if (name.endsWith("q_norm.weight") || name.endsWith("k_norm.weight")) return new long[]{HEAD_DIM};
        if (name.endsWith("norm.weight")) return new long[]{HIDDEN};
        if (name.equals("model.embed_tokens.weight") || name.equals("lm_head.weight")) return new long[]{vocab, HIDDEN};
        if (name.endsWith("q_proj.weight")) return new long[]{HEADS * HEAD_DIM, HIDDEN};
        if (name.endsWith("k_proj.weight") || name.endsWith("v_proj.weight")) return new long[]{KV_HEADS * HEAD_DIM, HIDDEN};
        if (name.endsWith("o_proj.weight")) return new long[]{HIDDEN, HEADS * HEAD_DIM};
        if (name.endsWith("gate_proj.weight") || name.endsWith("up_proj.weight")) return new long[]{FFN, HIDDEN};
        if (name.endsWith("down_proj.weight")) return new long[]{HIDDEN, FFN};
        throw new IllegalArgumentException(name);
    }

    private static float[] floats(double[] v) {
        float[] f = new float[v.length];
        for (int i = 0; i < v.length; i++) f[i] = (float) v[i];
        return f;
    }

    /** Mean next-token loss over the batch (labels = inputs shifted by one); logits written when {@code logits} is not null. */
    private double loss(int[][] ids, double[] logits) {
        double sum = 0;
        long count = 0;
        for (int b = 0; b < ids.length; b++) {
            double[][] out = forward(ids[b]);
            int seq = ids[b].length;
            for (int s = 0; s < seq; s++) {
                if (logits != null) System.arraycopy(out[s], 0, logits, (b * seq + s) * vocab, vocab);
                if (s + 1 == seq) continue;
                double max = Double.NEGATIVE_INFINITY;
                for (double x : out[s]) max = Math.max(max, x);
                double z = 0;
                for (double x : out[s]) z += Math.exp(x - max);
                sum += max + Math.log(z) - out[s][ids[b][s + 1]];
                count++;
            }
        }
        return sum / count;
    }

    private double[][] forward(int[] ids) {
        int seq = ids.length, qd = HEADS * HEAD_DIM, kvd = KV_HEADS * HEAD_DIM;
        double[][] x = new double[seq][];
        for (int s = 0; s < seq; s++) x[s] = slice(w.get("model.embed_tokens.weight"), ids[s] * HIDDEN, HIDDEN);
        for (int l = 0; l < layers; l++) {
            String p = "model.layers." + l + ".", a = p + "self_attn.", m = p + "mlp.";
            double[][] q = new double[seq][], k = new double[seq][], v = new double[seq][];
            for (int s = 0; s < seq; s++) {
                double[] hs = rmsNorm(x[s], w.get(p + "input_layernorm.weight"));
                q[s] = rotate(headNorm(matVec(w.get(a + "q_proj.weight"), hs, qd), w.get(a + "q_norm.weight")), s);
                k[s] = rotate(headNorm(matVec(w.get(a + "k_proj.weight"), hs, kvd), w.get(a + "k_norm.weight")), s);
                v[s] = matVec(w.get(a + "v_proj.weight"), hs, kvd);
            }
            for (int s = 0; s < seq; s++) {
                double[] att = new double[qd];
                for (int h = 0; h < HEADS; h++) {
                    int kh = h / (HEADS / KV_HEADS);
                    double[] scores = new double[s + 1];
                    double max = Double.NEGATIVE_INFINITY;
                    for (int t = 0; t <= s; t++) {
                        double dot = 0;
                        for (int j = 0; j < HEAD_DIM; j++) dot += q[s][h * HEAD_DIM + j] * k[t][kh * HEAD_DIM + j];
                        scores[t] = dot / Math.sqrt(HEAD_DIM);
                        max = Math.max(max, scores[t]);
                    }
                    double z = 0;
                    for (int t = 0; t <= s; t++) z += scores[t] = Math.exp(scores[t] - max);
                    for (int t = 0; t <= s; t++)
                        for (int j = 0; j < HEAD_DIM; j++) att[h * HEAD_DIM + j] += scores[t] / z * v[t][kh * HEAD_DIM + j];
                }
                add(x[s], matVec(w.get(a + "o_proj.weight"), att, HIDDEN));
            }
            for (int s = 0; s < seq; s++) {
                double[] hs = rmsNorm(x[s], w.get(p + "post_attention_layernorm.weight"));
                double[] gate = matVec(w.get(m + "gate_proj.weight"), hs, FFN), up = matVec(w.get(m + "up_proj.weight"), hs, FFN);
                for (int i = 0; i < FFN; i++) gate[i] = gate[i] / (1 + Math.exp(-gate[i])) * up[i];
                add(x[s], matVec(w.get(m + "down_proj.weight"), gate, HIDDEN));
            }
        }
        double[] head = w.get(tied ? "model.embed_tokens.weight" : "lm_head.weight");
        double[][] logits = new double[seq][];
        for (int s = 0; s < seq; s++) logits[s] = matVec(head, rmsNorm(x[s], w.get("model.norm.weight")), vocab);
        return logits;
    }

    private static double[] slice(double[] v, int from, int n) {
        double[] out = new double[n];
        System.arraycopy(v, from, out, 0, n);
        return out;
    }

    private static double[] matVec(double[] matrix, double[] x, int rows) {
        double[] y = new double[rows];
        for (int r = 0; r < rows; r++) {
            double s = 0;
            for (int c = 0; c < x.length; c++) s += matrix[r * x.length + c] * x[c];
            y[r] = s;
        }
        return y;
    }

    private static void add(double[] x, double[] y) {
        for (int i = 0; i < x.length; i++) x[i] += y[i];
    }

    private static double[] rmsNorm(double[] x, double[] weight) {
        double ms = 0;
        for (double v : x) ms += v * v;
        double inv = 1 / Math.sqrt(ms / x.length + EPS);
        double[] out = new double[x.length];
        for (int i = 0; i < x.length; i++) out[i] = x[i] * inv * weight[i];
        return out;
    }

    /** RMSNorm of each head_dim-long head of {@code x}, with one weight vector for every head. */
    private static double[] headNorm(double[] x, double[] weight) {
        double[] out = new double[x.length];
        for (int h = 0; h < x.length / HEAD_DIM; h++)
            System.arraycopy(rmsNorm(slice(x, h * HEAD_DIM, HEAD_DIM), weight), 0, out, h * HEAD_DIM, HEAD_DIM);
        return out;
    }

    /** rotate_half RoPE at {@code position}: feature j of each head paired with j + head_dim / 2. */
    private static double[] rotate(double[] x, int position) {
        double[] out = new double[x.length];
        int half = HEAD_DIM / 2;
        for (int h = 0; h < x.length / HEAD_DIM; h++)
            for (int j = 0; j < half; j++) {
                double angle = position * Math.pow(THETA, -2.0 * j / HEAD_DIM);
                double a = x[h * HEAD_DIM + j], b = x[h * HEAD_DIM + j + half];
                out[h * HEAD_DIM + j] = a * Math.cos(angle) - b * Math.sin(angle);
                out[h * HEAD_DIM + j + half] = b * Math.cos(angle) + a * Math.sin(angle);
            }
        return out;
    }
}
