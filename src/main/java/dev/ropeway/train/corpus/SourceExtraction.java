package dev.ropeway.train.corpus;

import dev.ropeway.RopewayException;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.Consumer;
import java.util.zip.GZIPInputStream;

/**
 * Turns a source's downloaded packages into its raw text files. Each source knows where its package keeps the
 * text; the files are written as the package holds them (encoding, line endings, Gutenberg boilerplate and all),
 * cleaning being the job of {@link CorpusPreparer}.
 */
final class SourceExtraction {
    /** The novels in janeaustenr, by their R object names. */
    static final List<String> AUSTEN_NOVELS = List.of("emma", "mansfieldpark", "northangerabbey", "persuasion",
            "prideprejudice", "sensesensibility");

    private final DebianArchive archive;
    private final Consumer<String> progress;

    SourceExtraction(DebianArchive archive, Consumer<String> progress) {
        this.archive = archive;
        this.progress = progress;
    }

    /**
     * Writes the texts of {@code source} into {@code target} (an empty folder), from {@code debs} (one per
     * package of the source, in the source's order), using {@code work} as scratch space.
     */
    void extract(Source source, List<Path> debs, Path work, Path target) {
        if (source == Source.LINUX_DOC) {
            linuxDocumentation(source, debs.getFirst(), work, target);
            return;
        }
        if (source == Source.LINUX_CODE) {
            linuxCode(source, debs.getFirst(), work, target);
            return;
        }
        Path root = work.resolve("root");
        for (Path deb : debs) archive.extract(deb, root);
        switch (source) {
            case KJV -> kjv(root, target);
            case JARGON -> gunzip(root.resolve("usr/share/doc/jargon-text/jargon.txt.gz"), target.resolve("jargon.txt"));
            case VIM -> copyAll(matching(root.resolve("usr/share/vim"), "vim*", "doc", ".txt"), target, source);
            case PERL -> copyAll(matching(root.resolve("usr/share/perl"), "*", "pod", ".pod"), target, source);
            case AUSTEN -> austen(root, target);
            case MOBY_DICK -> mobyDick(root, target);
            default -> throw new IllegalStateException("no extraction for " + source);
        }
    }

    /**
     * The package ships the program and its compressed text but no plain text; the program prints any passage.
     * It looks for its data in the folders given with -p, so it runs from the unpacked package without installing.
     */
    private void kjv(Path root, Path target) {
        Path bible = root.resolve("usr/bin/bible").toAbsolutePath(), data = root.resolve("usr/lib").toAbsolutePath();
        if (!Files.isRegularFile(bible) || !Files.isRegularFile(data.resolve("bible.data")))
            throw new RopewayException("bible-kjv did not unpack usr/bin/bible and usr/lib/bible.data as expected");
        Path out = target.resolve("kjv.txt").toAbsolutePath();
        progress.accept("[kjv] printing Genesis 1:1 to Revelation 22:21 with the package's `bible` program");
        try {
            // Relative -p: the program splits its path list on spaces, and the unpack folder may contain some.
            Processes.toFile(data, List.of(bible.toString(), "-p", ".", "gen1:1-rev22:21"), out);
        } catch (RopewayException e) {
            String hint = e.getMessage().contains("libreadline")
                    ? " (the bible program needs the readline library: apt-get install libreadline8)" : "";
            throw new RopewayException(e.getMessage() + hint, e);
        }
        long size = size(out);
        if (size < 1_000_000)
            throw new RopewayException("the bible program printed only " + size + " bytes; expected the whole KJV (about 4.3 MB)");
    }

    private static void gunzip(Path gz, Path out) {
        if (!Files.isRegularFile(gz)) throw new RopewayException("expected " + gz.getFileName() + " in the package, not found");
        try (InputStream in = new GZIPInputStream(Files.newInputStream(gz))) {
            Files.copy(in, out);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot decompress " + gz, e);
        }
    }

    /** Files named {@code *suffix} in {@code base/<versionGlob>/<sub>/}, sorted, across every version folder. */
    private static List<Path> matching(Path base, String versionGlob, String sub, String suffix) {
        List<Path> out = new ArrayList<>();
        if (!Files.isDirectory(base)) return out;
        try (DirectoryStream<Path> versions = Files.newDirectoryStream(base, versionGlob)) {
            for (Path v : versions) {
                Path dir = v.resolve(sub);
                if (!Files.isDirectory(dir)) continue;
                for (Path f : Trees.files(dir))
                    if (f.getParent().equals(dir) && f.getFileName().toString().endsWith(suffix)) out.add(f);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list " + base, e);
        }
        out.sort(null);
        return out;
    }

    private void copyAll(List<Path> files, Path target, Source source) {
        if (files.isEmpty())
            throw new RopewayException(source.packages().getFirst().pkg() + " holds none of the expected text files "
                    + "(the package layout may have changed; try the pinned version)");
        for (Path f : files) {
            Path dst = target.resolve(f.getFileName().toString());
            if (Files.exists(dst)) throw new RopewayException(source.id() + ": two files named " + dst.getFileName());
            copy(f, dst);
        }
        progress.accept("[" + source.id() + "] " + files.size() + " files");
    }

    /**
     * Only Documentation/ is wanted from a 1.4 GB source tree: stream the package's data tar, take the kernel
     * tarball out of it, decompress it and let tar unpack just that subtree.
     */
    private void linuxDocumentation(Source source, Path deb, Path work, Path target) {
        String pkg = source.packages().getFirst().pkg();
        progress.accept("[" + source.id() + "] unpacking " + pkg + "/Documentation from the kernel tarball");
        Path unpacked = unpackKernel(source, deb, work, List.of(pkg + "/Documentation/*"));
        Path docs = unpacked.resolve(pkg).resolve("Documentation");
        if (!Files.isDirectory(docs)) throw new RopewayException(pkg + " holds no " + pkg + "/Documentation folder");
        int n = 0;
        for (Path f : Trees.files(docs)) {
            String name = f.getFileName().toString().toLowerCase(Locale.ROOT);
            if (!name.endsWith(".rst") && !name.endsWith(".txt")) continue;
            Path dst = target.resolve(Trees.relative(docs, f));
            createParent(dst);
            copy(f, dst);
            n++;
        }
        if (n == 0) throw new RopewayException(pkg + "/Documentation holds no .rst or .txt files");
        progress.accept("[" + source.id() + "] " + n + " .rst/.txt files");
    }

    /**
     * The kernel's hand-written core (the scheduler, memory management, file systems, networking...): its C files of
     * at least {@link #MIN_CODE_BYTES} bytes, about 32k tokens and more, long documents of another domain than the
     * prose, none of them in the training text (which takes only Documentation/). Drivers and architecture code are
     * left out: their largest files are mostly generated tables. The tarball is listed first, so that only the files
     * taken are unpacked.
     */
    private void linuxCode(Source source, Path deb, Path work, Path target) {
        String pkg = source.packages().getFirst().pkg();
        progress.accept("[" + source.id() + "] listing the C files of " + pkg + "'s " + String.join(", ", CODE_FOLDERS)
                + " folders in the kernel tarball");
        Path listing = work.resolve("listing.txt").toAbsolutePath();
        kernelTar(source, deb, work, List.of("-t", "-v", "-f", "-"), listing);
        List<String> names = longCodeFiles(pkg, read(listing));
        if (names.isEmpty())
            throw new RopewayException(pkg + " holds no C file of " + MIN_CODE_BYTES / 1024 + " KB or more in its "
                    + String.join(", ", CODE_FOLDERS) + " folders");
        Path list = work.resolve("names.txt").toAbsolutePath();
        write(list, String.join("\n", names) + "\n");
        progress.accept("[" + source.id() + "] unpacking " + names.size() + " C files");
        Path unpacked = work.resolve("tree").toAbsolutePath();
        Trees.createDirectories(unpacked);
        kernelTar(source, deb, work, List.of("-x", "-f", "-", "-C", unpacked.toString(), "--no-same-owner",
                "--no-same-permissions", "--verbatim-files-from", "-T", list.toString()), null);
        Path tree = unpacked.resolve(pkg);
        long bytes = 0;
        for (String name : names) {
            Path f = unpacked.resolve(name);
            if (!Files.isRegularFile(f)) throw new RopewayException(pkg + ": " + name + " was listed but not unpacked");
            bytes += size(f);
            Path dst = target.resolve(Trees.relative(tree, f));
            createParent(dst);
            copy(f, dst);
        }
        progress.accept(String.format(Locale.ROOT, "[%s] %d C files, %.1f MB", source.id(), names.size(), bytes / 1e6));
    }

    /** The kernel's top-level folders whose long C files {@code linux-code} takes. */
    static final List<String> CODE_FOLDERS = List.of("kernel", "mm", "fs", "net", "block", "ipc", "security", "lib",
            "init", "crypto");
    /** The smallest C file {@code linux-code} takes: 128 KB, about 32k tokens of a Llama tokenizer. */
    static final long MIN_CODE_BYTES = 128 * 1024;

    /**
     * The regular {@code .c} files of at least {@link #MIN_CODE_BYTES} bytes under the {@link #CODE_FOLDERS} of a
     * verbose tar listing ({@code -rw-r--r-- root/root 145678 2024-05-01 10:00 linux-source-6.1/mm/slub.c}), sorted.
     */
    static List<String> longCodeFiles(String pkg, String listing) {
        List<String> out = new ArrayList<>();
        for (String line : listing.split("\n")) {
            String[] f = line.strip().split("\\s+", 6);
            if (f.length < 6 || !f[0].startsWith("-") || !f[5].endsWith(".c")) continue;
            long size;
            try {
                size = Long.parseLong(f[2]);
            } catch (NumberFormatException e) {
                continue;
            }
            String name = f[5].startsWith("./") ? f[5].substring(2) : f[5];
            if (size < MIN_CODE_BYTES) continue;
            for (String folder : CODE_FOLDERS)
                if (name.startsWith(pkg + "/" + folder + "/")) {
                    out.add(name);
                    break;
                }
        }
        out.sort(null);
        return out;
    }

    /** Runs tar with {@code args} on the kernel tarball inside the package, decompressed as a stream. */
    private void kernelTar(Source source, Path deb, Path work, List<String> args, Path stdout) {
        String pkg = source.packages().getFirst().pkg();
        String tar = AptArchive.require("tar", "unpacking " + pkg).toString();
        String xz = AptArchive.require("xz", "unpacking " + pkg).toString();
        List<String> last = new ArrayList<>(List.of(tar));
        last.addAll(args);
        Processes.pipeline(work, List.of(
                archive.dataTarCommand(deb.toAbsolutePath()),
                List.of(tar, "-x", "-O", "-f", "-", "./usr/src/" + pkg + ".tar.xz"),
                List.of(xz, "-d", "-c"),
                last), stdout);
    }

    /** Unpacks the members matching {@code patterns} (tar wildcards) of the kernel tarball; returns their folder. */
    private Path unpackKernel(Source source, Path deb, Path work, List<String> patterns) {
        Path unpacked = work.resolve("tree").toAbsolutePath();
        Trees.createDirectories(unpacked);
        List<String> args = new ArrayList<>(List.of("-x", "-f", "-", "-C", unpacked.toString(), "--no-same-owner",
                "--no-same-permissions", "--wildcards"));
        args.addAll(patterns);
        kernelTar(source, deb, work, args, null);
        return unpacked;
    }

    private static String read(Path f) {
        try {
            return Files.readString(f, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + f, e);
        }
    }

    /** The novels are character vectors, one element per line; each becomes one file. */
    private void austen(Path root, Path target) {
        RLazyLoadDb db = RLazyLoadDb.open(root.resolve("usr/lib/R/site-library/janeaustenr/data/Rdata.rdx"));
        for (String novel : AUSTEN_NOVELS) {
            List<String> lines = db.strings(novel);
            write(target.resolve(novel + ".txt"), String.join("\n", lines) + "\n");
        }
        progress.accept("[austen] " + AUSTEN_NOVELS.size() + " novels read from the R data set");
    }

    /** One string holding the whole Gutenberg file. */
    private void mobyDick(Path root, Path target) {
        RLazyLoadDb db = RLazyLoadDb.open(root.resolve("usr/lib/R/site-library/tokenizers/data/Rdata.rdx"));
        String text = String.join("\n", db.strings("mobydick"));
        if (!text.endsWith("\n")) text += "\n";
        write(target.resolve("mobydick.txt"), text);
        progress.accept("[mobydick] read from the R data set");
    }

    private static void write(Path file, String text) {
        try {
            Files.write(file, text.getBytes(StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + file, e);
        }
    }

    private static void copy(Path from, Path to) {
        try {
            Files.copy(from, to, LinkOption.NOFOLLOW_LINKS);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot copy " + from + " to " + to, e);
        }
    }

    private static void createParent(Path file) {
        try {
            Files.createDirectories(file.getParent());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create " + file.getParent(), e);
        }
    }

    private static long size(Path file) {
        try {
            return Files.size(file);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
