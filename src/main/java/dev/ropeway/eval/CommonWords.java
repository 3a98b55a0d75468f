package dev.ropeway.eval;

import dev.ropeway.RopewayException;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * RULER's {@code cwe} (common words extraction): a numbered list of words in which ten words appear often (30 times
 * each) and the rest rarely (3 times each), shuffled; the model names the ten common ones. A worked example comes
 * first (40 words, the common ten 10 times each and the others 3 times, its answer written out), so a base model sees
 * the format. Below 4,096 tokens RULER makes the lists lighter (example: 20 words at 3 and 1; list: 6 and 1), and
 * so does this.
 *
 * <p>Words come from {@link RulerWords#COMMON} (about 550 adjectives, nouns and verbs) while a list needs no more;
 * longer lists draw from the distinct words of a text ({@link RulerText#vocabulary()}), as RULER turns from the
 * wonderwords lists to a larger English word list.
 */
final class CommonWords {
    static final String TEMPLATE = "Below is a numbered list of words. In these words, some appear more often than others. "
            + "Memorize the ones that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?";
    static final String ANSWER_PREFIX = " Answer: The top 10 words that appear most often in the list are:";
    static final int COMMON = 10;

    private CommonWords() {}

    /** The words of one list and its answer. */
    record Example(String context, List<String> common) {}

    /**
     * A list of {@code words} distinct words, the first ten of them repeated {@code commonRepeats} times and the rest
     * {@code rareRepeats} times, shuffled and numbered.
     */
    static Example example(int words, int commonRepeats, int rareRepeats, SplittableRandom rnd, RulerText text) {
        List<String> pool = RulerWords.COMMON;
        if (words > pool.size()) {
            if (text == null)
                throw new RopewayException(String.format("a cwe list of %d words needs more than the %d built-in ones: give a "
                        + "text to draw words from (--data <corpus>)", words, pool.size()));
            pool = text.vocabulary();
            if (words > pool.size())
                throw new RopewayException("a cwe list of " + words + " words needs more distinct words than the text's " + pool.size());
        }
        int[] chosen = Ruler.pick(pool.size(), words, rnd);
        List<String> common = new ArrayList<>(), list = new ArrayList<>();
        for (int i = 0; i < words; i++) {
            String w = pool.get(chosen[i]);
            if (i < COMMON) common.add(w);
            for (int r = 0; r < (i < COMMON ? commonRepeats : rareRepeats); r++) list.add(w);
        }
        Ruler.shuffle(list, rnd);
        return new Example(numbered(list), common);
    }

    static String numbered(List<String> words) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < words.size(); i++) {
            if (i > 0) sb.append(' ');
            sb.append(i + 1).append(". ").append(words.get(i));
        }
        return sb.toString();
    }

    /**
     * One trial's sample: the worked example, a line break, then the question over a list of {@code words} words
     * (at least ten) sized for {@code targetTokens}.
     */
    static Ruler.Sample sample(int words, int targetTokens, SplittableRandom rnd, RulerText text) {
        if (words < COMMON) throw new IllegalArgumentException("a cwe list needs at least " + COMMON + " words, got " + words);
        boolean short_ = targetTokens < 4096;
        Example shown = short_ ? example(20, 3, 1, rnd, text) : example(40, 10, 3, rnd, text);
        Example asked = short_ ? example(words, 6, 1, rnd, text) : example(words, 30, 3, rnd, text);
        String answer = numbered(asked.common());
        String prompt = question(shown.context()) + " " + numbered(shown.common()) + "\n" + question(asked.context());
        return new Ruler.Sample(prompt, asked.common(), " " + answer, ANSWER_PREFIX.length());
    }

    private static String question(String context) {
        return (TEMPLATE + ANSWER_PREFIX).replace("{context}", context);
    }
}
