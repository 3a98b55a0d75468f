package dev.ropeway.cli;

import dev.ropeway.io.UserCache;
import dev.ropeway.model.GgufCache;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code ropeway cache}: what Ropeway keeps in its cache folder (GGUF imports above all), and removing it. */
@Command(name = "cache", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"List the GGUF files imported for --model (the cache folder: $ROPEWAY_CACHE, else ~/.cache/ropeway), "
                + "or remove imports.",
                "Without options: list each import, its size and whether its GGUF file is still there unchanged."})
final class CacheCommand implements Callable<Integer> {
    @Option(names = "--clean", description = "Remove the imports whose GGUF files are gone or changed (never read again), "
            + "and leftovers of interrupted imports.")
    boolean clean;
    @Option(names = "--clear", description = "Remove every GGUF import (each is made again on its file's next use).")
    boolean clear;
    @Option(names = "--json", description = "Print one JSON object.")
    boolean json;

    @Override
    public Integer call() {
        if (clean && clear) throw new dev.ropeway.RopewayException("--clean and --clear: give one (--clear removes everything --clean does)");
        Path root = GgufCache.root();
        if (clean || clear) {
            List<Path> removed = GgufCache.clean(root, clear);
            if (json) {
                System.out.println(Output.json(Map.of("root", root.toString(), "removed", removed.stream().map(Path::toString).toList())));
            } else {
                for (Path p : removed) System.out.println("removed " + p);
                System.out.printf("%d folder%s removed from %s%n", removed.size(), removed.size() == 1 ? "" : "s", root);
            }
            return 0;
        }
        List<GgufCache.Entry> entries = GgufCache.entries(root);
        if (json) {
            List<Map<String, Object>> list = new ArrayList<>();
            for (GgufCache.Entry e : entries) {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("dir", e.dir().toString());
                m.put("sources", e.sources().stream().map(Path::toString).toList());
                m.put("bytes", e.bytes());
                m.put("format", e.format());
                m.put("current", e.current());
                list.add(m);
            }
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("cache", UserCache.root().toString());
            out.put("gguf_imports", list);
            System.out.println(Output.json(out));
            return 0;
        }
        System.out.println("cache " + UserCache.root() + (entries.isEmpty() ? ": no GGUF imports" : ""));
        long total = 0;
        for (GgufCache.Entry e : entries) {
            total += e.bytes();
            System.out.printf(Locale.ROOT, "%9.1f MB  %s%n             from %s%s%n", e.bytes() / 1e6, e.dir().getFileName(),
                    e.sources().isEmpty() ? "?" : e.sources().getFirst() + (e.sources().size() > 1 ? " (+" + (e.sources().size() - 1) + " parts)" : ""),
                    e.current() ? "" : "  [stale: " + e.staleness() + "; ropeway cache --clean removes it]");
        }
        if (!entries.isEmpty()) System.out.printf(Locale.ROOT, "%9.1f MB  in %d import%s%n", total / 1e6, entries.size(), entries.size() == 1 ? "" : "s");
        return 0;
    }
}
