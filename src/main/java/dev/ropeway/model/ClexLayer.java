package dev.ropeway.model;

import dev.ropeway.io.WeightStore;
import dev.ropeway.rope.ClexOde;
import dev.ropeway.rope.ClexRope;

/**
 * The CLEX layer's tensors in a checkpoint, named as the released CLEX checkpoints name them: the ODE's
 * {@code ode_up_proj} [d/2, λd] and {@code ode_down_proj} [λd, d/2] (used as row vector × matrix, never transposed)
 * and the {@code inv_freq} buffer [d/2] that is the ODE's starting point.
 */
public final class ClexLayer {
    public static final String INV_FREQ = "model.clex_layer.inv_freq";
    public static final String UP = "model.clex_layer.proj_func.ode_up_proj";
    public static final String DOWN = "model.clex_layer.proj_func.ode_down_proj";

    private ClexLayer() {}

    /**
     * The config with its CLEX method bound to the ODE weights in {@code store}; unchanged for other methods, or when
     * the checkpoint has no CLEX layer (the untrained closed form then applies).
     */
    public static ModelConfig attach(ModelConfig config, WeightStore store) {
        if (!(config.rope() instanceof ClexRope clex) || !store.contains(UP) || !store.contains(DOWN)) return config;
        int d = clex.rotaryDim(), half = d / 2, width = clex.paramFactor() * d;
        store.require(UP, half, width);
        store.require(DOWN, width, half);
        float[] inv = store.contains(INV_FREQ) ? readInvFreq(store, half) : clex.baseFrequencies();
        ClexOde ode = new ClexOde(d, clex.maxFactor(), clex.paramFactor(), ClexOde.Activation.of(clex.act()),
                (float) clex.timeDt(), inv, store.readFloats(UP), store.readFloats(DOWN));
        return config.withRope(clex.withOde(ode));
    }

    private static float[] readInvFreq(WeightStore store, int half) {
        store.require(INV_FREQ, half);
        return store.readFloats(INV_FREQ);
    }
}
