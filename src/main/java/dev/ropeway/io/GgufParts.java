package dev.ropeway.io;

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A GGUF model that may be split over several files, as llama.cpp's {@code gguf-split} writes large ones:
 * {@code name-00001-of-00003.gguf} holds the metadata and the first tensors, the others more tensors, each file naming
 * its place ({@code split.no}, {@code split.count}). Opened from the first part, or from a single file; tensors are
 * looked up in whichever part holds them.
 */
public final class GgufParts implements AutoCloseable {
    private static final Pattern PART = Pattern.compile("(.*)-(\\d{5})-of-(\\d{5})\\.gguf");

    private final List<GgufFile> files;
    private final Map<String, GgufFile> owner;
    private final Map<String, GgufFile.Tensor> tensors;

    private GgufParts(List<GgufFile> files) {
        this.files = List.copyOf(files);
        Map<String, GgufFile> owner = new LinkedHashMap<>();
        Map<String, GgufFile.Tensor> tensors = new LinkedHashMap<>();
        for (GgufFile f : files)
            for (GgufFile.Tensor t : f.tensors().values()) {
                if (owner.put(t.name(), f) != null)
                    throw new CheckpointException(f.path() + " repeats tensor " + t.name() + " of an earlier part");
                tensors.put(t.name(), t);
            }
        this.owner = owner;
        this.tensors = Collections.unmodifiableMap(tensors);
    }

    /** Opens {@code path}, and when it is the first part of a split model, the other parts beside it. */
    public static GgufParts open(Path path) {
        GgufFile first = GgufFile.open(path);
        List<GgufFile> files = new ArrayList<>(List.of(first));
        try {
            int count = (int) number(first, "split.count", 1);
            if (count > 1) {
                long no = number(first, "split.no", 0);
                Matcher m = PART.matcher(path.getFileName().toString());
                if (no != 0)
                    throw new CheckpointException(path + " is part " + (no + 1) + " of " + count + " of a split model; "
                            + "open the first part" + (m.matches() ? " (" + m.group(1) + "-00001-of-" + m.group(3) + ".gguf)" : ""));
                if (!m.matches())
                    throw new CheckpointException(path + " is the first of " + count + " parts, but its name is not "
                            + "<name>-00001-of-" + String.format("%05d", count) + ".gguf, so the others cannot be found");
                for (int i = 1; i < count; i++) {
                    Path part = path.resolveSibling(String.format("%s-%05d-of-%05d.gguf", m.group(1), i + 1, count));
                    if (!Files.isRegularFile(part))
                        throw new CheckpointException(path + " is split in " + count + " parts and part " + (i + 1) + ", "
                                + part.getFileName() + ", is missing");
                    GgufFile f = GgufFile.open(part);
                    files.add(f);
                    if (number(f, "split.no", -1) != i || number(f, "split.count", -1) != count)
                        throw new CheckpointException(part + " does not say it is part " + (i + 1) + " of " + count);
                }
            }
            GgufParts parts = new GgufParts(files);
            long expected = number(first, "split.tensors.count", parts.tensors.size());
            if (expected != parts.tensors.size())
                throw new CheckpointException(path + ": the parts hold " + parts.tensors.size() + " tensors, the first "
                        + "part says " + expected);
            return parts;
        } catch (RuntimeException e) {
            files.forEach(GgufFile::close);
            throw e;
        }
    }

    private static long number(GgufFile f, String key, long fallback) {
        GgufValue v = f.metadata().get(key);
        if (v == null) return fallback;
        if (!v.type().isInteger()) throw new CheckpointException(f.path() + ": " + key + " is " + v.describe() + ", not an integer");
        return v.asLong();
    }

    /** The first part, which holds the metadata. */
    public GgufFile first() { return files.getFirst(); }

    public int count() { return files.size(); }

    /** The files, the first part first. */
    public List<Path> paths() { return files.stream().map(GgufFile::path).toList(); }

    public Path path() { return first().path(); }

    public Map<String, GgufValue> metadata() { return first().metadata(); }

    public GgufValue value(String key) { return first().value(key); }

    /** Every tensor of every part, in file order. */
    public Map<String, GgufFile.Tensor> tensors() { return tensors; }

    public GgufFile.Tensor tensor(String name) {
        GgufFile f = owner.get(name);
        if (f == null) throw new CheckpointException(path() + (files.size() > 1 ? " (all " + files.size() + " parts)" : "")
                + " has no tensor " + name);
        return f.tensor(name);
    }

    public float[] floats(String name) {
        tensor(name);
        return owner.get(name).floats(name);
    }

    /** The tensor's bytes as the file stores them (a read-only slice of its part's mapping). */
    public MemorySegment data(String name) {
        tensor(name);
        return owner.get(name).data(name);
    }

    @Override
    public void close() {
        files.forEach(GgufFile::close);
    }
}
