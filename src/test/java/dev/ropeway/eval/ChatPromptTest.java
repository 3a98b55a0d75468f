package dev.ropeway.eval;

import dev.ropeway.RopewayException;
import dev.ropeway.generate.ChatTemplate;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.Tokenizers;
import dev.ropeway.model.Transformer;
import dev.ropeway.tensor.CpuBackend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Evaluation prompts for chat models: the question in the model's chat template, the answer prefix after it. */
class ChatPromptTest {
    static final String USER = "<|im_start|>user\n", REPLY = "<|im_end|>\n<|im_start|>assistant\n";

    static Path chatModel(Path dir) {
        return TinyModels.chatModel(dir);
    }

    @Test
    void rulersQuestionGoesInTheMessageAndItsAnswerPrefixAfterTheReplyStarts(@TempDir Path dir) {
        chatModel(dir);
        try (Tokenizer tok = Tokenizers.open(dir)) {
            PromptFormat chat = PromptFormat.chat(tok, ChatTemplate.load(dir));
            for (Ruler.Task task : List.of(Ruler.Task.NIAH_SINGLE_1, Ruler.Task.NIAH_MULTIKEY_2, Ruler.Task.VT,
                    Ruler.Task.FWE)) {
                Ruler.Sizer sizer = new Ruler.Sizer(task, chat, 1400, 5, 0.5, 3, null);
                PromptFitter.Fitted fitted = sizer.trial(1);
                Ruler.Sample s = fitted.sample();
                assertEquals(s.prompt(), s.question() + s.answerPrefix());
                String prefix = switch (task) {
                    case VT -> " Answer: According to the chain(s) of variable assignment in the text above, 5 variables are "
                            + "assigned the value ";
                    case FWE -> " Answer: According to the coded text above, the three most frequently appeared words are:";
                    default -> " The special magic number for ";
                };
                assertTrue(s.answerPrefix().startsWith(prefix), task + ": " + s.answerPrefix());
                assertTrue(s.question().endsWith("?") || s.question().endsWith("above."), task + ": " + s.question());
                String text = USER + s.question() + REPLY + s.answerPrefix();
                assertEquals(text, chat.text(s));
                assertArrayEquals(tok.encode(text, false), fitted.ids(), "the rendered text's ids, no BOS added");
                assertTrue(fitted.ids().length <= 1400 - 5, task + ": " + fitted.ids().length);
                assertTrue(fitted.ids().length > 1400 - 5 - 100, task + ": " + fitted.ids().length);
            }
            // The single-needle rewrite keeps the question and the prefix apart.
            Ruler.Sample niah = new Ruler.Sizer(Ruler.Task.NIAH_SINGLE_1, chat, 1400, 5, 0.5, 3, null).trial(0).sample();
            assertTrue(niah.question().endsWith(" mentioned in the provided text?"), niah.question());
            assertTrue(niah.answerPrefix().endsWith(" mentioned in the provided text is"), niah.answerPrefix());
            // In plain text the same sample is the prompt with BOS in front.
            assertArrayEquals(Passkey.tokens(tok, niah.prompt()), PromptFormat.plain(tok).ids(niah));
        }
    }

    @Test
    void longBenchAndLongEvalPutTheirWholePromptInTheMessage(@TempDir Path dir, @TempDir Path data) {
        chatModel(dir);
        try (Tokenizer tok = Tokenizers.open(dir)) {
            PromptFormat chat = PromptFormat.chat(tok, ChatTemplate.load(dir));
            Ruler.Sample lines = LongEvalLines.fitter(chat, 1500, 20, 0.5, 4).trial(0).sample();
            assertEquals("", lines.answerPrefix());
            assertTrue(lines.prompt().endsWith("? I need the number."), "no answer start for a chat model");
            assertEquals(USER + lines.prompt() + REPLY, chat.text(lines));
            Ruler.Sample plain = LongEvalLines.fitter(PromptFormat.plain(tok), 1500, 20, 0.5, 4).trial(0).sample();
            assertTrue(plain.prompt().endsWith(">: <REGISTER_CONTENT> is"), plain.prompt());

            Passages passages = Passages.of(dev.ropeway.train.Corpus.open(TinyModels.prose(data, 400)));
            Ruler.Sample count = LongBenchStyle.fitter(LongBenchStyle.Task.PASSAGE_COUNT, chat, 3000, 32, 2, passages, null)
                    .trial(0).sample();
            assertTrue(count.prompt().endsWith("The final answer is: "));
            assertEquals(USER + count.prompt() + REPLY, chat.text(count));
        }
    }

    @Test
    void chatCellsAreKeptApartFromPlainOnesAndNeedATemplate(@TempDir Path tmp) {
        Path model = chatModel(tmp.resolve("chat"));
        Path base = TinyModels.model(tmp.resolve("base"), 64, 3);
        CellStore store = new CellStore(tmp.resolve("cells"));
        List<Evaluation.CellSpec> cells = List.of(new Evaluation.CellSpec(Evaluation.Task.LINES, 1500, 0.5),
                new Evaluation.CellSpec(Evaluation.Task.NIAH, 1400, 0.5));
        List<Evaluation.Target> targets = List.of(new Evaluation.Target("m", model, null));
        Evaluation.Settings plain = new Evaluation.Settings(null, PerplexityProtocol.CHUNKS, 0, 0, 1, 0, 0, null, false);
        Evaluation.Settings chat = new Evaluation.Settings(null, PerplexityProtocol.CHUNKS, 0, 0, 1, 0, 0, null, true);
        assertEquals(15, plain.newTokens(Evaluation.Task.LINES));
        assertEquals(100, chat.newTokens(Evaluation.Task.LINES), "LongEval's tokens for a chat model");
        assertEquals(128, chat.newTokens(Evaluation.Task.NIAH));
        assertTrue(chat.chat(Evaluation.Task.NIAH));
        assertFalse(chat.chat(Evaluation.Task.PASSKEY), "passkey reads plain text");
        try (CpuBackend backend = new CpuBackend()) {
            Evaluation.Outcome first = new Evaluation(backend, plain, store, new Evaluation.Listener() {}).run(targets, cells);
            assertEquals(2, first.computed());
            Evaluation.Outcome chatted = new Evaluation(backend, chat, store, new Evaluation.Listener() {}).run(targets, cells);
            assertEquals(2, chatted.computed(), "a chat cell is not the plain one");
            assertEquals(0, chatted.reused());
            Map<String, Object> linesCell = chatted.results().get("m").get(cells.get(0));
            assertEquals(100, ((Number) linesCell.get("new_tokens")).intValue());
            assertNotEquals(first.results().get("m").get(cells.get(0)).get("prompt_tokens"), linesCell.get("prompt_tokens"));
            Evaluation.Outcome again = new Evaluation(backend, chat, store, new Evaluation.Listener() {}).run(targets, cells);
            assertEquals(2, again.reused());

            RopewayException e = assertThrows(RopewayException.class, () -> new Evaluation(backend, chat, null,
                    new Evaluation.Listener() {}).run(List.of(new Evaluation.Target("b", base, null)), cells));
            assertTrue(e.getMessage().contains("has no chat template") && e.getMessage().contains("without --chat"),
                    e.getMessage());
        }
    }

    @Test
    void aChatCellRunsEndToEnd(@TempDir Path dir) {
        chatModel(dir);
        try (CpuBackend backend = new CpuBackend(); Transformer t = Transformer.load(backend, dir);
             Tokenizer tok = Tokenizers.open(dir)) {
            PromptFormat chat = PromptFormat.chat(tok, ChatTemplate.load(dir));
            Ruler.Cell c = Ruler.run(t, t.config().rope(), chat, Ruler.Task.NIAH_SINGLE_1, 1400, 0.5, 2, 1, 5, null);
            assertTrue(c.promptTokens() <= 1395 && c.promptTokens() > 1295, c.promptTokens() + " tokens");
            assertTrue(Double.isFinite(c.meanAnswerLogLikelihood()));
        }
    }
}
