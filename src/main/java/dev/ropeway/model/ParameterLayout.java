package dev.ropeway.model;

import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.Tensor;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Where every trainable tensor of a decoder lives inside one flat buffer (and, with the same offsets, inside the
 * gradient and optimizer-moment buffers). Matrices come first and norms and biases after them, so weight decay,
 * which by convention skips norms and biases, applies to one contiguous prefix: {@code [0, decayedSize)}.
 * Offsets are rounded up to 16 floats (64 bytes) so every tensor starts on a cache line.
 *
 * <p>A tied head has no entry of its own: it is the embedding.
 */
public final class ParameterLayout {
    private static final long ALIGN = 16;

    /** One tensor: its Hugging Face name, shape and place in the flat buffer. */
    public record Entry(String name, long[] shape, long offset, long size, boolean decayed) {}

    private final List<Entry> entries;
    private final Map<String, Entry> byName;
    private final long totalSize, decayedSize;

    private ParameterLayout(List<Entry> entries, long totalSize, long decayedSize) {
        this.entries = Collections.unmodifiableList(entries);
        this.totalSize = totalSize;
        this.decayedSize = decayedSize;
        Map<String, Entry> m = new LinkedHashMap<>();
        for (Entry e : entries) m.put(e.name(), e);
        this.byName = Collections.unmodifiableMap(m);
    }

    public static ParameterLayout of(ModelConfig c) {
        long h = c.hiddenSize(), v = c.vocabSize(), ffn = c.intermediateSize(), qd = c.qDim(), kvd = c.kvDim();
        record Spec(String name, boolean decayed, long[] shape) {}
        List<Spec> specs = new ArrayList<>();
        class Add {
            void add(String name, boolean decay, long... shape) {
                specs.add(new Spec(name, decay, shape));
            }
        }
        Add a = new Add();
        a.add("model.embed_tokens.weight", true, v, h);
        for (int i = 0; i < c.numLayers(); i++) {
            String p = "model.layers." + i + ".";
            a.add(p + "self_attn.q_proj.weight", true, qd, h);
            a.add(p + "self_attn.k_proj.weight", true, kvd, h);
            a.add(p + "self_attn.v_proj.weight", true, kvd, h);
            a.add(p + "self_attn.o_proj.weight", true, h, qd);
            a.add(p + "mlp.gate_proj.weight", true, ffn, h);
            a.add(p + "mlp.up_proj.weight", true, ffn, h);
            a.add(p + "mlp.down_proj.weight", true, h, ffn);
        }
        if (!c.tieWordEmbeddings()) a.add("lm_head.weight", true, v, h);
        for (int i = 0; i < c.numLayers(); i++) {
            String p = "model.layers." + i + ".";
            a.add(p + "input_layernorm.weight", false, h);
            a.add(p + "post_attention_layernorm.weight", false, h);
            if (c.qkvBias()) {
                a.add(p + "self_attn.q_proj.bias", false, qd);
                a.add(p + "self_attn.k_proj.bias", false, kvd);
                a.add(p + "self_attn.v_proj.bias", false, kvd);
            }
            if (c.outputBias()) a.add(p + "self_attn.o_proj.bias", false, h);
            if (c.qkNorm()) {
                a.add(p + "self_attn.q_norm.weight", false, c.headDim());
                a.add(p + "self_attn.k_norm.weight", false, c.headDim());
            }
            if (c.mlpBias()) {
                a.add(p + "mlp.gate_proj.bias", false, ffn);
                a.add(p + "mlp.up_proj.bias", false, ffn);
                a.add(p + "mlp.down_proj.bias", false, h);
            }
        }
        a.add("model.norm.weight", false, h);
        // The CLEX ODE layer trains with the model (without weight decay, as the reference does).
        if (c.rope() instanceof dev.ropeway.rope.ClexRope clex) {
            long half = clex.rotaryDim() / 2, width = (long) clex.paramFactor() * clex.rotaryDim();
            a.add(ClexLayer.UP, false, half, width);
            a.add(ClexLayer.DOWN, false, width, half);
        }

        List<Entry> entries = new ArrayList<>();
        long offset = 0, decayedEnd = 0;
        for (Spec spec : specs) {
            long size = 1;
            for (long d : spec.shape()) size = Math.multiplyExact(size, d);
            entries.add(new Entry(spec.name(), spec.shape(), offset, size, spec.decayed()));
            offset = roundUp(offset + size);
            if (spec.decayed()) decayedEnd = offset;
        }
        return new ParameterLayout(entries, offset, decayedEnd);
    }

    private static long roundUp(long n) {
        return (n + ALIGN - 1) / ALIGN * ALIGN;
    }

    public List<Entry> entries() {
        return entries;
    }

    public boolean has(String name) {
        return byName.containsKey(name);
    }

    public Entry entry(String name) {
        Entry e = byName.get(name);
        if (e == null) throw new IllegalArgumentException("no parameter named " + name);
        return e;
    }

    /** Where the CLEX layer's tensors begin (they come last); {@link #totalSize} when the model has none. */
    public long clexStart() {
        return has(ClexLayer.UP) ? entry(ClexLayer.UP).offset() : totalSize;
    }

    /** Floats in the flat buffer, padding included. */
    public long totalSize() {
        return totalSize;
    }

    /** The buffer prefix holding the tensors that get weight decay. */
    public long decayedSize() {
        return decayedSize;
    }

    /** Parameters, padding excluded. */
    public long parameterCount() {
        long n = 0;
        for (Entry e : entries) n += e.size();
        return n;
    }

    /** The model's tensors as views into {@code buffer} (the weights, or with a gradient buffer, their gradients). */
    public ModelWeights views(Backend backend, ModelConfig c, Tensor buffer) {
        if (buffer.size() < totalSize)
            throw new IllegalArgumentException("parameter buffer holds " + buffer.size() + " floats, layout needs " + totalSize);
        java.util.function.Function<String, Tensor> view = name -> {
            Entry e = entry(name);
            return backend.view(buffer, e.offset(), e.size());
        };
        java.util.function.Function<String, Tensor> optional = name -> byName.containsKey(name) ? view.apply(name) : null;
        Tensor embed = view.apply("model.embed_tokens.weight");
        List<LayerWeights> layers = new ArrayList<>();
        for (int i = 0; i < c.numLayers(); i++) {
            String p = "model.layers." + i + ".", at = p + "self_attn.", m = p + "mlp.";
            layers.add(new LayerWeights(
                    view.apply(p + "input_layernorm.weight"), view.apply(p + "post_attention_layernorm.weight"),
                    view.apply(at + "q_proj.weight"), view.apply(at + "k_proj.weight"),
                    view.apply(at + "v_proj.weight"), view.apply(at + "o_proj.weight"),
                    optional.apply(at + "q_proj.bias"), optional.apply(at + "k_proj.bias"),
                    optional.apply(at + "v_proj.bias"), optional.apply(at + "o_proj.bias"),
                    view.apply(m + "gate_proj.weight"), view.apply(m + "up_proj.weight"), view.apply(m + "down_proj.weight"),
                    optional.apply(m + "gate_proj.bias"), optional.apply(m + "up_proj.bias"), optional.apply(m + "down_proj.bias"),
                    optional.apply(at + "q_norm.weight"), optional.apply(at + "k_norm.weight")));
        }
        Tensor norm = view.apply("model.norm.weight");
        boolean tied = c.tieWordEmbeddings();
        return new ModelWeights(embed, layers, norm, tied ? embed : view.apply("lm_head.weight"), tied);
    }
}
