package dev.ropeway.train.corpus;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Json;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * {@code ropeway corpus fetch}: downloads the pinned Debian packages of each selected {@link Source} into a cache
 * folder, extracts their texts into {@code <out>/<source id>/} and records packages, versions and SHA-256 digests in
 * {@code <out>/manifest.json}. A source whose files are all present with the recorded digests is skipped, so a
 * re-run only does what is missing, and needs no apt at all when nothing is.
 */
public final class CorpusFetcher {
    public static final Path DEFAULT_OUT = Path.of("ropeway-data", "corpus", "raw");
    public static final String MANIFEST = "manifest.json";
    static final String FORMAT = "ropeway-corpus-raw";

    /**
     * What to fetch. {@code cache} holds the downloaded .deb files; {@code anyVersion} accepts apt's newest version
     * of a package when the pinned one is gone (recorded in the manifest).
     */
    public record Options(Path out, Path cache, Set<Source> sources, boolean anyVersion) {
        public Options {
            // Absolute, because extraction runs programs in other working folders and passes them these paths.
            out = out.toAbsolutePath().normalize();
            cache = cache.toAbsolutePath().normalize();
            sources = Set.copyOf(sources);
            if (sources.isEmpty()) throw new RopewayException("no corpus sources selected (known: " + Source.ids() + ")");
        }

        /** Pinned versions, .deb files cached in {@code <out>/debs}. */
        public static Options of(Path out, Set<Source> sources) {
            return new Options(out, out.resolve("debs"), sources, false);
        }
    }

    /** A package as used: the version taken (equal to the pin unless {@code --any-version} was needed). */
    public record PackageUse(String name, String version, String pinned, String deb, long debBytes, String debSha256) {}

    /** One source after fetching: its files (relative to the output folder) and whether they were already there. */
    public record SourceResult(Source source, boolean reused, List<PackageUse> packages, int files, long bytes) {}

    public record Result(Path out, Path manifest, List<SourceResult> sources) {
        public long bytes() {
            return sources.stream().mapToLong(SourceResult::bytes).sum();
        }
    }

    private final Supplier<DebianArchive> archiveSupplier;
    private DebianArchive archive;

    /** A fetcher that reaches the archive through {@code archive}, asked for only once something must be downloaded. */
    CorpusFetcher(Supplier<DebianArchive> archive) {
        this.archiveSupplier = archive;
    }

    /** Fetches {@code sources} into {@code out} at their pinned versions. */
    public static Result fetch(Path out, Set<Source> sources, Consumer<String> progress) {
        return fetch(Options.of(out, sources), progress);
    }

    public static Result fetch(Options options, Consumer<String> progress) {
        return new CorpusFetcher(AptArchive::locate).run(options, progress);
    }

    Result run(Options options, Consumer<String> progress) {
        Path out = options.out();
        Trees.createDirectories(out);
        Path manifestFile = out.resolve(MANIFEST);
        Map<String, Object> manifest = readManifest(manifestFile, progress);
        @SuppressWarnings("unchecked")
        Map<String, Object> entries = (Map<String, Object>) manifest.get("sources");
        Map<Source, SourceResult> results = new TreeMap<>();
        List<Source> needed = new ArrayList<>();
        for (Source source : new TreeSet<>(options.sources())) {
            SourceResult reused = reusable(out, source, entries.get(source.id()), options.anyVersion());
            if (reused == null) {
                needed.add(source);
                continue;
            }
            progress.accept(String.format(Locale.ROOT, "[%s] up to date: %d files, %.1f MB (skipped)",
                    source.id(), reused.files(), reused.bytes() / 1e6));
            results.put(source, reused);
        }
        if (!needed.isEmpty()) {
            Map<String, PackageUse> packages = acquire(options, needed, progress);
            for (Source source : needed) {
                List<PackageUse> uses = source.packages().stream().map(p -> packages.get(p.pkg())).toList();
                SourceResult fetched = extract(options, source, uses, progress);
                entries.put(source.id(), entry(out, source, fetched, options.anyVersion()));
                // After each source, so an interrupted run keeps what it finished.
                writeManifest(manifestFile, manifest);
                results.put(source, fetched);
            }
        }
        writeManifest(manifestFile, manifest);
        return new Result(out, manifestFile, List.copyOf(results.values()));
    }

    private DebianArchive archive() {
        if (archive == null) archive = archiveSupplier.get();
        return archive;
    }

    private SourceResult extract(Options options, Source source, List<PackageUse> uses, Consumer<String> progress) {
        Path out = options.out();
        List<Path> debs = uses.stream().map(u -> options.cache().resolve(u.deb())).toList();
        Path work = out.resolve(".work-" + source.id());
        Path staging = out.resolve(".staging-" + source.id());
        Path target = out.resolve(source.id());
        Trees.delete(work);
        Trees.delete(staging);
        try {
            Trees.createDirectories(work);
            Trees.createDirectories(staging);
            new SourceExtraction(archive(), progress).extract(source, debs, work, staging);
            // Swap the complete folder in, so an interrupted run never leaves a half-written source behind a
            // manifest entry that claims it.
            Trees.delete(target);
            Files.move(staging, target, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + target, e);
        } finally {
            Trees.delete(work);
            Trees.delete(staging);
        }
        List<Path> files = Trees.files(target);
        long bytes = 0;
        for (Path f : files) bytes += size(f);
        progress.accept(String.format(Locale.ROOT, "[%s] wrote %d files, %.1f MB to %s", source.id(), files.size(),
                bytes / 1e6, target));
        return new SourceResult(source, false, List.copyOf(uses), files.size(), bytes);
    }

    /**
     * Resolves the version of every package the sources need, then takes each .deb from the cache when its digest
     * matches apt's index and downloads the rest, all with one apt call per step.
     */
    private Map<String, PackageUse> acquire(Options options, List<Source> sources, Consumer<String> progress) {
        Map<String, Source> owner = new LinkedHashMap<>();
        Map<String, Source.Pin> pins = new LinkedHashMap<>();
        for (Source s : sources)
            for (Source.Pin pin : s.packages()) {
                owner.put(pin.pkg(), s);
                pins.put(pin.pkg(), pin);
            }
        Map<String, List<String>> available = archive().versions(List.copyOf(pins.keySet()));
        List<Source.Pin> resolved = new ArrayList<>();
        for (Source.Pin pin : pins.values()) {
            String version = resolveVersion(pin, available.getOrDefault(pin.pkg(), List.of()), options.anyVersion());
            if (!version.equals(pin.version()))
                progress.accept("[" + owner.get(pin.pkg()).id() + "] " + pin.pkg() + " " + pin.version()
                        + " is not available; using " + version + " (--any-version)");
            resolved.add(new Source.Pin(pin.pkg(), version));
        }
        Map<String, DebianArchive.DebFile> files = archive().describe(resolved);
        Trees.createDirectories(options.cache());
        List<Source.Pin> missing = new ArrayList<>();
        for (Source.Pin pin : resolved) {
            DebianArchive.DebFile file = files.get(pin.pkg());
            if (file.fileName().contains("/") || file.fileName().startsWith("."))
                throw new RopewayException("apt names an unexpected file for " + pin.pkg() + ": " + file.fileName());
            Path deb = options.cache().resolve(file.fileName());
            String tag = "[" + owner.get(pin.pkg()).id() + "] " + pin.pkg() + " " + pin.version();
            if (Files.isRegularFile(deb) && Sha256.of(deb).equals(file.sha256())) {
                progress.accept(tag + ": cached " + deb);
                continue;
            }
            progress.accept(String.format(Locale.ROOT, "%s: downloading %.1f MB", tag, file.size() / 1e6));
            deleteIfExists(deb);
            missing.add(pin);
        }
        if (!missing.isEmpty()) archive().download(missing, options.cache());
        Map<String, PackageUse> uses = new LinkedHashMap<>();
        for (Source.Pin pin : resolved) {
            DebianArchive.DebFile file = files.get(pin.pkg());
            Path deb = options.cache().resolve(file.fileName());
            if (!Files.isRegularFile(deb))
                throw new RopewayException("apt-get download " + pin.pkg() + "=" + pin.version() + " did not write " + deb);
            String got = Sha256.of(deb);
            if (!got.equals(file.sha256()))
                throw new RopewayException(deb + " has SHA-256 " + got + " but apt's index says " + file.sha256());
            uses.put(pin.pkg(), new PackageUse(pin.pkg(), pin.version(), pins.get(pin.pkg()).version(), file.fileName(),
                    file.size(), file.sha256()));
        }
        return uses;
    }

    /**
     * The version to download: the pin when apt offers it; otherwise, with {@code anyVersion}, apt's highest;
     * otherwise an error naming the package, the pin and what apt has.
     */
    static String resolveVersion(Source.Pin pin, List<String> available, boolean anyVersion) {
        if (available.contains(pin.version())) return pin.version();
        if (available.isEmpty())
            throw new RopewayException("apt knows no package " + pin.pkg() + " (wanted version " + pin.version()
                    + "). The corpus sources come from Debian 12 (bookworm) `main`; run `apt-get update` as root if "
                    + "the package lists are missing, or pass any folder of .txt / .jsonl files as the corpus instead.");
        if (anyVersion) return available.getFirst();
        throw new RopewayException(pin.pkg() + " " + pin.version() + " is not available from apt here (available: "
                + String.join(", ", available) + "). Pass --any-version to use " + available.getFirst()
                + " instead; the manifest records the version used.");
    }

    /**
     * The recorded result for {@code source} when every file it lists is present with its recorded size and
     * digest and its packages are the pinned versions (or any version, with {@code anyVersion}); else null.
     */
    @SuppressWarnings("unchecked")
    static SourceResult reusable(Path out, Source source, Object recorded, boolean anyVersion) {
        if (!(recorded instanceof Map<?, ?> entry)) return null;
        if (!(entry.get("packages") instanceof List<?> packages) || !(entry.get("files") instanceof Map<?, ?> files)
                || files.isEmpty())
            return null;
        List<PackageUse> uses = new ArrayList<>();
        for (Source.Pin pin : source.packages()) {
            Map<String, Object> p = packages.stream().filter(x -> x instanceof Map<?, ?> m && pin.pkg().equals(m.get("name")))
                    .map(x -> (Map<String, Object>) x).findFirst().orElse(null);
            if (p == null || !(p.get("version") instanceof String version)) return null;
            if (!anyVersion && !version.equals(pin.version())) return null;
            uses.add(new PackageUse(pin.pkg(), version, pin.version(), String.valueOf(p.get("deb")),
                    p.get("deb_bytes") instanceof Number n ? n.longValue() : 0, String.valueOf(p.get("deb_sha256"))));
        }
        long bytes = 0;
        for (Map.Entry<?, ?> f : files.entrySet()) {
            String rel = String.valueOf(f.getKey());
            if (!rel.startsWith(source.id() + "/") || rel.contains("..") || !(f.getValue() instanceof Map<?, ?> info))
                return null;
            Path file = out.resolve(rel);
            if (!Files.isRegularFile(file) || !(info.get("bytes") instanceof Number size) || size(file) != size.longValue()
                    || !Sha256.of(file).equals(info.get("sha256")))
                return null;
            bytes += size.longValue();
        }
        return new SourceResult(source, true, List.copyOf(uses), files.size(), bytes);
    }

    private static Map<String, Object> entry(Path out, Source source, SourceResult r, boolean anyVersion) {
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("title", source.title());
        e.put("any_version", anyVersion && r.packages().stream().anyMatch(p -> !p.version().equals(p.pinned())));
        List<Map<String, Object>> packages = new ArrayList<>();
        for (PackageUse p : r.packages()) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("name", p.name());
            m.put("version", p.version());
            m.put("pinned_version", p.pinned());
            m.put("deb", p.deb());
            m.put("deb_bytes", p.debBytes());
            m.put("deb_sha256", p.debSha256());
            packages.add(m);
        }
        e.put("packages", packages);
        Map<String, Object> files = new TreeMap<>();
        for (Path f : Trees.files(out.resolve(source.id()))) {
            Map<String, Object> info = new LinkedHashMap<>();
            info.put("bytes", size(f));
            info.put("sha256", Sha256.of(f));
            files.put(Trees.relative(out, f), info);
        }
        e.put("files", files);
        return e;
    }

    /** The manifest so far, or a fresh one; an unreadable one is replaced (its sources are fetched again). */
    private static Map<String, Object> readManifest(Path file, Consumer<String> progress) {
        Map<String, Object> manifest = new LinkedHashMap<>();
        manifest.put("format", FORMAT);
        manifest.put("version", 1);
        Map<String, Object> sources = new TreeMap<>();
        manifest.put("sources", sources);
        if (!Files.exists(file)) return manifest;
        try {
            Map<String, Object> old = Json.readObject(file);
            if (FORMAT.equals(old.get("format")) && old.get("sources") instanceof Map<?, ?> m)
                m.forEach((k, v) -> sources.put(String.valueOf(k), v));
            else progress.accept("note: " + file + " is not a corpus fetch manifest; starting a new one");
        } catch (RopewayException e) {
            progress.accept("note: " + e.getMessage() + "; starting a new manifest");
        }
        return manifest;
    }

    private static void writeManifest(Path file, Map<String, Object> manifest) {
        Json.writeAtomic(file, manifest);
    }

    private static void deleteIfExists(Path file) {
        try {
            Files.deleteIfExists(file);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot delete " + file, e);
        }
    }

    private static long size(Path file) {
        try {
            return Files.size(file);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file, e);
        }
    }
}
