package dev.ropeway.dist;

import dev.ropeway.io.FileTrees;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A bundle's {@code lib/ropeway.aot}: the JDK's AOT cache (JEP 483, 514, 515), the classes Ropeway loads already
 * parsed and linked and the method profiles of a run, so that a command starts sooner and its kernels are compiled
 * sooner. Written by a training run on the bundle's own launcher and runtime (a short decode benchmark on a tiny
 * random model: command line, model building, prefill, decode); the launcher uses it when it exists. The JVM checks
 * it against the runtime and the jars, and skips one that no longer matches.
 */
final class StartupCache {
    static final String FILE = "lib/ropeway.aot";
    private static final long TIMEOUT_SECONDS = 300;
    private static final List<String> TRAINING_RUN = List.of("bench", "decode", "--preset", "tiny", "--fill", "prefill",
            "--contexts", "64", "--tokens", "16", "--threads", "1", "--device", "cpu");

    private StartupCache() {}

    /** Writes the cache; returns null, or why there is none (the bundle works without it, only starts slower). */
    static String write(Path bundle) throws IOException {
        Path target = bundle.resolve(FILE), tmp = bundle.resolve(FILE + ".tmp");
        Files.deleteIfExists(target);
        Path work = Files.createTempDirectory("ropeway-dist-aot");
        try {
            ProcessBuilder pb = new ProcessBuilder(command(bundle)).directory(work.toFile()).redirectErrorStream(true)
                    .redirectOutput(work.resolve("output.txt").toFile());
            pb.environment().put("ROPEWAY_AOT", "off");
            pb.environment().put("ROPEWAY_JAVA_OPTS", "-XX:AOTCacheOutput=" + tmp + " -Xlog:aot*=off -Xlog:cds*=off");
            Process p = pb.start();
            try {
                if (!p.waitFor(TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
                    p.destroyForcibly();
                    return "its training run did not finish in " + TIMEOUT_SECONDS + " s";
                }
            } catch (InterruptedException e) {
                p.destroyForcibly();
                Thread.currentThread().interrupt();
                return "interrupted";
            }
            if (p.exitValue() != 0 || !Files.isRegularFile(tmp) || Files.size(tmp) == 0) {
                String output = Files.readString(work.resolve("output.txt")).strip();
                return "its training run (bin/ropeway " + String.join(" ", TRAINING_RUN) + ") exited " + p.exitValue()
                        + (output.isEmpty() ? "" : ":\n" + output);
            }
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            return null;
        } finally {
            Files.deleteIfExists(tmp);
            FileTrees.delete(work);
        }
    }

    private static List<String> command(Path bundle) {
        return Stream.concat(Stream.of(bundle.resolve(Bundle.LAUNCHER).toString()), TRAINING_RUN.stream()).toList();
    }
}
