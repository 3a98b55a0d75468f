package dev.ropeway.train.corpus;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Json;
import dev.ropeway.train.Corpus;
import dev.ropeway.train.CorpusDocument;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class CorpusPreparerTest {
    @TempDir
    Path tmp;

    private static String longText(String word, int lines) {
        return (word + " line of a long enough document\r\n").repeat(lines);
    }

    /** A raw folder shaped like `corpus fetch` output, small enough to prepare in milliseconds. */
    private Path syntheticRaw() throws IOException {
        Path raw = tmp.resolve("raw");
        write(raw.resolve("kjv/kjv.txt"), "\nGenesis 1\n\n" + longText("verse", 40));
        write(raw.resolve("jargon/jargon.txt"), longText("hacker", 30));
        write(raw.resolve("vim/usr_01.txt"), longText("vim", 30));
        write(raw.resolve("vim/tiny.txt"), "*tiny.txt*  almost nothing\n");
        write(raw.resolve("perl/perlfunc.pod"), "=head1 NAME\n\n" + longText("perl", 30));
        write(raw.resolve("linux-doc/admin-guide/README.rst"), longText("kernel", 30));
        for (String novel : SourceExtraction.AUSTEN_NOVELS)
            write(raw.resolve("austen/" + novel + ".txt"), novel.toUpperCase() + "\n\n" + longText(novel, 30));
        write(raw.resolve("mobydick/mobydick.txt"), "\uFEFFThe Project Gutenberg EBook of Moby Dick\r\n"
                + "*** START OF THIS PROJECT GUTENBERG EBOOK MOBY DICK; OR THE WHALE ***\r\n\r\n"
                + longText("whale", 30)
                + "*** END OF THIS PROJECT GUTENBERG EBOOK MOBY DICK; OR THE WHALE ***\r\nLicence text\r\n");
        Files.write(raw.resolve("linux-doc/latin1.txt"), ("caf\u00e9 " + longText("latin", 20)).getBytes(StandardCharsets.ISO_8859_1));
        return raw;
    }

    private static void write(Path file, String text) throws IOException {
        Files.createDirectories(file.getParent());
        Files.writeString(file, text, StandardCharsets.UTF_8);
    }

    private static Map<String, byte[]> snapshot(Path dir) throws IOException {
        Map<String, byte[]> out = new TreeMap<>();
        for (Path f : Trees.files(dir)) out.put(Trees.relative(dir, f), Files.readAllBytes(f));
        return out;
    }

    @Test
    void heldoutIsTheFourNovelsAndEverythingElseTrains() {
        for (String p : List.of("mobydick/mobydick.txt", "austen/emma.txt", "austen/persuasion.txt", "austen/northangerabbey.txt"))
            assertEquals(Corpus.HELDOUT, CorpusPreparer.splitOf(p), p);
        for (String p : List.of("austen/mansfieldpark.txt", "austen/prideprejudice.txt", "austen/sensesensibility.txt",
                "kjv/kjv.txt", "jargon/jargon.txt", "vim/usr_01.txt", "perl/perlfunc.pod", "linux-doc/a/emma.txt"))
            assertEquals(Corpus.TRAIN, CorpusPreparer.splitOf(p), p);
        assertEquals("train/perl/perlfunc.pod.txt", CorpusPreparer.outputPath("perl/perlfunc.pod"));
        assertEquals("heldout/austen/emma.txt", CorpusPreparer.outputPath("austen/emma.txt"));
    }

    @Test
    void preparesCleanSplitCorpusThatCorpusReads() throws IOException {
        Path out = tmp.resolve("prepared");
        CorpusPreparer.Summary s = CorpusPreparer.prepare(syntheticRaw(), out);
        assertEquals(4, s.split(Corpus.HELDOUT).documents());
        // kjv, jargon, vim (one of two), perl, linux-doc (two), three Austen novels
        assertEquals(9, s.split(Corpus.TRAIN).documents());
        assertEquals(List.of("vim/tiny.txt"), s.dropped());
        assertEquals(1, s.latin1Files());

        Corpus corpus = Corpus.open(out);
        List<String> heldout = corpus.heldout().stream().map(CorpusDocument::name).toList();
        assertEquals(List.of("heldout/austen/emma.txt", "heldout/austen/northangerabbey.txt",
                "heldout/austen/persuasion.txt", "heldout/mobydick/mobydick.txt"), heldout);
        String moby = corpus.heldout().get(3).text();
        assertTrue(moby.startsWith("whale line"), moby.substring(0, 40));
        assertFalse(moby.contains("Gutenberg") || moby.contains("Licence") || moby.contains("\r"));
        for (CorpusDocument d : corpus.train()) {
            assertFalse(d.name().contains("emma") || d.name().contains("persuasion") || d.name().contains("mobydick"), d.name());
            assertFalse(d.text().contains("\r"), d.name());
        }
        assertTrue(corpus.train().stream().anyMatch(d -> d.text().startsWith("caf\u00e9 ")));

        Map<String, Object> manifest = Json.readObject(out.resolve(CorpusPreparer.MANIFEST));
        @SuppressWarnings("unchecked")
        Map<String, Map<String, Object>> files = (Map<String, Map<String, Object>>) manifest.get("files");
        assertEquals(13, files.size());
        byte[] emma = Files.readAllBytes(out.resolve("heldout/austen/emma.txt"));
        assertEquals(Sha256.of(emma), files.get("heldout/austen/emma.txt").get("sha256"));
        assertEquals(emma.length, ((Number) files.get("heldout/austen/emma.txt").get("bytes")).intValue());
    }

    @Test
    void preparingTwiceIsByteIdentical() throws IOException {
        Path raw = syntheticRaw();
        Path a = tmp.resolve("a"), b = tmp.resolve("b");
        CorpusPreparer.prepare(raw, a);
        CorpusPreparer.prepare(raw, b);
        Map<String, byte[]> first = snapshot(a), second = snapshot(b);
        assertEquals(first.keySet(), second.keySet());
        for (String k : first.keySet()) assertArrayEquals(first.get(k), second.get(k), k);
        // Re-preparing into the same folder replaces it and leaves no temp or old folders beside it.
        CorpusPreparer.prepare(raw, a);
        Map<String, byte[]> third = snapshot(a);
        for (String k : first.keySet()) assertArrayEquals(first.get(k), third.get(k), k);
        try (var siblings = Files.list(tmp)) {
            assertEquals(List.of("a", "b", "raw"), siblings.map(p -> p.getFileName().toString()).sorted().toList());
        }
    }

    @Test
    void missingRawFolderAndUnrelatedOutputAreClearErrors() throws IOException {
        var missing = assertThrows(RopewayException.class,
                () -> CorpusPreparer.prepare(tmp.resolve("nope"), tmp.resolve("out")));
        assertTrue(missing.getMessage().contains("does not exist") && missing.getMessage().contains("corpus fetch"),
                missing.getMessage());

        Path empty = Files.createDirectories(tmp.resolve("empty-raw"));
        var none = assertThrows(RopewayException.class, () -> CorpusPreparer.prepare(empty, tmp.resolve("out")));
        assertTrue(none.getMessage().contains("holds none of the sources"), none.getMessage());

        Path precious = tmp.resolve("precious");
        write(precious.resolve("notes.txt"), "keep me");
        var refused = assertThrows(RopewayException.class, () -> CorpusPreparer.prepare(syntheticRaw(), precious));
        assertTrue(refused.getMessage().contains("refusing to replace"), refused.getMessage());
        assertEquals("keep me", Files.readString(precious.resolve("notes.txt")));
    }
}
