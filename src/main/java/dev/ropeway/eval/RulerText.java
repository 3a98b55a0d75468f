package dev.ropeway.eval;

import dev.ropeway.RopewayException;
import dev.ropeway.train.Corpus;
import dev.ropeway.train.CorpusDocument;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.TreeSet;

/**
 * The prose behind RULER's essay haystacks ({@code niah_single_2}, {@code niah_single_3}, {@code niah_multikey_1},
 * {@code niah_multivalue}, {@code niah_multiquery}) and the word pool of long {@code cwe} lists. RULER reads Paul
 * Graham's essays, which are not openly licensed; here the text is a corpus's held-out part (the four novels
 * {@code corpus prepare} keeps out of training) or, for an unsplit folder, all of it, documents joined in order.
 *
 * <p>As in RULER, the haystack of n words is the text's first n whitespace-separated words (the text repeated when
 * it is shorter), split into sentences between which the needles go. RULER splits with NLTK's punkt model; here a
 * sentence ends at a word ending in '.', '!' or '?' (closing quotes and brackets aside) that is not a common
 * abbreviation ("Mr.", "Mrs.", "St.") or an initial ("J."): the needles land at sentence boundaries all the same.
 */
public final class RulerText {
    private static final Set<String> ABBREVIATIONS = Set.of("mr", "mrs", "ms", "dr", "st", "jr", "sr", "messrs", "mme",
            "mlle", "rev", "col", "capt", "gen", "lt", "sgt", "prof", "no", "vol", "ch", "vs", "viz", "cf", "esq");
    private static final String CLOSERS = "\"')]}\u2019\u201d";
    private static final String OPENERS = "\"'([{\u2018\u201c";

    private final String[] words;
    private List<String> vocabulary;

    RulerText(String text) {
        String s = text.strip();
        if (s.isEmpty()) throw new RopewayException("the haystack text is empty");
        words = s.split("\\s+");
    }

    /** The corpus's held-out documents (all of them for an unsplit folder), joined in order. */
    public static RulerText of(Corpus corpus) {
        StringBuilder sb = new StringBuilder();
        for (CorpusDocument d : corpus.hasHeldout() ? corpus.heldout() : corpus.train()) sb.append(d.text()).append(' ');
        return new RulerText(sb.toString());
    }

    /** How many words the text has (a longer haystack repeats it). */
    int words() {
        return words.length;
    }

    /** The haystack of the text's first {@code n} words, cut into sentences. */
    List<String> sentences(int n) {
        List<String> out = new ArrayList<>();
        StringBuilder sentence = new StringBuilder();
        for (int i = 0; i < n; i++) {
            String w = words[i % words.length];
            if (!sentence.isEmpty()) sentence.append(' ');
            sentence.append(w);
            if (endsSentence(w)) {
                out.add(sentence.toString());
                sentence.setLength(0);
            }
        }
        if (!sentence.isEmpty()) out.add(sentence.toString());
        return out;
    }

    static boolean endsSentence(String word) {
        int end = word.length();
        while (end > 0 && CLOSERS.indexOf(word.charAt(end - 1)) >= 0) end--;
        if (end == 0) return false;
        char last = word.charAt(end - 1);
        if (last == '!' || last == '?') return true;
        if (last != '.') return false;
        int start = 0;
        while (start < end - 1 && OPENERS.indexOf(word.charAt(start)) >= 0) start++;
        String stem = word.substring(start, end - 1);
        if (stem.isEmpty()) return true;
        if (stem.indexOf('.') >= 0) return false; // "e.g.", "U.S.", an ellipsis
        if (stem.length() == 1 && Character.isLetter(stem.charAt(0))) return false; // an initial
        return !ABBREVIATIONS.contains(stem.toLowerCase(Locale.ROOT));
    }

    /**
     * The text's distinct words of 3 to 12 letters (lowercased, surrounding punctuation stripped, ASCII letters
     * only), sorted: the pool a {@code cwe} list draws from when it needs more words than the built-in ones.
     */
    List<String> vocabulary() {
        if (vocabulary == null) {
            Set<String> distinct = new TreeSet<>();
            for (String w : words) {
                int a = 0, b = w.length();
                while (a < b && !Character.isLetter(w.charAt(a))) a++;
                while (b > a && !Character.isLetter(w.charAt(b - 1))) b--;
                if (b - a < 3 || b - a > 12) continue;
                String s = w.substring(a, b).toLowerCase(Locale.ROOT);
                if (s.chars().allMatch(c -> c >= 'a' && c <= 'z')) distinct.add(s);
            }
            vocabulary = List.copyOf(distinct);
        }
        return vocabulary;
    }
}
