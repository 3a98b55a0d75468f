package dev.ropeway.train;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Json;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.Tokenizers;
import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.model.ModelConfig;
import dev.ropeway.model.TrainableModel;
import dev.ropeway.io.WeightStore;
import dev.ropeway.rope.ClexRope;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.rope.E2Rope;
import dev.ropeway.rope.LinearRope;
import dev.ropeway.rope.RopeContext;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.rope.RopeScalings;
import dev.ropeway.tensor.Backend;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.function.Consumer;

/**
 * Fine-tuning a pretrained checkpoint for longer contexts with one method, through the same {@link Trainer} as
 * pretraining (progress, metrics, atomic checkpoints, resume). The result is a Hugging Face folder whose config
 * carries the method, so {@code score}, {@code eval} and {@code generate} apply it by themselves.
 */
public final class Extension {

    public enum Method {
        /** E²-LLM: random scale g and offset t per iteration; at inference g follows the length. */
        E2,
        /** Position interpolation fine-tuned at a fixed factor. */
        PI,
        /** YaRN fine-tuned at a fixed factor. */
        YARN,
        /** PoSE: positions skip within the target length, then position interpolation. */
        POSE,
        /** CLEX: an ODE layer that moves the frequencies with the length factor, trained jointly with the model. */
        CLEX;

        public static Method parse(String name) {
            try {
                return valueOf(name.toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new RopewayException("unknown extension method '" + name + "' (e2, clex, pi, yarn, pose)");
            }
        }

        public String label() {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    /**
     * @param originalLength L0, the length the model was trained at (0: its max_position_embeddings)
     * @param factor         target length / L0 for pi, yarn and pose
     * @param maxScale       E²-LLM's largest training scale G
     * @param perSample      E²-LLM: draw g and t per sequence instead of per iteration
     * @param evalFactor     held-out evaluation at this multiple of L0 during training (0: at the training length)
     * @param clex           CLEX's layer settings (used by the clex method only)
     */
    public record Options(Path model, Method method, Path corpus, Path tokenizer, Path out, Trainer.Settings settings,
                          OptimizerSettings optimizer, boolean resume, long originalLength, double factor,
                          int maxScale, boolean perSample, double evalFactor, ClexSettings clex) {}

    /** CLEX's layer: largest length factor T, width factor λ, activation, ODE step, and the log-scale option. */
    public record ClexSettings(int maxFactor, int paramFactor, String act, double timeDt, boolean logScale, double lrScale) {
        public static ClexSettings defaults() {
            return new ClexSettings(16, 1, "tanh", 0.01, false, 1.0);
        }
    }

    public record Result(Path model, TrainingState state, double heldoutLoss, RopeScaling rope) {}

    private Extension() {}

    /** The RoPE method the extended model is saved with (and evaluated with during training). */
    static RopeScaling targetRope(Options o, ModelConfig base, long l0) {
        double theta = base.rope().theta();
        int d = base.rotaryDim();
        return switch (o.method()) {
            case E2 -> new E2Rope(theta, d, l0, 0, o.maxScale());
            case PI, POSE -> new LinearRope(theta, d, o.factor());
            case CLEX -> new ClexRope(theta, d, l0, o.clex().maxFactor(), o.clex().paramFactor(), o.clex().act(),
                    o.clex().timeDt(), o.clex().logScale(), null);
            case YARN -> {
                Map<String, Object> p = new LinkedHashMap<>();
                p.put("rope_type", "yarn");
                p.put("factor", o.factor());
                p.put("original_max_position_embeddings", l0);
                p.put("rope_theta", theta);
                yield RopeScalings.fromParameters(p, new RopeContext(d, Math.round(l0 * o.factor()), l0, theta));
            }
        };
    }

    static TrainingRope trainingRope(Options o, ModelConfig base, RopeScaling target, long l0, TrainableModel model) {
        return switch (o.method()) {
            case CLEX -> new ClexTrainingRope(model);
            case E2 -> new E2TrainingRope(new DefaultRope(base.rope().theta(), base.rotaryDim()), l0, o.maxScale(), o.perSample());
            case PI, YARN -> TrainingRope.fixed(target);
            case POSE -> new PoseTrainingRope(target, Math.round(l0 * o.factor()));
        };
    }

    public static Result run(Backend backend, Options o, Consumer<String> log, Trainer.Listener listener) {
        if ((o.method() == Method.PI || o.method() == Method.YARN || o.method() == Method.POSE) && !(o.factor() > 1))
            throw new RopewayException("--factor must be above 1 for " + o.method().label() + ", got " + o.factor());
        Path tokenizerDir = o.tokenizer() != null ? o.tokenizer() : o.model();
        if (!Files.isRegularFile(tokenizerDir.resolve("tokenizer.json")))
            throw new RopewayException("no tokenizer.json in " + tokenizerDir + " (pass --tokenizer)");
        Optional<Path> latest = Checkpoints.startingPoint(o.out(), o.resume(), log);
        Map<String, Object> baseJson = Json.readObject(o.model().resolve("config.json"));
        ModelConfig base = ModelConfig.parse(baseJson, o.model() + "/config.json");
        if (!base.rope().type().equals(DefaultRope.TYPE))
            throw new RopewayException(o.model() + " already uses " + base.rope().type() + " RoPE scaling; extend a model "
                    + "with plain RoPE");
        long l0 = o.originalLength() > 0 ? o.originalLength() : base.maxPositionEmbeddings();
        RopeScaling target = targetRope(o, base, l0);
        long maxPositions = switch (o.method()) {
            case E2 -> l0 * o.maxScale();
            case CLEX -> l0;   // CLEX reads its L0 from max_position_embeddings, as the released checkpoints do
            default -> Math.round(l0 * o.factor());
        };
        Map<String, Object> configJson = CheckpointWriter.withRope(baseJson, target, maxPositions);
        TokenizedCorpus data;
        RetrievalMix retrieval = null;
        try (Tokenizer tokenizer = Tokenizers.open(tokenizerDir)) {
            data = TokenizedCorpus.load(Corpus.open(o.corpus()), tokenizer, tokenizerDir.resolve("tokenizer.json"),
                    o.out().resolve(".tokens"), log);
            if (o.settings().retrievalMix() > 0)
                retrieval = RetrievalMix.build(tokenizer, o.settings().retrievalMix(), 8192, o.settings().seed());
        }
        ModelConfig config = ModelConfig.parse(configJson, "extended config");
        TrainableModel model;
        try (WeightStore store = WeightStore.open(latest.orElse(o.model()))) {
            model = TrainableModel.fromStore(backend, config, store);
        }
        try (model; Optimizer optimizer = new Optimizer(model, o.optimizer(), o.clex().lrScale())) {
            TrainingRope training = trainingRope(o, base, target, l0, model);
            RopeScaling evalRope = training instanceof ClexTrainingRope clex ? clex.inferenceRope() : config.rope();
            Trainer trainer = new Trainer(model, optimizer, data.train(), data.heldout(), training,
                    evalRope, o.settings(), o.out(), configJson, tokenizerDir);
            trainer.mixRetrieval(retrieval);
            TrainingState start = latest.map(trainer::resumeFrom).orElseGet(trainer::initialState);
            log.accept(String.format(Locale.ROOT, "extend %s: L0 = %d, training length %d, saved RoPE: %s; held-out loss "
                            + "measured at %d tokens", o.method().label(), l0, o.settings().seq(),
                    dev.ropeway.rope.RopeSpec.describe(target).replace(" (untrained: NTK alpha=2t-1)", " (layer trained here)"),
                    o.settings().evalSeq()));
            log.accept(trainer.memory().explanation());
            if (start.step() > 0) log.accept("resuming from step " + start.step());
            TrainingState end = trainer.run(start, listener);
            double heldout = trainer.heldoutLoss();
            Checkpoints.writeFinal(o.out(), model, configJson, tokenizerDir);
            return new Result(o.out(), end, heldout, target);
        }
    }
}
