package dev.ropeway.tensor;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertTrue;

/** The environment variables the loader reads can only be set for a new process, so these run a child JVM. */
class OpenBlasLoaderProcessTest {
    private static String run(Map<String, String> env) throws IOException, InterruptedException {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        ProcessBuilder pb = new ProcessBuilder(List.of(java, "--enable-native-access=ALL-UNNAMED",
                "-cp", System.getProperty("java.class.path"), LoaderProbe.class.getName()));
        pb.environment().putAll(env);
        pb.redirectErrorStream(true);
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        p.waitFor();
        return out;
    }

    @Test
    void extractsIntoTheCacheNamedByRopewayCache(@TempDir Path cache) throws Exception {
        String out = run(Map.of(OpenBlasLoader.ENV_CACHE, cache.toString()));
        assertTrue(out.contains("loaded " + cache.resolve("native")), out);
        assertTrue(out.contains("OpenBLAS 0.3"), out);
        try (var dirs = Files.list(cache.resolve("native"))) {
            Path dir = dirs.findFirst().orElseThrow();
            assertTrue(dir.getFileName().toString().startsWith("openblas-"), dir.toString());
            assertTrue(Files.size(dir.resolve("libopenblas.so.0")) > 1_000_000);
        }
    }

    @Test
    void aBadOverrideFailsNamingThePath(@TempDir Path dir) throws Exception {
        Path missing = dir.resolve("no-such-libopenblas.so");
        String out = run(Map.of(OpenBlasLoader.ENV_LIBRARY, missing.toString()));
        assertTrue(out.contains("failed OpenBLAS: $ROPEWAY_OPENBLAS=" + missing + " could not be loaded"), out);
    }

    @Test
    void anOverrideIsLoadedAsIs(@TempDir Path cache) throws Exception {
        String first = run(Map.of(OpenBlasLoader.ENV_CACHE, cache.toString()));
        assertTrue(first.startsWith("loaded "), first);
        Path lib = Path.of(first.substring("loaded ".length(), first.indexOf(" (")));
        String out = run(Map.of(OpenBlasLoader.ENV_LIBRARY, lib.toString()));
        assertTrue(out.contains("loaded " + lib + " (from $ROPEWAY_OPENBLAS)"), out);
    }
}
