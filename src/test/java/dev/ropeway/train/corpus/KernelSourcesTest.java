package dev.ropeway.train.corpus;

import dev.ropeway.train.Corpus;
import dev.ropeway.train.CorpusDocument;
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

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The two sources read from the kernel source package (Documentation/ for training, the core's long C files held out
 * as a code domain), on a small package built here with the same layout: a data tar holding
 * {@code ./usr/src/linux-source-6.1.tar.xz}. Runs the real tar and xz, as the fetch does.
 */
class KernelSourcesTest {
    static final String PKG = "linux-source-6.1";

    @TempDir
    Path tmp;

    /** Serves one package, whose "deb" is the data tar itself (so {@code cat} streams it); counts downloads. */
    static final class KernelArchive implements DebianArchive {
        final Path deb;
        final List<List<Source.Pin>> downloads = new ArrayList<>();

        KernelArchive(Path deb) {
            this.deb = deb;
        }

        @Override
        public Map<String, List<String>> versions(List<String> pkgs) {
            Map<String, List<String>> out = new LinkedHashMap<>();
            for (String p : pkgs) out.put(p, List.of(Source.LINUX_DOC.packages().getFirst().version()));
            return out;
        }

        @Override
        public Map<String, DebFile> describe(List<Source.Pin> pins) {
            Map<String, DebFile> out = new LinkedHashMap<>();
            try {
                byte[] bytes = Files.readAllBytes(deb);
                for (Source.Pin p : pins) out.put(p.pkg(), new DebFile(p.pkg() + "_" + p.version() + "_all.deb", bytes.length, Sha256.of(bytes)));
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            return out;
        }

        @Override
        public void download(List<Source.Pin> pins, Path dir) {
            downloads.add(List.copyOf(pins));
            try {
                for (Source.Pin p : pins) Files.copy(deb, dir.resolve(p.pkg() + "_" + p.version() + "_all.deb"));
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        @Override
        public void extract(Path deb, Path dir) {
            throw new AssertionError("the kernel sources stream the data tar");
        }

        @Override
        public List<String> dataTarCommand(Path deb) {
            return List.of("cat", deb.toString());
        }
    }

    private static String code(int bytes, String name) {
        StringBuilder sb = new StringBuilder("// " + name + "\n");
        for (int i = 0; sb.length() < bytes; i++) sb.append("static int f").append(i).append("(int x)\n{\n\treturn x + ").append(i).append(";\n}\n\n");
        return sb.toString();
    }

    private static void put(Path tree, String name, String text) throws IOException {
        Path f = tree.resolve(PKG).resolve(name);
        Files.createDirectories(f.getParent());
        Files.writeString(f, text);
    }

    /** The package: a data tar with the kernel tarball inside, as linux-source-6.1 ships it. */
    private Path kernelPackage() throws Exception {
        Path tree = tmp.resolve("tree");
        put(tree, "mm/slub.c", code(200_000, "slub"));
        put(tree, "kernel/sched/core.c", code(140_000, "core"));
        put(tree, "mm/small.c", code(2_000, "small"));
        put(tree, "fs/big.h", code(200_000, "header"));
        put(tree, "drivers/gpu/tables.c", code(300_000, "tables"));
        put(tree, "Documentation/admin-guide/README.rst", "Linux kernel\n============\n\n" + "Some words. ".repeat(100) + "\n");
        Path data = tmp.resolve("data");
        Files.createDirectories(data.resolve("usr/src"));
        run(tree, "tar", "-cJf", data.resolve("usr/src/" + PKG + ".tar.xz").toString(), PKG);
        Path deb = tmp.resolve("package.tar");
        run(data, "tar", "-cf", deb.toString(), "./usr/src/" + PKG + ".tar.xz");
        return deb;
    }

    private static void run(Path dir, String... command) throws Exception {
        Process p = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, p.waitFor(), String.join(" ", command) + ": " + out);
    }

    @Test
    void theLongCoreCFilesAreHeldOutAsACodeDomainBesideTheDocumentation() throws Exception {
        KernelArchive archive = new KernelArchive(kernelPackage());
        Path raw = tmp.resolve("raw");
        List<String> log = new ArrayList<>();
        new CorpusFetcher(() -> archive).run(CorpusFetcher.Options.of(raw, EnumSet.of(Source.LINUX_DOC, Source.LINUX_CODE)),
                log::add);
        assertEquals(1, archive.downloads.size());
        assertEquals(1, archive.downloads.getFirst().size(), "one package for both sources, downloaded once");

        // Only C files of 128 KB or more, only in the core folders: not the small file, the header or the driver.
        List<String> code = new ArrayList<>();
        for (Path f : Trees.files(raw.resolve("linux-code"))) code.add(Trees.relative(raw.resolve("linux-code"), f));
        code.sort(null);
        assertEquals(List.of("kernel/sched/core.c", "mm/slub.c"), code);
        assertEquals(code(200_000, "slub"), Files.readString(raw.resolve("linux-code/mm/slub.c")));
        assertTrue(Files.isRegularFile(raw.resolve("linux-doc/admin-guide/README.rst")));
        assertTrue(log.stream().anyMatch(l -> l.equals("[linux-code] unpacking 2 C files")), log.toString());

        Path prepared = tmp.resolve("prepared");
        CorpusPreparer.Summary summary = CorpusPreparer.prepare(raw, prepared);
        assertEquals(2, summary.split(CorpusPreparer.HELDOUT_CODE).documents());
        assertTrue(Files.isRegularFile(prepared.resolve("heldout-code/linux-code/mm/slub.c.txt")));
        // Training never reads the code; a perplexity run reads it as a folder of documents.
        Corpus corpus = Corpus.open(prepared);
        assertTrue(corpus.train().stream().noneMatch(d -> d.text().contains("static int f0")));
        List<CorpusDocument> docs = Corpus.open(prepared.resolve(CorpusPreparer.HELDOUT_CODE)).train();
        assertEquals(2, docs.size());
        assertTrue(docs.getFirst().text().startsWith("// core\n"), docs.getFirst().text().substring(0, 20));
    }

    @Test
    void aVerboseListingIsReadForSizeAndFolder() {
        String listing = String.join("\n",
                "drwxr-xr-x root/root         0 2025-01-02 10:00 linux-source-6.1/mm/",
                "-rw-r--r-- root/root    150000 2025-01-02 10:00 linux-source-6.1/mm/page_alloc.c",
                "-rw-r--r-- root/root    131071 2025-01-02 10:00 linux-source-6.1/mm/just_under.c",
                "-rw-r--r-- root/root    131072 2025-01-02 10:00 linux-source-6.1/net/core/dev.c",
                "-rw-r--r-- root/root    900000 2025-01-02 10:00 linux-source-6.1/drivers/big.c",
                "-rw-r--r-- root/root    900000 2025-01-02 10:00 linux-source-6.1/mm/huge.h",
                "hrw-r--r-- root/root         0 2025-01-02 10:00 linux-source-6.1/fs/link.c link to linux-source-6.1/fs/x.c",
                "-rw-r--r-- root/root    200000 2025-01-02 10:00 linux-source-6.1/kernelx/odd.c");
        assertEquals(List.of("linux-source-6.1/mm/page_alloc.c", "linux-source-6.1/net/core/dev.c"),
                SourceExtraction.longCodeFiles(PKG, listing));
        assertFalse(SourceExtraction.CODE_FOLDERS.contains("drivers"));
    }
}
