package dev.ropeway.cli;

import dev.ropeway.model.Architecture;
import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.model.ModelConfig;
import dev.ropeway.model.ModelPreset;
import dev.ropeway.rope.RopeContext;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.rope.RopeSpec;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code ropeway init}: writes a freshly initialised checkpoint (Llama, Mistral, Qwen2 or Qwen3) of a preset size. */
@Command(name = "init", mixinStandardHelpOptions = true,
        description = "Write a randomly initialised checkpoint (Hugging Face layout) of a preset size: Llama, Mistral, Qwen2 or Qwen3.")
final class InitCommand implements Callable<Integer> {

    @Option(names = "--preset", defaultValue = "5m", description = "Size: tiny, 5m, 20m, 134m (default: ${DEFAULT-VALUE}).")
    String preset;

    @Option(names = "--arch", defaultValue = "llama", paramLabel = "<arch>",
            description = "Architecture: llama (default), mistral, qwen2 (query, key and value biases) or qwen3 (each "
                    + "head's queries and keys RMS-normed).")
    String arch;

    @Option(names = "--out", required = true, paramLabel = "<dir>", description = "Folder to write.")
    Path out;

    @Option(names = "--max-positions", defaultValue = "1024", description = "max_position_embeddings (default: ${DEFAULT-VALUE}).")
    long maxPositions;

    @Option(names = "--rope-theta", defaultValue = "10000", description = "RoPE base (default: ${DEFAULT-VALUE}).")
    double theta;

    @Option(names = "--rope", paramLabel = "<spec>", description = "RoPE method to record in config.json (default: default).")
    String rope;

    @Option(names = "--tied", description = "Tie input and output embeddings.")
    boolean tied;

    @Option(names = "--seed", defaultValue = "0")
    long seed;

    @Override
    public Integer call() {
        ModelPreset p = ModelPreset.parse(preset);
        RopeContext ctx = new RopeContext(p.headDim, maxPositions, 0, theta);
        RopeScaling scaling = RopeSpec.parse(rope == null ? "default" : rope, ctx);
        Architecture a = CheckpointWriter.freshArchitecture(arch);
        Map<String, Object> config = CheckpointWriter.config(a, p.vocab, p.hidden, p.ffn, p.layers, p.heads,
                p.kvHeads, p.headDim, maxPositions, scaling, tied);
        ModelConfig c = CheckpointWriter.writeRandom(out, config, seed);
        System.out.printf("wrote %s: %s %s, %,d parameters, rope %s%n", out, p.label(), a.hfClass().replace("ForCausalLM", ""),
                c.parameterCount(), RopeSpec.describe(c.rope()));
        return 0;
    }
}
