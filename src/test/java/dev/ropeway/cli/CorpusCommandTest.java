package dev.ropeway.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The corpus commands as a user meets them: tables on success, one-line errors for bad input. */
class CorpusCommandTest {
    @TempDir
    Path tmp;

    @Test
    void prepareWithMissingRawFolderIsAUserError() {
        var r = CliRunner.run("corpus", "prepare", "--raw", tmp.resolve("missing").toString(),
                "--out", tmp.resolve("out").toString());
        assertEquals(1, r.exitCode(), r.out() + r.err());
        assertTrue(r.err().startsWith("error: raw corpus folder"), r.err());
        assertTrue(r.err().contains("ropeway corpus fetch"), r.err());
    }

    @Test
    void preparePrintsSplitTable() throws IOException {
        Path raw = tmp.resolve("raw");
        Files.createDirectories(raw.resolve("jargon"));
        Files.createDirectories(raw.resolve("austen"));
        Files.writeString(raw.resolve("jargon/jargon.txt"), "hacker slang, line after line\n".repeat(40));
        Files.writeString(raw.resolve("austen/emma.txt"), "Emma Woodhouse, handsome, clever, and rich\n".repeat(40));
        var r = CliRunner.run("corpus", "prepare", "--raw", raw.toString(), "--out", tmp.resolve("out").toString());
        assertEquals(0, r.exitCode(), r.err());
        assertTrue(r.out().matches("(?s)split\\s+documents\\s+MB\\ntrain\\s+1\\s+0\\.00\\nheldout\\s+1\\s+0\\.00\\n.*"), r.out());
        assertTrue(Files.isRegularFile(tmp.resolve("out/heldout/austen/emma.txt")));
    }

    @Test
    void fetchRejectsUnknownSource() {
        var r = CliRunner.run("corpus", "fetch", "--out", tmp.toString(), "--sources", "pg19");
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("unknown corpus source 'pg19'"), r.err());
    }
}
