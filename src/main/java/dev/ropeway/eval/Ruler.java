package dev.ropeway.eval;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.RopeScaling;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.function.IntUnaryOperator;
import java.util.regex.Pattern;

/**
 * RULER's synthetic retrieval tasks that need no outside data: {@link Niah niah_single_1} and {@link VariableTracking
 * vt}. As in RULER, the haystack is the largest that keeps prompt plus the tokens to generate within the target
 * length (searched per target, then shrunk for a trial whose prompt tokenises longer), the model continues RULER's
 * answer prefix greedily, and the answer is scored by {@code string_match_all}: the fraction of the gold strings
 * found, case-insensitively, in the output. The log-likelihood of the gold answer after the prompt is reported too,
 * a smooth signal where a small model still finds nothing.
 */
public final class Ruler {
    private static final Pattern CONTROL = Pattern.compile("[\\x00-\\x1f]");

    /** The tasks, with RULER's number of tokens to generate for each. */
    public enum Task {
        NIAH_SINGLE_1("niah_single_1", 128, 0x6e696168L),
        VT("vt", 30, 0x7674L);

        private final String label;
        private final int defaultNewTokens;
        private final long salt;

        Task(String label, int defaultNewTokens, long salt) {
            this.label = label;
            this.defaultNewTokens = defaultNewTokens;
            this.salt = salt;
        }

        public String label() {
            return label;
        }

        public int defaultNewTokens() {
            return defaultNewTokens;
        }

        /** Whether the needle's depth is a controlled variable (the single needle) or drawn per trial (the chain). */
        public boolean hasDepth() {
            return this == NIAH_SINGLE_1;
        }

        public static Task parse(String name) {
            return switch (name.toLowerCase(Locale.ROOT)) {
                case "niah_single_1", "niah" -> NIAH_SINGLE_1;
                case "vt", "variable_tracking" -> VT;
                default -> throw new RopewayException("unknown RULER task '" + name + "' (niah_single_1, vt)");
            };
        }
    }

    /** One trial's prompt (answer prefix included), the gold strings, and the gold answer as the model should write it. */
    public record Sample(String prompt, List<String> answers, String answerText) {}

    /**
     * One cell's outcome: RULER's score (string_match_all, 0 to 100), how many trials found every gold string, and
     * the mean log-likelihood of the gold answer. {@code depth} is NaN for tasks without a controlled depth.
     */
    public record Cell(Task task, int targetTokens, double depth, int promptTokens, int trials, int newTokens,
                       double score, int allFound, double meanAnswerLogLikelihood, String firstOutput) {
        public double accuracy() {
            return (double) allFound / trials;
        }

        public Map<String, Object> toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("task", task.label());
            m.put("length", targetTokens);
            m.put("depth", Double.isNaN(depth) ? null : depth);
            m.put("prompt_tokens", promptTokens);
            m.put("trials", trials);
            m.put("new_tokens", newTokens);
            m.put("score", score);
            m.put("all_found", allFound);
            m.put("accuracy", accuracy());
            m.put("answer_log_likelihood", meanAnswerLogLikelihood);
            m.put("first_output", firstOutput);
            return m;
        }

        public static Cell fromJson(Map<String, Object> m) {
            Object depth = m.get("depth");
            return new Cell(Task.parse((String) m.get("task")), ((Number) m.get("length")).intValue(),
                    depth == null ? Double.NaN : ((Number) depth).doubleValue(), ((Number) m.get("prompt_tokens")).intValue(),
                    ((Number) m.get("trials")).intValue(), ((Number) m.get("new_tokens")).intValue(),
                    ((Number) m.get("score")).doubleValue(), ((Number) m.get("all_found")).intValue(),
                    ((Number) m.get("answer_log_likelihood")).doubleValue(), (String) m.get("first_output"));
        }
    }

    private Ruler() {}

    /** RULER's clean-up of a prediction: trimmed, control characters turned into line breaks, trimmed again. */
    public static String postprocess(String prediction) {
        return CONTROL.matcher(prediction.strip()).replaceAll("\n").strip();
    }

    /** The fraction of {@code answers} found in {@code prediction}, ignoring case (one sample of string_match_all). */
    public static double matchFraction(String prediction, List<String> answers) {
        if (answers.isEmpty()) throw new IllegalArgumentException("a sample needs at least one gold answer");
        String p = prediction.toLowerCase(Locale.ROOT);
        int found = 0;
        for (String a : answers) if (p.contains(a.toLowerCase(Locale.ROOT))) found++;
        return (double) found / answers.size();
    }

    /** RULER's string_match_all over samples, 0 to 100 (unrounded; RULER rounds to two decimals when it prints). */
    public static double stringMatchAll(List<String> predictions, List<List<String>> answers) {
        if (predictions.size() != answers.size() || predictions.isEmpty())
            throw new IllegalArgumentException(predictions.size() + " predictions for " + answers.size() + " answer lists");
        double sum = 0;
        for (int i = 0; i < predictions.size(); i++) sum += matchFraction(predictions.get(i), answers.get(i));
        return sum / predictions.size() * 100;
    }

    static SplittableRandom trialRandom(Task task, long seed, int trial) {
        return new SplittableRandom((seed * 1_000_003L + trial) ^ task.salt);
    }

    /**
     * The largest n ≥ 0 with {@code tokensAt(n) ≤ budget} (the token count grows with n), or -1 when even n = 0
     * is over budget. Doubling, then bisection, so the tokeniser's work stays proportional to the answer.
     */
    static int largestFitting(IntUnaryOperator tokensAt, int budget) {
        if (tokensAt.applyAsInt(0) > budget) return -1;
        int lo = 0, hi = 1;
        while (tokensAt.applyAsInt(hi) <= budget) {
            lo = hi;
            if (hi > (1 << 24)) throw new IllegalStateException("the prompt does not grow with the haystack");
            hi *= 2;
        }
        while (hi - lo > 1) {
            int mid = (lo + hi) >>> 1;
            if (tokensAt.applyAsInt(mid) <= budget) lo = mid;
            else hi = mid;
        }
        return lo;
    }

    /** Prompts of a task sized for one target length: the haystack size found once, then one sample per trial. */
    static final class Sizer {
        private final Task task;
        private final Tokenizer tok;
        private final int budget;
        private final double depth;
        private final long seed;
        private final int exampleLines;
        private final int lines;

        Sizer(Task task, Tokenizer tok, int targetTokens, int newTokens, double depth, long seed) {
            this.task = task;
            this.tok = tok;
            this.budget = targetTokens - newTokens;
            this.depth = depth;
            this.seed = seed;
            if (task == Task.VT) {
                int exampleBudget = Math.min(VariableTracking.EXAMPLE_MAX_TOKENS, targetTokens / 4);
                VariableTracking.Chain probe = VariableTracking.chain(trialRandom(task, seed, 0), 3);
                int m = largestFitting(n -> tokens(VariableTracking.example(n, probe, trialRandom(task, seed, 0))),
                        exampleBudget);
                exampleLines = Math.max(0, m);
            } else {
                exampleLines = 0;
            }
            int n = largestFitting(k -> tokens(sample(k, 0).prompt()), budget);
            if (n < 0)
                throw new RopewayException(String.format(Locale.ROOT, "a %s prompt needs %d tokens with no haystack, plus %d "
                                + "to generate: %d tokens cannot hold it", task.label(), tokens(sample(0, 0).prompt()), newTokens,
                        targetTokens));
            lines = n;
        }

        private int tokens(String text) {
            return Passkey.tokens(tok, text).length;
        }

        private Sample sample(int haystack, int trial) {
            SplittableRandom rnd = trialRandom(task, seed, trial);
            return task == Task.VT ? VariableTracking.sample(haystack, exampleLines, rnd) : Niah.sample(haystack, depth, rnd);
        }

        /** Trial {@code trial}'s sample, with fewer haystack lines if its own draw tokenises over the budget. */
        Sample trial(int trial) {
            for (int n = lines; ; n--) {
                Sample s = sample(n, trial);
                if (n == 0 || tokens(s.prompt()) <= budget) return s;
            }
        }

        int lines() {
            return lines;
        }
    }

    /**
     * Runs {@code trials} trials of one cell: the task at {@code targetTokens} (prompt plus {@code newTokens}
     * generated) with the needle at {@code depth} (ignored by vt), decoding {@code newTokens} tokens greedily.
     */
    public static Cell run(Transformer model, RopeScaling rope, Tokenizer tok, Task task, int targetTokens, double depth,
                           int trials, long seed, int newTokens) {
        if (trials < 1) throw new RopewayException("a RULER cell needs at least one trial, got " + trials);
        if (newTokens < 1) throw new RopewayException("RULER needs at least one token to generate, got " + newTokens);
        if (task.hasDepth() && !(depth >= 0 && depth <= 1))
            throw new RopewayException("the needle's depth must be in [0, 1], got " + depth);
        Sizer sizer = new Sizer(task, tok, targetTokens, newTokens, depth, seed);
        int eos = tok.eosId().orElse(-1);
        int promptTokens = 0, allFound = 0;
        double found = 0, ll = 0;
        String first = null;
        // One cache for the cell: each answer's log-likelihood and greedy decoding share the prompt, and trials
        // whatever start their prompts share.
        try (Greedy greedy = new Greedy(model, rope, Math.min(tok.vocabSize(), model.config().vocabSize()))) {
            for (int t = 0; t < trials; t++) {
                Sample s = sizer.trial(t);
                int[] prompt = Passkey.tokens(tok, s.prompt());
                promptTokens = Math.max(promptTokens, prompt.length);
                ll += greedy.logLikelihood(prompt, tok.encode(s.answerText(), false));
                String output = postprocess(tok.decode(greedy.decode(prompt, newTokens, eos), true));
                double f = matchFraction(output, s.answers());
                found += f;
                if (f == 1) allFound++;
                if (first == null) first = output.length() > 200 ? output.substring(0, 200) : output;
            }
        }
        return new Cell(task, targetTokens, task.hasDepth() ? depth : Double.NaN, promptTokens, trials, newTokens,
                found / trials * 100, allFound, ll / trials, first);
    }
}
