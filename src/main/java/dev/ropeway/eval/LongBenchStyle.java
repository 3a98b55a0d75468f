package dev.ropeway.eval;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.RopeScaling;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.function.UnaryOperator;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * LongBench-style tasks rebuilt offline: LongBench's synthetic {@code passage_count} and {@code passage_retrieval_en}
 * and its {@code lcc} code completion, with LongBench's prompts, numbers of tokens to generate and metrics, on text
 * and code that can be had here ({@link Passages}, {@link CodeFiles}) instead of LongBench's data (Wikipedia
 * paragraphs with GPT-3.5 abstracts, the LCC dataset), which is on the Hugging Face hub only. Results are labelled
 * "LongBench-style (synthetic, offline)" and are not LongBench scores.
 *
 * <p>As for RULER's tasks, every prompt is sized to a target length (prompt plus the tokens to generate), so a task
 * is measured length by length; LongBench's own samples have whatever length they have and are cut in the middle
 * when too long. The model continues the prompt greedily (no chat template, as for a base model) and the output is
 * scored as LongBench scores it, 0 to 100; the log-likelihood of the gold answer is reported too.
 */
public final class LongBenchStyle {
    private static final Pattern PLACEHOLDER = Pattern.compile("\\{(\\w+)}");
    private static final Pattern NUMBER = Pattern.compile("\\d+");
    private static final Pattern PARAGRAPH = Pattern.compile("Paragraph (\\d+)");

    /** LongBench's passage_count prompt. */
    static final String PASSAGE_COUNT_TEMPLATE = "There are some paragraphs below sourced from Wikipedia. Some of them may "
            + "be duplicates. Please carefully read these paragraphs and determine how many unique paragraphs there are "
            + "after removing duplicates. In other words, how many non-repeating paragraphs are there in total?\n\n"
            + "{context}\n\nPlease enter the final count of unique paragraphs after removing duplicates. The output format "
            + "should only contain the number, such as 1, 2, 3, and so on.\n\nThe final answer is: ";
    /** LongBench's passage_retrieval_en prompt, with the number of paragraphs (30 in LongBench) as {n}. */
    static final String PASSAGE_RETRIEVAL_TEMPLATE = "Here are {n} paragraphs from Wikipedia, along with an abstract. "
            + "Please determine which paragraph the abstract is from.\n\n{context}\n\nThe following is an abstract.\n\n"
            + "{input}\n\nPlease enter the number of the paragraph that the abstract is from. The answer format must be "
            + "like \"Paragraph 1\", \"Paragraph 2\", etc.\n\nThe answer is: ";
    /** LongBench's lcc prompt. */
    static final String LCC_TEMPLATE = "Please complete the code given below. \n{context}Next line of code:\n";

    /** The tasks, with LongBench's tokens to generate. */
    public enum Task {
        PASSAGE_COUNT("passage_count", 32),
        PASSAGE_RETRIEVAL("passage_retrieval", 32),
        LCC("lcc", 64);

        private final String label;
        private final int newTokens;

        Task(String label, int newTokens) {
            this.label = label;
            this.newTokens = newTokens;
        }

        public String label() {
            return label;
        }

        /** LongBench's max_new_tokens: 32 for the passage tasks, 64 for lcc. */
        public int defaultNewTokens() {
            return newTokens;
        }

        /** Whether the task reads a text's paragraphs (else a folder of code). */
        public boolean readsText() {
            return this != LCC;
        }

        /** LongBench's metric's name. */
        public String metric() {
            return switch (this) {
                case PASSAGE_COUNT -> "count_score";
                case PASSAGE_RETRIEVAL -> "retrieval_score";
                case LCC -> "code_sim_score";
            };
        }

        /** What the task asks, in a sentence, for reports. */
        public String summary() {
            return switch (this) {
                case PASSAGE_COUNT -> "How many distinct paragraphs a text of numbered paragraphs holds, each repeated at "
                        + "random (LongBench's passage_count prompt)";
                case PASSAGE_RETRIEVAL -> "Which of the numbered paragraphs a sentence comes from (LongBench's "
                        + "passage_retrieval_en prompt; a sentence of the paragraph stands for its abstract)";
                case LCC -> "The next line of a source file, after the file's lines above it and other files of its folder "
                        + "(LongBench's lcc prompt)";
            };
        }

        public static Task parse(String name) {
            String n = name.strip().toLowerCase(Locale.ROOT);
            if (n.equals("passage_retrieval_en")) return PASSAGE_RETRIEVAL;
            for (Task t : values()) if (t.label.equals(n)) return t;
            throw new RopewayException("unknown LongBench-style task '" + name + "' (passage_count, passage_retrieval, lcc)");
        }
    }

    /**
     * One cell's outcome: the task's LongBench score (0 to 100, the mean over trials), how many trials scored full
     * marks, and the mean log-likelihood of the gold answer.
     */
    public record Cell(Task task, int targetTokens, int promptTokens, int trials, int newTokens, double score, int exact,
                       double meanAnswerLogLikelihood, String firstOutput) {
        public Map<String, Object> toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("task", task.label());
            m.put("length", targetTokens);
            m.put("prompt_tokens", promptTokens);
            m.put("trials", trials);
            m.put("new_tokens", newTokens);
            m.put("metric", task.metric());
            m.put("score", score);
            m.put("exact", exact);
            m.put("answer_log_likelihood", meanAnswerLogLikelihood);
            m.put("first_output", firstOutput);
            return m;
        }

        public static Cell fromJson(Map<String, Object> m) {
            return new Cell(Task.parse((String) m.get("task")), ((Number) m.get("length")).intValue(),
                    ((Number) m.get("prompt_tokens")).intValue(), ((Number) m.get("trials")).intValue(),
                    ((Number) m.get("new_tokens")).intValue(), ((Number) m.get("score")).doubleValue(),
                    ((Number) m.get("exact")).intValue(), ((Number) m.get("answer_log_likelihood")).doubleValue(),
                    (String) m.get("first_output"));
        }
    }

    private LongBenchStyle() {}

    /** The template with each {name} replaced by its value, in one pass (a value's own braces stay as they are). */
    static String fill(String template, Map<String, String> values) {
        Matcher m = PLACEHOLDER.matcher(template);
        StringBuilder sb = new StringBuilder();
        while (m.find()) {
            String v = values.get(m.group(1));
            if (v == null) throw new IllegalArgumentException("no value for {" + m.group(1) + "}");
            m.appendReplacement(sb, Matcher.quoteReplacement(v));
        }
        m.appendTail(sb);
        return sb.toString();
    }

    /** LongBench's count_score: the share of the integers in the prediction that equal the gold count (0 if none). */
    public static double countScore(String prediction, String gold) {
        Matcher m = NUMBER.matcher(prediction);
        int numbers = 0, right = 0;
        while (m.find()) {
            numbers++;
            if (m.group().equals(gold)) right++;
        }
        return numbers == 0 ? 0 : (double) right / numbers;
    }

    /** LongBench's retrieval_score: as count_score, against the number in the gold "Paragraph k". */
    public static double retrievalScore(String prediction, String gold) {
        Matcher g = PARAGRAPH.matcher(gold);
        if (!g.find()) throw new IllegalArgumentException("a gold answer of the form 'Paragraph k', got '" + gold + "'");
        return countScore(prediction, g.group(1));
    }

    /**
     * LongBench's code_sim_score: the prediction's first line (after leading line breaks) with none of '`', '#' or
     * '//', compared with the gold line by fuzzywuzzy's ratio over 100.
     */
    public static double codeSimScore(String prediction, String gold) {
        String line = "";
        String p = prediction;
        int start = 0;
        while (start < p.length() && p.charAt(start) == '\n') start++;
        for (String l : p.substring(start).split("\n", -1)) {
            if (!l.contains("`") && !l.contains("#") && !l.contains("//")) {
                line = l;
                break;
            }
        }
        return ratio(line, gold) / 100.0;
    }

    /**
     * fuzzywuzzy's {@code fuzz.ratio} as LongBench installs it (without python-Levenshtein): 100 for equal strings, 0
     * when either is empty, else 100 × 2M / (|a| + |b|) rounded half to even, M the characters that Python's
     * {@code difflib.SequenceMatcher(None, a, b)} matches: the longest common run, then the same on each side of it,
     * with its "autojunk" rule (in a b of 200 characters or more, a character found more than |b| / 100 + 1 times
     * starts no run, though runs may extend over it). Characters are code points, as in Python.
     */
    static int ratio(String a, String b) {
        if (a.equals(b)) return 100;
        if (a.isEmpty() || b.isEmpty()) return 0;
        int[] x = a.codePoints().toArray(), y = b.codePoints().toArray();
        int matches = matchingCharacters(x, y);
        return (int) Math.rint(100 * (2.0 * matches / (x.length + y.length)));
    }

    /** The total size of difflib's matching blocks of {@code a} and {@code b}. */
    static int matchingCharacters(int[] a, int[] b) {
        Map<Integer, List<Integer>> positions = new HashMap<>();
        for (int j = 0; j < b.length; j++) positions.computeIfAbsent(b[j], k -> new ArrayList<>()).add(j);
        if (b.length >= 200) positions.values().removeIf(p -> p.size() > b.length / 100 + 1);
        Map<Integer, int[]> b2j = new HashMap<>();
        for (var e : positions.entrySet()) b2j.put(e.getKey(), e.getValue().stream().mapToInt(Integer::intValue).toArray());
        int total = 0;
        ArrayDeque<int[]> queue = new ArrayDeque<>();
        queue.push(new int[] {0, a.length, 0, b.length});
        int[] len = new int[b.length + 1], next = new int[b.length + 1];
        while (!queue.isEmpty()) {
            int[] q = queue.pop();
            int alo = q[0], ahi = q[1], blo = q[2], bhi = q[3];
            // The longest run a[i..i+k) = b[j..j+k) that starts with an indexed (not popular) character, the earliest
            // in a, then in b: the length of the run ending at (i, j) is kept per j, row by row.
            int bi = alo, bj = blo, bk = 0;
            List<Integer> touched = new ArrayList<>(), nextTouched = new ArrayList<>();
            for (int i = alo; i < ahi; i++) {
                int[] js = b2j.get(a[i]);
                if (js != null)
                    for (int j : js) {
                        if (j < blo) continue;
                        if (j >= bhi) break;
                        int k = (j > 0 ? len[j] : 0) + 1;
                        next[j + 1] = k;
                        nextTouched.add(j + 1);
                        if (k > bk) {
                            bi = i - k + 1;
                            bj = j - k + 1;
                            bk = k;
                        }
                    }
                for (int t : touched) len[t] = 0;
                for (int t : nextTouched) {
                    len[t] = next[t];
                    next[t] = 0;
                }
                List<Integer> swap = touched;
                touched = nextTouched;
                nextTouched = swap;
                nextTouched.clear();
            }
            for (int t : touched) len[t] = 0;
            // Extended over equal characters on both sides (popular ones included).
            while (bi > alo && bj > blo && a[bi - 1] == b[bj - 1]) {
                bi--;
                bj--;
                bk++;
            }
            while (bi + bk < ahi && bj + bk < bhi && a[bi + bk] == b[bj + bk]) bk++;
            if (bk > 0) {
                total += bk;
                if (alo < bi && blo < bj) queue.push(new int[] {alo, bi, blo, bj});
                if (bi + bk < ahi && bj + bk < bhi) queue.push(new int[] {bi + bk, ahi, bj + bk, bhi});
            }
        }
        return total;
    }

    /** The score of one output against a sample's gold answer, 0 to 1. */
    static double score(Task task, String output, String gold) {
        return switch (task) {
            case PASSAGE_COUNT -> countScore(output, gold);
            case PASSAGE_RETRIEVAL -> retrievalScore(output, gold);
            case LCC -> codeSimScore(output, gold);
        };
    }

    static SplittableRandom trialRandom(Task task, long seed, int trial) {
        return Ruler.trialRandom(Ruler.salt(task.label), seed, trial);
    }

    /** The fewest paragraphs a passage prompt must hold. */
    static final int MIN_PASSAGES = 2;

    /** The prompts of a task sized for one target length; the text or code it reads must be given. */
    static PromptFitter fitter(Task task, PromptFormat format, int targetTokens, int newTokens, long seed, Passages passages,
                               CodeFiles code) {
        PromptFitter.Generator generator;
        int cap;
        switch (task) {
            case PASSAGE_COUNT, PASSAGE_RETRIEVAL -> {
                if (passages == null)
                    throw new RopewayException(task.label() + " reads paragraphs of a text: give one (--data <corpus>: a "
                            + "prepared corpus's held-out novels, or any folder of text)");
                generator = task == Task.PASSAGE_COUNT ? (n, t) -> passages.count(n, trialRandom(task, seed, t))
                        : (n, t) -> passages.retrieval(n, trialRandom(task, seed, t));
                cap = task == Task.PASSAGE_COUNT ? Integer.MAX_VALUE : passages.size();
            }
            default -> {
                if (code == null)
                    throw new RopewayException("lcc completes lines of code: give a folder of source files (--code <dir>: "
                            + "a project of yours, or e.g. Python's standard library)");
                generator = (n, t) -> code.lcc(n, trialRandom(task, seed, t));
                cap = code.maxLines();
            }
        }
        PromptFitter fitter = new PromptFitter(format, targetTokens - newTokens, cap, generator);
        int n = fitter.size();
        int least = task == Task.LCC ? 1 : MIN_PASSAGES;
        if (n < least)
            throw new RopewayException(String.format(Locale.ROOT, "%d tokens, %d of them to generate, cannot hold a %s "
                    + "prompt with %d %s (it needs %d tokens)", targetTokens, newTokens, task.label(), least,
                    task == Task.LCC ? "line of context" : "paragraphs",
                    fitter.tokens(generator.sample(least, 0)) + newTokens));
        if (n == cap)
            throw new RopewayException(String.format(Locale.ROOT, "%s: the %s too short to fill %d tokens (it "
                    + "gives %d tokens at most)", task.label(), task == Task.LCC ? "code folder is" : "text's passages are",
                    targetTokens, fitter.tokens(generator.sample(n, 0)) + newTokens));
        return fitter;
    }

    /**
     * Runs {@code trials} trials of one cell: the task at {@code targetTokens} (prompt plus {@code newTokens}
     * generated), decoding greedily and scoring with LongBench's metric. {@code passages} feeds the passage tasks,
     * {@code code} lcc (null: none; the task then fails clearly).
     */
    public static Cell run(Transformer model, RopeScaling rope, Tokenizer tok, Task task, int targetTokens, int trials,
                           long seed, int newTokens, Passages passages, CodeFiles code) {
        return run(model, rope, PromptFormat.plain(tok), task, targetTokens, trials, seed, newTokens, passages, code);
    }

    /** Like the plain-text run, with the prompts in {@code format} (a chat model's template: the whole prompt its message). */
    public static Cell run(Transformer model, RopeScaling rope, PromptFormat format, Task task, int targetTokens, int trials,
                           long seed, int newTokens, Passages passages, CodeFiles code) {
        Tokenizer tok = format.tokenizer();
        if (trials < 1) throw new RopewayException("a LongBench-style cell needs at least one trial, got " + trials);
        if (newTokens < 1) throw new RopewayException("at least one token to generate, got " + newTokens);
        PromptFitter fitter = fitter(task, format, targetTokens, newTokens, seed, passages, code);
        Ruler.Trials r = Ruler.runTrials(model, rope, tok, trials, newTokens, fitter::trial, UnaryOperator.identity(),
                (output, s) -> score(task, output, s.answers().getFirst()));
        return new Cell(task, targetTokens, r.promptTokens(), trials, newTokens, r.meanScore() * 100, r.full(),
                r.meanLogLikelihood(), r.firstOutput());
    }
}
