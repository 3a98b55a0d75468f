package dev.ropeway.eval;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.RopeScaling;

import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.function.UnaryOperator;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * LongEval's line retrieval (LongChat's "lines" task, which LongLoRA also reports): a record of lines
 * {@code line <index>: REGISTER_CONTENT is <number>}, each index an adjective-noun pair and each number in 1..50000,
 * then the question for one index's number. The header, the lines and the question are LongEval's byte for byte; after
 * them comes the answer start LongEval gives a model that has no chat template ({@code Line <index>: <REGISTER_CONTENT>
 * is}, appended to the question as LongEval appends it), so a base model answers by copying.
 *
 * <p>LongEval counts lines (200 to 680) and asks a line drawn at random; here the record is the longest that keeps the
 * prompt plus the tokens to generate within each target length, and the asked line's place is the cell's depth (line
 * {@code round(depth × (n − 1))} of n), which gives the same length × depth grid as passkey. Indices come from
 * {@link RulerWords}' built-in adjectives and nouns instead of the wonderwords package, and no two lines share one, so
 * the question has one right answer. Scored by LongEval's rule on the answer, the output's first non-empty line (a
 * base model goes on writing the record after it): its last integer is the line's number. The log-likelihood of the
 * number as the lines write it ({@code " <number>"}) is reported too. A chat model ({@link PromptFormat#chat}) gets
 * the prompt without the answer start as its message, 100 tokens to answer in, and its whole answer scored, as
 * LongEval prompts and scores chat models.
 */
public final class LongEvalLines {
    static final String HEADER = "Below is a record of lines I want you to remember. Each line begins with 'line <line "
            + "index>' and contains a '<REGISTER_CONTENT>' at the end of the line as a numerical value. For each line "
            + "index, memorize its corresponding <REGISTER_CONTENT>. At the end of the record, I will ask you to retrieve "
            + "the corresponding <REGISTER_CONTENT> of a certain line index. Now the record start:\n\n";
    static final String QUESTION = "\nNow the record is over. Tell me what is the <REGISTER_CONTENT> in line {index}? "
            + "I need the number.";
    static final String ANSWER_START = "Line <{index}>: <REGISTER_CONTENT> is";
    /** LongEval's numbers: random.randint(1, 50000). */
    static final int MAX_VALUE = 50_000;
    /** Tokens to generate by default: LongEval's 15 for a model answering without a chat template. */
    public static final int NEW_TOKENS = 15;
    /** Tokens to generate by default for a chat model: LongEval's 100. */
    public static final int CHAT_NEW_TOKENS = 100;
    /** How many distinct indices the built-in words give. */
    static final int INDICES = RulerWords.ADJECTIVES.length * RulerWords.NOUNS.length;
    private static final long SALT = Ruler.salt("longeval_lines");
    private static final Pattern INTEGER = Pattern.compile("\\d+");

    /**
     * One cell's outcome: how many trials the answer's number was right in, and the mean log-likelihood of the
     * number's tokens; {@code lines} is the record's length in lines (trial 0's).
     */
    public record Cell(int targetTokens, double depth, int promptTokens, int lines, int trials, int newTokens,
                       int correct, double meanAnswerLogLikelihood, String firstOutput) {
        public double accuracy() {
            return (double) correct / trials;
        }

        public Map<String, Object> toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("task", "lines");
            m.put("length", targetTokens);
            m.put("depth", depth);
            m.put("prompt_tokens", promptTokens);
            m.put("lines", lines);
            m.put("trials", trials);
            m.put("new_tokens", newTokens);
            m.put("correct", correct);
            m.put("accuracy", accuracy());
            m.put("score", accuracy() * 100);
            m.put("answer_log_likelihood", meanAnswerLogLikelihood);
            m.put("first_output", firstOutput);
            return m;
        }

        public static Cell fromJson(Map<String, Object> m) {
            return new Cell(((Number) m.get("length")).intValue(), ((Number) m.get("depth")).doubleValue(),
                    ((Number) m.get("prompt_tokens")).intValue(), ((Number) m.get("lines")).intValue(),
                    ((Number) m.get("trials")).intValue(), ((Number) m.get("new_tokens")).intValue(),
                    ((Number) m.get("correct")).intValue(), ((Number) m.get("answer_log_likelihood")).doubleValue(),
                    (String) m.get("first_output"));
        }
    }

    private LongEvalLines() {}

    /** One line of the record. */
    static String line(String index, int value) {
        return "line " + index + ": REGISTER_CONTENT is <" + value + ">\n";
    }

    /**
     * Trial {@code rnd}'s sample with {@code n} lines (at least one), the asked one at line {@code round(depth × (n −
     * 1))}. The asked index and number are drawn first and the other lines after them in order, so a trial asks the
     * same at every size and a longer record only adds lines.
     */
    static Ruler.Sample sample(int n, double depth, SplittableRandom rnd) {
        return sample(n, depth, rnd, true);
    }

    /**
     * The sample with or without the answer start after the question: LongEval gives it to a model without a chat
     * template, and a chat model the question alone.
     */
    static Ruler.Sample sample(int n, double depth, SplittableRandom rnd, boolean answerStart) {
        if (n < 1) throw new IllegalArgumentException("a record needs at least one line, asked " + n);
        if (n > INDICES)
            throw new RopewayException(String.format(Locale.ROOT, "a record of %,d lines needs more distinct line indices "
                    + "than the %,d adjective-noun pairs of the built-in words: use a shorter length", n, INDICES));
        Set<String> used = new HashSet<>();
        String asked = index(rnd, used);
        int value = rnd.nextInt(1, MAX_VALUE + 1);
        int at = (int) Math.round(depth * (n - 1));
        StringBuilder sb = new StringBuilder(HEADER.length() + 48 * n + 200).append(HEADER);
        for (int i = 0; i < n; i++) {
            if (i == at) {
                sb.append(line(asked, value));
            } else {
                sb.append(line(index(rnd, used), rnd.nextInt(1, MAX_VALUE + 1)));
            }
        }
        sb.append(QUESTION.replace("{index}", asked));
        String start = answerStart ? ANSWER_START.replace("{index}", asked) : "";
        sb.append(start);
        return new Ruler.Sample(sb.toString(), List.of(Integer.toString(value)), " <" + value + ">", start.length());
    }

    /** An index no line has yet: uniform over the pairs, drawn again on a repeat. */
    private static String index(SplittableRandom rnd, Set<String> used) {
        while (true) {
            String s = RulerWords.ADJECTIVES[rnd.nextInt(RulerWords.ADJECTIVES.length)] + "-"
                    + RulerWords.NOUNS[rnd.nextInt(RulerWords.NOUNS.length)];
            if (used.add(s)) return s;
        }
    }

    /** The answer in an output: its first line with anything on it, trimmed (empty when there is none). */
    static String answer(String output) {
        String s = output.stripLeading();
        int nl = s.indexOf('\n');
        return (nl < 0 ? s : s.substring(0, nl)).strip();
    }

    /** LongEval's rule: the last integer of the answer equals the number (no integer: wrong). */
    static boolean correct(String answer, String number) {
        Matcher m = INTEGER.matcher(answer);
        String last = null;
        while (m.find()) last = m.group();
        if (last == null) return false;
        String digits = last.replaceFirst("^0+(?=\\d)", "");
        return digits.equals(number);
    }

    /** The prompts of one cell: the record's length found once, then fitted per trial. */
    static PromptFitter fitter(PromptFormat format, int targetTokens, int newTokens, double depth, long seed) {
        PromptFitter.Generator generator = (k, trial) -> sample(k + 1, depth, Ruler.trialRandom(SALT, seed, trial),
                !format.chat());
        PromptFitter fitter = new PromptFitter(format, targetTokens - newTokens, INDICES - 1, generator);
        int k = fitter.size();
        if (k < 0)
            throw new RopewayException(String.format(Locale.ROOT, "a lines prompt with one line needs %d tokens, plus %d to "
                    + "generate: %d tokens cannot hold it", fitter.tokens(generator.sample(0, 0)), newTokens,
                    targetTokens));
        if (k == INDICES - 1)
            throw new RopewayException(String.format(Locale.ROOT, "%,d tokens need more lines than the %,d distinct line "
                    + "indices of the built-in words", targetTokens, INDICES));
        return fitter;
    }

    /**
     * Runs {@code trials} trials of one (length, depth) cell: the record sized so that prompt plus {@code newTokens}
     * fit in {@code targetTokens}, the asked line at {@code depth}, {@code newTokens} tokens decoded greedily.
     */
    public static Cell run(Transformer model, RopeScaling rope, Tokenizer tok, int targetTokens, double depth, int trials,
                           long seed, int newTokens) {
        return run(model, rope, PromptFormat.plain(tok), targetTokens, depth, trials, seed, newTokens);
    }

    /**
     * Like the plain-text run, with the prompts in {@code format}. A chat model gets the prompt without the answer
     * start as its user message, and its whole answer is scored (it ends its turn), as LongEval scores chat models.
     */
    public static Cell run(Transformer model, RopeScaling rope, PromptFormat format, int targetTokens, double depth,
                           int trials, long seed, int newTokens) {
        Tokenizer tok = format.tokenizer();
        if (trials < 1) throw new RopewayException("a lines cell needs at least one trial, got " + trials);
        if (newTokens < 1) throw new RopewayException("at least one token to generate, got " + newTokens);
        if (!(depth >= 0 && depth <= 1)) throw new RopewayException("the asked line's depth must be in [0, 1], got " + depth);
        PromptFitter fitter = fitter(format, targetTokens, newTokens, depth, seed);
        UnaryOperator<String> clean = format.chat() ? String::strip : LongEvalLines::answer;
        Ruler.Trials r = Ruler.runTrials(model, rope, tok, trials, newTokens, fitter::trial, clean,
                (answer, s) -> correct(answer, s.answers().getFirst()) ? 1 : 0);
        return new Cell(targetTokens, depth, r.promptTokens(), fitter.size() + 1, trials, newTokens, r.full(),
                r.meanLogLikelihood(), r.firstOutput());
    }
}
