package dev.ropeway.cli;

import dev.ropeway.rope.RopeSpec;
import dev.ropeway.tensor.Backend;
import dev.ropeway.train.Extension;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code ropeway extend}: fine-tunes a checkpoint for longer contexts with one method. */
@Command(name = "extend", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Fine-tune a checkpoint (plain RoPE) for longer contexts.",
                "Methods: e2 (E²-LLM: random scale g in 1..G and offset t per iteration; at inference g = ceil(length / L0)),",
                "clex (CLEX: an ODE layer moves the frequencies with the length factor t in 1..T, trained jointly),",
                "pi (position interpolation at --factor), yarn (YaRN at --factor), pose (skip-wise positions up to "
                + "--factor x L0, then position interpolation).",
                "Same progress, metrics, checkpoints and --resume as pretrain."})
final class ExtendCommand implements Callable<Integer> {

    @Option(names = "--model", required = true, paramLabel = "<dir>", description = "The pretrained checkpoint.")
    Path model;
    @Option(names = "--method", required = true, description = "e2, clex, pi, yarn or pose.")
    String method;
    @Option(names = "--train-len", required = true, paramLabel = "<tokens>", description = "Training window R in tokens.")
    int trainLen;
    @Option(names = "--corpus", required = true, paramLabel = "<dir>", description = "Training corpus (as for pretrain).")
    Path corpus;
    @Option(names = "--tokenizer", paramLabel = "<dir>", description = "Tokenizer folder (default: the model's).")
    Path tokenizer;
    @Option(names = "--out", required = true, paramLabel = "<dir>", description = "Run folder.")
    Path out;
    @Option(names = "--original-length", defaultValue = "0", paramLabel = "<tokens>",
            description = "L0, the length the model was trained at (default: its max_position_embeddings).")
    long originalLength;
    @Option(names = "--factor", defaultValue = "4", description = "pi, yarn, pose: target length / L0 (default: ${DEFAULT-VALUE}).")
    double factor;
    @Option(names = "--max-scale", defaultValue = "16", description = "e2: largest training scale G (default: ${DEFAULT-VALUE}).")
    int maxScale;
    @Option(names = "--per-sample", description = "e2: draw g and t for every sequence instead of every iteration.")
    boolean perSample;
    @Option(names = "--max-factor", defaultValue = "16", description = "clex: largest length factor T (default: ${DEFAULT-VALUE}).")
    int maxFactor;
    @Option(names = "--param-factor", defaultValue = "1", description = "clex: ODE width factor λ (default: ${DEFAULT-VALUE}).")
    int paramFactor;
    @Option(names = "--act", defaultValue = "tanh", description = "clex: ODE activation, tanh or silu (default: ${DEFAULT-VALUE}).")
    String act;
    @Option(names = "--time-dt", defaultValue = "0.01", description = "clex: ODE step (default: ${DEFAULT-VALUE}).")
    double timeDt;
    @Option(names = "--clex-lr-scale", defaultValue = "1",
            description = "clex: learning-rate multiplier for the ODE layer (default: ${DEFAULT-VALUE}; use about 0.01 at learning rates near 1e-3).")
    double clexLrScale;
    @Option(names = "--log-scale", description = "clex: scale attention logits by ln(length) / ln(L0) at inference.")
    boolean logScale;
    @Option(names = "--eval-factor", defaultValue = "4",
            description = "Held-out loss during training at this multiple of L0 (default: ${DEFAULT-VALUE}; 0 = the training length).")
    double evalFactor;
    @Option(names = "--json", description = "Print the result as JSON.")
    boolean json;

    @Mixin
    TrainingOptions training;
    @Mixin
    BackendOptions backendOptions;

    @Override
    public Integer call() {
        model = ModelFolders.resolve(model);
        Extension.Method m = Extension.Method.parse(method);
        long l0 = originalLength > 0 ? originalLength : dev.ropeway.model.Transformer.loadConfig(model).maxPositionEmbeddings();
        int evalLength = evalFactor > 0 ? (int) Math.round(l0 * evalFactor) : 0;
        Extension.Options o = new Extension.Options(model, m, corpus, tokenizer, out, training.settings(trainLen, evalLength),
                training.optimizer(), training.resume, originalLength, factor, maxScale, perSample, evalFactor,
                new Extension.ClexSettings(maxFactor, paramFactor, act, timeDt, logScale, clexLrScale));
        try (Backend backend = backendOptions.open()) {
            TrainingDisplay display = new TrainingDisplay("step", training.steps);
            Extension.Result r = Extension.run(backend, o, display::log, display);
            display.finish();
            if (json) {
                Map<String, Object> j = new LinkedHashMap<>();
                j.put("model", r.model().toString());
                j.put("method", m.label());
                j.put("rope", r.rope().toParameters());
                j.put("steps", r.state().step());
                j.put("tokens", r.state().tokens());
                j.put("heldout_loss", r.heldoutLoss());
                j.put("heldout_length", o.settings().evalSeq());
                j.put("elapsed_seconds", r.state().elapsedSeconds());
                System.out.println(Output.json(j));
            } else {
                System.out.printf(Locale.ROOT, "extended with %s in %d steps (%s); held-out loss at %d tokens %.4f; RoPE %s; "
                                + "model in %s%n", m.label(), r.state().step(), ProgressBar.duration(r.state().elapsedSeconds()),
                        o.settings().evalSeq(), r.heldoutLoss(), RopeSpec.describe(r.rope()), r.model());
            }
        }
        return 0;
    }
}
