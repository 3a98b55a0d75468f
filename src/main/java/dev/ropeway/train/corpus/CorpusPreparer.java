package dev.ropeway.train.corpus;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Json;
import dev.ropeway.train.Corpus;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ThreadLocalRandom;

/**
 * {@code ropeway corpus prepare}: cleans the raw texts that {@link CorpusFetcher} wrote (see {@link TextCleaner}) and
 * splits them into the folder layout {@link Corpus} reads: {@code heldout/} holds four whole Gutenberg novels for
 * long-document evaluation (Moby Dick, Emma, Persuasion, Northanger Abbey), {@code heldout-code/} the kernel's long C
 * files when {@code linux-code} was fetched (a second domain, as Proof-pile is beside PG19), {@code train/} everything
 * else. The
 * output is a pure function of the raw files: same input, byte-identical output, with every file's digest in
 * {@code <out>/manifest.json}.
 */
public final class CorpusPreparer {
    public static final Path DEFAULT_OUT = Path.of("ropeway-data", "corpus", "prepared");
    public static final String MANIFEST = "manifest.json";
    static final String FORMAT = "ropeway-corpus-prepared";

    /**
     * Documents shorter than this after cleaning are dropped: they are table-of-contents stubs (the kernel's
     * index.rst files, a few POD placeholders) that teach nothing about long context.
     */
    public static final int MIN_DOCUMENT_BYTES = 512;

    /** The raw files kept out of training, by their path under the raw folder. */
    public static final Set<String> HELDOUT = Set.of("mobydick/mobydick.txt", "austen/emma.txt",
            "austen/persuasion.txt", "austen/northangerabbey.txt");

    /** Documents and bytes of one split, or of one source within a split. */
    public record Count(int documents, long bytes) {
        Count plus(long size) {
            return new Count(documents + 1, bytes + size);
        }
    }

    /**
     * What was written: documents and bytes per split ({@code train}, {@code heldout}) and per source and split,
     * the raw files dropped as too short, and how many raw files were not UTF-8 and were read as Latin-1.
     */
    public record Summary(Path out, Map<String, Count> splits, Map<String, Map<String, Count>> sources,
                          List<String> dropped, int latin1Files) {
        public Count split(String name) {
            return splits.getOrDefault(name, new Count(0, 0));
        }
    }

    private CorpusPreparer() {}

    /**
     * The held-out code: {@code linux-code}'s C files, long documents of a second domain that training never reads
     * (perplexity on them: {@code eval ppl --data <prepared>/heldout-code}).
     */
    public static final String HELDOUT_CODE = "heldout-code";

    /**
     * {@link Corpus#TRAIN}, {@link Corpus#HELDOUT} or {@link #HELDOUT_CODE} for the raw file at {@code rawPath}
     * (relative, '/'-separated).
     */
    public static String splitOf(String rawPath) {
        if (rawPath.startsWith(Source.LINUX_CODE.id() + "/")) return HELDOUT_CODE;
        return HELDOUT.contains(rawPath) ? Corpus.HELDOUT : Corpus.TRAIN;
    }

    /** The path of a raw file's cleaned copy under the output folder; always a .txt file, which {@link Corpus} reads. */
    static String outputPath(String rawPath) {
        return splitOf(rawPath) + "/" + (rawPath.endsWith(".txt") ? rawPath : rawPath + ".txt");
    }

    /** Cleans and splits the raw corpus at {@code raw} into {@code out}, replacing a previous prepared corpus there. */
    public static Summary prepare(Path raw, Path out) {
        if (!Files.isDirectory(raw))
            throw new RopewayException("raw corpus folder " + raw + " does not exist; run `ropeway corpus fetch` first "
                    + "(or train on any folder of .txt / .jsonl files directly)");
        Path rawAbs = raw.toAbsolutePath().normalize(), outAbs = out.toAbsolutePath().normalize();
        if (outAbs.startsWith(rawAbs) || rawAbs.startsWith(outAbs))
            throw new RopewayException("the prepared corpus folder " + out + " and the raw folder " + raw + " must not contain each other");
        List<Source> present = new ArrayList<>();
        for (Source s : Source.values()) if (Files.isDirectory(raw.resolve(s.id()))) present.add(s);
        if (present.isEmpty())
            throw new RopewayException("raw corpus folder " + raw + " holds none of the sources (" + Source.ids()
                    + "); run `ropeway corpus fetch --out " + raw + "` first");
        checkReplaceable(out);

        Path parent = outAbs.getParent();
        Trees.createDirectories(parent);
        String tag = HexFormat.of().toHexDigits(ThreadLocalRandom.current().nextLong());
        Path temp = parent.resolve("." + outAbs.getFileName() + ".tmp-" + tag);
        try {
            Summary summary = write(raw, present, temp);
            swapIn(temp, outAbs, parent.resolve("." + outAbs.getFileName() + ".old-" + tag));
            return new Summary(out, summary.splits(), summary.sources(), summary.dropped(), summary.latin1Files());
        } finally {
            Trees.delete(temp);
        }
    }

    private static Summary write(Path raw, List<Source> present, Path temp) {
        Map<String, Count> splits = new LinkedHashMap<>();
        splits.put(Corpus.TRAIN, new Count(0, 0));
        splits.put(Corpus.HELDOUT, new Count(0, 0));
        Map<String, Map<String, Count>> perSource = new LinkedHashMap<>();
        Map<String, Object> files = new TreeMap<>();
        List<String> dropped = new ArrayList<>();
        int latin1 = 0;
        for (Source source : present) {
            Map<String, Count> counts = new LinkedHashMap<>();
            for (Path file : Trees.files(raw.resolve(source.id()))) {
                String rawPath = Trees.relative(raw, file);
                if (file.getFileName().toString().startsWith(".")) continue;
                byte[] bytes = readAll(file);
                String text = decodeUtf8(bytes);
                if (text == null) {
                    text = new String(bytes, StandardCharsets.ISO_8859_1);
                    latin1++;
                }
                byte[] cleaned = TextCleaner.clean(text).getBytes(StandardCharsets.UTF_8);
                if (cleaned.length < MIN_DOCUMENT_BYTES) {
                    dropped.add(rawPath);
                    continue;
                }
                String outPath = outputPath(rawPath);
                Path target = temp.resolve(outPath);
                Trees.createDirectories(target.getParent());
                writeNew(target, cleaned);
                String split = splitOf(rawPath);
                splits.merge(split, new Count(1, cleaned.length), (a, b) -> a.plus(b.bytes()));
                counts.merge(split, new Count(1, cleaned.length), (a, b) -> a.plus(b.bytes()));
                Map<String, Object> info = new LinkedHashMap<>();
                info.put("bytes", (long) cleaned.length);
                info.put("sha256", Sha256.of(cleaned));
                files.put(outPath, info);
            }
            perSource.put(source.id(), counts);
        }
        if (files.isEmpty())
            throw new RopewayException("raw corpus folder " + raw + " holds no documents of at least "
                    + MIN_DOCUMENT_BYTES + " bytes after cleaning");
        Json.writeAtomic(temp.resolve(MANIFEST), manifest(raw, splits, perSource, dropped, latin1, files));
        return new Summary(temp, splits, perSource, List.copyOf(dropped), latin1);
    }

    private static Map<String, Object> manifest(Path raw, Map<String, Count> splits,
                                                Map<String, Map<String, Count>> perSource, List<String> dropped,
                                                int latin1, Map<String, Object> files) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("format", FORMAT);
        m.put("version", 1);
        m.put("min_document_bytes", MIN_DOCUMENT_BYTES);
        m.put("heldout_rule", new ArrayList<>(new java.util.TreeSet<>(HELDOUT)));
        Path rawManifest = raw.resolve(CorpusFetcher.MANIFEST);
        if (Files.isRegularFile(rawManifest)) {
            m.put("raw_manifest_sha256", Sha256.of(rawManifest));
            m.put("packages", packages(rawManifest));
        }
        m.put("splits", counts(splits));
        Map<String, Object> sources = new LinkedHashMap<>();
        perSource.forEach((id, c) -> sources.put(id, counts(c)));
        m.put("sources", sources);
        m.put("latin1_files", latin1);
        m.put("dropped", dropped);
        m.put("files", files);
        return m;
    }

    /** "package version" per source, from the fetch manifest, so a prepared corpus names what it was built from. */
    private static Map<String, Object> packages(Path rawManifest) {
        Map<String, Object> out = new TreeMap<>();
        try {
            if (Json.readObject(rawManifest).get("sources") instanceof Map<?, ?> sources)
                sources.forEach((id, entry) -> {
                    List<String> pkgs = new ArrayList<>();
                    if (entry instanceof Map<?, ?> e && e.get("packages") instanceof List<?> list)
                        for (Object p : list)
                            if (p instanceof Map<?, ?> pm) pkgs.add(pm.get("name") + " " + pm.get("version"));
                    out.put(String.valueOf(id), pkgs);
                });
        } catch (RopewayException e) {
            // A damaged fetch manifest only costs the provenance note; the texts themselves are what is prepared.
        }
        return out;
    }

    private static Map<String, Object> counts(Map<String, Count> counts) {
        Map<String, Object> out = new LinkedHashMap<>();
        counts.forEach((split, c) -> {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("documents", c.documents());
            m.put("bytes", c.bytes());
            out.put(split, m);
        });
        return out;
    }

    /** Only an empty folder or an earlier prepared corpus may be replaced, never an unrelated folder passed by mistake. */
    private static void checkReplaceable(Path out) {
        if (!Files.exists(out)) return;
        if (!Files.isDirectory(out)) throw new RopewayException(out + " exists and is not a folder");
        Path manifest = out.resolve(MANIFEST);
        boolean prepared = false;
        if (Files.isRegularFile(manifest)) {
            try {
                prepared = FORMAT.equals(Json.readObject(manifest).get("format"));
            } catch (RopewayException e) {
                prepared = false;
            }
        }
        if (!prepared && !isEmpty(out))
            throw new RopewayException("refusing to replace " + out + ": it is not empty and was not written by "
                    + "`ropeway corpus prepare`");
    }

    /**
     * Puts the finished tree at {@code out}. A folder cannot be renamed over a non-empty one, so an old corpus is
     * first renamed aside; readers see the old corpus or the new one, never a mix.
     */
    private static void swapIn(Path temp, Path out, Path old) {
        try {
            boolean hadOld = Files.exists(out);
            if (hadOld) Files.move(out, old, StandardCopyOption.ATOMIC_MOVE);
            try {
                Files.move(temp, out, StandardCopyOption.ATOMIC_MOVE);
            } catch (IOException e) {
                if (hadOld) Files.move(old, out, StandardCopyOption.ATOMIC_MOVE);
                throw e;
            }
            if (hadOld) Trees.delete(old);
        } catch (IOException e) {
            throw new RopewayException("cannot move the prepared corpus into place at " + out + ": " + e);
        }
    }

    private static String decodeUtf8(byte[] bytes) {
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(bytes)).toString();
        } catch (CharacterCodingException e) {
            return null;
        }
    }

    private static boolean isEmpty(Path dir) {
        try (var s = Files.list(dir)) {
            return s.findAny().isEmpty();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list " + dir, e);
        }
    }

    private static byte[] readAll(Path file) {
        try {
            return Files.readAllBytes(file);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file, e);
        }
    }

    private static void writeNew(Path file, byte[] bytes) {
        try {
            Files.write(file, bytes, java.nio.file.StandardOpenOption.CREATE_NEW, java.nio.file.StandardOpenOption.WRITE);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + file, e);
        }
    }
}
