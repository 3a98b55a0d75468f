package dev.ropeway.dist;

import dev.ropeway.RopewayException;

import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.jar.Attributes;
import java.util.jar.JarFile;

/** The jars (or Ropeway's class folder) a bundle is made of. */
public final class AppClassPath {
    private AppClassPath() {}

    /**
     * Those of the running Ropeway. From its jar, the jar and the jars its manifest lists: exactly the build's
     * dependencies, where {@code target/lib} may still hold jars of older builds. From a class folder (an IDE, the
     * tests), the JVM's class path.
     */
    public static List<Path> running() {
        Path self;
        try {
            self = Path.of(AppClassPath.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        } catch (URISyntaxException | NullPointerException e) {
            throw new IllegalStateException("cannot tell where Ropeway's classes were loaded from", e);
        }
        return Files.isRegularFile(self) ? withManifestClassPath(self) : parse(System.getProperty("java.class.path"));
    }

    /** A class path in the platform's form ({@code a.jar:b.jar:classes}); every entry must exist. */
    public static List<Path> parse(String classPath) {
        List<Path> entries = new ArrayList<>();
        for (String s : classPath.split(File.pathSeparator)) {
            if (s.isBlank()) continue;
            Path p = Path.of(s);
            if (!Files.exists(p)) throw new RopewayException("class path entry " + s + " does not exist");
            entries.add(p);
        }
        if (entries.isEmpty()) throw new RopewayException("the class path to bundle is empty");
        return entries;
    }

    static List<Path> withManifestClassPath(Path jar) {
        List<Path> entries = new ArrayList<>(List.of(jar));
        try (JarFile f = new JarFile(jar.toFile())) {
            String listed = f.getManifest() == null ? null : f.getManifest().getMainAttributes().getValue(Attributes.Name.CLASS_PATH);
            if (listed == null) return entries;
            for (String name : Arrays.stream(listed.trim().split("\\s+")).filter(s -> !s.isEmpty()).toList()) {
                Path dep = jar.resolveSibling(name);
                if (!Files.isRegularFile(dep)) {
                    throw new RopewayException(dep + ", which " + jar + " lists in its manifest, is missing; rebuild"
                            + " with `mvn -DskipTests package` (bin/ropeway does it when the sources change)");
                }
                entries.add(dep);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + jar, e);
        }
        return entries;
    }
}
