package dev.ropeway.generate;

import dev.ropeway.io.HfTokenizer;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.bpe.BpeEncoder;
import dev.ropeway.io.bpe.BpeModel;
import dev.ropeway.train.tokenizer.BpeTrainer;
import dev.ropeway.train.tokenizer.TokenizerFiles;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Streaming the text of token ids through a byte-level BPE trained here, run natively (DJL) and in Java. */
class TokenTextStreamTest {
    @TempDir static Path dir;
    static HfTokenizer nativeTokenizer;
    static BpeEncoder javaTokenizer;

    private static final String[] WORDS = {"the", "model", "rope", "scaling", "context", "naïve", "café", "日本語",
            "中文", "🙂", "🚀", "👍🏽", "Привет", "x²", "½", "long", "window", "token"};

    private static String text(Random random, int words) {
        StringBuilder s = new StringBuilder();
        for (int i = 0; i < words; i++) s.append(WORDS[random.nextInt(WORDS.length)]).append(random.nextInt(5) == 0 ? "\n" : " ");
        return s.toString();
    }

    @BeforeAll
    static void trainTokenizer() {
        Random random = new Random(1);
        List<String> documents = new ArrayList<>();
        for (int d = 0; d < 40; d++) documents.add(text(random, 150));
        BpeModel model = BpeTrainer.train(documents, new BpeTrainer.Options(300, 2, 1), BpeTrainer.Progress.NONE).model();
        TokenizerFiles.write(dir, model, 1024);
        nativeTokenizer = HfTokenizer.load(dir);
        javaTokenizer = new BpeEncoder(model);
    }

    @AfterAll
    static void close() {
        nativeTokenizer.close();
    }

    private static List<String> stream(TokenTextStream stream, int[] ids) {
        List<String> pieces = new ArrayList<>();
        for (int id : ids) pieces.add(stream.push(id));
        pieces.add(stream.flush());
        return pieces;
    }

    @Test
    void anEmojiSplitOverTokensComesOutWhole() {
        for (Tokenizer t : List.of(nativeTokenizer, javaTokenizer)) {
            // Not in the training text: its four UTF-8 bytes take several tokens (F0 9F, shared with the
            // emoji that were seen, may be merged).
            String emoji = "🦙";
            int[] ids = t.encode(emoji, false);
            assertTrue(ids.length >= 2, "split over " + ids.length + " tokens");
            TokenTextStream stream = new TokenTextStream(t, true);
            for (int i = 0; i < ids.length - 1; i++) assertEquals("", stream.push(ids[i]), "nothing before the last byte");
            assertEquals(emoji, stream.push(ids[ids.length - 1]));
            assertEquals("", stream.flush());
            assertEquals(ids.length, stream.tokenCount());
        }
    }

    @Test
    void streamedPiecesJoinToTheDecodedTextWithoutBrokenCharacters() {
        Random random = new Random(2);
        for (Tokenizer t : List.of(nativeTokenizer, javaTokenizer)) {
            int heldBack = 0;
            for (int trial = 0; trial < 30; trial++) {
                String text = text(random, 1 + random.nextInt(40)) + "🦙 ok";
                int[] ids = t.encode(text, false);
                List<String> pieces = stream(new TokenTextStream(t, true), ids);
                assertEquals(text, String.join("", pieces));
                for (String piece : pieces) assertFalse(piece.contains("\uFFFD"), "a broken character in " + piece);
                heldBack += (int) pieces.subList(0, ids.length).stream().filter(String::isEmpty).count();
            }
            assertTrue(heldBack > 30, "characters were split across tokens and held back: " + heldBack);
        }
    }

    @Test
    void anUnfinishedCharacterAtTheEndBecomesAReplacementCharacter() {
        for (Tokenizer t : List.of(nativeTokenizer, javaTokenizer)) {
            int[] ids = t.encode("ok🦙", false);
            TokenTextStream stream = new TokenTextStream(t, true);
            StringBuilder shown = new StringBuilder();
            for (int i = 0; i < ids.length - 1; i++) shown.append(stream.push(ids[i]));
            assertEquals("ok", shown.toString());
            assertEquals(t.decode(Arrays.copyOf(ids, ids.length - 1), true).substring(2), stream.flush());
            assertEquals("", stream.flush());
        }
    }

    @Test
    void contextTokensShapeDecodingButAreNotShown() {
        int[] prompt = nativeTokenizer.encode("the model", false);
        int[] generated = nativeTokenizer.encode(" context 🦙", false);
        TokenTextStream stream = new TokenTextStream(nativeTokenizer, true, prompt);
        assertEquals(" context 🦙", String.join("", stream(stream, generated)));
        assertEquals(generated.length, stream.tokenCount());
    }

    @Test
    void specialTokensAreLeftOutWhenAsked() {
        int eos = nativeTokenizer.eosId().orElseThrow();
        int[] ids = nativeTokenizer.encode("the", false);
        assertEquals("the", String.join("", stream(new TokenTextStream(nativeTokenizer, true), concat(ids, eos))));
        assertEquals("the</s>", String.join("", stream(new TokenTextStream(nativeTokenizer, false), concat(ids, eos))));
    }

    private static int[] concat(int[] a, int b) {
        int[] out = Arrays.copyOf(a, a.length + 1);
        out[a.length] = b;
        return out;
    }

    @Test
    void generationStopsAtTheEndTokenOrAStopStringSplitAcrossTokens() {
        int eos = nativeTokenizer.eosId().orElseThrow();
        StreamingText out = StreamingText.of(nativeTokenizer, List.of("🦙"));
        StringBuilder shown = new StringBuilder();
        StreamingText.Step step = null;
        for (int id : nativeTokenizer.encode("the model 🦙 never shown", false)) {
            step = out.push(id);
            shown.append(step.text());
            if (step.stopped()) break;
        }
        assertEquals("the model ", shown.toString());
        assertEquals(StreamingText.Stop.string("🦙"), step.stop());
        assertThrows(IllegalStateException.class, () -> out.push(eos));

        StreamingText untilEos = StreamingText.of(nativeTokenizer, List.of("never"));
        shown.setLength(0);
        for (int id : nativeTokenizer.encode("the nev", false)) {
            step = untilEos.push(id);
            shown.append(step.text());
            assertNull(step.stop());
        }
        assertEquals("the ", shown.toString(), "'nev' could begin 'never'");
        step = untilEos.push(eos);
        assertEquals("nev", step.text(), "the end token shows what was held back, not itself");
        assertEquals(StreamingText.Stop.token(eos), step.stop());
        assertTrue(step.stop().byToken());

        // A length limit: finish() shows the rest.
        StreamingText cut = StreamingText.of(nativeTokenizer, List.of("never"));
        shown.setLength(0);
        int[] ids = nativeTokenizer.encode("ok 🦙", false);
        for (int i = 0; i < ids.length - 1; i++) shown.append(cut.push(ids[i]).text());
        StreamingText.Step last = cut.finish();
        assertNull(last.stop());
        assertEquals(new String(nativeTokenizer.decode(Arrays.copyOf(ids, ids.length - 1), true).getBytes(StandardCharsets.UTF_8),
                StandardCharsets.UTF_8), shown + last.text());
    }
}
