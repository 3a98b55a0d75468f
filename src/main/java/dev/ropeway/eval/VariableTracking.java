package dev.ropeway.eval;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * RULER's {@code vt} (variable tracking): one chain of assignments "VAR ABCDE = 12345", "VAR FGHIJ = VAR ABCDE ", ...
 * (four hops, five variables) hidden in order among noise lines, then the question and RULER's answer prefix; the
 * answer is every variable that ends up holding the value. As in RULER, the prompt opens with one worked example
 * (three-letter names, its own value, the answer written out) so a base model sees the answer's format.
 *
 * <p>RULER sizes its example at 500 tokens whatever the target; here it takes at most a quarter of the target (and
 * 500 tokens), so short targets keep room for the question. The chain's lines go at distinct random lines of the
 * noise, as in RULER; when there are fewer noise lines than chain links, links may sit next to each other.
 */
public final class VariableTracking {
    static final String TEMPLATE = "Memorize and track the chain(s) of variable assignment hidden in the following text."
            + "\n\n{context}\nQuestion: Find all variables that are assigned the value {query} in the text above.";
    static final String ANSWER_PREFIX = " Answer: According to the chain(s) of variable assignment in the text above, "
            + "{num_v} variables are assigned the value {query}, they are: ";
    static final int HOPS = 4;
    static final int EXAMPLE_MAX_TOKENS = 500;

    private VariableTracking() {}

    /** A chain's variable names (the answer, in chain order) and the value they all hold. */
    record Chain(List<String> names, String value) {
        /** The lines of the chain: the value assigned to the first name, then each name assigned the one before. */
        List<String> lines() {
            List<String> out = new ArrayList<>();
            out.add("VAR " + names.getFirst() + " = " + value);
            // RULER's hop lines end with a space.
            for (int i = 1; i < names.size(); i++) out.add("VAR " + names.get(i) + " = VAR " + names.get(i - 1) + " ");
            return out;
        }
    }

    static Chain chain(SplittableRandom rnd, int nameLength) {
        Set<String> names = new LinkedHashSet<>();
        while (names.size() < HOPS + 1) {
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < nameLength; i++) sb.append((char) ('A' + rnd.nextInt(26)));
            names.add(sb.toString());
        }
        return new Chain(List.copyOf(names), Integer.toString(rnd.nextInt(10000, 99999)));
    }

    /** The question part (template and answer prefix) with {@code lines} noise lines and the chain among them. */
    static String question(int lines, Chain chain, SplittableRandom rnd) {
        List<String> context = new ArrayList<>(Collections.nCopies(lines, Niah.NOISE));
        List<String> links = chain.lines();
        List<Integer> at = new ArrayList<>();
        if (lines >= links.size()) {
            for (int i : Ruler.pick(lines, links.size(), rnd)) at.add(i);
        } else {
            for (int i = 0; i < links.size(); i++) at.add(rnd.nextInt(lines + 1));
        }
        Collections.sort(at);
        // Inserting link j at its sorted position + j keeps the links in chain order, as RULER does.
        for (int j = 0; j < links.size(); j++) context.add(at.get(j) + j, links.get(j));
        String text = String.join("\n", context).replace(". \n", ".\n");
        return TEMPLATE.replace("{query}", chain.value()).replace("{context}", text) + answerPrefix(chain);
    }

    /** The answer prefix of a question about {@code chain}, as it ends the question. */
    static String answerPrefix(Chain chain) {
        return ANSWER_PREFIX.replace("{num_v}", Integer.toString(chain.names().size())).replace("{query}", chain.value());
    }

    /** The worked example RULER puts before the question: a three-letter chain, its question and the answer. */
    static String example(int lines, Chain chain, SplittableRandom rnd) {
        return question(lines, chain, rnd) + " " + String.join(" ", chain.names()) + "\n";
    }

    /**
     * The sample of one trial: the example with {@code exampleLines} noise lines, a blank line, and the question
     * with {@code lines} noise lines. The example's and the question's chains are drawn first, so the same trial
     * asks about the same variables at every size.
     */
    static Ruler.Sample sample(int lines, int exampleLines, SplittableRandom rnd) {
        Chain shown = chain(rnd, 3);
        Chain asked = chain(rnd, 5);
        String prompt = example(exampleLines, shown, rnd) + "\n" + question(lines, asked, rnd);
        return new Ruler.Sample(prompt, asked.names(), String.join(" ", asked.names()), answerPrefix(asked).length());
    }
}
