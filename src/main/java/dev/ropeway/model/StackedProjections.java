package dev.ropeway.model;

import dev.ropeway.io.SplitWeights;
import dev.ropeway.io.WeightStore;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Checkpoints that stack projections in one matrix (Phi-3: {@code self_attn.qkv_proj} = q, k, v rows;
 * {@code mlp.gate_up_proj} = gate, up rows, as transformers splits them) are read as the separate matrices the rest of
 * Ropeway uses, and written back stacked, so a fine-tuned Phi-3 is still a Phi-3 checkpoint.
 */
public final class StackedProjections {
    private StackedProjections() {}

    /** Each stacked tensor's name and its parts, top rows first; empty for an architecture that stores them apart. */
    public static Map<String, List<SplitWeights.Part>> of(ModelConfig c) {
        Map<String, List<SplitWeights.Part>> stacked = new LinkedHashMap<>();
        if (!c.architecture().stacksProjections()) return stacked;
        for (int i = 0; i < c.numLayers(); i++) {
            String a = "model.layers." + i + ".self_attn.", m = "model.layers." + i + ".mlp.";
            stacked.put(a + "qkv_proj.weight", List.of(new SplitWeights.Part(a + "q_proj.weight", c.qDim()),
                    new SplitWeights.Part(a + "k_proj.weight", c.kvDim()), new SplitWeights.Part(a + "v_proj.weight", c.kvDim())));
            stacked.put(m + "gate_up_proj.weight", List.of(new SplitWeights.Part(m + "gate_proj.weight", c.intermediateSize()),
                    new SplitWeights.Part(m + "up_proj.weight", c.intermediateSize())));
        }
        return stacked;
    }

    /** {@code store}, the weights of a model with config {@code c}, seen by the separate names. */
    public static WeightStore view(WeightStore store, ModelConfig c) {
        return SplitWeights.of(store, of(c));
    }

    /** The weights of the checkpoint folder {@code dir} of a model with config {@code c}, by the separate names. */
    public static WeightStore open(Path dir, ModelConfig c) {
        WeightStore store = WeightStore.open(dir);
        try {
            return view(store, c);
        } catch (RuntimeException e) {
            store.close();
            throw e;
        }
    }
}
