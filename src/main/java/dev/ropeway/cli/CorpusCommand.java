package dev.ropeway.cli;

import dev.ropeway.train.Corpus;
import dev.ropeway.train.corpus.CorpusFetcher;
import dev.ropeway.train.corpus.CorpusPreparer;
import dev.ropeway.train.corpus.Source;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code ropeway corpus}: get the offline long-text corpus and prepare it for training. */
@Command(name = "corpus", mixinStandardHelpOptions = true,
        description = "Get public-domain long texts from pinned Debian packages and prepare them for training.",
        subcommands = {CorpusCommand.Fetch.class, CorpusCommand.Prepare.class})
final class CorpusCommand implements Runnable {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(spec.commandLine().getOut());
    }

    @Command(name = "fetch", mixinStandardHelpOptions = true,
            description = {"Download the corpus sources (pinned Debian packages, no root needed) and extract their texts.",
                    "Sources: kjv (King James Bible), jargon (Jargon File), vim (Vim manual), perl (Perl POD),"
                            + " linux-doc (Linux 6.1 Documentation/, a 139 MB download), linux-code (the same package's"
                            + " long C files of its core folders, held out as a code domain), austen (six novels),"
                            + " mobydick. Re-running reuses what is already there."})
    static final class Fetch implements Callable<Integer> {
        @Option(names = "--out", paramLabel = "<dir>", description = "Folder for the raw texts and manifest.json (default: ropeway-data/corpus/raw).")
        Path out = CorpusFetcher.DEFAULT_OUT;

        @Option(names = "--sources", paramLabel = "<ids>", defaultValue = "all",
                description = "Comma-separated sources to fetch, or all (default: ${DEFAULT-VALUE}).")
        String sources;

        @Option(names = "--exclude", paramLabel = "<ids>", description = "Comma-separated sources to leave out, e.g. linux-doc.")
        String exclude;

        @Option(names = "--cache", paramLabel = "<dir>", description = "Folder for the downloaded .deb files (default: <out>/debs).")
        Path cache;

        @Option(names = "--any-version", description = "Accept apt's newest version of a package whose pinned version is gone (recorded in the manifest).")
        boolean anyVersion;

        @Override
        public Integer call() {
            long start = System.nanoTime();
            var options = new CorpusFetcher.Options(out, cache == null ? out.resolve("debs") : cache,
                    Source.select(sources, exclude), anyVersion);
            CorpusFetcher.Result result = CorpusFetcher.fetch(options, System.out::println);
            double seconds = (System.nanoTime() - start) / 1e9;
            System.out.println();
            System.out.printf(Locale.ROOT, "%-10s %7s %9s  %s%n", "source", "files", "MB", "packages");
            for (CorpusFetcher.SourceResult r : result.sources()) {
                StringBuilder pkgs = new StringBuilder();
                for (CorpusFetcher.PackageUse p : r.packages())
                    pkgs.append(pkgs.isEmpty() ? "" : ", ").append(p.name()).append(' ').append(p.version());
                System.out.printf(Locale.ROOT, "%-10s %7d %9.2f  %s%s%n", r.source().id(), r.files(), r.bytes() / 1e6,
                        pkgs, r.reused() ? " (reused)" : "");
            }
            System.out.printf(Locale.ROOT, "%-10s %7d %9.2f%n", "total",
                    result.sources().stream().mapToInt(CorpusFetcher.SourceResult::files).sum(), result.bytes() / 1e6);
            System.out.printf(Locale.ROOT, "manifest: %s; %.1f s%n", result.manifest(), seconds);
            return 0;
        }
    }

    @Command(name = "prepare", mixinStandardHelpOptions = true,
            description = {"Clean the raw texts and split them into train/ and heldout/ (Moby Dick, Emma, Persuasion,"
                    + " Northanger Abbey, each whole). Output is byte-identical run to run."})
    static final class Prepare implements Callable<Integer> {
        @Option(names = "--raw", paramLabel = "<dir>", description = "Folder written by `corpus fetch` (default: ropeway-data/corpus/raw).")
        Path raw = CorpusFetcher.DEFAULT_OUT;

        @Option(names = "--out", paramLabel = "<dir>", description = "Folder to write; replaced as a whole (default: ropeway-data/corpus/prepared).")
        Path out = CorpusPreparer.DEFAULT_OUT;

        @Override
        public Integer call() {
            long start = System.nanoTime();
            CorpusPreparer.Summary s = CorpusPreparer.prepare(raw, out);
            double seconds = (System.nanoTime() - start) / 1e9;
            System.out.printf(Locale.ROOT, "%-12s %9s %9s%n", "split", "documents", "MB");
            for (Map.Entry<String, CorpusPreparer.Count> e : s.splits().entrySet())
                System.out.printf(Locale.ROOT, "%-12s %9d %9.2f%n", e.getKey(), e.getValue().documents(),
                        e.getValue().bytes() / 1e6);
            System.out.println();
            System.out.printf(Locale.ROOT, "%-10s %-12s %9s %9s%n", "source", "split", "documents", "MB");
            s.sources().forEach((id, counts) -> counts.forEach((split, c) -> System.out.printf(Locale.ROOT,
                    "%-10s %-12s %9d %9.2f%n", id, split, c.documents(), c.bytes() / 1e6)));
            System.out.println();
            if (!s.dropped().isEmpty())
                System.out.printf(Locale.ROOT, "dropped %d raw files shorter than %d bytes after cleaning%n",
                        s.dropped().size(), CorpusPreparer.MIN_DOCUMENT_BYTES);
            if (s.latin1Files() > 0)
                System.out.printf(Locale.ROOT, "read %d raw files that were not UTF-8 as Latin-1%n", s.latin1Files());
            boolean code = s.split(CorpusPreparer.HELDOUT_CODE).documents() > 0;
            System.out.printf(Locale.ROOT, "wrote %s (%s/, %s/, %s%s); %.1f s%n", s.out(), Corpus.TRAIN, Corpus.HELDOUT,
                    code ? CorpusPreparer.HELDOUT_CODE + "/, " : "", CorpusPreparer.MANIFEST, seconds);
            if (code)
                System.out.printf("perplexity on the held-out code: ropeway eval ppl --data %s --model <dir> --lengths ...%n",
                        s.out().resolve(CorpusPreparer.HELDOUT_CODE));
            return 0;
        }
    }
}
