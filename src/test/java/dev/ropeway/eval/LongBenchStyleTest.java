package dev.ropeway.eval;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.Tokenizers;
import dev.ropeway.model.Transformer;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.train.Corpus;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class LongBenchStyleTest {
    private static final Pattern ENTRY = Pattern.compile("Paragraph (\\d+): (.*?)(?=\\n\\nParagraph \\d+: |\\n\\n[A-Z][a-z]+ )",
            Pattern.DOTALL);

    /** LongBench's prompts, typed out here from its config (dataset2prompt.json). */
    static final String COUNT_HEAD = "There are some paragraphs below sourced from Wikipedia. Some of them may be duplicates. "
            + "Please carefully read these paragraphs and determine how many unique paragraphs there are after removing "
            + "duplicates. In other words, how many non-repeating paragraphs are there in total?\n\n";
    static final String COUNT_TAIL = "\n\nPlease enter the final count of unique paragraphs after removing duplicates. The "
            + "output format should only contain the number, such as 1, 2, 3, and so on.\n\nThe final answer is: ";
    static final String LCC_HEAD = "Please complete the code given below. \n";
    static final String LCC_TAIL = "Next line of code:\n";

    @Test
    void scoresAsLongBenchDoes() {
        assertEquals(1.0, LongBenchStyle.countScore("5", "5"));
        assertEquals(2.0 / 3, LongBenchStyle.countScore("5, or 5 and 3", "5"), 1e-12);
        assertEquals(0.0, LongBenchStyle.countScore("15 and 50", "5"), "whole numbers only");
        assertEquals(0.0, LongBenchStyle.countScore("none", "5"));
        assertEquals(1.0, LongBenchStyle.retrievalScore("Paragraph 12", "Paragraph 12"));
        assertEquals(0.5, LongBenchStyle.retrievalScore("Paragraph 12 or Paragraph 3.", "Paragraph 12"));
        assertEquals(0.0, LongBenchStyle.retrievalScore("The first one", "Paragraph 1"));
        assertThrows(IllegalArgumentException.class, () -> LongBenchStyle.retrievalScore("12", "12"));
        // code_sim_score: the first line after the leading line breaks with none of '`', '#', '//'.
        assertEquals(0.73, LongBenchStyle.codeSimScore("\n\n# note\n// more\nreturn x + 1;\nnext()", "    return y - 1;"));
        assertEquals(1.0, LongBenchStyle.codeSimScore("    return y - 1;\n", "    return y - 1;"));
        assertEquals(0.0, LongBenchStyle.codeSimScore("```\n# only comments", "    return y - 1;"));
    }

    @Test
    void ratioIsFuzzywuzzysOverDifflib() {
        // Each expected value is fuzzywuzzy.fuzz.ratio as it runs without python-Levenshtein (difflib.SequenceMatcher).
        assertEquals(93, LongBenchStyle.ratio("        self.assertEqual(a, b)", "        self.assertEqual(b, a)"));
        assertEquals(73, LongBenchStyle.ratio("return x + 1;", "    return y - 1;"));
        assertEquals(86, LongBenchStyle.ratio("for (int i = 0; i < n; i++) {", "for (int j = 0; j < m; j++) {"));
        assertEquals(25, LongBenchStyle.ratio("abcd", "dcba"));
        assertEquals(33, LongBenchStyle.ratio("def foo(self):", "class Foo:"));
        assertEquals(88, LongBenchStyle.ratio("héllo wörld \uD83D\uDE00 ok", "hello world \uD83D\uDE00 ok"), "code points");
        assertEquals(100, LongBenchStyle.ratio("same", "same"));
        assertEquals(0, LongBenchStyle.ratio("", "x"));
        // A b of 200 characters or more: difflib's autojunk rule starts no run at its frequent characters.
        StringBuilder a = new StringBuilder("x = "), b = new StringBuilder("x = ");
        for (int i = 0; i < 35; i++) a.append(i > 0 ? " + " : "").append("value").append(i * 3 % 41);
        for (int i = 0; i < 40; i++) b.append(i > 0 ? " + " : "").append("value").append(i);
        assertEquals(36, LongBenchStyle.ratio(a.toString(), b.toString()));
    }

    @Test
    void templatesAreFilledInOnePass() {
        assertEquals("a {x} b 1", LongBenchStyle.fill("a {x} b {y}", Map.of("x", "{x}", "y", "1")));
        assertThrows(IllegalArgumentException.class, () -> LongBenchStyle.fill("{z}", Map.of()));
        assertEquals(LongBenchStyle.Task.PASSAGE_RETRIEVAL, LongBenchStyle.Task.parse("passage_retrieval_en"));
        assertThrows(RopewayException.class, () -> LongBenchStyle.Task.parse("narrativeqa"));
    }

    @Test
    void passagesMergeParagraphsToAtLeastAHundredWords() {
        String p30 = "word ".repeat(29) + "end.", p80 = "other ".repeat(79) + "stop.", huge = "big ".repeat(600) + "done.";
        String doc = p30 + "\n\n" + p80 + "\n \n" + p30.replace("end", "fin") + "\n\n" + huge + "\n\n" + p30 + "\n" + p80.replace('\n', ' ')
                + "\n\n" + "tail words";
        Passages p = new Passages(List.of(doc, p30 + "\n\n" + p80, p80 + "\n\n" + p30.replace("end", "x")));
        // doc: 30 + 80 words make a passage; then 30 + 600, too long, dropped; then the same 110 words written as one
        // paragraph, a repeat; the tail is too short. The second document repeats the first passage; the third is new.
        assertEquals(2, p.size());
        assertEquals(p30 + " " + p80, p.get(0));
        assertEquals(p80 + " " + p30.replace("end", "x"), p.get(1));
        RopewayException one = assertThrows(RopewayException.class, () -> new Passages(List.of(doc)));
        assertTrue(one.getMessage().contains("the text holds 1 passage of 100 to 300 words"), one.getMessage());
        assertEquals(List.of("One two three four five six seven eight.", "Mr. Smith said so to all of us there.",
                        "Nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen"),
                Passages.querySentences("Short one. One two three four five six seven eight. Mr. Smith said so to all of us "
                        + "there. Nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen"));
    }

    @Test
    void passageCountPromptsHoldTheirAnswerAndGrowByOneParagraph(@TempDir Path dir) {
        Passages passages = Passages.of(Corpus.open(TinyModels.prose(dir, 400)));
        assertTrue(passages.size() > 100, passages.size() + " passages");
        Set<String> answers = new HashSet<>();
        for (int trial = 0; trial < 6; trial++) {
            List<String> previous = null;
            for (int slots : new int[] {1, 2, 7, 8, 30}) {
                Ruler.Sample s = passages.count(slots, LongBenchStyle.trialRandom(LongBenchStyle.Task.PASSAGE_COUNT, 3, trial));
                assertTrue(s.prompt().startsWith(COUNT_HEAD) && s.prompt().endsWith(COUNT_TAIL), s.prompt());
                List<String> entries = entries(s.prompt(), slots);
                assertEquals(Integer.toString(new HashSet<>(entries).size()), s.answerText());
                assertEquals(List.of(s.answerText()), s.answers());
                if (previous != null && previous.size() == slots - 1) assertEquals(previous, entries.subList(0, slots - 1));
                previous = entries;
                if (slots == 30) {
                    answers.add(s.answerText());
                    int distinct = Integer.parseInt(s.answerText());
                    assertTrue(distinct >= 3 && distinct < 30, "repeats at a rate of 25-75%: " + distinct);
                }
            }
        }
        assertTrue(answers.size() > 1, "the count varies from trial to trial: " + answers);
    }

    /** The numbered paragraphs of a prompt, checked to run 1..n. */
    private static List<String> entries(String prompt, int n) {
        Matcher m = ENTRY.matcher(prompt);
        List<String> out = new ArrayList<>();
        while (m.find()) {
            assertEquals(out.size() + 1, Integer.parseInt(m.group(1)));
            out.add(m.group(2));
        }
        assertEquals(n, out.size(), prompt);
        return out;
    }

    @Test
    void passageRetrievalAsksASentenceOfExactlyOneParagraph(@TempDir Path dir) {
        Passages passages = Passages.of(Corpus.open(TinyModels.prose(dir, 400)));
        Set<Integer> places = new HashSet<>();
        for (int trial = 0; trial < 12; trial++) {
            SplittableRandom rnd = LongBenchStyle.trialRandom(LongBenchStyle.Task.PASSAGE_RETRIEVAL, 0, trial);
            Ruler.Sample s = passages.retrieval(25, rnd);
            String head = "Here are 25 paragraphs from Wikipedia, along with an abstract. Please determine which paragraph "
                    + "the abstract is from.\n\n";
            assertTrue(s.prompt().startsWith(head), s.prompt());
            int q = s.prompt().indexOf("\n\nThe following is an abstract.\n\n");
            String tail = s.prompt().substring(q + "\n\nThe following is an abstract.\n\n".length());
            String query = tail.substring(0, tail.indexOf("\n\nPlease enter"));
            assertEquals("\n\nPlease enter the number of the paragraph that the abstract is from. The answer format must be "
                    + "like \"Paragraph 1\", \"Paragraph 2\", etc.\n\nThe answer is: ", tail.substring(query.length()));
            assertTrue(query.split(" ").length >= Passages.MIN_QUERY_WORDS, query);
            List<String> entries = entries(s.prompt().substring(0, q + 2) + "\n\nThe following", 25);
            assertEquals(25, new HashSet<>(entries).size(), "distinct paragraphs");
            int k = Integer.parseInt(s.answerText().substring("Paragraph ".length()));
            for (int i = 0; i < entries.size(); i++) assertEquals(i == k - 1, entries.get(i).contains(query), "paragraph " + (i + 1));
            places.add(k);
            // One more paragraph keeps the others and the question.
            Ruler.Sample more = passages.retrieval(26, LongBenchStyle.trialRandom(LongBenchStyle.Task.PASSAGE_RETRIEVAL, 0, trial));
            assertTrue(more.prompt().contains(query));
            for (String e : entries) assertTrue(more.prompt().contains(e));
        }
        assertTrue(places.size() > 4, "the paragraph asked is placed at random: " + places);
    }

    @Test
    void lccContextsEndRightAboveTheLineAsked(@TempDir Path dir) {
        CodeFiles code = CodeFiles.of(TinyModels.code(dir));
        assertEquals(3, code.fileCount(), "hidden folders, other extensions and non-UTF-8 files are skipped");
        Set<String> asked = new HashSet<>();
        for (int trial = 0; trial < 10; trial++) {
            SplittableRandom rnd = LongBenchStyle.trialRandom(LongBenchStyle.Task.LCC, 0, trial);
            Ruler.Sample s = code.lcc(60, rnd);
            assertTrue(s.prompt().startsWith(LCC_HEAD) && s.prompt().endsWith(LCC_TAIL), s.prompt());
            String context = s.prompt().substring(LCC_HEAD.length(), s.prompt().length() - LCC_TAIL.length());
            assertTrue(context.endsWith("\n"));
            String[] lines = context.split("\n", -1);
            assertEquals(61, lines.length, "60 lines, each ending in a line break");
            assertTrue(CodeFiles.askable(s.answerText()), s.answerText());
            assertFalse(s.answerText().contains("\r"));
            asked.add(s.answerText());
            // The last context line is the one above the answer in its file.
            String file = s.answerText().startsWith("LIMIT_") ? "pkg/limits.py"
                    : s.answerText().contains("static int") ? "src/util/Sums.java" : "pkg/helpers.py";
            List<String> fileLines = List.of(read(dir.resolve(file)).replace("\r\n", "\n").split("\n"));
            int at = fileLines.indexOf(s.answerText());
            assertTrue(at >= CodeFiles.MIN_LINES_BEFORE, file + ": " + s.answerText());
            assertEquals(fileLines.get(at - 1), lines[lines.length - 2]);
            // More lines reach further up; fewer cut from the top.
            Ruler.Sample more = code.lcc(90, LongBenchStyle.trialRandom(LongBenchStyle.Task.LCC, 0, trial));
            assertEquals(s.answerText(), more.answerText());
            assertTrue(more.prompt().endsWith(context + LCC_TAIL));
        }
        assertTrue(asked.size() > 5, "lines asked vary: " + asked);
        assertThrows(RopewayException.class, () -> CodeFiles.of(dir.resolve("README.md")));
        RopewayException none = assertThrows(RopewayException.class, () -> CodeFiles.of(dir.resolve(".cache/short")));
        assertTrue(none.getMessage().contains("has a line to complete"), none.getMessage());
    }

    private static String read(Path p) {
        try {
            return Files.readString(p);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Test
    void cellsFillTheLengthAndScoreEveryTrial(@TempDir Path model, @TempDir Path data, @TempDir Path src) {
        TinyModels.model(model, 64, 3);
        Passages passages = Passages.of(Corpus.open(TinyModels.prose(data, 400)));
        CodeFiles code = CodeFiles.of(TinyModels.code(src));
        try (CpuBackend backend = new CpuBackend(); Transformer t = Transformer.load(backend, model);
             Tokenizer tok = Tokenizers.open(model)) {
            for (LongBenchStyle.Task task : LongBenchStyle.Task.values()) {
                // Byte-level tokens: a passage of 100+ words is ~700 of them.
                boolean lcc = task == LongBenchStyle.Task.LCC;
                int target = lcc ? 1400 : 4000, newTokens = 4;
                PromptFitter fitter = LongBenchStyle.fitter(task, PromptFormat.plain(tok), target, newTokens, 7, passages, code);
                for (int trial = 0; trial < 3; trial++) {
                    PromptFitter.Fitted fitted = fitter.trial(trial);
                    assertArrayEquals(Passkey.tokens(tok, fitted.sample().prompt()), fitted.ids());
                    int tokens = fitted.ids().length;
                    assertTrue(tokens <= target - newTokens, task + ": " + tokens);
                    // Within 1% of the budget, or one more paragraph (up to ~500 byte tokens here) or line would not fit.
                    assertTrue(tokens > target - newTokens - (lcc ? 60 : 1200),
                            task + " trial " + trial + ": " + tokens);
                }
                LongBenchStyle.Cell c = LongBenchStyle.run(t, t.config().rope(), tok, task, target, 2, 7, newTokens, passages, code);
                assertEquals(2, c.trials());
                assertEquals(task, c.task());
                assertTrue(c.score() >= 0 && c.score() <= 100, c.toString());
                assertTrue(c.promptTokens() <= target - newTokens);
                assertTrue(c.meanAnswerLogLikelihood() < 0 && Double.isFinite(c.meanAnswerLogLikelihood()));
                assertEquals(c, LongBenchStyle.Cell.fromJson(c.toJson()));
            }
            RopewayException noText = assertThrows(RopewayException.class, () -> LongBenchStyle.run(t, t.config().rope(), tok,
                    LongBenchStyle.Task.PASSAGE_COUNT, 4000, 1, 0, 4, null, code));
            assertTrue(noText.getMessage().contains("passage_count reads paragraphs of a text"), noText.getMessage());
            RopewayException noCode = assertThrows(RopewayException.class, () -> LongBenchStyle.run(t, t.config().rope(), tok,
                    LongBenchStyle.Task.LCC, 1400, 1, 0, 4, passages, null));
            assertTrue(noCode.getMessage().contains("--code <dir>"), noCode.getMessage());
            RopewayException tooShort = assertThrows(RopewayException.class, () -> LongBenchStyle.run(t, t.config().rope(), tok,
                    LongBenchStyle.Task.PASSAGE_RETRIEVAL, 1000, 1, 0, 4, passages, code));
            assertTrue(tooShort.getMessage().contains("1000 tokens, 4 of them to generate, cannot hold a passage_retrieval prompt"),
                    tooShort.getMessage());
            RopewayException smallFolder = assertThrows(RopewayException.class, () -> LongBenchStyle.run(t, t.config().rope(),
                    tok, LongBenchStyle.Task.LCC, 60_000, 1, 0, 4, passages, code));
            assertTrue(smallFolder.getMessage().contains("lcc: the code folder is too short to fill 60000 tokens"),
                    smallFolder.getMessage());
        }
    }
}
