package dev.ropeway.cli;

import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.model.ModelConfig;
import dev.ropeway.model.ModelPreset;
import dev.ropeway.model.TokenBatch;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.RopeContext;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.rope.RopeSpec;
import dev.ropeway.tensor.Backend;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.Callable;

/**
 * {@code ropeway demo}: the whole story on a small model. At this stage of the product it builds a small Llama,
 * shows what each RoPE scaling does to the rotary frequencies at 1x to 16x the trained length, and runs the
 * forward pass at each length to show speed and linear memory.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Build a small Llama and show every RoPE scaling method at 1x..16x its trained length.")
final class DemoCommand implements Callable<Integer> {

    @Option(names = "--out", defaultValue = "runs/demo", description = "Working folder (default: ${DEFAULT-VALUE}).")
    Path out;

    @Option(names = "--preset", defaultValue = "5m", description = "Model size (default: ${DEFAULT-VALUE}).")
    String preset;

    @Option(names = "--train-len", defaultValue = "256", description = "Trained context length L (default: ${DEFAULT-VALUE}).")
    int trainLen;

    @Mixin
    BackendOptions backendOptions;

    @Override
    public Integer call() throws Exception {
        ModelPreset p = ModelPreset.parse(preset);
        Path modelDir = out.resolve("model-" + p.label() + "-L" + trainLen);
        RopeContext ctx = new RopeContext(p.headDim, trainLen, 0, 10000);
        if (!Files.exists(modelDir.resolve("model.safetensors"))) {
            System.out.printf("[1/3] writing a %s Llama (L = %d) to %s%n", p.label(), trainLen, modelDir);
            CheckpointWriter.writeRandom(modelDir, CheckpointWriter.llamaConfig(p.vocab, p.hidden, p.ffn, p.layers,
                    p.heads, p.kvHeads, p.headDim, trainLen, RopeSpec.parse("default", ctx), false), 1);
        } else {
            System.out.printf("[1/3] reusing %s%n", modelDir);
        }
        int[] multiples = {1, 2, 4, 8, 16};
        String yarn = "yarn:factor=16,original_max_position_embeddings=" + trainLen;
        Map<String, String> methods = new LinkedHashMap<>();
        methods.put("no scaling", "default");
        methods.put("PI x16", "linear:factor=16");
        methods.put("NTK x16", "ntk:factor=16");
        methods.put("dynamic NTK", "dynamic:factor=1");
        methods.put("YaRN x16", yarn);
        System.out.printf("%n[2/3] what each method does to the %d rotary pairs at 16 L (L = %d)%n", p.headDim / 2, trainLen);
        System.out.printf("  %-12s %8s %14s %16s   %s%n", "method", "scale", "pairs turning", "slowest angle", "--rope spec");
        float[] plain = RopeSpec.parse("default", ctx).inverseFrequencies(trainLen);
        double slowestDefault = plain[plain.length - 1];
        for (var m : methods.entrySet()) {
            RopeScaling r = RopeSpec.parse(m.getValue(), ctx);
            float[] inv = r.inverseFrequencies(16L * trainLen);
            int turning = 0;
            for (float f : inv) if (2 * Math.PI / f < trainLen) turning++;
            // The slowest pair's angle at 16 L against the largest angle plain RoPE reached in training:
            // above 1x the model sees rotations it never saw, which is what makes perplexity explode.
            double angle = 16.0 * trainLen * inv[inv.length - 1] / (trainLen * slowestDefault);
            System.out.printf("  %-12s %8.4f %14d %15.1fx   %s%n", m.getKey(), r.attentionScaling(), turning, angle,
                    m.getValue());
        }
        System.out.println("  (pairs turning: pairs whose wavelength is shorter than L; slowest angle: relative to training)");
        System.out.printf("%n[3/3] forward pass at 1x..16x L%n");
        try (Backend backend = backendOptions.open(); Transformer t = Transformer.load(backend, modelDir)) {
            ModelConfig c = t.config();
            Random random = new Random(3);
            // Warm-up, so that the first row is not the JIT compiler's time.
            for (int i = 0; i < 4; i++)
                t.forward(TokenBatch.of(random.ints(2 * trainLen, 0, c.vocabSize()).toArray(), 1, 2 * trainLen), (f, n, l) -> { });
            for (int m : multiples) {
                int len = m * trainLen;
                TokenBatch batch = TokenBatch.of(random.ints(len, 0, c.vocabSize()).toArray(), 1, len);
                long s = System.nanoTime();
                t.forward(batch, (first, n, logits) -> { });
                double sec = (System.nanoTime() - s) / 1e9;
                System.out.printf("  %2dx L = %,6d tokens  %7.3f s  %,9.0f tokens/s  peak RSS %,d MiB%n", m, len, sec,
                        len / sec, BenchCommand.peakRssMiB());
            }
        }
        System.out.println("\nTraining (pretrain, extend with PI / YaRN / E2-LLM / CLEX) and the perplexity and passkey"
                + " evaluations build on this engine; see README.md.");
        return 0;
    }
}
