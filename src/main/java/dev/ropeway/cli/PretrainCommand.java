package dev.ropeway.cli;

import dev.ropeway.RopewayException;
import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.model.ModelPreset;
import dev.ropeway.tensor.Backend;
import dev.ropeway.train.OptimizerSettings;
import dev.ropeway.train.Pretraining;
import dev.ropeway.train.Trainer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code ropeway pretrain}: trains a fresh Llama on a corpus. */
@Command(name = "pretrain", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Pretrain a fresh model (Llama, Mistral, Qwen2 or Qwen3 architecture) on a corpus.",
                "Writes a Hugging Face folder (config.json, model.safetensors, tokenizer files) to --out, with "
                + "checkpoint-<step>/ folders (atomic; --resume continues from the newest) and metrics.jsonl."})
final class PretrainCommand implements Callable<Integer> {

    @Option(names = "--corpus", required = true, paramLabel = "<dir>",
            description = "Prepared corpus (train/ + heldout/) or any folder of .txt / .jsonl files.")
    Path corpus;

    @Option(names = "--tokenizer", required = true, paramLabel = "<dir>",
            description = "Folder with tokenizer.json (from `ropeway tokenizer train`).")
    Path tokenizer;

    @Option(names = "--out", required = true, paramLabel = "<dir>", description = "Run folder.")
    Path out;

    @Option(names = "--arch", defaultValue = "llama", paramLabel = "<arch>",
            description = "Architecture: llama (default), mistral, qwen2 (query, key and value biases) or qwen3 (each "
                    + "head's queries and keys RMS-normed).")
    String arch;

    @Option(names = "--preset", defaultValue = "5m", description = "Model size: tiny, 5m, 20m, 134m (default: ${DEFAULT-VALUE}); "
            + "--hidden/--layers/... override parts of it.")
    String preset;
    @Option(names = "--hidden") Integer hidden;
    @Option(names = "--ffn") Integer ffn;
    @Option(names = "--layers") Integer layers;
    @Option(names = "--heads") Integer heads;
    @Option(names = "--kv-heads") Integer kvHeads;
    @Option(names = "--rope-theta", defaultValue = "10000") double theta;

    @Option(names = "--seq", defaultValue = "256", description = "Training length in tokens (default: ${DEFAULT-VALUE}).")
    int seq;
    @Mixin
    TrainingOptions training;
    @Option(names = "--json", description = "Print the result as JSON.")
    boolean json;

    @Mixin
    BackendOptions backendOptions;

    @Override
    public Integer call() {
        ModelPreset p = ModelPreset.parse(preset);
        int h = hidden != null ? hidden : p.hidden, nh = heads != null ? heads : p.heads;
        if (h % nh != 0) throw new RopewayException("--hidden " + h + " is not divisible by --heads " + nh);
        Pretraining.ModelShape shape = new Pretraining.ModelShape(CheckpointWriter.freshArchitecture(arch), h, ffn != null ? ffn : p.ffn,
                layers != null ? layers : p.layers, nh, kvHeads != null ? kvHeads : Math.min(nh, p.kvHeads), h / nh, theta);
        OptimizerSettings opt = training.optimizer();
        Trainer.Settings settings = training.settings(seq, 0);
        try (Backend backend = backendOptions.open()) {
            TrainingDisplay display = new TrainingDisplay("step", training.steps);
            Pretraining.Result r = Pretraining.run(backend, new Pretraining.Options(corpus, tokenizer, out, shape, settings,
                    opt, training.resume), display::log, display);
            display.finish();
            if (json) {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("model", r.model().toString());
                m.put("parameters", r.parameters());
                m.put("steps", r.state().step());
                m.put("tokens", r.state().tokens());
                m.put("heldout_loss", r.heldoutLoss());
                m.put("elapsed_seconds", r.state().elapsedSeconds());
                System.out.println(Output.json(m));
            } else {
                System.out.printf(Locale.ROOT, "trained %,d parameters for %d steps (%,d tokens) in %s; held-out loss %.4f "
                                + "(perplexity %.2f); model in %s%n", r.parameters(), r.state().step(), r.state().tokens(),
                        ProgressBar.duration(r.state().elapsedSeconds()), r.heldoutLoss(), Math.exp(r.heldoutLoss()), r.model());
            }
        }
        return 0;
    }
}
