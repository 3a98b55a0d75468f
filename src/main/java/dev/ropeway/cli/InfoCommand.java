package dev.ropeway.cli;

import dev.ropeway.io.WeightStore;
import dev.ropeway.model.ModelConfig;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.rope.RopeSpec;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code ropeway info <model-dir>}: what a checkpoint is and what context it claims. */
@Command(name = "info", mixinStandardHelpOptions = true,
        description = {"Describe a Hugging Face checkpoint: architecture, sizes, dtype, RoPE method, context lengths.",
                "Given a .gguf file instead, summarise it: architecture, sizes, RoPE keys, tokenizer, tensor types."})
final class InfoCommand implements Callable<Integer> {

    @Parameters(paramLabel = "<model-dir>", arity = "0..1",
            description = "Checkpoint folder (config.json + safetensors), or a .gguf file.")
    Path dir;

    @Option(names = "--model", paramLabel = "<dir>", description = "The same, named as the other commands name it.")
    Path model;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = "--json", description = "Print one JSON object instead of text.")
    boolean json;

    @Override
    public Integer call() {
        if ((dir == null) == (model == null))
            throw new picocli.CommandLine.ParameterException(spec.commandLine(),
                    "name one checkpoint: ropeway info <model-dir> or ropeway info --model <model-dir>");
        if (dir == null) dir = model;
        if (Files.isRegularFile(dir)) return GgufInfo.print(dir, json);
        ModelConfig c = Transformer.loadConfig(dir);
        Map<String, Object> out = new LinkedHashMap<>();
        try (WeightStore store = WeightStore.open(dir)) {
            c = dev.ropeway.model.ClexLayer.attach(c, store);
            out.put("path", dir.toAbsolutePath().normalize().toString());
            out.put("architecture", c.architecture().hfClass());
            out.put("vocab_size", c.vocabSize());
            out.put("hidden_size", c.hiddenSize());
            out.put("intermediate_size", c.intermediateSize());
            out.put("layers", c.numLayers());
            out.put("attention_heads", c.numHeads());
            out.put("kv_heads", c.numKvHeads());
            out.put("head_dim", c.headDim());
            out.put("rotary_dim", c.rotaryDim());
            out.put("tied_embeddings", c.tieWordEmbeddings());
            out.put("biases", biases(c));
            out.put("qk_norm", c.qkNorm());
            out.put("parameters", store.totalElements());
            out.put("parameters_from_config", c.parameterCount());
            out.put("dtype", store.dominantDtype().name());
            out.put("tensors", store.names().size());
            out.put("sliding_window", c.slidingWindow() == 0 ? null : c.slidingWindow());
        }
        RopeScaling rope = c.rope();
        out.put("rope_type", rope.type());
        out.put("rope", rope.toParameters());
        out.put("rope_summary", RopeSpec.describe(rope));
        long trained = trainedContext(c);
        out.put("trained_context", trained);
        out.put("max_position_embeddings", c.maxPositionEmbeddings());
        out.put("claimed_context", claimedContext(c, trained));
        out.put("tokenizer", Files.exists(dir.resolve("tokenizer.json")));
        if (json) {
            System.out.println(Output.json(out));
            return 0;
        }
        System.out.printf("%s  (%s)%n", out.get("path"), c.architecture().hfClass());
        System.out.printf("  parameters   %,d (%s)%n", (Long) out.get("parameters"), out.get("dtype"));
        System.out.printf("  layers       %d, hidden %d, ffn %d, vocab %,d%n", c.numLayers(), c.hiddenSize(),
                c.intermediateSize(), c.vocabSize());
        System.out.printf("  attention    %d heads, %d kv heads%s, head_dim %d%s%n", c.numHeads(), c.numKvHeads(),
                c.numKvHeads() < c.numHeads() ? " (grouped-query)" : "", c.headDim(),
                (c.rotaryDim() < c.headDim() ? ", rotary " + c.rotaryDim() : "")
                        + (c.qkNorm() ? "; queries and keys RMS-normed per head" : ""));
        System.out.printf("  embeddings   %s; biases: %s%n", c.tieWordEmbeddings() ? "tied" : "untied", out.get("biases"));
        System.out.printf("  rope         %s%n", out.get("rope_summary"));
        System.out.printf("  context      trained %,d tokens; claims %,d (max_position_embeddings %,d)%n", trained,
                (Long) out.get("claimed_context"), c.maxPositionEmbeddings());
        if (c.slidingWindow() > 0) System.out.printf("  window       sliding attention over %,d tokens%n", c.slidingWindow());
        System.out.printf("  tokenizer    %s%n", (Boolean) out.get("tokenizer") ? "tokenizer.json" : "none (score with --ids)");
        return 0;
    }

    private static String biases(ModelConfig c) {
        StringBuilder b = new StringBuilder();
        if (c.qkvBias()) b.append("q/k/v ");
        if (c.outputBias()) b.append("o ");
        if (c.mlpBias()) b.append("mlp ");
        return b.isEmpty() ? "none" : b.toString().trim();
    }

    /** The length the model was pretrained at: the "original" length for methods that name one. */
    static long trainedContext(ModelConfig c) {
        Object original = c.rope().toParameters().get("original_max_position_embeddings");
        return original instanceof Number n ? n.longValue() : c.maxPositionEmbeddings();
    }

    /** The length the RoPE configuration is meant to reach. */
    static long claimedContext(ModelConfig c, long trained) {
        Object factor = c.rope().toParameters().get("factor");
        double f = factor instanceof Number n ? n.doubleValue() : 1.0;
        return switch (c.rope().type()) {
            case "linear", "dynamic", "ntk" -> Math.max(c.maxPositionEmbeddings(), Math.round(c.maxPositionEmbeddings() * f));
            case "yarn", "llama3", "longrope" -> Math.max(c.maxPositionEmbeddings(), Math.round(trained * f));
            case "e2" -> trained * (c.rope() instanceof dev.ropeway.rope.E2Rope e2 ? e2.maxScale() : 1);
            case "clex" -> trained * (c.rope() instanceof dev.ropeway.rope.ClexRope clex ? clex.maxFactor() : 1);
            default -> c.maxPositionEmbeddings();
        };
    }
}
