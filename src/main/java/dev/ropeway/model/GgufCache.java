package dev.ropeway.model;

import dev.ropeway.RopewayException;
import dev.ropeway.io.FileTrees;
import dev.ropeway.io.GgmlType;
import dev.ropeway.io.GgufFile;
import dev.ropeway.io.GgufParts;
import dev.ropeway.io.Json;
import dev.ropeway.io.UserCache;
import dev.ropeway.tensor.DType;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.DirectoryStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;
import java.util.function.Consumer;

/**
 * GGUF files where a checkpoint folder is expected: the first use of a file imports it ({@link GgufImport}) into a
 * folder of the user cache ({@code $ROPEWAY_CACHE/gguf}, by default {@code ~/.cache/ropeway/gguf}), and every later
 * use reads that folder. A folder belongs to one version of the file: its key is each part's real path, size and
 * modification time, so a file changed in place is imported again (and the folder of its old version removed).
 *
 * <p>Matrices are kept as the file keeps them when it holds plain floats (F32, F16, BF16) or one of the block types
 * the CPU backend computes with (every quantised type but MXFP4: {@link GgufImport#KEPT}),
 * so the import takes about the file's own size; matrices of other quantised types (MXFP4) become bfloat16, the half-precision type
 * both backends keep narrow in memory (a quantised value is within 2^-9 of itself there, well inside the
 * quantisation's own step). {@code ropeway import --dtype f16|f32} writes a plain Hugging Face folder for whoever
 * needs one.
 *
 * <p>An import is written into a hidden folder and renamed into place when complete, so an interrupted one leaves
 * nothing a later run would mistake for a checkpoint, and two processes importing the same file at once both end up
 * reading one complete folder.
 */
public final class GgufCache {
    /** Bumped when an import of the same file would be written differently, so old folders are not reused. */
    private static final String FORMAT = "5";
    private static final byte[] MAGIC = "GGUF".getBytes(StandardCharsets.US_ASCII);
    private static final String SOURCE_FILE = "gguf-source.json";

    private GgufCache() {}

    /** Whether {@code path} is a GGUF file (by its magic bytes, so files without the extension count too). */
    public static boolean isGguf(Path path) {
        if (path == null || !Files.isRegularFile(path)) return false;
        try (InputStream in = Files.newInputStream(path)) {
            return java.util.Arrays.equals(in.readNBytes(MAGIC.length), MAGIC);
        } catch (IOException e) {
            return false;
        }
    }

    /** The default cache's folder of imports: {@code gguf} under {@link UserCache#root()}. */
    public static Path root() {
        return UserCache.root().resolve("gguf");
    }

    /** The folder under {@code $ROPEWAY_CACHE/gguf} holding the import of {@code gguf}, importing it first if needed. */
    public static Path folder(Path gguf, Consumer<String> log) {
        return folder(gguf, root(), log);
    }

    /** As above, with the cache's folder given. {@code log} hears what is done (an import takes seconds to minutes). */
    public static Path folder(Path gguf, Path root, Consumer<String> log) {
        try (GgufParts g = GgufParts.open(gguf)) {
            List<Path> parts = g.paths();
            String key = key(parts);
            String stem = stem(gguf.getFileName().toString());
            Path target = root.resolve(stem + "-" + key);
            if (Files.isRegularFile(target.resolve("config.json"))) return target;

            DType type = type(g);
            long bytes = bytes(g, type);
            Files.createDirectories(root);
            long free = Files.getFileStore(root).getUsableSpace();
            if (free < bytes + (bytes >> 5) + (64L << 20))
                throw new RopewayException(String.format(Locale.ROOT, "importing %s needs %s in %s, which has %s free; "
                        + "set ROPEWAY_CACHE to a folder with room, or run ropeway import --gguf %s --out <dir> and pass "
                        + "that folder", gguf, size(bytes), root, size(free), gguf));
            log.accept(String.format(Locale.ROOT, "importing %s once (%s; %s%s) into %s", gguf.getFileName(),
                    describeTypes(g), size(bytes), converted(g, type), target));
            long t0 = System.nanoTime();
            Path temp = root.resolve("." + target.getFileName() + "."
                    + HexFormat.of().toHexDigits(ThreadLocalRandom.current().nextLong()) + ".tmp");
            boolean moved = false;
            try {
                try {
                    GgufImport.write(g, temp, new GgufImport.Options(type, true, true));
                } catch (RopewayException e) {
                    String hint = e.getMessage() != null && e.getMessage().contains("--no-tokenizer")
                            ? " (that is: ropeway import --gguf " + gguf + " --out <dir> --no-tokenizer, then --model <dir>)" : "";
                    throw new RopewayException("cannot read " + gguf + " as a model: " + e.getMessage() + hint, e);
                }
                Map<String, Object> source = new LinkedHashMap<>();
                source.put("format", FORMAT);
                source.put("parts", parts.stream().map(GgufCache::describe).toList());
                source.put("dtype", type.name().toLowerCase(Locale.ROOT));
                Json.writeAtomic(temp.resolve(SOURCE_FILE), source);
                try {
                    Files.move(temp, target, StandardCopyOption.ATOMIC_MOVE);
                    moved = true;
                } catch (FileAlreadyExistsException | java.nio.file.DirectoryNotEmptyException e) {
                    // Another process finished the same import first; its folder is as good as this one.
                    if (!Files.isRegularFile(target.resolve("config.json"))) throw e;
                } catch (AtomicMoveNotSupportedException e) {
                    throw new RopewayException("cannot import into " + root + ": its file system cannot rename a folder atomically", e);
                }
            } finally {
                if (!moved) FileTrees.delete(temp);
            }
            log.accept(String.format(Locale.ROOT, "imported in %.1f s; later runs read %s", (System.nanoTime() - t0) / 1e9, target));
            removeOlderImports(root, target, parts.getFirst().toRealPath().toString(), log);
            return target;
        } catch (IOException e) {
            throw new RopewayException("cannot import " + gguf + " into " + root + ": " + e.getMessage(), e);
        }
    }

    /**
     * One import in the cache: its folder, the GGUF files it came from, the bytes it takes, the import format of the
     * Ropeway that wrote it (null if it says none), and whether this Ropeway reads it: its format is this one's and its
     * files are still there as they were when imported (a stale import is never read again: a changed file, or another
     * format, gets a new key).
     */
    public record Entry(Path dir, List<Path> sources, long bytes, String format, boolean current) {
        /** Why the import is stale ({@link #current} false): another format, or the files gone or changed. */
        public String staleness() {
            return FORMAT.equals(format) ? "the file is gone or changed" : "written by " + writer(format);
        }
    }

    /** The imports under {@code root} (a cache's {@code gguf} folder), by folder name; unreadable folders are skipped. */
    public static List<Entry> entries(Path root) {
        List<Entry> out = new ArrayList<>();
        if (!Files.isDirectory(root)) return out;
        try (DirectoryStream<Path> dirs = Files.newDirectoryStream(root)) {
            for (Path d : dirs) {
                Path source = d.resolve(SOURCE_FILE);
                if (d.getFileName().toString().startsWith(".") || !Files.isRegularFile(source)) continue;
                try {
                    List<Path> sources = new ArrayList<>();
                    Map<String, Object> json = Json.readObject(source);
                    String format = json.get("format") instanceof String f ? f : null;
                    boolean current = Files.isRegularFile(d.resolve("config.json")) && FORMAT.equals(format);
                    if (!(json.get("parts") instanceof List<?> parts)) continue;
                    for (Object part : parts) {
                        if (!(part instanceof Map<?, ?> m) || !(m.get("path") instanceof String path)) continue;
                        Path file = Path.of(path);
                        sources.add(file);
                        current &= Files.isRegularFile(file) && m.get("size") instanceof Number size
                                && m.get("modified") instanceof Number modified && Files.size(file) == size.longValue()
                                && Files.getLastModifiedTime(file).toMillis() == modified.longValue();
                    }
                    out.add(new Entry(d, List.copyOf(sources), folderBytes(d), format, current && !sources.isEmpty()));
                } catch (IOException | RuntimeException e) {
                    // A folder being removed, or written by someone else: not an import this can describe.
                }
            }
        } catch (IOException e) {
            throw new RopewayException("cannot list " + root + ": " + e.getMessage(), e);
        }
        out.sort(java.util.Comparator.comparing(e -> e.dir().getFileName().toString()));
        return out;
    }

    /**
     * Removes the imports whose GGUF files are gone or changed (every import with {@code all}) and the hidden folders
     * interrupted imports left behind; returns the folders removed.
     */
    public static List<Path> clean(Path root, boolean all) {
        List<Path> removed = new ArrayList<>();
        for (Entry e : entries(root)) {
            if (!all && e.current()) continue;
            delete(e.dir());
            removed.add(e.dir());
        }
        if (Files.isDirectory(root)) {
            try (DirectoryStream<Path> dirs = Files.newDirectoryStream(root, ".*.tmp")) {
                for (Path d : dirs) {
                    // Only the leftovers of imports that died: one running now renames its folder within minutes.
                    if (Files.getLastModifiedTime(d).toMillis() < System.currentTimeMillis() - 24 * 3600_000L) {
                        delete(d);
                        removed.add(d);
                    }
                }
            } catch (IOException e) {
                throw new RopewayException("cannot list " + root + ": " + e.getMessage(), e);
            }
        }
        return removed;
    }

    private static void delete(Path dir) {
        try {
            FileTrees.delete(dir);
        } catch (IOException e) {
            throw new RopewayException("cannot remove " + dir + ": " + e.getMessage(), e);
        }
    }

    private static long folderBytes(Path dir) throws IOException {
        try (java.util.stream.Stream<Path> files = Files.list(dir)) {
            long total = 0;
            for (Path f : files.toList()) if (Files.isRegularFile(f)) total += Files.size(f);
            return total;
        }
    }

    /** What the import does with the file's matrices: "; Q4_K, Q6_K kept", "; Q8_0 kept, others as bf16", or " as f16". */
    private static String converted(GgufParts g, DType type) {
        Set<GgmlType> same = EnumSet.noneOf(GgmlType.class), others = EnumSet.noneOf(GgmlType.class);
        for (GgufFile.Tensor t : g.tensors().values()) {
            if (t.ne().length != 2) continue;
            if (GgufImport.kept(t.type(), t.ne()[0]) == null) others.add(t.type());
            else same.add(t.type());
        }
        String as = type.name().toLowerCase(Locale.ROOT);
        if (same.isEmpty()) return " as " + as;
        String names = String.join(", ", same.stream().map(Enum::name).toList()) + " kept";
        return others.isEmpty() ? "; " + names : "; " + names + ", others as " + as;
    }

    /** bfloat16 for quantised files; otherwise the file's own float type (float32 where types are mixed). */
    static DType type(GgufParts g) {
        Set<GgmlType> types = EnumSet.noneOf(GgmlType.class);
        for (GgufFile.Tensor t : g.tensors().values()) if (t.ne().length == 2) types.add(t.type());
        Set<GgmlType> plain = EnumSet.of(GgmlType.F32, GgmlType.F16, GgmlType.BF16);
        if (!plain.containsAll(types)) return DType.BF16;
        if (types.equals(EnumSet.of(GgmlType.F16))) return DType.F16;
        if (types.equals(EnumSet.of(GgmlType.BF16))) return DType.BF16;
        return DType.F32;
    }

    /** The bytes the import writes: kept matrices as in the file, others in {@code type}, the rest (norms, biases) in float32. */
    private static long bytes(GgufParts g, DType type) {
        long total = 0;
        for (GgufFile.Tensor t : g.tensors().values()) {
            long n = 1;
            for (long d : t.ne()) n *= d;
            boolean matrix = t.ne().length == 2;
            DType kept = matrix ? GgufImport.kept(t.type(), t.ne()[0]) : null;
            total += kept != null ? kept.byteSize(n) : n * (matrix ? type.bytes() : 4);
        }
        return total;
    }

    private static String size(long bytes) {
        return bytes >= 1e9 ? String.format(Locale.ROOT, "%.1f GB", bytes / 1e9) : String.format(Locale.ROOT, "%.1f MB", bytes / 1e6);
    }

    private static String describeTypes(GgufParts g) {
        Map<String, Integer> counts = new java.util.TreeMap<>();
        for (GgufFile.Tensor t : g.tensors().values()) if (t.ne().length == 2) counts.merge(t.type().name(), 1, Integer::sum);
        return String.join(", ", counts.entrySet().stream().map(e -> e.getValue() + " " + e.getKey()).toList());
    }

    private static String key(List<Path> parts) throws IOException {
        MessageDigest sha;
        try {
            sha = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        sha.update(FORMAT.getBytes(StandardCharsets.UTF_8));
        for (Path p : parts) {
            Map<String, Object> d = describe(p);
            sha.update(("\u0000" + d.get("path") + "\u0000" + d.get("size") + "\u0000" + d.get("modified"))
                    .getBytes(StandardCharsets.UTF_8));
        }
        return HexFormat.of().formatHex(sha.digest()).substring(0, 16);
    }

    private static Map<String, Object> describe(Path p) {
        try {
            Map<String, Object> d = new LinkedHashMap<>();
            d.put("path", p.toRealPath().toString());
            d.put("size", Files.size(p));
            d.put("modified", Files.getLastModifiedTime(p).toMillis());
            return d;
        } catch (IOException e) {
            throw new RopewayException("cannot read " + p + ": " + e.getMessage(), e);
        }
    }

    /** The file name without {@code .gguf} and a split part's {@code -0000i-of-0000n}, kept to safe characters. */
    static String stem(String name) {
        String s = name.replaceFirst("(?i)(-\\d{5}-of-\\d{5})?\\.gguf$", "");
        s = s.replaceAll("[^A-Za-z0-9._+-]", "_");
        if (s.length() > 80) s = s.substring(0, 80);
        return s.isEmpty() || s.startsWith(".") ? "model" + s : s;
    }

    /** The Ropeway that wrote an import of another format. */
    private static String writer(String format) {
        return format == null ? "an earlier Ropeway version (no import format recorded; this one reads " + FORMAT + ")"
                : "another Ropeway version (import format " + format + "; this one reads " + FORMAT + ")";
    }

    /**
     * Removes the other imports of the same file (same first part): of earlier versions of it (other size or time),
     * or written by another Ropeway version (another import format).
     */
    private static void removeOlderImports(Path root, Path keep, String firstPart, Consumer<String> log) {
        try {
            for (Entry e : entries(root)) {
                if (e.dir().equals(keep) || e.sources().isEmpty() || !e.sources().getFirst().toString().equals(firstPart)) continue;
                delete(e.dir());
                log.accept("removed " + e.dir() + (FORMAT.equals(e.format()) ? ", the import of an earlier version of the file"
                        : ", an import of the file written by " + writer(e.format())));
            }
        } catch (RopewayException e) {
            // Not being able to tidy up is no reason to fail a run; `ropeway cache --clean` can do it later.
        }
    }
}
