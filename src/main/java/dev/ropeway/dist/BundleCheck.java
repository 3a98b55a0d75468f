package dev.ropeway.dist;

import dev.ropeway.io.FileTrees;
import dev.ropeway.RopewayException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Runs a fresh bundle's own launcher on a few cheap commands, so a module or jar it lacks shows up here rather than
 * on the server: startup and picocli, Jackson and safetensors (init), reading a checkpoint with the Vector API and
 * OpenBLAS through FFM (score). Each command is a JVM start of about a second.
 */
final class BundleCheck {
    private static final long TIMEOUT_SECONDS = 120;

    private BundleCheck() {}

    /** Returns the command lines that ran, or throws naming the first that failed and what it printed. */
    static List<String> run(Path bundle) throws IOException {
        Path work = Files.createTempDirectory("ropeway-dist-check");
        try {
            List<String> ran = new ArrayList<>();
            Path model = work.resolve("model"), ids = work.resolve("ids.json");
            Files.writeString(ids, "[[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]]");
            ran.add(expect(bundle, work, "ropeway ", "--version"));
            ran.add(expect(bundle, work, "Usage: ropeway info", "info", "--help"));
            ran.add(expect(bundle, work, "wrote ", "init", "--preset", "tiny", "--out", model.toString()));
            ran.add(expect(bundle, work, "\"perplexity\"", "score", "--model", model.toString(), "--ids", ids.toString(), "--json"));
            return ran;
        } finally {
            FileTrees.delete(work);
        }
    }

    private static String expect(Path bundle, Path work, String expected, String... args) throws IOException {
        List<String> command = new ArrayList<>(List.of(bundle.resolve(Bundle.LAUNCHER).toString()));
        command.addAll(List.of(args));
        String shown = "bin/ropeway " + String.join(" ", args).replace(work.toString(), "<tmp>");
        Path log = work.resolve("output.txt");
        Process p = new ProcessBuilder(command).directory(work.toFile()).redirectErrorStream(true)
                .redirectOutput(log.toFile()).start();
        try {
            if (!p.waitFor(TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new RopewayException("bundle check: `" + shown + "` did not finish in " + TIMEOUT_SECONDS + " s");
            }
        } catch (InterruptedException e) {
            p.destroyForcibly();
            Thread.currentThread().interrupt();
            throw new RopewayException("bundle check interrupted");
        }
        String output = Files.readString(log);
        if (p.exitValue() != 0 || !output.contains(expected)) {
            throw new RopewayException("the bundle at " + bundle + " failed its check: `" + shown + "` exited "
                    + p.exitValue() + (p.exitValue() == 0 ? " without printing \"" + expected + "\"" : "") + ":\n"
                    + output.strip());
        }
        return shown;
    }
}
