package dev.ropeway.model;

import dev.ropeway.io.TensorInfo;
import dev.ropeway.io.WeightStore;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.Tensor;

import java.util.ArrayList;
import java.util.List;

/**
 * All weights of a decoder on a backend (matrices as {@link Backend#uploadWeights} holds them, the rest float32). Names and shapes follow Hugging Face's
 * {@code *ForCausalLM} layout; every tensor is checked against the shape the config implies, so a wrong or missing
 * tensor is reported by name before any compute.
 */
public record ModelWeights(Tensor embedding, List<LayerWeights> layers, Tensor finalNorm, Tensor lmHead,
                           boolean tied) implements AutoCloseable {

    public static ModelWeights load(Backend backend, ModelConfig c, WeightStore store) {
        store = StackedProjections.view(store, c);
        long h = c.hiddenSize(), v = c.vocabSize(), ffn = c.intermediateSize(), qd = c.qDim(), kvd = c.kvDim();
        Loader load = new Loader(backend, store);
        List<Tensor> loaded = load.loaded;
        try {
            Tensor embed = load.tensor("model.embed_tokens.weight", v, h);
            List<LayerWeights> layers = new ArrayList<>();
            for (int i = 0; i < c.numLayers(); i++) {
                String p = "model.layers." + i + ".";
                String a = p + "self_attn.", m = p + "mlp.";
                layers.add(new LayerWeights(
                        load.tensor(p + "input_layernorm.weight", h),
                        load.tensor(p + "post_attention_layernorm.weight", h),
                        load.tensor(a + "q_proj.weight", qd, h),
                        load.tensor(a + "k_proj.weight", kvd, h),
                        load.tensor(a + "v_proj.weight", kvd, h),
                        load.tensor(a + "o_proj.weight", h, qd),
                        c.qkvBias() ? load.tensor(a + "q_proj.bias", qd) : null,
                        c.qkvBias() ? load.tensor(a + "k_proj.bias", kvd) : null,
                        c.qkvBias() ? load.tensor(a + "v_proj.bias", kvd) : null,
                        c.outputBias() ? load.tensor(a + "o_proj.bias", h) : null,
                        load.tensor(m + "gate_proj.weight", ffn, h),
                        load.tensor(m + "up_proj.weight", ffn, h),
                        load.tensor(m + "down_proj.weight", h, ffn),
                        c.mlpBias() ? load.tensor(m + "gate_proj.bias", ffn) : null,
                        c.mlpBias() ? load.tensor(m + "up_proj.bias", ffn) : null,
                        c.mlpBias() ? load.tensor(m + "down_proj.bias", h) : null,
                        c.qkNorm() ? load.tensor(a + "q_norm.weight", c.headDim()) : null,
                        c.qkNorm() ? load.tensor(a + "k_norm.weight", c.headDim()) : null));
            }
            Tensor norm = load.tensor("model.norm.weight", h);
            // Some tied checkpoints still carry a copy of the head; the config decides.
            boolean tied = c.tieWordEmbeddings();
            Tensor head = tied ? embed : load.tensor("lm_head.weight", v, h);
            return new ModelWeights(embed, layers, norm, head, tied);
        } catch (RuntimeException e) {
            for (Tensor t : loaded) t.close();
            throw e;
        }
    }

    @Override
    public void close() {
        embedding.close();
        layers.forEach(LayerWeights::close);
        finalNorm.close();
        if (!tied) lmHead.close();
    }

    private static final class Loader {
        final Backend backend;
        final WeightStore store;
        final List<Tensor> loaded = new ArrayList<>();

        Loader(Backend backend, WeightStore store) {
            this.backend = backend;
            this.store = store;
        }

        Tensor tensor(String name, long... shape) {
            TensorInfo info = store.require(name, shape);
            if (!info.dtype().isFloatWeight() && !(shape.length == 2 && info.dtype().isQuantised()))
                throw new dev.ropeway.io.CheckpointException("tensor " + name + " in " + store.directory() + " has dtype "
                        + info.dtype() + "; weights must be F32, BF16, F16 or F64 (matrices may also be in ggml's blocks: Q8_0, Q2_K to Q6_K, IQ4_XS, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL)");
            // Matrices may stay in a narrower type (16-bit or ggml blocks as stored, or what --cpu-weights asks for);
            // vectors (norms, biases) are read by ops that want float32.
            Tensor t = shape.length == 2 ? backend.uploadWeights(store.data(name), info.dtype(), shape[0], shape[1])
                    : backend.upload(store.data(name), info.dtype(), info.elementCount());
            loaded.add(t);
            return t;
        }
    }
}
