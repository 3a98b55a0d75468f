package dev.ropeway.train;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Json;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.Tokenizers;
import dev.ropeway.model.Architecture;
import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.model.ModelConfig;
import dev.ropeway.model.TrainableModel;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.tensor.Backend;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Optional;
import java.util.function.Consumer;

/**
 * Pretraining a fresh Llama from a corpus: tokenise (cached), build the model, train with {@link Trainer}, and leave
 * a Hugging Face folder ({@code config.json}, {@code model.safetensors}, tokenizer files) in the run folder, beside
 * its {@code checkpoint-<step>/} folders and {@code metrics.jsonl}.
 */
public final class Pretraining {

    /** Model sizes; the vocabulary comes from the tokenizer. */
    /** The fresh model: its architecture (llama, mistral, qwen2 or qwen3) and sizes. */
    public record ModelShape(Architecture architecture, int hidden, int ffn, int layers, int heads, int kvHeads, int headDim,
                             double ropeTheta) {
        /** A Llama. */
        public ModelShape(int hidden, int ffn, int layers, int heads, int kvHeads, int headDim, double ropeTheta) {
            this(Architecture.LLAMA, hidden, ffn, layers, heads, kvHeads, headDim, ropeTheta);
        }
    }

    public record Options(Path corpus, Path tokenizer, Path out, ModelShape shape, Trainer.Settings settings,
                          OptimizerSettings optimizer, boolean resume) {}

    public record Result(Path model, TrainingState state, double heldoutLoss, long parameters) {}

    private Pretraining() {}

    public static Result run(Backend backend, Options o, Consumer<String> log, Trainer.Listener listener) {
        Path tokenizerFile = o.tokenizer().resolve("tokenizer.json");
        if (!Files.isRegularFile(tokenizerFile))
            throw new RopewayException("no tokenizer.json in " + o.tokenizer() + " (train one with `ropeway tokenizer train`)");
        Optional<Path> latest = Checkpoints.startingPoint(o.out(), o.resume(), log);
        Corpus corpus = Corpus.open(o.corpus());
        TokenizedCorpus data;
        RetrievalMix retrieval = null;
        int vocab;
        Integer eos;
        try (Tokenizer tokenizer = Tokenizers.open(o.tokenizer())) {
            vocab = tokenizer.vocabSize();
            eos = tokenizer.eosId().isPresent() ? tokenizer.eosId().getAsInt() : null;
            data = TokenizedCorpus.load(corpus, tokenizer, tokenizerFile, o.out().resolve(".tokens"), log);
            if (o.settings().retrievalMix() > 0)
                retrieval = RetrievalMix.build(tokenizer, o.settings().retrievalMix(), 8192, o.settings().seed());
        }
        Map<String, Object> configJson;
        TrainableModel model;
        if (latest.isPresent()) {
            configJson = Json.readObject(latest.get().resolve("config.json"));
            model = TrainableModel.load(backend, latest.get());
        } else {
            ModelShape s = o.shape();
            configJson = CheckpointWriter.config(s.architecture(), vocab, s.hidden(), s.ffn(), s.layers(), s.heads(),
                    s.kvHeads(), s.headDim(), o.settings().seq(), new DefaultRope(s.ropeTheta(), s.headDim()), false);
            configJson.put("bos_token_id", data.bos());
            configJson.put("eos_token_id", eos);
            model = TrainableModel.random(backend, ModelConfig.parse(configJson, "pretraining config"), o.settings().seed());
        }
        ModelConfig config = model.config();
        if (config.vocabSize() < vocab)
            throw new RopewayException("the tokenizer has " + vocab + " tokens but the model's vocabulary is " + config.vocabSize());
        try (model; Optimizer optimizer = new Optimizer(model, o.optimizer())) {
            Trainer trainer = new Trainer(model, optimizer, data.train(), data.heldout(), TrainingRope.fixed(config.rope()),
                    config.rope(), o.settings(), o.out(), configJson, o.tokenizer());
            trainer.mixRetrieval(retrieval);
            TrainingState start = latest.map(trainer::resumeFrom).orElseGet(trainer::initialState);
            log.accept(String.format("model: %,d parameters (%d layers, hidden %d, %d heads, vocab %d); %,d training tokens; "
                            + "%,d tokens per step", model.layout().parameterCount(), config.numLayers(), config.hiddenSize(),
                    config.numHeads(), config.vocabSize(), data.train().size(), o.settings().tokensPerStep()));
            log.accept(trainer.memory().explanation());
            if (start.step() > 0) log.accept("resuming from step " + start.step());
            TrainingState end = trainer.run(start, listener);
            double heldout = trainer.heldoutLoss();
            Checkpoints.writeFinal(o.out(), model, configJson, o.tokenizer());
            return new Result(o.out(), end, heldout, model.layout().parameterCount());
        }
    }

    /** The config of a finished or running pretraining run folder (for tools that read it). */
    public static ModelConfig config(Path runDir) {
        return Transformer.loadConfig(runDir);
    }
}
