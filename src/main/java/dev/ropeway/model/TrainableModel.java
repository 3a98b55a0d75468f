package dev.ropeway.model;

import dev.ropeway.io.CheckpointException;
import dev.ropeway.io.Json;
import dev.ropeway.io.SafeTensorsWriter;
import dev.ropeway.io.SplitWeights;
import dev.ropeway.io.TensorInfo;
import dev.ropeway.io.WeightStore;
import dev.ropeway.rope.ClexOde;
import dev.ropeway.rope.ClexRope;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.Tensor;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * A decoder whose parameters live in one flat buffer with a matching gradient buffer (see {@link ParameterLayout}),
 * ready for training. Loads from and saves to Hugging Face checkpoint folders.
 */
public final class TrainableModel implements AutoCloseable {
    private final Backend backend;
    private final ModelConfig config;
    private final ParameterLayout layout;
    private final Tensor params, grads;
    private final ModelWeights weights, gradients;
    /** CLEX's frozen starting frequencies (a buffer in the checkpoint, not a parameter); null for other methods. */
    private final float[] clexInvFreq;

    private TrainableModel(Backend backend, ModelConfig config, Tensor params, float[] clexInvFreq) {
        this.backend = backend;
        this.config = config;
        this.layout = ParameterLayout.of(config);
        this.params = params;
        this.grads = backend.allocate(layout.totalSize());
        this.weights = layout.views(backend, config, params);
        this.gradients = layout.views(backend, config, grads);
        this.clexInvFreq = clexInvFreq;
    }

    /** Loads the weights of a checkpoint folder (any float dtype) into a fresh flat buffer. */
    public static TrainableModel load(Backend backend, Path dir) {
        ModelConfig config = Transformer.loadConfig(dir);
        try (WeightStore store = WeightStore.open(dir)) {
            return fromStore(backend, config, store);
        }
    }

    public static TrainableModel fromStore(Backend backend, ModelConfig config, WeightStore store) {
        store = StackedProjections.view(store, config);
        ParameterLayout layout = ParameterLayout.of(config);
        Tensor params = backend.allocate(layout.totalSize());
        try {
            for (ParameterLayout.Entry e : layout.entries()) {
                if (isClex(e) && !store.contains(e.name())) {
                    // A plain checkpoint being extended with CLEX: the layer starts as the reference initialises it.
                    upload(backend, params, e, initialClex(config, e, 0));
                    continue;
                }
                TensorInfo info = store.require(e.name(), e.shape());
                if (!info.dtype().isFloatWeight() && !info.dtype().isQuantised())
                    throw new CheckpointException("tensor " + e.name() + " in " + store.directory() + " has dtype "
                            + info.dtype() + "; weights must be F32, BF16, F16, F64 or a ggml block type");
                // Training updates float32 weights: a quantised matrix (a GGUF import's) starts from its values.
                try (Tensor t = info.dtype().isQuantised() ? backend.upload(store.readFloats(e.name()))
                        : backend.upload(store.data(e.name()), info.dtype(), info.elementCount())) {
                    backend.copy(params, e.offset(), t, 0, e.size());
                }
            }
            float[] inv = null;
            if (config.rope() instanceof ClexRope clex)
                inv = store.contains(ClexLayer.INV_FREQ) ? store.readFloats(ClexLayer.INV_FREQ) : clex.baseFrequencies();
            return new TrainableModel(backend, config, params, inv);
        } catch (RuntimeException ex) {
            params.close();
            throw ex;
        }
    }

    /**
     * A freshly initialised model: matrices normal(0, 0.02) (the residual-output projections {@code o_proj} and
     * {@code down_proj} scaled by 1/sqrt(2 layers), as GPT-2 does, so the residual stream's variance does not grow
     * with depth), norms 1, biases 0. Deterministic for a seed.
     */
    public static TrainableModel random(Backend backend, ModelConfig config, long seed) {
        ParameterLayout layout = ParameterLayout.of(config);
        Tensor params = backend.allocate(layout.totalSize());
        SplittableRandom random = new SplittableRandom(seed);
        double residualStd = 0.02 / Math.sqrt(2.0 * config.numLayers());
        for (ParameterLayout.Entry e : layout.entries()) {
            float[] data = new float[Math.toIntExact(e.size())];
            if (isClex(e)) {
                data = initialClex(config, e, seed);
            } else if (e.name().endsWith("norm.weight")) {
                java.util.Arrays.fill(data, 1f);
            } else if (e.decayed()) {
                double std = e.name().endsWith("o_proj.weight") || e.name().endsWith("down_proj.weight") ? residualStd : 0.02;
                SplittableRandom r = random.split();
                for (int i = 0; i < data.length; i++) data[i] = (float) (r.nextGaussian() * std);
            }
            try (Tensor t = backend.upload(data)) {
                backend.copy(params, e.offset(), t, 0, e.size());
            }
        }
        return new TrainableModel(backend, config, params,
                config.rope() instanceof ClexRope clex ? clex.baseFrequencies() : null);
    }

    private static boolean isClex(ParameterLayout.Entry e) {
        return e.name().equals(ClexLayer.UP) || e.name().equals(ClexLayer.DOWN);
    }

    /** W_up kaiming-uniform, W_down zero: the untrained layer is exactly NTK scaling with alpha = 2t - 1. */
    private static float[] initialClex(ModelConfig config, ParameterLayout.Entry e, long seed) {
        ClexRope clex = (ClexRope) config.rope();
        return e.name().equals(ClexLayer.UP)
                ? ClexOde.initialUp(clex.rotaryDim(), clex.paramFactor(), seed)
                : new float[Math.toIntExact(e.size())];
    }

    private static void upload(Backend backend, Tensor params, ParameterLayout.Entry e, float[] data) {
        try (Tensor t = backend.upload(data)) {
            backend.copy(params, e.offset(), t, 0, e.size());
        }
    }

    /** CLEX's starting frequencies (the checkpoint's inv_freq buffer), or null when the model does not use CLEX. */
    public float[] clexInvFreq() {
        return clexInvFreq == null ? null : clexInvFreq.clone();
    }

    public ModelConfig config() { return config; }

    public ParameterLayout layout() { return layout; }

    public Backend backend() { return backend; }

    /** All parameters, flat (views in {@link #weights()}). */
    public Tensor parameters() { return params; }

    /** All gradients, flat, same layout. */
    public Tensor gradients() { return grads; }

    public ModelWeights weights() { return weights; }

    public ModelWeights gradientViews() { return gradients; }

    /** One parameter tensor's values (or its gradient's). */
    public float[] read(String name, boolean gradient) {
        ParameterLayout.Entry e = layout.entry(name);
        float[] out = new float[Math.toIntExact(e.size())];
        backend.download(gradient ? grads : params, e.offset(), out, 0, out.length);
        return out;
    }

    /**
     * Writes {@code config.json} (the given map: the caller owns the RoPE settings and extras) and
     * {@code model.safetensors} (float32, Hugging Face names) into {@code dir}, each atomically.
     */
    public void save(Path dir, Map<String, Object> configJson) {
        SafeTensorsWriter w = new SafeTensorsWriter().metadata("format", "pt");
        Map<String, List<SplitWeights.Part>> stacked = StackedProjections.of(config);
        java.util.Set<String> parts = new java.util.HashSet<>();
        stacked.values().forEach(list -> list.forEach(p -> parts.add(p.name())));
        for (ParameterLayout.Entry e : layout.entries())
            if (!parts.contains(e.name())) w.add(e.name(), read(e.name(), false), e.shape());
        // The architecture's own layout: the parts one above the other in a single matrix.
        stacked.forEach((name, list) -> {
            long rows = 0, cols = layout.entry(list.getFirst().name()).shape()[1];
            for (SplitWeights.Part p : list) rows += p.rows();
            float[] all = new float[Math.toIntExact(rows * cols)];
            int at = 0;
            for (SplitWeights.Part p : list) {
                float[] part = read(p.name(), false);
                System.arraycopy(part, 0, all, at, part.length);
                at += part.length;
            }
            w.add(name, all, rows, cols);
        });
        if (clexInvFreq != null) w.add(ClexLayer.INV_FREQ, clexInvFreq.clone(), clexInvFreq.length);
        try {
            java.nio.file.Files.createDirectories(dir);
        } catch (java.io.IOException ex) {
            throw new java.io.UncheckedIOException("cannot create " + dir, ex);
        }
        w.write(dir.resolve("model.safetensors"));
        Json.writeAtomic(dir.resolve("config.json"), configJson);
    }

    @Override
    public void close() {
        grads.close();
        params.close();
    }
}
