package dev.ropeway.eval;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.Tokenizers;
import dev.ropeway.model.Transformer;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.train.TokenizedCorpus;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class RulerTest {
    static final String NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

    /** RULER's niah template after its single-needle rewrite, typed out here from the template and the rewrite rules. */
    static String niahPrompt(String context, String key) {
        return "A special magic number is hidden within the following text. Make sure to memorize it. I will quiz you "
                + "about the number afterwards.\n" + context + "\nWhat is the special magic number for " + key
                + " mentioned in the provided text? The special magic number for " + key + " mentioned in the provided text is";
    }

    static String vtQuestion(String context, String value) {
        return "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n" + context
                + "\nQuestion: Find all variables that are assigned the value " + value + " in the text above. Answer: "
                + "According to the chain(s) of variable assignment in the text above, 5 variables are assigned the value "
                + value + ", they are: ";
    }

    @Test
    void niahPromptIsRulersSingleNeedleTemplate() {
        String needle = "One of the special magic numbers for brave-otter is: 1234567.";
        String expected = niahPrompt(String.join("\n", NOISE, needle, NOISE, NOISE), "brave-otter");
        assertEquals(expected, Niah.prompt(3, 1, new Niah.Needle("brave-otter", "1234567")));
        assertEquals(niahPrompt(needle, "brave-otter"), Niah.prompt(0, 0, new Niah.Needle("brave-otter", "1234567")));
        assertThrows(IllegalArgumentException.class, () -> Niah.prompt(3, 4, new Niah.Needle("a-b", "1000000")));
    }

    @Test
    void niahSamplesAreSeededWithTheNeedleAtTheAskedDepth() {
        Pattern needleLine = Pattern.compile("One of the special magic numbers for ([a-z]+-[a-z]+) is: (\\d{7})\\.");
        for (double depth : new double[]{0, 0.25, 0.5, 1}) {
            Ruler.Sample s = Niah.sample(8, depth, Ruler.trialRandom(Ruler.Task.NIAH_SINGLE_1, 7, 2));
            Ruler.Sample again = Niah.sample(8, depth, Ruler.trialRandom(Ruler.Task.NIAH_SINGLE_1, 7, 2));
            assertEquals(s, again, "the same seed and trial give the same sample");
            Matcher m = needleLine.matcher(s.prompt());
            assertTrue(m.find(), s.prompt());
            String key = m.group(1), value = m.group(2);
            List<String> lines = new ArrayList<>(java.util.Collections.nCopies(8, NOISE));
            lines.add((int) Math.round(depth * 8), m.group());
            assertEquals(niahPrompt(String.join("\n", lines), key), s.prompt());
            assertEquals(List.of(value), s.answers());
            assertEquals(" " + value, s.answerText());
            int v = Integer.parseInt(value);
            assertTrue(v >= 1_000_000 && v <= 9_999_999);
        }
        List<String> values = new ArrayList<>();
        for (int t = 0; t < 20; t++) values.add(Niah.sample(2, 0.5, Ruler.trialRandom(Ruler.Task.NIAH_SINGLE_1, 7, t)).answers().getFirst());
        assertTrue(values.stream().distinct().count() >= 19, "trials draw different values: " + values);
    }

    @Test
    void vtQuestionHidesTheChainInOrderAmongTheNoise() {
        VariableTracking.Chain chain = new VariableTracking.Chain(List.of("QWERT", "ASDFG", "ZXCVB", "POIUY", "LKJHG"), "54321");
        String q = VariableTracking.question(6, chain, Ruler.trialRandom(Ruler.Task.VT, 3, 0));
        String[] head = q.split("\n\n", 2);
        assertEquals("Memorize and track the chain(s) of variable assignment hidden in the following text.", head[0]);
        String context = head[1].substring(0, head[1].indexOf("\nQuestion: "));
        assertEquals(vtQuestion(context, "54321"), q);
        List<String> lines = Arrays.asList(context.split("\n", -1));
        assertEquals(11, lines.size());
        assertEquals(6, lines.stream().filter(NOISE::equals).count());
        List<String> links = lines.stream().filter(l -> !l.equals(NOISE)).toList();
        assertEquals(List.of("VAR QWERT = 54321", "VAR ASDFG = VAR QWERT ", "VAR ZXCVB = VAR ASDFG ", "VAR POIUY = VAR ZXCVB ",
                "VAR LKJHG = VAR POIUY "), links);
        // With fewer noise lines than links the chain still reads in order.
        String tight = VariableTracking.question(2, chain, Ruler.trialRandom(Ruler.Task.VT, 3, 1));
        List<String> tightLinks = Arrays.stream(tight.split("\n")).filter(l -> l.startsWith("VAR ")).toList();
        assertEquals(links, tightLinks);
    }

    @Test
    void vtSampleOpensWithAWorkedExampleAndAsksAboutItsOwnChain() {
        Ruler.Sample s = VariableTracking.sample(3, 1, Ruler.trialRandom(Ruler.Task.VT, 5, 0));
        assertEquals(s, VariableTracking.sample(3, 1, Ruler.trialRandom(Ruler.Task.VT, 5, 0)));
        String[] parts = s.prompt().split("\n\nMemorize and track", -1);
        assertEquals(2, parts.length, "the worked example, a blank line, then the question");
        assertTrue(parts[0].startsWith("Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n"));
        Matcher example = Pattern.compile("they are:  ([A-Z]{3}) ([A-Z]{3}) ([A-Z]{3}) ([A-Z]{3}) ([A-Z]{3})$").matcher(parts[0]);
        assertTrue(example.find(), "the example ends with its five three-letter names after RULER's double space: " + parts[0]);
        assertTrue(parts[0].contains("VAR " + example.group(2) + " = VAR " + example.group(1) + " \n"));
        assertTrue(s.prompt().endsWith(", they are: "));
        assertEquals(5, s.answers().size());
        for (String n : s.answers()) assertTrue(n.matches("[A-Z]{5}"), n);
        assertEquals(String.join(" ", s.answers()), s.answerText());
        // The asked chain starts with the value in the question.
        Matcher value = Pattern.compile("VAR " + s.answers().getFirst() + " = (\\d{5})\n").matcher(s.prompt());
        assertTrue(value.find());
        assertTrue(s.prompt().contains("assigned the value " + value.group(1) + " in the text above."));
        // Sizes change the haystack, not what is asked.
        assertEquals(s.answers(), VariableTracking.sample(9, 0, Ruler.trialRandom(Ruler.Task.VT, 5, 0)).answers());
    }

    @Test
    void stringMatchAllScoresAsRulerDoes() {
        assertEquals("a\nb", Ruler.postprocess("  a\tb \u0001"));
        assertEquals(1.0, Ruler.matchFraction(" 1234567. The", List.of("1234567")));
        assertEquals(0.0, Ruler.matchFraction("123456", List.of("1234567")));
        List<String> names = List.of("ABCDE", "FGHIJ", "KLMNO", "PQRST", "UVWXY");
        assertEquals(0.6, Ruler.matchFraction("abcde FGHIJ uvwxy and others", names), 1e-12);
        assertEquals(0.0, Ruler.matchFraction("", names));
        // Two samples: all found, and two of five found: (1 + 0.4) / 2 x 100.
        assertEquals(70.0, Ruler.stringMatchAll(List.of("1234567", "ABCDE, KLMNO"), List.of(List.of("1234567"), names)), 1e-9);
        assertThrows(IllegalArgumentException.class, () -> Ruler.stringMatchAll(List.of("x"), List.of()));
        assertThrows(IllegalArgumentException.class, () -> Ruler.matchFraction("x", List.of()));
    }

    @Test
    void largestFittingFindsTheBiggestHaystackWithinTheBudget() {
        assertEquals(10, Ruler.largestFitting(n -> 10 + 3 * n, 40));
        assertEquals(9, Ruler.largestFitting(n -> 10 + 3 * n, 39));
        assertEquals(0, Ruler.largestFitting(n -> 10 + 3 * n, 12));
        assertEquals(-1, Ruler.largestFitting(n -> 10 + 3 * n, 9));
        assertEquals(1000, Ruler.largestFitting(n -> n, 1000));
    }

    @Test
    void cellsFillTheLengthAndScoreEveryTrial(@TempDir Path dir) {
        TinyModels.model(dir, 64, 3);
        try (CpuBackend backend = new CpuBackend(); Transformer t = Transformer.load(backend, dir);
             Tokenizer tok = Tokenizers.open(dir)) {
            for (Ruler.Task task : Ruler.Task.values()) {
                int target = 1400, newTokens = 5;
                Ruler.Sizer sizer = new Ruler.Sizer(task, tok, target, newTokens, 0.5, 11);
                int tokens = Passkey.tokens(tok, sizer.trial(0).prompt()).length;
                assertTrue(tokens <= target - newTokens, task + ": " + tokens + " tokens");
                // One more haystack line would not fit: the prompt is within a line (~90 tokens here) of the budget.
                assertTrue(tokens > target - newTokens - 100, task + ": " + tokens + " tokens");
                Ruler.Cell c = Ruler.run(t, t.config().rope(), tok, task, target, 0.5, 2, 11, newTokens);
                assertEquals(2, c.trials());
                assertTrue(c.score() >= 0 && c.score() <= 100);
                assertTrue(c.promptTokens() <= target - newTokens);
                assertTrue(c.meanAnswerLogLikelihood() < 0 && Double.isFinite(c.meanAnswerLogLikelihood()));
                assertEquals(c, Ruler.Cell.fromJson(c.toJson()));
            }
            RopewayException e = assertThrows(RopewayException.class,
                    () -> Ruler.run(t, t.config().rope(), tok, Ruler.Task.VT, 300, 0, 1, 0, 30));
            assertTrue(e.getMessage().contains("300 tokens cannot hold it"), e.getMessage());
        }
    }
}
