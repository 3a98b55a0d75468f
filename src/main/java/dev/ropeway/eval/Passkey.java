package dev.ropeway.eval;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.RopeScaling;

import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Passkey retrieval with the Landmark Attention prompt (also LongLoRA's and YaRN's), byte for byte: a task line,
 * filler cut from the start of a repeated five-sentence text, the line with the key, more filler, and a question
 * that ends "The pass key is", so a base model answers by copying. Here the needle's depth is a controlled variable
 * (the filler before it is {@code round(depth × n)} characters of the n in total), the filler size n is searched so
 * the tokenised prompt reaches a target length, and keys come from a seed per trial.
 *
 * <p>Scored three ways: the first integer of the greedy continuation equals the key (Landmark, YaRN); the
 * continuation's first tokens equal the key's tokens (LongLoRA); and the log-likelihood of the key's tokens after
 * the prompt, a smooth signal where small models still score zero accuracy.
 */
public final class Passkey {
    static final String TASK = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
            + "them. I will quiz you about the important information there.";
    static final String GARBAGE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
    static final String QUESTION = "What is the pass key? The pass key is";
    /** The most filler characters a prompt can have (a billion: far past any context a model reads). */
    static final int MAX_FILLER = 1 << 30;
    private static final Pattern FIRST_INT = Pattern.compile("\\d+");

    /** One cell's outcome: trials, how many were right by each rule, and the mean log-likelihood of the key. */
    public record Cell(int targetTokens, double depth, int promptTokens, int trials, int regexCorrect, int exactCorrect,
                       double meanKeyLogLikelihood) {
        public double regexAccuracy() {
            return (double) regexCorrect / trials;
        }

        public double exactAccuracy() {
            return (double) exactCorrect / trials;
        }

        public java.util.Map<String, Object> toJson() {
            java.util.Map<String, Object> m = new java.util.LinkedHashMap<>();
            m.put("length", targetTokens);
            m.put("depth", depth);
            m.put("prompt_tokens", promptTokens);
            m.put("trials", trials);
            m.put("regex_correct", regexCorrect);
            m.put("exact_correct", exactCorrect);
            m.put("accuracy", regexAccuracy());
            m.put("exact_accuracy", exactAccuracy());
            m.put("key_log_likelihood", meanKeyLogLikelihood);
            return m;
        }

        public static Cell fromJson(java.util.Map<String, Object> m) {
            return new Cell(((Number) m.get("length")).intValue(), ((Number) m.get("depth")).doubleValue(),
                    ((Number) m.get("prompt_tokens")).intValue(), ((Number) m.get("trials")).intValue(),
                    ((Number) m.get("regex_correct")).intValue(), ((Number) m.get("exact_correct")).intValue(),
                    ((Number) m.get("key_log_likelihood")).doubleValue());
        }
    }

    private Passkey() {}

    /**
     * The first {@code chars} characters of the filler sentence repeated with a space between copies: Landmark's
     * {@code garbage_inf} (2,000 copies; YaRN's 10,000) without a limit, so any length can be reached with the same
     * prompts those give wherever they reach.
     */
    static String filler(int chars) {
        String unit = GARBAGE + " ";
        return unit.repeat(chars / unit.length() + 1).substring(0, chars);
    }

    /** The prompt with {@code garbageChars} characters of filler, {@code prefixChars} of them before the key line. */
    public static String prompt(int garbageChars, int prefixChars, int key) {
        if (garbageChars < 0 || garbageChars > MAX_FILLER)
            throw new IllegalArgumentException("0 to " + MAX_FILLER + " filler characters, asked " + garbageChars);
        if (prefixChars < 0 || prefixChars > garbageChars) throw new IllegalArgumentException("prefix outside the filler");
        String info = "The pass key is " + key + ". Remember it. " + key + " is the pass key.";
        return String.join("\n", TASK, filler(prefixChars), info, filler(garbageChars - prefixChars), QUESTION);
    }

    /** The key of trial {@code trial} (1..50000, as the reference draws it). */
    public static int key(long seed, int trial) {
        return 1 + new SplittableRandom(seed * 1_000_003L + trial).nextInt(50000);
    }

    /** The fewest filler characters (in steps of 16) whose prompt, with BOS, has at least {@code targetTokens} tokens. */
    public static int fillerFor(Tokenizer tok, int targetTokens) {
        // Doubling first keeps the tokeniser's work proportional to the target, not to the longest filler.
        int lo = 0, hi = 256;
        while (tokens(tok, prompt(hi, hi / 2, 12345)).length < targetTokens) {
            if (hi == MAX_FILLER)
                throw new RopewayException("a passkey prompt of " + MAX_FILLER + " filler characters is still under "
                        + targetTokens + " tokens");
            lo = hi;
            hi = Math.min(2 * hi, MAX_FILLER);
        }
        while (hi - lo > 16) {
            int mid = (lo + hi) >>> 1;
            if (tokens(tok, prompt(mid, mid / 2, 12345)).length >= targetTokens) hi = mid;
            else lo = mid;
        }
        return hi;
    }

    public static int[] tokens(Tokenizer tok, String text) {
        return tok.encodeWithBos(text);
    }

    /** Runs {@code trials} trials of one (length, depth) cell. */
    public static Cell run(Transformer model, RopeScaling rope, Tokenizer tok, int targetTokens, double depth, int trials,
                           long seed) {
        int filler = fillerFor(tok, targetTokens);
        int prefix = (int) Math.round(depth * filler);
        int regex = 0, exact = 0, promptTokens = 0;
        double ll = 0;
        // One cache for the cell: the trials' prompts share everything before the key.
        try (Greedy greedy = new Greedy(model, rope, Math.min(tok.vocabSize(), model.config().vocabSize()))) {
            for (int trial = 0; trial < trials; trial++) {
                int key = key(seed, trial);
                int[] prompt = tokens(tok, prompt(filler, prefix, key));
                promptTokens = prompt.length;
                int[] answer = tok.encode(" " + key, false);
                ll += greedy.logLikelihood(prompt, answer);
                int[] generated = greedy.decode(prompt, Math.max(answer.length, 10), tok.endIds());
                if (Arrays.equals(Arrays.copyOf(generated, answer.length), answer)) exact++;
                Matcher m = FIRST_INT.matcher(tok.decode(generated, true));
                if (m.find() && m.group().length() < 10 && Long.parseLong(m.group()) == key) regex++;
            }
        }
        return new Cell(targetTokens, depth, promptTokens, trials, regex, exact, ll / trials);
    }
}
