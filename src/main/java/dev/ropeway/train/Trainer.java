package dev.ropeway.train;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Json;
import dev.ropeway.model.ModelConfig;
import dev.ropeway.model.Recompute;
import dev.ropeway.model.Scorer;
import dev.ropeway.model.TokenBatch;
import dev.ropeway.model.TrainableModel;
import dev.ropeway.model.TrainingPass;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.RopePlan;
import dev.ropeway.rope.RopeScaling;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * The training loop shared by pretraining and context extension: micro-batches from {@link PackedTokens}, a RoPE
 * plan per micro-batch from a {@link TrainingRope}, forward and backward ({@link TrainingPass}), gradient
 * accumulation, AdamW with clipping and schedule ({@link Optimizer}), periodic held-out loss, JSON-lines metrics and
 * atomic checkpoints ({@link Checkpoints}) from which {@link #run} continues exactly where a killed run stopped.
 */
public final class Trainer {

    /**
     * @param batch          sequences per micro-batch
     * @param seq            tokens per sequence
     * @param accumulation   micro-batches per optimizer step
     * @param evalSequences  held-out sequences scored at each evaluation (0: no evaluation)
     * @param evalLength     tokens per held-out sequence (0: the training length); context extension evaluates
     *                       beyond the training length
     * @param recompute      whether the backward recomputes activations ({@link Recompute#AUTO}: when keeping them
     *                       would not fit in the memory left)
     */
    public record Settings(int batch, int seq, int accumulation, long seed, long checkpointEvery, int keepCheckpoints,
                           long evalEvery, int evalSequences, Recompute recompute, int evalLength, double retrievalMix) {
        public Settings {
            if (batch <= 0 || seq <= 1 || accumulation <= 0)
                throw new RopewayException("batch, sequence length (> 1) and accumulation must be positive");
            if (checkpointEvery <= 0) throw new RopewayException("checkpoint interval must be positive");
            if (evalLength < 0) throw new RopewayException("evaluation length must be >= 0");
            if (recompute == null) throw new RopewayException("the recompute setting must not be null");
            if (!(retrievalMix >= 0 && retrievalMix <= 1))
                throw new RopewayException("the retrieval mix must be a fraction in [0, 1], got " + retrievalMix);
        }

        public Settings(int batch, int seq, int accumulation, long seed, long checkpointEvery, int keepCheckpoints,
                        long evalEvery, int evalSequences, Recompute recompute, int evalLength) {
            this(batch, seq, accumulation, seed, checkpointEvery, keepCheckpoints, evalEvery, evalSequences, recompute, evalLength, 0);
        }

        public Settings(int batch, int seq, int accumulation, long seed, long checkpointEvery, int keepCheckpoints,
                        long evalEvery, int evalSequences, Recompute recompute) {
            this(batch, seq, accumulation, seed, checkpointEvery, keepCheckpoints, evalEvery, evalSequences, recompute, 0);
        }

        /** Tokens per held-out evaluation sequence. */
        public int evalSeq() {
            return evalLength > 0 ? evalLength : seq;
        }

        /** The settings a resumed run must share with the original, for the training state. */
        Map<String, Object> toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("batch", batch);
            m.put("seq", seq);
            m.put("accumulation", accumulation);
            m.put("seed", seed);
            if (retrievalMix > 0) m.put("retrieval_mix", retrievalMix);
            return m;
        }

        public long tokensPerStep() {
            return (long) batch * seq * accumulation;
        }
    }

    /** One optimizer step, as reported to listeners and the metrics file. */
    public record StepReport(long step, long totalSteps, double loss, double lr, double gradNorm, boolean clipped,
                             long tokens, double tokensPerSecond, double elapsedSeconds) {}

    public interface Listener {
        void step(StepReport report);

        default void evaluated(long step, double heldoutLoss) {}

        default void checkpointed(Path checkpoint) {}
    }

    private final TrainableModel model;
    private final Optimizer optimizer;
    private final PackedTokens train, heldout;
    private final TrainingRope rope;
    private final RopeScaling evalRope;
    private final Settings s;
    private final Path runDir;
    private final Map<String, Object> configJson;
    private final Path tokenizerDir;
    private RetrievalMix retrieval;
    /** Whether the backward recomputes activations, decided once the model and optimiser state are in memory. */
    private final TrainingPass.Decision memory;

    public Trainer(TrainableModel model, Optimizer optimizer, PackedTokens train, PackedTokens heldout, TrainingRope rope,
                   RopeScaling evalRope, Settings settings, Path runDir, Map<String, Object> configJson, Path tokenizerDir) {
        this.model = model;
        this.optimizer = optimizer;
        this.train = train;
        this.heldout = heldout;
        this.rope = rope;
        this.evalRope = evalRope;
        this.s = settings;
        this.runDir = runDir;
        this.configJson = configJson;
        this.tokenizerDir = tokenizerDir;
        if (train.windows(settings.seq()) == 0)
            throw new RopewayException("the training corpus has " + train.size() + " tokens, fewer than one sequence of "
                    + (settings.seq() + 1));
        this.memory = TrainingPass.recomputation(model.backend(), model.config(), settings.batch(), settings.seq(),
                settings.recompute());
    }

    /** Whether the backward recomputes activations, with the sizes that decided it (for the run's log). */
    public TrainingPass.Decision memory() {
        return memory;
    }

    /** Mixes retrieval warm-up examples into the training windows (see {@link RetrievalMix}); null for none. */
    public Trainer mixRetrieval(RetrievalMix mix) {
        this.retrieval = mix;
        return this;
    }

    /** A fresh run's starting state. */
    public TrainingState initialState() {
        return new TrainingState(0, 0, 0, s.seed(), 0, s.toJson());
    }

    /**
     * Restores model weights' companion state from a checkpoint (the caller loaded the weights from it): optimizer
     * moments and the training state. Fails when the run's settings differ from the checkpoint's.
     */
    public TrainingState resumeFrom(Path checkpoint) {
        TrainingState state = Checkpoints.readState(checkpoint);
        Map<String, Object> now = s.toJson();
        for (var e : now.entrySet()) {
            Object was = state.settings().get(e.getKey());
            if (was != null && !String.valueOf(was).equals(String.valueOf(e.getValue())))
                throw new RopewayException("cannot resume " + checkpoint + ": it was trained with " + e.getKey() + " = " + was
                        + ", this run asks for " + e.getValue());
        }
        Checkpoints.readMoments(checkpoint, model, optimizer);
        return state;
    }

    /** Trains from {@code start} to the optimizer's total steps; returns the final state. */
    public TrainingState run(TrainingState start, Listener listener) {
        long total = optimizer.settings().totalSteps();
        ModelConfig c = model.config();
        Path metrics = runDir.resolve("metrics.jsonl");
        try {
            Files.createDirectories(runDir);
            truncateMetrics(metrics, start.step());
        } catch (IOException e) {
            throw new RopewayException("cannot write to run folder " + runDir + ": " + e.getMessage());
        }
        int rows = s.batch() * s.seq();
        int[] ids = new int[rows], targets = new int[rows];
        double[] dInvFreq = rope.wantsFrequencyGradient() ? new double[c.rotaryDim() / 2] : null;
        TrainingState state = start;
        boolean evaluate = s.evalSequences() > 0 && heldout != null && s.evalEvery() > 0;
        if (evaluate && start.step() == 0) {
            // The starting point: for context extension, the zero-shot loss the fine-tune improves on.
            double before = heldoutLoss();
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("step", 0);
            m.put("heldout_loss", before);
            appendMetrics(metrics, m);
            listener.evaluated(0, before);
        }
        try (TrainingPass pass = new TrainingPass(model.backend(), c, model.weights(), model.gradientViews(), s.batch(),
                s.seq(), memory.recompute())) {
            while (state.step() < total) {
                long step = state.step() + 1;
                long t0 = System.nanoTime();
                model.backend().scale(model.gradients(), 0f, model.layout().totalSize());
                SplittableRandom random = PackedTokens.random(state.seed(), step);
                long samples = state.samples();
                double lossSum = 0;
                long lossTokens = 0;
                float gradScale = (float) (1.0 / ((double) rows * s.accumulation()));
                for (int micro = 0; micro < s.accumulation(); micro++) {
                    for (int b = 0; b < s.batch(); b++) {
                        train.sample(state.seed(), samples, s.seq(), ids, targets, b * s.seq());
                        if (retrieval != null) retrieval.apply(state.seed(), samples, s.seq(), ids, targets, b * s.seq());
                        samples++;
                    }
                    RopePlan plan = rope.plan(s.batch(), s.seq(), random);
                    if (dInvFreq != null) java.util.Arrays.fill(dInvFreq, 0);
                    TrainingPass.Loss loss = pass.run(ids, targets, plan, gradScale, dInvFreq);
                    if (!Double.isFinite(loss.sum()))
                        throw nonFinite("loss", loss.mean(), step);
                    if (dInvFreq != null) rope.frequencyGradient(dInvFreq);
                    lossSum += loss.sum();
                    lossTokens += loss.tokens();
                }
                Optimizer.StepStats stats = optimizer.step(model, step);
                if (!Double.isFinite(stats.gradNorm())) throw nonFinite("gradient norm", stats.gradNorm(), step);
                double seconds = (System.nanoTime() - t0) / 1e9;
                long tokens = state.tokens() + (long) rows * s.accumulation();
                state = new TrainingState(step, samples, tokens, state.seed(), state.elapsedSeconds() + seconds, state.settings());
                StepReport report = new StepReport(step, total, lossSum / lossTokens, stats.lr(), stats.gradNorm(),
                        stats.clipped(), tokens, rows * s.accumulation() / seconds, state.elapsedSeconds());
                appendMetrics(metrics, stepJson(report));
                listener.step(report);
                if (evaluate && (step % s.evalEvery() == 0 || step == total)) {
                    double heldoutLoss = heldoutLoss();
                    Map<String, Object> m = new LinkedHashMap<>();
                    m.put("step", step);
                    m.put("heldout_loss", heldoutLoss);
                    appendMetrics(metrics, m);
                    listener.evaluated(step, heldoutLoss);
                }
                if (step % s.checkpointEvery() == 0 || step == total)
                    listener.checkpointed(Checkpoints.write(runDir, model, optimizer, state, configJson, tokenizerDir,
                            s.keepCheckpoints()));
            }
        }
        return state;
    }

    private RopewayException nonFinite(String what, double value, long step) {
        String last = Checkpoints.latest(runDir).map(p -> "the last good checkpoint is " + p)
                .orElse("no checkpoint was written yet");
        return new RopewayException("training stopped: the " + what + " became " + value + " at step " + step + "; "
                + last + ". Lower the learning rate (or raise warmup) and resume from it.");
    }

    /** Mean next-token loss over evenly spaced held-out windows of the training length (eval RoPE, no sampling). */
    public double heldoutLoss() {
        int seq = s.evalSeq();
        rope.beforeEvaluation();
        long windows = heldout.windows(seq);
        if (windows == 0) return Double.NaN;
        int n = (int) Math.min(s.evalSequences(), windows);
        // Never closed: its weights are views into the training buffer.
        Transformer t = new Transformer(model.backend(), model.config(), model.weights());
        Scorer scorer = new Scorer(t);
        double sum = 0;
        long count = 0;
        int perBatch = (int) Math.max(1, (long) s.batch() * s.seq() / seq);
        List<int[]> seqs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            long w = i * windows / n;
            int[] window = new int[seq + 1];
            System.arraycopy(heldout.tokens(), (int) (w * seq), window, 0, seq + 1);
            seqs.add(window);
            if (seqs.size() == perBatch || i == n - 1) {
                Scorer.Score score = scorer.score(TokenBatch.of(seqs.toArray(int[][]::new)), evalRope, false);
                sum += score.sumLoss();
                count += score.tokens();
                seqs.clear();
            }
        }
        return sum / count;
    }

    private static Map<String, Object> stepJson(StepReport r) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("step", r.step());
        m.put("loss", r.loss());
        m.put("lr", r.lr());
        m.put("grad_norm", r.gradNorm());
        m.put("tokens", r.tokens());
        m.put("tokens_per_s", r.tokensPerSecond());
        m.put("elapsed_s", r.elapsedSeconds());
        return m;
    }

    private static void appendMetrics(Path file, Map<String, Object> line) {
        try {
            Files.writeString(file, Json.mapper().writeValueAsString(line) + "\n", StandardCharsets.UTF_8,
                    StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot append to " + file, e);
        }
    }

    /** Drops metric lines after {@code step}: a resumed run rewrites them. */
    private static void truncateMetrics(Path file, long step) throws IOException {
        if (!Files.exists(file)) return;
        List<String> keep = new ArrayList<>();
        for (String line : Files.readAllLines(file)) {
            if (line.isBlank()) continue;
            try {
                Object st = Json.mapper().readValue(line, Map.class).get("step");
                if (st instanceof Number n && n.longValue() <= step) keep.add(line);
            } catch (IOException e) {
                // a line cut short by a kill: drop it
            }
        }
        dev.ropeway.io.AtomicWrite.bytes(file, (keep.isEmpty() ? "" : String.join("\n", keep) + "\n")
                .getBytes(StandardCharsets.UTF_8));
    }
}
