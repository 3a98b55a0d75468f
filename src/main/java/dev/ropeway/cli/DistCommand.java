package dev.ropeway.cli;

import dev.ropeway.dist.AppClassPath;
import dev.ropeway.dist.Bundle;
import dev.ropeway.dist.Jlink;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code ropeway dist}: a self-contained copy of Ropeway for machines without a JDK. */
@Command(name = "dist", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Make a self-contained Ropeway for a machine without a JDK (of this machine's OS and CPU"
                + " architecture): a Java runtime linked with only the modules Ropeway uses, its jars, a launcher"
                + " bin/ropeway and a README.",
                "The bundle is checked by running a few commands on its own runtime. Needs a JDK 25 with jlink."})
final class DistCommand implements Callable<Integer> {

    @Option(names = "--out", paramLabel = "<dir>", defaultValue = "target/dist/ropeway",
            description = "Folder to write; an earlier bundle there is replaced (default: ${DEFAULT-VALUE}).")
    Path out;

    @Option(names = "--archive", description = "Also write <out>.tar.gz beside the folder.")
    boolean archive;

    @Option(names = "--no-startup-cache", description = {"Leave out lib/ropeway.aot, the JVM's startup cache (about 27 MB,"
            + " 8 MB compressed; without it commands start 0.1-0.25 s later)."})
    boolean noStartupCache;

    @Option(names = "--class-path", paramLabel = "<path>",
            description = {"Jars (and Ropeway's class folder) to bundle, separated by '${sys:path.separator}'.",
                    "Default: the running Ropeway's jar and the jars its manifest lists."})
    String classPath;

    @Option(names = "--json", description = "Print one JSON object instead of text.")
    boolean json;

    @Override
    public Integer call() {
        Jlink.require();   // first, so that inside a bundle the answer is about jlink, not about missing jars
        List<Path> jars = classPath == null ? AppClassPath.running() : AppClassPath.parse(classPath);
        Bundle.Result r = Bundle.build(out, jars, archive, !noStartupCache, line -> System.err.println("dist: " + line));
        if (json) {
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("out", r.out().toString());
            o.put("archive", r.archive() == null ? null : r.archive().toString());
            o.put("bytes", r.totalBytes());
            o.put("runtime_bytes", r.runtimeBytes());
            o.put("lib_bytes", r.libBytes());
            o.put("archive_bytes", r.archive() == null ? null : r.archiveBytes());
            o.put("left_out_bytes", r.droppedBytes());
            o.put("startup_cache_bytes", r.startupCacheBytes());
            o.put("no_startup_cache", r.noStartupCache());
            o.put("modules", r.modules());
            o.put("jars", r.jars());
            o.put("checked", r.checked());
            System.out.println(Output.json(o));
            return 0;
        }
        System.out.printf(Locale.ROOT, "wrote %s: %s%n", r.out(), mb(r.totalBytes()));
        System.out.printf(Locale.ROOT, "  runtime/     %9s  Java %s: %s%n", mb(r.runtimeBytes()), Runtime.version().feature(),
                String.join(", ", r.modules()));
        System.out.printf(Locale.ROOT, "  lib/         %9s  %d jars (left out %s of native libraries for other platforms"
                + " and OpenBLAS's unused JNI bindings)%n", mb(r.libBytes()), r.jars().size(), mb(r.droppedBytes()));
        if (r.noStartupCache() == null) {
            System.out.printf(Locale.ROOT, "  lib/ropeway.aot%7s  the JVM's startup cache (classes and method profiles of a short run)%n",
                    mb(r.startupCacheBytes()));
        } else {
            System.out.printf(Locale.ROOT, "  no startup cache: %s%n", r.noStartupCache());
        }
        System.out.printf(Locale.ROOT, "  bin/ropeway, README.txt%n");
        System.out.printf(Locale.ROOT, "  checked      %s%n", String.join("; ", r.checked()));
        String name = r.out().getFileName().toString();
        if (r.archive() != null) {
            System.out.printf(Locale.ROOT, "archive %s: %s%n%n", r.archive(), mb(r.archiveBytes()));
            System.out.printf(Locale.ROOT, "To use it, copy the archive to the server and unpack it (no JDK needed there):%n");
            System.out.printf(Locale.ROOT, "  scp %s server:%n", r.archive());
            System.out.printf(Locale.ROOT, "  ssh server 'tar xzf %s && %s/bin/ropeway --help'%n", r.archive().getFileName(), name);
        } else {
            System.out.printf(Locale.ROOT, "%nTo use it, copy the folder to the server (or run with --archive for a .tar.gz):%n");
            System.out.printf(Locale.ROOT, "  scp -r %s server:%n", r.out());
            System.out.printf(Locale.ROOT, "  ssh server '%s/bin/ropeway --help'%n", name);
        }
        return 0;
    }

    private static String mb(long bytes) {
        return String.format(Locale.ROOT, "%.1f MB", bytes / 1e6);
    }
}
