package dev.ropeway.eval;

import dev.ropeway.RopewayException;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.UUID;

/**
 * RULER's needle-in-a-haystack family: needles "One of the special magic {numbers} for {key} is: {value}." hidden in
 * a haystack, then the question and RULER's answer prefix, so a base model answers by copying the values. The eight
 * variants differ in the haystack (the grass-and-sky noise line repeated, prose, or other needles with other keys),
 * in what keys and values are (adjective-noun words, seven-digit numbers, UUIDs), and in how many keys, values per
 * key and asked keys there are ({@link Spec}). RULER writes the template for any number of needles and rewrites it
 * when one value is asked for (Some→A, are all→is, are→is, answers→answer, numbers→number); the same rewrite is
 * applied here, so prompts are RULER's byte for byte for the same haystack.
 *
 * <p>Keys are adjective-noun pairs as RULER draws them (from {@link RulerWords}' built-in lists instead of the
 * wonderwords package), values uniform in [1,000,000, 9,999,999] or version-4 UUIDs. Unlike RULER, no two needles
 * (the distractors of a needle haystack included) share a key, so every question has one right answer. Where one
 * needle is hidden, its place is a controlled variable: line {@code round(depth × n)} of n haystack lines, or
 * sentence {@code floor(depth × s)} of s sentences, which gives the length × depth grid. Where several are, they go
 * where RULER puts them: at distinct random lines, or at sentences drawn from RULER's 40 depths from 0 to 100%.
 */
public final class Niah {
    static final String TEMPLATE = "Some special magic {type_needle_v} are hidden within the following text. Make sure to "
            + "memorize it. I will quiz you about the {type_needle_v} afterwards.\n{context}\nWhat are all the special magic "
            + "{type_needle_v} for {query} mentioned in the provided text?";
    static final String ANSWER_PREFIX = " The special magic {type_needle_v} for {query} mentioned in the provided text are";
    static final String NEEDLE = "One of the special magic {type_needle_v} for {key} is: {value}.";
    static final String NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
    /** RULER's needle depths for essays: round(linspace(0, 100, 40)), in percent. */
    static final int[] DEPTHS = depths();

    /** What fills the haystack. */
    public enum Haystack { NOISE, ESSAY, NEEDLE }

    /** What keys and values are, by the plural RULER's template uses. */
    public enum Kind {
        WORDS("words"), NUMBERS("numbers"), UUIDS("uuids");

        private final String plural;

        Kind(String plural) {
            this.plural = plural;
        }

        String plural() {
            return plural;
        }

        String draw(SplittableRandom rnd) {
            return switch (this) {
                case WORDS -> RulerWords.ADJECTIVES[rnd.nextInt(RulerWords.ADJECTIVES.length)] + "-"
                        + RulerWords.NOUNS[rnd.nextInt(RulerWords.NOUNS.length)];
                case NUMBERS -> Integer.toString(rnd.nextInt(1_000_000, 10_000_000));
                case UUIDS -> new UUID(rnd.nextLong() & ~0xF000L | 0x4000L,
                        rnd.nextLong() & 0x3FFF_FFFF_FFFF_FFFFL | 0x8000_0000_0000_0000L).toString();
            };
        }
    }

    /**
     * A variant: its haystack, key and value kinds, and how many keys, values per key and asked keys (as RULER,
     * at least as many keys as are asked).
     */
    public record Spec(Haystack haystack, Kind keys, Kind values, int keyCount, int valueCount, int queryCount) {
        public Spec {
            if (valueCount < 1 || queryCount < 1) throw new IllegalArgumentException("at least one value and one query");
            keyCount = Math.max(keyCount, queryCount);
        }

        int needles() {
            return keyCount * valueCount;
        }

        /** Whether one needle is hidden, whose depth is then the cell's. */
        boolean single() {
            return needles() == 1;
        }
    }

    private Niah() {}

    private static int[] depths() {
        int[] d = new int[40];
        for (int i = 0; i < d.length; i++) d[i] = (int) Math.round(100.0 * i / 39);
        return d;
    }

    /**
     * One trial's sample with a haystack of {@code size} lines (noise, needle) or words (essay, from {@code text}),
     * the single needle at {@code depth} in [0, 1] (ignored with several needles). What is asked (keys, values and
     * the asked keys) is drawn before the haystack, so a trial asks the same at every size.
     */
    static Ruler.Sample sample(Spec spec, int size, double depth, SplittableRandom rnd, RulerText text) {
        if (size < 0) throw new IllegalArgumentException("haystack size " + size);
        List<String> keys = new ArrayList<>();
        List<List<String>> values = new ArrayList<>();
        List<String> needles = new ArrayList<>();
        Set<String> used = new HashSet<>();
        for (int k = 0; k < spec.keyCount(); k++) {
            String key = distinct(spec.keys(), rnd, used);
            List<String> vs = new ArrayList<>();
            for (int v = 0; v < spec.valueCount(); v++) {
                vs.add(spec.values().draw(rnd));
                needles.add(needle(spec, key, vs.getLast()));
            }
            keys.add(key);
            values.add(vs);
        }
        Ruler.shuffle(needles, rnd);
        int[] asked = Ruler.pick(spec.keyCount(), spec.queryCount(), rnd);
        List<String> queries = new ArrayList<>(), answers = new ArrayList<>();
        for (int i : asked) {
            queries.add(keys.get(i));
            answers.addAll(values.get(i));
        }

        String context = spec.haystack() == Haystack.ESSAY ? essay(text, size, needles, spec.single() ? depth : -1, rnd)
                : lines(spec, size, needles, spec.single() ? depth : -1, used, rnd);
        String query = queries.size() == 1 ? queries.getFirst()
                : String.join(", ", queries.subList(0, queries.size() - 1)) + ", and " + queries.getLast();
        String template = TEMPLATE, prefix = ANSWER_PREFIX;
        String type = spec.values().plural();
        if (spec.queryCount() * spec.valueCount() == 1) {
            // RULER's rewrite for one asked value, applied to the template and answer prefix before they are filled
            // in (no word it rewrites spans the two).
            template = singular(template);
            prefix = singular(prefix);
            type = type.substring(0, type.length() - 1);
        }
        prefix = prefix.replace("{type_needle_v}", type).replace("{query}", query);
        String prompt = template.replace("{type_needle_v}", type).replace("{query}", query).replace("{context}", context) + prefix;
        return new Ruler.Sample(prompt, answers, " " + String.join(", ", answers), prefix.length());
    }

    private static String singular(String s) {
        return s.replace("Some", "A").replace("are all", "is").replace("are", "is").replace("answers", "answer");
    }

    private static String needle(Spec spec, String key, String value) {
        return NEEDLE.replace("{type_needle_v}", spec.values().plural()).replace("{key}", key).replace("{value}", value);
    }

    private static String distinct(Kind kind, SplittableRandom rnd, Set<String> used) {
        for (int tries = 0; tries < 1_000; tries++) {
            String s = kind.draw(rnd);
            if (used.add(s)) return s;
        }
        throw new RopewayException("cannot draw another distinct " + kind.plural() + " key after " + used.size());
    }

    /** Noise or distractor lines with the needles among them, one per line. */
    private static String lines(Spec spec, int n, List<String> needles, double depth, Set<String> usedKeys,
                                SplittableRandom rnd) {
        List<String> lines = new ArrayList<>(n + needles.size());
        for (int i = 0; i < n; i++) {
            if (spec.haystack() == Haystack.NOISE) lines.add(NOISE);
            else lines.add(needle(spec, distinct(spec.keys(), rnd, usedKeys), spec.values().draw(rnd)));
        }
        if (depth >= 0) {
            lines.add((int) Math.round(depth * n), needles.getFirst());
        } else {
            // As RULER: distinct lines in descending order, each needle inserted at its own; with fewer lines than
            // needles, lines drawn with repeats.
            int m = needles.size();
            int[] at = n >= m ? Ruler.pick(n, m, rnd) : rnd.ints(m, 0, n + 1).toArray();
            Arrays.sort(at);
            for (int i = 0; i < m; i++) lines.add(at[m - 1 - i], needles.get(i));
        }
        return String.join("\n", lines);
    }

    /** The first {@code words} words of the text with the needles between its sentences, as RULER builds an essay. */
    private static String essay(RulerText text, int words, List<String> needles, double depth, SplittableRandom rnd) {
        if (text == null) throw new RopewayException("an essay haystack needs a text (--data <corpus>)");
        List<String> sentences = text.sentences(words);
        int s = sentences.size(), m = needles.size();
        int[] at = new int[m];
        if (depth >= 0) {
            at[0] = (int) (s * depth);
        } else {
            int[] d = Ruler.pick(DEPTHS.length, m, rnd);
            for (int i = 0; i < m; i++) at[i] = (int) ((long) s * DEPTHS[d[i]] / 100);
            Arrays.sort(at);
        }
        // RULER joins every piece with a space, empty stretches included.
        List<String> parts = new ArrayList<>();
        int last = 0;
        for (int i = 0; i <= m; i++) {
            int next = i < m ? Math.min(at[i], s) : s;
            parts.add(String.join(" ", sentences.subList(last, next)));
            if (i < m) parts.add(needles.get(i));
            last = next;
        }
        return String.join(" ", parts);
    }
}
