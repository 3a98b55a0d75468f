package dev.ropeway.train.tokenizer;

import dev.ropeway.io.bpe.*;
import dev.ropeway.RopewayException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

public class BpeTrainerTest {
    private static final String SPACE = String.valueOf(ByteAlphabet.symbol(' '));

    @TempDir Path dir;

    private static BpeModel train(List<String> docs, int vocabSize, long minFrequency, int threads) {
        return BpeTrainer.train(docs, new BpeTrainer.Options(vocabSize, minFrequency, threads), BpeTrainer.Progress.NONE).model();
    }

    private static List<String> merges(BpeModel model) {
        List<String> out = new ArrayList<>();
        for (int r = 0; r < model.mergeCount(); r++) out.add(model.token(model.mergeLeft(r)) + " " + model.token(model.mergeRight(r)));
        return out;
    }

    /*
     * Words: "hug" x1, " hug" x2, " pug" x2, " bun" x1. Pair counts: (u,g) 5, (h,u) 3, then (h,ug) 3; after that
     * (" ",p), (p,ug) and (" ",hug) tie at 2 and go by symbol id: space (32) before "hug", "p" (112) before "hug".
     */
    @Test
    void mergesTheMostFrequentPairFirstAndBreaksTiesBySymbolId() {
        BpeModel model = train(List.of("hug hug hug pug pug bun"), 1000, 2, 1);
        assertEquals(List.of("u g", "h ug", SPACE + " p", SPACE + " hug", SPACE + "p ug"), merges(model));
        // Pairs seen once are left alone under the default minimum of 2, so training stops short of 1000.
        assertEquals(BpeTrainer.MIN_VOCAB_SIZE + 5, model.vocabSize());
        assertEquals("ug", model.token(BpeTrainer.MIN_VOCAB_SIZE));
        assertEquals(SPACE + "pug", model.token(BpeTrainer.MIN_VOCAB_SIZE + 4));

        BpeModel rare = train(List.of("hug hug hug pug pug bun"), 1000, 1, 1);
        assertEquals(List.of("u g", "h ug", SPACE + " p", SPACE + " hug", SPACE + "p ug", SPACE + " b", "u n", SPACE + "b un"),
                merges(rare));

        BpeModel small = train(List.of("hug hug hug pug pug bun"), BpeTrainer.MIN_VOCAB_SIZE + 2, 1, 1);
        assertEquals(List.of("u g", "h ug"), merges(small));
    }

    @Test
    void layoutIsSpecialsThenBytesThenMerges() {
        BpeModel model = train(List.of("aaaa bbbb"), BpeTrainer.MIN_VOCAB_SIZE + 1, 1, 1);
        assertEquals("<unk>", model.token(BpeTrainer.UNK));
        assertEquals("<s>", model.token(BpeTrainer.BOS));
        assertEquals("</s>", model.token(BpeTrainer.EOS));
        assertEquals("<pad>", model.token(BpeTrainer.PAD));
        assertEquals(String.valueOf(ByteAlphabet.symbol(0)), model.token(BpeTrainer.FIRST_BYTE));
        assertEquals("a", model.token(BpeTrainer.FIRST_BYTE + 'a'));
        assertEquals(String.valueOf(ByteAlphabet.symbol(255)), model.token(BpeTrainer.FIRST_BYTE + 255));
        // "a a" occurs 3 times in "aaaa" (overlapping), more than any other pair.
        assertEquals(List.of("a a"), merges(model));
        assertArrayEquals(new int[] {BpeTrainer.BOS}, model.prefix());
        assertEquals(4, model.addedTokens().size());
        assertTrue(model.addedTokens().stream().allMatch(BpeModel.AddedToken::special));
    }

    @Test
    void runsOfOneSymbolAreCountedAndMergedLeftToRight() {
        // "aaa": pair (a,a) twice per word; merging gives "aa a", so the next merge is "aa a", not "a aa".
        BpeModel model = train(List.of("aaa ".repeat(10).trim()), BpeTrainer.MIN_VOCAB_SIZE + 2, 1, 1);
        assertEquals(List.of("a a", "aa a"), merges(model));
    }

    @Test
    void specialTokensInTheTextAreNotLearnt() {
        BpeModel model = train(List.of("<s>x</s>".repeat(50)), BpeTrainer.MIN_VOCAB_SIZE + 10, 1, 1);
        // Only "x" remains between the matches, and a single byte has no pair.
        assertEquals(List.of(), merges(model));
    }

    @Test
    void trainingIsDeterministicWhateverTheThreadCount() throws IOException {
        List<String> docs = SampleTexts.documents(7, 40, 150);
        // One long document too, so that it is cut into several units of work.
        docs.add(String.join(" ", SampleTexts.documents(8, 1, 60_000)));
        BpeModel one = train(docs, 700, 2, 1);
        BpeModel three = train(docs, 700, 2, 3);
        Path a = dir.resolve("a"), b = dir.resolve("b");
        TokenizerFiles.write(a, one, 1024);
        TokenizerFiles.write(b, three, 1024);
        for (String f : List.of(TokenizerFiles.TOKENIZER_JSON, TokenizerFiles.TOKENIZER_CONFIG))
            assertArrayEquals(Files.readAllBytes(a.resolve(f)), Files.readAllBytes(b.resolve(f)), f);
        assertEquals(700, one.vocabSize());
        assertEquals(700 - BpeTrainer.MIN_VOCAB_SIZE, one.mergeCount());
    }

    @Test
    void statsCountTheTextAndTheTokensItTakes() {
        List<String> docs = List.of("hug hug hug pug pug bun", "é");
        BpeTrainer.Result r = BpeTrainer.train(docs, new BpeTrainer.Options(1000, 2, 2), BpeTrainer.Progress.NONE);
        assertEquals(2, r.stats().documents());
        assertEquals(23 + 2, r.stats().bytes());
        assertEquals(7, r.stats().words());
        assertEquals(5, r.stats().distinctWords());
        // hug | Ġhug x2 | Ġpug x2 | Ġ b u n | é as two bytes
        assertEquals(1 + 2 + 2 + 4 + 2, r.stats().tokens());
        BpeEncoder encoder = new BpeEncoder(r.model());
        int tokens = 0;
        for (String d : docs) tokens += encoder.encode(d, false).length;
        assertEquals(r.stats().tokens(), tokens, "the trainer's count agrees with encoding the text");
    }

    @Test
    void refusesAVocabularyWithoutRoomForBytesAndSpecials() {
        RopewayException e = assertThrows(RopewayException.class, () -> new BpeTrainer.Options(259, 2, 1));
        assertEquals("vocabulary size 259 is too small: a byte-level BPE needs at least 260 ids (4 special tokens "
                + "<unk> <s> </s> <pad> and 256 byte tokens) before any merge", e.getMessage());
        new BpeTrainer.Options(260, 2, 1);
        assertThrows(RopewayException.class, () -> new BpeTrainer.Options(300, 0, 1));
    }

    @Test
    void refusesAnEmptyCorpus() {
        BpeTrainer.Options options = new BpeTrainer.Options(300, 2, 1);
        for (List<String> docs : List.of(List.<String>of(), List.of("", ""))) {
            RopewayException e = assertThrows(RopewayException.class, () -> BpeTrainer.train(docs, options, BpeTrainer.Progress.NONE));
            assertEquals("the corpus holds no text to train on", e.getMessage());
        }
    }

    @Test
    void cutsLongDocumentsOnlyWhereAPieceEnds() {
        String text = "ab  cd\t\tef 12 !! ";
        for (int at = 0; at < text.length(); at++) {
            int cut = WordCounter.safeCut(text, at, text.length());
            if (cut == text.length()) continue;
            List<String> whole = pieces(text), split = new ArrayList<>(pieces(text.substring(0, cut)));
            split.addAll(pieces(text.substring(cut)));
            assertEquals(whole, split, "cut at " + cut);
        }
        assertFalse(WordCounter.safeCut("a  b", 2, 4) == 2, "inside a run of spaces is not safe");
    }

    public static List<String> pieces(String text) {
        List<String> out = new ArrayList<>();
        GptPreTokenizer.split(text, 0, text.length(), (s, e) -> out.add(text.substring(s, e)));
        return out;
    }
}
