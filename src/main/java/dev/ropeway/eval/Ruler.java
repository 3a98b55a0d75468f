package dev.ropeway.eval;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.RopeScaling;

import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.function.IntFunction;
import java.util.function.IntUnaryOperator;
import java.util.function.ToDoubleBiFunction;
import java.util.function.UnaryOperator;
import java.util.regex.Pattern;

/**
 * RULER's synthetic tasks that need no outside data: the eight needle-in-a-haystack variants ({@link Niah}),
 * {@link VariableTracking vt}, {@link CommonWords cwe} and {@link FrequentWords fwe} (RULER's other two, qa_1 and
 * qa_2, read SQuAD and HotpotQA). As in RULER, the haystack is the largest that keeps prompt plus the tokens to
 * generate within the target length (searched per target, then shrunk for a trial whose prompt tokenises longer),
 * the model continues RULER's answer prefix greedily, and the answer is scored by {@code string_match_all}: the
 * fraction of the gold strings found, case-insensitively, in the output. The log-likelihood of the gold answer after
 * the prompt is reported too, a smooth signal where a small model still finds nothing. The essay haystacks and long
 * cwe lists read a text ({@link RulerText}) in place of RULER's essays and word lists.
 */
public final class Ruler {
    private static final Pattern CONTROL = Pattern.compile("[\\x00-\\x1f]");

    /** The tasks, with RULER's number of tokens to generate for each. */
    public enum Task {
        NIAH_SINGLE_1("niah_single_1", 0x6e696168L, niah(Niah.Haystack.NOISE, Niah.Kind.WORDS, Niah.Kind.NUMBERS, 1, 1, 1)),
        NIAH_SINGLE_2("niah_single_2", 0, niah(Niah.Haystack.ESSAY, Niah.Kind.WORDS, Niah.Kind.NUMBERS, 1, 1, 1)),
        NIAH_SINGLE_3("niah_single_3", 0, niah(Niah.Haystack.ESSAY, Niah.Kind.WORDS, Niah.Kind.UUIDS, 1, 1, 1)),
        NIAH_MULTIKEY_1("niah_multikey_1", 0, niah(Niah.Haystack.ESSAY, Niah.Kind.WORDS, Niah.Kind.NUMBERS, 4, 1, 1)),
        NIAH_MULTIKEY_2("niah_multikey_2", 0, niah(Niah.Haystack.NEEDLE, Niah.Kind.WORDS, Niah.Kind.NUMBERS, 1, 1, 1)),
        NIAH_MULTIKEY_3("niah_multikey_3", 0, niah(Niah.Haystack.NEEDLE, Niah.Kind.UUIDS, Niah.Kind.UUIDS, 1, 1, 1)),
        NIAH_MULTIVALUE("niah_multivalue", 0, niah(Niah.Haystack.ESSAY, Niah.Kind.WORDS, Niah.Kind.NUMBERS, 1, 4, 1)),
        NIAH_MULTIQUERY("niah_multiquery", 0, niah(Niah.Haystack.ESSAY, Niah.Kind.WORDS, Niah.Kind.NUMBERS, 1, 1, 4)),
        VT("vt", 0x7674L, null),
        CWE("cwe", 0, null),
        FWE("fwe", 0, null);

        private final String label;
        private final long salt;
        private final Niah.Spec niah;

        Task(String label, long salt, Niah.Spec niah) {
            this.label = label;
            this.salt = salt != 0 ? salt : salt(label);
            this.niah = niah;
        }

        private static Niah.Spec niah(Niah.Haystack h, Niah.Kind k, Niah.Kind v, int keys, int values, int queries) {
            return new Niah.Spec(h, k, v, keys, values, queries);
        }

        public String label() {
            return label;
        }

        /** RULER's tokens to generate: 128 for the needle tasks, 30 for vt, 120 for cwe, 50 for fwe. */
        public int defaultNewTokens() {
            return niah != null ? 128 : switch (this) {
                case VT -> 30;
                case CWE -> 120;
                default -> 50;
            };
        }

        /** Whether one needle is hidden, at a depth the cell controls; other tasks draw their places per trial. */
        public boolean hasDepth() {
            return niah != null && niah.single();
        }

        /** Whether the task reads a text: an essay haystack, or (at lengths that need more words) cwe's word pool. */
        public boolean readsText() {
            return this == CWE || niah != null && niah.haystack() == Niah.Haystack.ESSAY;
        }

        /** Whether the task cannot run without a text at all. */
        public boolean needsText() {
            return niah != null && niah.haystack() == Niah.Haystack.ESSAY;
        }

        Niah.Spec niah() {
            return niah;
        }

        /** What the task asks, in a sentence, for reports. */
        public String summary() {
            return switch (this) {
                case NIAH_SINGLE_1 -> "One needle (a 7-digit number under an adjective-noun key) in the noise haystack";
                case NIAH_SINGLE_2 -> "One needle (a 7-digit number) in prose";
                case NIAH_SINGLE_3 -> "One needle whose value is a UUID, in prose";
                case NIAH_MULTIKEY_1 -> "Four needles with different keys in prose, one key asked";
                case NIAH_MULTIKEY_2 -> "One needle in a haystack made of needles with other keys";
                case NIAH_MULTIKEY_3 -> "One needle in a haystack of needles, keys and values UUIDs";
                case NIAH_MULTIVALUE -> "Four values under one key in prose, all four asked";
                case NIAH_MULTIQUERY -> "Four needles in prose, all four keys asked";
                case VT -> "One chain of five variables in the noise haystack, RULER's worked example first; every name "
                        + "that holds the value asked";
                case CWE -> "The ten most frequent words of a numbered word list (each 30 times against 3 for the rest), "
                        + "a worked example first";
                case FWE -> "The three most frequent coded words of a text whose word counts follow a Zipf law (the most "
                        + "frequent replaced by '...')";
            };
        }

        public static Task parse(String name) {
            String n = name.strip().toLowerCase(Locale.ROOT);
            if (n.equals("niah")) return NIAH_SINGLE_1;
            if (n.equals("variable_tracking")) return VT;
            if (n.equals("common_words_extraction")) return CWE;
            if (n.equals("freq_words_extraction")) return FWE;
            for (Task t : values()) if (t.label.equals(n)) return t;
            throw new RopewayException("unknown RULER task '" + name + "' (" + labels() + ")");
        }

        /** Every task's name, comma-separated. */
        public static String labels() {
            return String.join(", ", java.util.Arrays.stream(values()).map(Task::label).toList());
        }
    }

    /**
     * One trial's prompt (answer prefix included), the gold strings, the gold answer as the model should write it, and
     * how many of the prompt's last characters are the answer prefix (the start of the answer the prompt writes for
     * the model; for a chat model it follows the generation prompt, the rest being the user's message).
     */
    public record Sample(String prompt, List<String> answers, String answerText, int prefixChars) {
        public Sample {
            if (prefixChars < 0 || prefixChars > prompt.length())
                throw new IllegalArgumentException("an answer prefix of " + prefixChars + " characters in a prompt of "
                        + prompt.length());
        }

        /** A prompt without an answer prefix: all of it is the question. */
        public Sample(String prompt, List<String> answers, String answerText) {
            this(prompt, answers, answerText, 0);
        }

        /** The prompt without its answer prefix: what a chat model gets as the user's message. */
        public String question() {
            return prompt.substring(0, prompt.length() - prefixChars);
        }

        /** The answer prefix at the end of the prompt (empty when there is none). */
        public String answerPrefix() {
            return prompt.substring(prompt.length() - prefixChars);
        }
    }

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

    /** Fisher-Yates, from the last element down. */
    static <T> void shuffle(List<T> list, SplittableRandom rnd) {
        for (int i = list.size() - 1; i > 0; i--) Collections.swap(list, i, rnd.nextInt(i + 1));
    }

    /** {@code count} distinct indices in [0, n), in the order drawn (a partial Fisher-Yates shuffle). */
    static int[] pick(int n, int count, SplittableRandom rnd) {
        int[] idx = new int[n];
        for (int i = 0; i < n; i++) idx[i] = i;
        for (int i = 0; i < count; i++) {
            int j = i + rnd.nextInt(n - i);
            int t = idx[i];
            idx[i] = idx[j];
            idx[j] = t;
        }
        return Arrays.copyOf(idx, count);
    }

    /** A task's salt for its trials' random numbers, from its name. */
    static long salt(String label) {
        return label.hashCode() * 0x9E37_79B9_7F4A_7C15L;
    }

    /** The random numbers of trial {@code trial} of a task with {@code salt} under {@code seed}. */
    static SplittableRandom trialRandom(long salt, long seed, int trial) {
        return new SplittableRandom((seed * 1_000_003L + trial) ^ salt);
    }

    static SplittableRandom trialRandom(Task task, long seed, int trial) {
        return trialRandom(task.salt, seed, trial);
    }

    static int largestFitting(IntUnaryOperator tokensAt, int budget, int cap) {
        return PromptFitter.largestFitting(tokensAt, budget, cap);
    }

    static int largestFitting(IntUnaryOperator tokensAt, int budget) {
        return largestFitting(tokensAt, budget, Integer.MAX_VALUE);
    }

    /**
     * Prompts of a task sized for one target length: the haystack size (noise or needle lines, essay words, cwe's
     * words beyond the ten common ones, fwe's coded words) found once, then one sample per trial.
     */
    static final class Sizer {
        /** fwe's smallest text: below it the counts of ranks 4 and 5 may tie, and the answer is not defined. */
        static final int FWE_MIN_WORDS = 100;

        private final Task task;
        private final int targetTokens;
        private final double depth;
        private final long seed;
        private final RulerText text;
        private final int exampleLines;
        private final int vocabulary;
        private final PromptFitter fitter;

        Sizer(Task task, Tokenizer tok, int targetTokens, int newTokens, double depth, long seed, RulerText text) {
            this(task, PromptFormat.plain(tok), targetTokens, newTokens, depth, seed, text);
        }

        Sizer(Task task, PromptFormat format, int targetTokens, int newTokens, double depth, long seed, RulerText text) {
            Tokenizer tok = format.tokenizer();
            this.task = task;
            this.targetTokens = targetTokens;
            this.depth = depth;
            this.seed = seed;
            this.text = text;
            if (task.needsText() && text == null)
                throw new RopewayException(task.label() + " hides its needles in prose: give a text for the haystack "
                        + "(--data <corpus>: a prepared corpus's held-out novels, or any folder of text)");
            if (task == Task.VT) {
                int exampleBudget = Math.min(VariableTracking.EXAMPLE_MAX_TOKENS, targetTokens / 4);
                VariableTracking.Chain probe = VariableTracking.chain(trialRandom(task, seed, 0), 3);
                int m = largestFitting(n -> Passkey.tokens(tok, VariableTracking.example(n, probe,
                        trialRandom(task, seed, 0))).length, exampleBudget);
                exampleLines = Math.max(0, m);
            } else {
                exampleLines = 0;
            }
            vocabulary = task == Task.FWE ? FrequentWords.vocabularySize(targetTokens, newTokens) : 0;
            int cap = task != Task.CWE ? Integer.MAX_VALUE
                    : Math.max(RulerWords.COMMON.size(), text == null ? 0 : text.vocabulary().size()) - CommonWords.COMMON;
            fitter = new PromptFitter(format, targetTokens - newTokens, cap, this::sample);
            int n = fitter.size();
            if (n < 0)
                throw new RopewayException(String.format(Locale.ROOT, "a %s prompt needs %d tokens with no haystack, plus %d "
                                + "to generate: %d tokens cannot hold it", task.label(), fitter.tokens(sample(0, 0)),
                        newTokens, targetTokens));
            if (n == cap)
                throw new RopewayException(String.format(Locale.ROOT, "a cwe list of %d tokens needs more than the %d distinct "
                        + "words %s", targetTokens - newTokens, cap + CommonWords.COMMON, text == null
                        ? "built in: give a text to draw words from (--data <corpus>)" : "of the text and the built-in list"));
            if (task == Task.FWE && n < FWE_MIN_WORDS)
                throw new RopewayException(String.format(Locale.ROOT, "%d tokens hold an fwe text of only %d coded words "
                        + "(at least %d are needed for a well-defined answer)", targetTokens, n, FWE_MIN_WORDS));
        }

        private Sample sample(int haystack, int trial) {
            SplittableRandom rnd = trialRandom(task, seed, trial);
            return switch (task) {
                case VT -> VariableTracking.sample(haystack, exampleLines, rnd);
                case CWE -> CommonWords.sample(haystack + CommonWords.COMMON, targetTokens, rnd, text);
                case FWE -> FrequentWords.sample(haystack, vocabulary, rnd);
                default -> Niah.sample(task.niah(), haystack, depth, rnd, text);
            };
        }

        /** Trial {@code trial}'s sample, fitted to the budget, and its prompt's ids. */
        PromptFitter.Fitted trial(int trial) {
            return fitter.trial(trial);
        }

        int size() {
            return fitter.size();
        }
    }

    /** What a cell's trials came to: the longest prompt, the mean score (0 to 1), how many scored 1, and so on. */
    record Trials(int promptTokens, double meanScore, int full, double meanLogLikelihood, String firstOutput) {}

    /**
     * Runs {@code trials} trials: each fitted prompt's answer log-likelihood, then {@code newTokens} tokens decoded
     * greedily (stopping at an end token: the EOS, or a chat model's end of turn), cleaned by {@code postprocess} and
     * scored against the sample by {@code score}.
     * One KV cache serves the cell: each answer's log-likelihood and greedy decoding share the prompt, and trials
     * whatever start their prompts share.
     */
    static Trials runTrials(Transformer model, RopeScaling rope, Tokenizer tok, int trials, int newTokens,
                            IntFunction<PromptFitter.Fitted> trial, UnaryOperator<String> postprocess,
                            ToDoubleBiFunction<String, Sample> score) {
        int[] ends = tok.endIds();
        int promptTokens = 0, full = 0;
        double sum = 0, ll = 0;
        String first = null;
        try (Greedy greedy = new Greedy(model, rope, Math.min(tok.vocabSize(), model.config().vocabSize()))) {
            for (int t = 0; t < trials; t++) {
                PromptFitter.Fitted fitted = trial.apply(t);
                Sample s = fitted.sample();
                int[] prompt = fitted.ids();
                promptTokens = Math.max(promptTokens, prompt.length);
                ll += greedy.logLikelihood(prompt, tok.encode(s.answerText(), false));
                String output = postprocess.apply(tok.decode(greedy.decode(prompt, newTokens, ends), true));
                double f = score.applyAsDouble(output, s);
                sum += f;
                if (f == 1) full++;
                if (first == null) first = output.length() > 200 ? output.substring(0, 200) : output;
            }
        }
        return new Trials(promptTokens, sum / trials, full, ll / trials, first);
    }

    /**
     * Runs {@code trials} trials of one cell: the task at {@code targetTokens} (prompt plus {@code newTokens}
     * generated) with the needle at {@code depth} (ignored by tasks without one), decoding {@code newTokens} tokens
     * greedily. {@code text} feeds the essay haystacks and long cwe lists (null: none; those tasks then fail clearly).
     */
    public static Cell run(Transformer model, RopeScaling rope, Tokenizer tok, Task task, int targetTokens, double depth,
                           int trials, long seed, int newTokens, RulerText text) {
        return run(model, rope, PromptFormat.plain(tok), task, targetTokens, depth, trials, seed, newTokens, text);
    }

    /** Like the plain-text run, with the prompts in {@code format} (a chat model's template). */
    public static Cell run(Transformer model, RopeScaling rope, PromptFormat format, Task task, int targetTokens,
                           double depth, int trials, long seed, int newTokens, RulerText text) {
        Tokenizer tok = format.tokenizer();
        if (trials < 1) throw new RopewayException("a RULER cell needs at least one trial, got " + trials);
        if (newTokens < 1) throw new RopewayException("RULER needs at least one token to generate, got " + newTokens);
        if (task.hasDepth() && !(depth >= 0 && depth <= 1))
            throw new RopewayException("the needle's depth must be in [0, 1], got " + depth);
        Sizer sizer = new Sizer(task, format, targetTokens, newTokens, depth, seed, text);
        Trials r = runTrials(model, rope, tok, trials, newTokens, sizer::trial, Ruler::postprocess,
                (output, s) -> matchFraction(output, s.answers()));
        return new Cell(task, targetTokens, task.hasDepth() ? depth : Double.NaN, r.promptTokens(), trials, newTokens,
                r.meanScore() * 100, r.full(), r.meanLogLikelihood(), r.firstOutput());
    }
}
