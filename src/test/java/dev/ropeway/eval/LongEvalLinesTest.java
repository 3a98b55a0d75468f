package dev.ropeway.eval;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.Tokenizers;
import dev.ropeway.model.Transformer;
import dev.ropeway.tensor.CpuBackend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class LongEvalLinesTest {
    /** LongEval's header, typed out from its generator. */
    static final String HEADER = "Below is a record of lines I want you to remember. Each line begins with 'line <line index>' "
            + "and contains a '<REGISTER_CONTENT>' at the end of the line as a numerical value. For each line index, memorize "
            + "its corresponding <REGISTER_CONTENT>. At the end of the record, I will ask you to retrieve the corresponding "
            + "<REGISTER_CONTENT> of a certain line index. Now the record start:\n\n";
    private static final Pattern LINE = Pattern.compile("line ([a-z]+-[a-z]+): REGISTER_CONTENT is <(\\d+)>");

    /** A record's lines, as (index, number) pairs in order. */
    static List<String[]> lines(String prompt) {
        List<String[]> out = new ArrayList<>();
        Matcher m = LINE.matcher(prompt);
        while (m.find()) out.add(new String[] {m.group(1), m.group(2)});
        return out;
    }

    static Ruler.Sample sample(int n, double depth, long seed, int trial) {
        return LongEvalLines.sample(n, depth, Ruler.trialRandom(Ruler.salt("longeval_lines"), seed, trial));
    }

    @Test
    void promptsAreLongEvalsWithTheAskedLineAtItsDepth() {
        for (double depth : new double[] {0, 0.25, 0.5, 1}) {
            Ruler.Sample s = sample(9, depth, 3, 1);
            List<String[]> lines = lines(s.prompt());
            assertEquals(9, lines.size());
            int at = (int) Math.round(depth * 8);
            String index = lines.get(at)[0], number = lines.get(at)[1];
            StringBuilder expected = new StringBuilder(HEADER);
            for (String[] l : lines) expected.append("line ").append(l[0]).append(": REGISTER_CONTENT is <").append(l[1]).append(">\n");
            expected.append("\nNow the record is over. Tell me what is the <REGISTER_CONTENT> in line ").append(index)
                    .append("? I need the number.Line <").append(index).append(">: <REGISTER_CONTENT> is");
            assertEquals(expected.toString(), s.prompt(), "depth " + depth);
            assertEquals(List.of(number), s.answers());
            assertEquals(" <" + number + ">", s.answerText());
            // Indices distinct, numbers in LongEval's range 1..50000.
            assertEquals(9, lines.stream().map(l -> l[0]).distinct().count());
            for (String[] l : lines) {
                int v = Integer.parseInt(l[1]);
                assertTrue(v >= 1 && v <= 50_000, l[1]);
            }
        }
    }

    @Test
    void aTrialAsksTheSameAtEverySizeAndALongerRecordOnlyAddsLines() {
        Ruler.Sample small = sample(5, 0, 7, 2), large = sample(40, 0, 7, 2);
        assertEquals(small.answers(), large.answers());
        List<String[]> a = lines(small.prompt()), b = lines(large.prompt());
        for (int i = 0; i < a.size(); i++) assertArrayEquals(a.get(i), b.get(i), "line " + i);
        assertTrue(sample(41, 0, 7, 2).prompt().length() > large.prompt().length());
        // Other trials and seeds ask other lines.
        var asked = new HashSet<String>();
        for (int trial = 0; trial < 20; trial++) asked.add(sample(10, 0.5, 7, trial).answers().getFirst());
        assertTrue(asked.size() > 15, asked.toString());
        assertFalse(sample(10, 0.5, 8, 0).prompt().equals(sample(10, 0.5, 7, 0).prompt()));
    }

    @Test
    void answersAreScoredByLongEvalsRuleOnTheirFirstLine() {
        assertEquals("<12821>", LongEvalLines.answer(" <12821>\nline brave-otter: REGISTER_CONTENT is <5>"));
        assertEquals("12821", LongEvalLines.answer("\n\n  12821 \n"));
        assertEquals("", LongEvalLines.answer("  \n "));
        assertTrue(LongEvalLines.correct("<12821>", "12821"));
        assertTrue(LongEvalLines.correct("The number is 12821.", "12821"));
        assertTrue(LongEvalLines.correct("line 4 holds 12821", "12821"), "the last integer counts");
        assertFalse(LongEvalLines.correct("12821, not 5", "12821"), "the last integer counts");
        assertTrue(LongEvalLines.correct("<012821>", "12821"), "compared as integers");
        assertFalse(LongEvalLines.correct("<128210>", "12821"));
        assertFalse(LongEvalLines.correct("no number", "12821"));
        assertFalse(LongEvalLines.correct("", "12821"));
    }

    @Test
    void cellsFillTheLengthAndScoreEveryTrial(@TempDir Path dir) {
        TinyModels.model(dir, 64, 3);
        try (CpuBackend backend = new CpuBackend(); Transformer t = Transformer.load(backend, dir);
             Tokenizer tok = Tokenizers.open(dir)) {
            int target = 1500, newTokens = 6;
            PromptFitter fitter = LongEvalLines.fitter(PromptFormat.plain(tok), target, newTokens, 0.5, 11);
            for (int trial = 0; trial < 3; trial++) {
                PromptFitter.Fitted fitted = fitter.trial(trial);
                assertArrayEquals(Passkey.tokens(tok, fitted.sample().prompt()), fitted.ids());
                int tokens = fitted.ids().length;
                assertTrue(tokens <= target - newTokens, tokens + " tokens");
                // A line is about 45 byte-level tokens: one more would not fit.
                assertTrue(tokens > target - newTokens - 50, "trial " + trial + ": " + tokens + " tokens");
            }
            LongEvalLines.Cell c = LongEvalLines.run(t, t.config().rope(), tok, target, 0.5, 2, 11, newTokens);
            assertEquals(2, c.trials());
            assertEquals(lines(fitter.trial(0).sample().prompt()).size(), c.lines());
            assertTrue(c.lines() > 15, c.lines() + " lines");
            assertTrue(c.correct() >= 0 && c.correct() <= 2);
            assertTrue(c.promptTokens() <= target - newTokens);
            assertTrue(c.meanAnswerLogLikelihood() < 0 && Double.isFinite(c.meanAnswerLogLikelihood()));
            assertEquals(c, LongEvalLines.Cell.fromJson(c.toJson()));

            RopewayException e = assertThrows(RopewayException.class,
                    () -> LongEvalLines.run(t, t.config().rope(), tok, 300, 0, 1, 0, 15));
            assertTrue(e.getMessage().contains("a lines prompt with one line needs") && e.getMessage().contains("300 tokens "
                    + "cannot hold it"), e.getMessage());
            assertThrows(RopewayException.class, () -> LongEvalLines.run(t, t.config().rope(), tok, 1500, 1.5, 1, 0, 15));
        }
    }

    @Test
    void aModelThatCopiesTheRecordAnswersRight(@TempDir Path dir) {
        // The whole path, prompt to score, with the number's own tokens as the output: what a model that retrieves writes.
        TinyModels.model(dir, 64, 3);
        try (Tokenizer tok = Tokenizers.open(dir)) {
            for (int trial = 0; trial < 3; trial++) {
                Ruler.Sample s = sample(30, 0.5, 5, trial);
                String output = tok.decode(tok.encode(s.answerText() + "\nline calm-otter: REGISTER_CONTENT is <7>\n", false), true);
                assertTrue(LongEvalLines.correct(LongEvalLines.answer(output), s.answers().getFirst()), output);
                String wrong = tok.decode(tok.encode(" <" + (Integer.parseInt(s.answers().getFirst()) % 50_000 + 1) + ">", false), true);
                assertFalse(LongEvalLines.correct(LongEvalLines.answer(wrong), s.answers().getFirst()), wrong);
            }
        }
    }
}
