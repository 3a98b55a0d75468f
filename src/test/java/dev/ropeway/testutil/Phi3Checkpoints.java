package dev.ropeway.testutil;

import dev.ropeway.io.Json;
import dev.ropeway.io.SafeTensorsWriter;
import dev.ropeway.io.TensorInfo;
import dev.ropeway.io.WeightStore;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** Phi-3 checkpoints made from Llama ones, stacked as transformers stacks them (independently of Ropeway's reader). */
public final class Phi3Checkpoints {
    private Phi3Checkpoints() {}

    /**
     * Writes {@code llama} (a Llama checkpoint folder) as a Phi-3 checkpoint into {@code out}: the projections stacked
     * (bytes and dtype kept), the config relabelled in the 4.x form and every other file copied.
     */
    public static Path write(Path llama, Path out) throws IOException {
        Files.createDirectories(out);
        try (var files = Files.list(llama)) {
            for (Path f : files.toList()) {
                String name = f.getFileName().toString();
                if (!name.equals("config.json") && !name.equals("model.safetensors") && Files.isRegularFile(f))
                    Files.copy(f, out.resolve(name));
            }
        }
        Map<String, Object> config = Json.readObject(llama.resolve("config.json"));
        if (config.containsKey("rope_parameters")) config = FixtureFiles.legacyForm(config);
        config.put("architectures", List.of("Phi3ForCausalLM"));
        config.put("model_type", "phi3");
        config.remove("attention_bias");
        config.remove("mlp_bias");
        if (config.get("rope_scaling") instanceof Map<?, ?> scaling) {
            @SuppressWarnings("unchecked")
            Map<String, Object> s = new LinkedHashMap<>((Map<String, Object>) scaling);
            if (s.containsKey("original_max_position_embeddings")) {
                // Phi-3 keeps the trained context at the top level and lets the factor follow from it.
                config.put("original_max_position_embeddings", s.remove("original_max_position_embeddings"));
                s.remove("factor");
            }
            config.put("rope_scaling", s);
        }
        int layers = ((Number) config.get("num_hidden_layers")).intValue();
        // transformers' split: qkv_proj rows are q, then k, then v; gate_up_proj rows are gate, then up.
        Map<String, List<String>> stacks = new LinkedHashMap<>();
        for (int i = 0; i < layers; i++) {
            String a = "model.layers." + i + ".self_attn.", m = "model.layers." + i + ".mlp.";
            stacks.put(a + "qkv_proj.weight", List.of(a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight"));
            stacks.put(m + "gate_up_proj.weight", List.of(m + "gate_proj.weight", m + "up_proj.weight"));
        }
        Set<String> stacked = new HashSet<>();
        stacks.values().forEach(stacked::addAll);
        SafeTensorsWriter w = new SafeTensorsWriter().metadata("format", "pt");
        try (WeightStore store = WeightStore.open(llama); Arena arena = Arena.ofConfined()) {
            for (String name : store.names()) {
                if (stacked.contains(name)) continue;
                TensorInfo t = store.info(name);
                w.add(name, t.dtype(), store.data(name), t.shape());
            }
            stacks.forEach((stack, list) -> {
                long rows = 0, bytes = 0;
                TensorInfo first = store.info(list.getFirst());
                for (String p : list) {
                    rows += store.info(p).dim(0);
                    bytes += store.info(p).byteSize();
                }
                MemorySegment all = arena.allocate(bytes);
                long at = 0;
                for (String p : list) {
                    MemorySegment part = store.data(p);
                    MemorySegment.copy(part, 0, all, at, part.byteSize());
                    at += part.byteSize();
                }
                w.add(stack, first.dtype(), all, rows, first.dim(1));
            });
            w.write(out.resolve("model.safetensors"));
        }
        Json.writeAtomic(out.resolve("config.json"), config);
        return out;
    }
}
