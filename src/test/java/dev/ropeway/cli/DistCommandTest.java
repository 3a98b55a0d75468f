package dev.ropeway.cli;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ropeway.BuildInfo;
import dev.ropeway.io.Json;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import java.util.spi.ToolProvider;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

class DistCommandTest {
    /** What the test JVM has on its class path for the tests alone, and a packaged Ropeway does not ship. */
    private static final Pattern TEST_ONLY = Pattern.compile("test-classes|junit|opentest4j|apiguardian|surefire");

    @Test
    void aBundleRunsRopewayOnItsOwnRuntime(@TempDir Path tmp) throws Exception {
        assumeTrue(ToolProvider.findFirst("jlink").isPresent(), "this Java runtime has no jlink");
        Path out = tmp.resolve("ropeway");
        // Under `mvn test` there is no target/ropeway.jar yet: bundle the class folder and the dependency jars.
        CliRunner.Result r = CliRunner.run("dist", "--out", out.toString(), "--class-path", packagedClassPath(), "--json");
        assertEquals(0, r.exitCode(), r.err());
        JsonNode json = Json.mapper().readTree(r.out());
        List<String> modules = Json.mapper().convertValue(json.get("modules"), Json.mapper().getTypeFactory()
                .constructCollectionType(List.class, String.class));
        assertTrue(modules.containsAll(List.of("java.base", "jdk.incubator.vector", "java.desktop", "jdk.httpserver")), modules.toString());
        assertFalse(modules.contains("jdk.jlink") || modules.contains("java.sql"), modules.toString());
        assertEquals(4, json.get("checked").size(), "every check of the bundle ran: " + json.get("checked"));
        assertTrue(json.get("archive").isNull());
        assertTrue(Files.isExecutable(out.resolve("bin/ropeway")));
        assertTrue(Files.readString(out.resolve("README.txt")).contains(BuildInfo.current().version()));

        // The launcher starts from the startup cache written with the bundle, and goes on quietly without it once a
        // jar no longer matches (the JVM's messages about it would go to standard output).
        assertTrue(json.get("no_startup_cache").isNull(), json.toString());
        assertEquals(Files.size(out.resolve("lib/ropeway.aot")), json.get("startup_cache_bytes").asLong());
        String loading = launch(out, "-Xlog:class+load", "--version");
        assertTrue(Pattern.compile("dev\\.ropeway\\.cli\\.Main source: shared objects file").matcher(loading).find(), loading);
        Files.setLastModifiedTime(out.resolve("lib/ropeway.jar"), FileTime.fromMillis(System.currentTimeMillis() + 5000));
        String stale = launch(out, "-Xlog:class+load", "--version");
        assertFalse(stale.contains("shared objects file"), stale);
        String quiet = launch(out, null, "--version");
        assertEquals(List.of("ropeway " + BuildInfo.current().version(), "Java " + Runtime.version()),
                quiet.lines().map(l -> l.replaceAll(" \\(revision.*", "")).toList(), quiet);

        // The runtime and jars on their own, without the launcher.
        Process p = new ProcessBuilder(out.resolve("runtime/bin/java").toString(), "--add-modules", "jdk.incubator.vector",
                "-cp", out.resolve("lib") + File.separator + "*", "dev.ropeway.cli.Main", "--version")
                .redirectErrorStream(true).start();
        String text = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), text);
        assertTrue(text.contains("ropeway " + BuildInfo.current().version()), text);
        assertTrue(text.contains("Java " + Runtime.version().feature()), text);
    }

    @Test
    void aFolderThatIsNotABundleIsLeftAlone(@TempDir Path tmp) throws Exception {
        assumeTrue(ToolProvider.findFirst("jlink").isPresent(), "this Java runtime has no jlink");
        Files.writeString(tmp.resolve("notes.txt"), "mine");
        CliRunner.Result r = CliRunner.run("dist", "--out", tmp.toString(), "--class-path", packagedClassPath());
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("is not a Ropeway bundle"), r.err());
        assertEquals("mine", Files.readString(tmp.resolve("notes.txt")));
    }

    /** Standard output of the bundle's launcher (standard error goes elsewhere), with these JVM options. */
    private static String launch(Path bundle, String javaOpts, String... args) throws Exception {
        List<String> command = new ArrayList<>(List.of(bundle.resolve("bin/ropeway").toString()));
        command.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(command).redirectError(ProcessBuilder.Redirect.DISCARD);
        if (javaOpts != null) pb.environment().put("ROPEWAY_JAVA_OPTS", javaOpts);
        else pb.environment().remove("ROPEWAY_JAVA_OPTS");
        pb.environment().remove("ROPEWAY_AOT");
        Process p = pb.start();
        String text = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), text);
        return text;
    }

    private static String packagedClassPath() {
        return Arrays.stream(System.getProperty("java.class.path").split(File.pathSeparator))
                .filter(e -> !e.isBlank() && !TEST_ONLY.matcher(e).find())
                .collect(Collectors.joining(File.pathSeparator));
    }
}
