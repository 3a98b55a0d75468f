package dev.ropeway.eval;

import dev.ropeway.RopewayException;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * RULER's {@code fwe} (frequent words extraction): a "coded text" of random six-letter words whose counts follow a
 * Zipf law (the word of rank k appears {@code floor(n · k^-2 / ζ(2))} times in a text of about n words), shuffled;
 * the most frequent word is replaced by the noise "...", and the model names the next three. The vocabulary has one
 * word per 50 tokens of the target, as in RULER.
 */
final class FrequentWords {
    static final String TEMPLATE = "Read the following coded text and track the frequency of each coded word. Find the three "
            + "most frequently appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the "
            + "dots '....'. What are the three most frequently appeared words in the above coded text?";
    static final String ANSWER_PREFIX = " Answer: According to the coded text above, the three most frequently appeared words are:";
    static final double ALPHA = 2.0;
    static final double ZETA_2 = Math.PI * Math.PI / 6;
    static final int WORD_LENGTH = 6;

    private FrequentWords() {}

    /** RULER's vocabulary size for a target: one word per 50 tokens of what the prompt may use. */
    static int vocabularySize(int targetTokens, int newTokens) {
        int v = (targetTokens - newTokens) / 50;
        if (v < 5)
            throw new RopewayException("fwe needs at least 250 tokens besides the " + newTokens + " to generate, got " + targetTokens);
        return v;
    }

    /** How often the word of rank {@code rank} (from 1) appears in a text of about {@code words} words. */
    static int count(int words, int rank) {
        return (int) (words * Math.pow(rank, -ALPHA) / ZETA_2);
    }

    /** One trial's sample: a coded text of about {@code words} words over {@code vocabulary} coded words. */
    static Ruler.Sample sample(int words, int vocabulary, SplittableRandom rnd) {
        Set<String> distinct = new LinkedHashSet<>();
        while (distinct.size() < vocabulary) {
            StringBuilder sb = new StringBuilder(WORD_LENGTH);
            for (int i = 0; i < WORD_LENGTH; i++) sb.append((char) ('a' + rnd.nextInt(26)));
            distinct.add(sb.toString());
        }
        List<String> vocab = new ArrayList<>(distinct);
        vocab.set(0, "...");
        List<String> text = new ArrayList<>();
        for (int k = 1; k <= vocab.size(); k++) text.addAll(Collections.nCopies(count(words, k), vocab.get(k - 1)));
        Ruler.shuffle(text, rnd);
        List<String> answers = List.copyOf(vocab.subList(1, 4));
        String prompt = (TEMPLATE + ANSWER_PREFIX).replace("{context}", String.join(" ", text));
        return new Ruler.Sample(prompt, answers, " " + String.join(", ", answers), ANSWER_PREFIX.length());
    }
}
