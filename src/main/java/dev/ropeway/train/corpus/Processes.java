package dev.ropeway.train.corpus;

import dev.ropeway.RopewayException;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;

/**
 * Runs external programs (apt-get, dpkg-deb, tar, xz, bible) and turns every failure into a message that names the
 * command, its exit status and what it printed on stderr, since that is usually the only clue to the cause.
 */
final class Processes {
    /** How much of a failing command's stderr goes into the error message. */
    private static final int STDERR_TAIL = 2000;

    private Processes() {}

    /** Runs {@code command} in {@code dir} (null: the current folder) and returns its standard output. */
    static String capture(Path dir, List<String> command) {
        return new String(run(dir, command, null), StandardCharsets.UTF_8);
    }

    /** Runs {@code command} with its standard output written to {@code stdout}. */
    static void toFile(Path dir, List<String> command, Path stdout) {
        run(dir, command, stdout);
    }

    private static byte[] run(Path dir, List<String> command, Path stdout) {
        ProcessBuilder pb = new ProcessBuilder(command).redirectInput(ProcessBuilder.Redirect.from(devNull()));
        if (dir != null) pb.directory(dir.toFile());
        if (stdout != null) pb.redirectOutput(stdout.toFile());
        Process p = start(pb, command);
        CompletableFuture<byte[]> err = drain(p.getErrorStream());
        byte[] out = stdout == null ? readAll(p.getInputStream()) : new byte[0];
        int code = waitFor(p);
        if (code != 0) throw failure(command, code, join(err));
        return out;
    }

    /**
     * Runs {@code commands} as a shell pipeline would ({@code a | b | c}), in {@code dir}; the last command's output
     * is discarded. Fails naming the first command that exited non-zero.
     */
    static void pipeline(Path dir, List<List<String>> commands) {
        pipeline(dir, commands, null);
    }

    /** Like {@link #pipeline(Path, List)}, with the last command's output written to {@code stdout} (null: discarded). */
    static void pipeline(Path dir, List<List<String>> commands, Path stdout) {
        List<ProcessBuilder> builders = new ArrayList<>();
        for (List<String> command : commands) {
            ProcessBuilder pb = new ProcessBuilder(command);
            if (dir != null) pb.directory(dir.toFile());
            builders.add(pb);
        }
        builders.getFirst().redirectInput(ProcessBuilder.Redirect.from(devNull()));
        builders.getLast().redirectOutput(stdout == null ? ProcessBuilder.Redirect.DISCARD
                : ProcessBuilder.Redirect.to(stdout.toFile()));
        List<Process> processes;
        try {
            processes = ProcessBuilder.startPipeline(builders);
        } catch (IOException e) {
            throw new RopewayException("cannot run " + commands.stream().map(c -> c.getFirst()).toList() + ": " + e.getMessage());
        }
        List<CompletableFuture<byte[]>> errs = new ArrayList<>();
        for (Process p : processes) errs.add(drain(p.getErrorStream()));
        int[] codes = new int[processes.size()];
        for (int i = 0; i < codes.length; i++) codes[i] = waitFor(processes.get(i));
        for (int i = 0; i < codes.length; i++)
            if (codes[i] != 0) throw failure(commands.get(i), codes[i], join(errs.get(i)));
    }

    private static java.io.File devNull() {
        return new java.io.File("/dev/null");
    }

    private static Process start(ProcessBuilder pb, List<String> command) {
        try {
            return pb.start();
        } catch (IOException e) {
            throw new RopewayException("cannot run " + command.getFirst() + ": " + e.getMessage());
        }
    }

    private static CompletableFuture<byte[]> drain(InputStream in) {
        CompletableFuture<byte[]> f = new CompletableFuture<>();
        Thread.ofVirtual().start(() -> {
            try {
                f.complete(readAll(in));
            } catch (RuntimeException e) {
                f.completeExceptionally(e);
            }
        });
        return f;
    }

    private static byte[] readAll(InputStream in) {
        try (in) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            in.transferTo(out);
            return out.toByteArray();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static String join(CompletableFuture<byte[]> f) {
        try {
            return new String(f.get(), StandardCharsets.UTF_8);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return "";
        } catch (ExecutionException e) {
            return "";
        }
    }

    private static int waitFor(Process p) {
        try {
            return p.waitFor();
        } catch (InterruptedException e) {
            p.destroy();
            Thread.currentThread().interrupt();
            throw new RopewayException("interrupted while waiting for " + p.info().command().orElse("a command"));
        }
    }

    static RopewayException failure(List<String> command, int code, String stderr) {
        String tail = stderr.strip();
        if (tail.length() > STDERR_TAIL) tail = "..." + tail.substring(tail.length() - STDERR_TAIL);
        return new RopewayException("`" + String.join(" ", command) + "` failed (exit " + code + ")"
                + (tail.isEmpty() ? "" : ": " + tail));
    }
}
