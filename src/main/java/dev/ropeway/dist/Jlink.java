package dev.ropeway.dist;

import dev.ropeway.RopewayException;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.spi.ToolProvider;

/** Links a bundle's Java runtime with the running JDK's jlink, called in-process. */
public final class Jlink {
    /**
     * The modules Ropeway needs, from jdeps over its jar and the jars it ships with (java.desktop brings java.xml,
     * java.prefs and java.datatransfer). Left out: java.sql (Jackson and Gson use it only for java.sql dates),
     * java.management and java.compiler (DJL's training and CUDA helpers), javassist's agent modules (Jinjava never
     * redefines classes).
     */
    public static final List<String> MODULES = List.of(
            "java.base",
            "jdk.incubator.vector",  // the Vector API kernels
            "java.desktop",          // XChart draws the report charts with AWT (headless)
            "java.logging",          // Guava, JNA and PDFBox log through java.util.logging
            "jdk.httpserver",        // ropeway serve
            "jdk.unsupported");      // sun.misc.Unsafe, used by Guava and JNA

    /** Size over speed: the runtime is copied to other machines, and zip-9 costs nothing measurable at startup. */
    static final List<String> OPTIONS = List.of("--strip-debug", "--no-header-files", "--no-man-pages", "--compress=zip-9");

    private Jlink() {}

    /** The running JDK's jlink; without one, an error that says why and what to do. */
    public static ToolProvider require() {
        return ToolProvider.findFirst("jlink")
                .orElseThrow(() -> new RopewayException(unavailable(Path.of(System.getProperty("java.home")))));
    }

    /** Writes the runtime image to {@code output}, which must not exist. */
    static void link(Path output) {
        ToolProvider jlink = require();
        List<String> args = new ArrayList<>(List.of("--add-modules", String.join(",", MODULES), "--output", output.toString()));
        args.addAll(OPTIONS);
        StringWriter log = new StringWriter();
        PrintWriter w = new PrintWriter(log, true);
        int code = jlink.run(w, w, args.toArray(String[]::new));
        if (code != 0) {
            throw new RopewayException("jlink failed (exit " + code + "): " + log.toString().strip()
                    + "\n  This JDK may be unable to link from its own run-time image; use a JDK 25 that ships its jmods"
                    + " folder (e.g. Debian's openjdk-25-jmods) or one built to link without it (Eclipse Temurin 25).");
        }
    }

    /** Why there is no jlink here, and what to do, for the Java home {@code javaHome}. */
    static String unavailable(Path javaHome) {
        Optional<Path> bundle = bundleOf(javaHome);
        if (bundle.isPresent()) {
            return "this is already a self-contained Ropeway (" + bundle.get() + "): its runtime has no jlink, so it"
                    + " cannot make another one. Copy this folder as it is, or run `bin/ropeway dist` in a Ropeway"
                    + " checkout with a JDK 25.";
        }
        return "jlink is not available in the Java runtime at " + javaHome + " (a JRE, or a JDK without the jdk.jlink"
                + " module). `ropeway dist` needs a full JDK 25, e.g. Eclipse Temurin 25: set JAVA_HOME (or"
                + " ROPEWAY_JAVA_HOME) to it and run `bin/ropeway dist` again.";
    }

    /** The bundle whose runtime is {@code javaHome}, if it is one: {@code <bundle>/runtime} beside {@code <bundle>/bin/ropeway}. */
    static Optional<Path> bundleOf(Path javaHome) {
        Path home = javaHome.toAbsolutePath().normalize();
        boolean inBundle = home.getFileName() != null && home.getFileName().toString().equals(Bundle.RUNTIME)
                && Files.isRegularFile(home.resolveSibling(Bundle.LAUNCHER));
        return inBundle ? Optional.of(home.getParent()) : Optional.empty();
    }
}
