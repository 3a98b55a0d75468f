package dev.ropeway.train.corpus;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Json;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Fetching against an in-memory stand-in for apt, so the whole flow runs without network or Debian tools. */
class CorpusFetcherTest {
    static final String MOBY = "\uFEFFThe Project Gutenberg EBook of Moby Dick\r\nCall me Ishmael.\r\n";
    static final String JARGON = "The Jargon File\n\nhacker: n. someone who enjoys exploring systems\n";

    @TempDir
    Path tmp;

    /** Serves every pinned package (plus any versions listed in {@code extra}); counts downloads. */
    static final class FakeArchive implements DebianArchive {
        final Map<String, List<String>> versions = new LinkedHashMap<>();
        final List<List<Source.Pin>> downloads = new ArrayList<>();

        FakeArchive() {
            for (Source s : Source.values())
                for (Source.Pin p : s.packages()) versions.put(p.pkg(), List.of(p.version()));
        }

        static byte[] debBytes(Source.Pin pin) {
            return ("deb " + pin.pkg() + " " + pin.version()).getBytes(StandardCharsets.UTF_8);
        }

        static String fileName(Source.Pin pin) {
            return pin.pkg() + "_" + pin.version().replace(":", "%3a") + "_all.deb";
        }

        @Override
        public Map<String, List<String>> versions(List<String> pkgs) {
            Map<String, List<String>> out = new LinkedHashMap<>();
            for (String p : pkgs) out.put(p, versions.getOrDefault(p, List.of()));
            return out;
        }

        @Override
        public Map<String, DebFile> describe(List<Source.Pin> pins) {
            Map<String, DebFile> out = new LinkedHashMap<>();
            for (Source.Pin p : pins)
                out.put(p.pkg(), new DebFile(fileName(p), debBytes(p).length, Sha256.of(debBytes(p))));
            return out;
        }

        @Override
        public void download(List<Source.Pin> pins, Path dir) {
            downloads.add(List.copyOf(pins));
            try {
                for (Source.Pin p : pins) Files.write(dir.resolve(fileName(p)), debBytes(p));
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        @Override
        public void extract(Path deb, Path dir) {
            try {
                String name = deb.getFileName().toString();
                if (name.startsWith("jargon-text_")) {
                    Path gz = dir.resolve("usr/share/doc/jargon-text/jargon.txt.gz");
                    Files.createDirectories(gz.getParent());
                    Files.write(gz, RBlob.gzip(JARGON.getBytes(StandardCharsets.UTF_8)));
                } else if (name.startsWith("r-cran-tokenizers_")) {
                    RBlob.writeDatabase(dir.resolve("usr/lib/R/site-library/tokenizers/data"), 3, List.of("mobydick"),
                            List.of(RBlob.header(3).strings(1, false).chars(MOBY, 8).bytes()));
                } else {
                    throw new AssertionError("unexpected package " + name);
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        @Override
        public List<String> dataTarCommand(Path deb) {
            throw new AssertionError("not used by these sources");
        }
    }

    private static CorpusFetcher.Result fetch(DebianArchive archive, Path out, List<String> log) {
        return new CorpusFetcher(() -> archive).run(
                CorpusFetcher.Options.of(out, EnumSet.of(Source.JARGON, Source.MOBY_DICK)), log::add);
    }

    @Test
    void fetchesExtractsRecordsAndThenReuses() throws IOException {
        Path out = tmp.resolve("raw");
        FakeArchive archive = new FakeArchive();
        List<String> log = new ArrayList<>();
        CorpusFetcher.Result first = fetch(archive, out, log);

        assertEquals(1, archive.downloads.size(), "one apt call for all packages");
        assertEquals(2, archive.downloads.getFirst().size());
        assertEquals(JARGON, Files.readString(out.resolve("jargon/jargon.txt")));
        assertEquals(MOBY, Files.readString(out.resolve("mobydick/mobydick.txt")));
        assertFalse(first.sources().getFirst().reused());
        assertTrue(log.stream().anyMatch(l -> l.startsWith("[jargon] jargon-text 4.4.7-4.1: downloading")), log.toString());

        Map<String, Object> manifest = Json.readObject(out.resolve(CorpusFetcher.MANIFEST));
        @SuppressWarnings("unchecked")
        Map<String, Object> jargon = (Map<String, Object>) ((Map<String, Object>) manifest.get("sources")).get("jargon");
        @SuppressWarnings("unchecked")
        Map<String, Object> pkg = ((List<Map<String, Object>>) jargon.get("packages")).getFirst();
        Source.Pin pin = Source.JARGON.packages().getFirst();
        assertEquals("4.4.7-4.1", pkg.get("version"));
        assertEquals(Sha256.of(FakeArchive.debBytes(pin)), pkg.get("deb_sha256"));
        @SuppressWarnings("unchecked")
        Map<String, Map<String, Object>> files = (Map<String, Map<String, Object>>) jargon.get("files");
        assertEquals(Sha256.of(JARGON.getBytes(StandardCharsets.UTF_8)), files.get("jargon/jargon.txt").get("sha256"));

        // Everything present: no apt needed at all.
        List<String> again = new ArrayList<>();
        CorpusFetcher.Result second = new CorpusFetcher(() -> {
            throw new AssertionError("apt must not be needed when every output is present");
        }).run(CorpusFetcher.Options.of(out, EnumSet.of(Source.JARGON, Source.MOBY_DICK)), again::add);
        assertTrue(second.sources().stream().allMatch(CorpusFetcher.SourceResult::reused));
        assertEquals(first.bytes(), second.bytes());

        // A damaged output is rebuilt from the cached .deb, without downloading again.
        Files.writeString(out.resolve("jargon/jargon.txt"), "tampered");
        List<String> third = new ArrayList<>();
        fetch(archive, out, third);
        assertEquals(1, archive.downloads.size());
        assertEquals(JARGON, Files.readString(out.resolve("jargon/jargon.txt")));
        assertTrue(third.stream().anyMatch(l -> l.startsWith("[jargon] jargon-text 4.4.7-4.1: cached")), third.toString());
        assertTrue(third.stream().anyMatch(l -> l.startsWith("[mobydick] up to date")), third.toString());
    }

    @Test
    void unavailablePinNamesPackageWantedAndAvailableVersions() {
        Source.Pin pin = new Source.Pin("linux-source-6.1", "6.1.176-1");
        var e = assertThrows(RopewayException.class,
                () -> CorpusFetcher.resolveVersion(pin, List.of("6.1.192-2", "6.1.170-3"), false));
        assertTrue(e.getMessage().contains("linux-source-6.1 6.1.176-1 is not available"), e.getMessage());
        assertTrue(e.getMessage().contains("6.1.192-2, 6.1.170-3"), e.getMessage());
        assertTrue(e.getMessage().contains("--any-version"), e.getMessage());
        assertEquals("6.1.192-2", CorpusFetcher.resolveVersion(pin, List.of("6.1.192-2", "6.1.170-3"), true));
        assertEquals("6.1.176-1", CorpusFetcher.resolveVersion(pin, List.of("6.1.192-2", "6.1.176-1"), false));
        var unknown = assertThrows(RopewayException.class, () -> CorpusFetcher.resolveVersion(pin, List.of(), true));
        assertTrue(unknown.getMessage().contains("apt knows no package linux-source-6.1"), unknown.getMessage());
    }

    @Test
    void anyVersionIsUsedAndRecorded() throws IOException {
        FakeArchive archive = new FakeArchive();
        archive.versions.put("jargon-text", List.of("4.4.8-1"));
        Path out = tmp.resolve("raw");
        var pinned = assertThrows(RopewayException.class, () -> fetch(archive, out, new ArrayList<>()));
        assertTrue(pinned.getMessage().contains("available: 4.4.8-1"), pinned.getMessage());

        List<String> log = new ArrayList<>();
        CorpusFetcher.Result r = new CorpusFetcher(() -> archive).run(
                new CorpusFetcher.Options(out, out.resolve("debs"), Set.of(Source.JARGON), true), log::add);
        assertEquals("4.4.8-1", r.sources().getFirst().packages().getFirst().version());
        String manifest = Files.readString(out.resolve(CorpusFetcher.MANIFEST));
        assertTrue(manifest.contains("\"version\" : \"4.4.8-1\"") && manifest.contains("\"any_version\" : true"), manifest);
        // Without --any-version, a recorded non-pinned version does not count as up to date.
        assertThrows(RopewayException.class, () -> fetch(archive, out, new ArrayList<>()));
    }

    @Test
    void missingAptToolsSayWhatToDoInstead() {
        var e = assertThrows(RopewayException.class, () -> AptArchive.locate(tmp.toString()));
        assertTrue(e.getMessage().contains("apt-get, apt-cache, dpkg-deb are not on the PATH"), e.getMessage());
        assertTrue(e.getMessage().contains("any folder of .txt / .jsonl files"), e.getMessage());
    }

    @Test
    void optionPathsAreAbsoluteBecauseExtractionChangesWorkingFolder() {
        var o = CorpusFetcher.Options.of(Path.of("ropeway-data/corpus/raw"), Set.of(Source.KJV));
        assertTrue(o.out().isAbsolute() && o.cache().isAbsolute(), o.toString());
        assertEquals(o.out().resolve("debs"), o.cache());
    }

    @Test
    void sourceSelection() {
        assertEquals(EnumSet.allOf(Source.class), Source.select("all", null));
        Set<Source> noKernel = Source.select("all", "linux-doc");
        assertFalse(noKernel.contains(Source.LINUX_DOC));
        assertEquals(Source.values().length - 1, noKernel.size());
        assertEquals(EnumSet.of(Source.KJV, Source.AUSTEN), Source.select(" kjv, Austen ", ""));
        var unknown = assertThrows(RopewayException.class, () -> Source.select("kjv,pg19", null));
        assertTrue(unknown.getMessage().contains("unknown corpus source 'pg19'"), unknown.getMessage());
        assertThrows(RopewayException.class, () -> Source.select("kjv", "kjv"));
    }
}
