package dev.ropeway.dist;

import dev.ropeway.io.FileTrees;
import dev.ropeway.BuildInfo;
import dev.ropeway.RopewayException;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.stream.Stream;

/**
 * A self-contained Ropeway: {@code runtime/} (a Java runtime linked with only the modules Ropeway uses),
 * {@code lib/} (its jars), {@code bin/ropeway} (a launcher) and {@code README.txt}. It runs on machines of this one's
 * OS and CPU architecture that have no JDK.
 */
public final class Bundle {
    static final String RUNTIME = "runtime";
    static final String LAUNCHER = "bin/ropeway";
    static final String README = "README.txt";

    /**
     * What was built; sizes in bytes (lib's without the startup cache), archive null (and 0 bytes) unless asked for;
     * no startup cache (0 bytes) when {@code noStartupCache} says why.
     */
    public record Result(Path out, Path archive, List<String> modules, List<String> jars, long runtimeBytes,
                         long libBytes, long droppedBytes, long totalBytes, long archiveBytes, List<String> checked,
                         long startupCacheBytes, String noStartupCache) {}

    private Bundle() {}

    /** {@code <out>.tar.gz}, beside the folder. */
    public static Path archiveOf(Path out) {
        Path dir = out.toAbsolutePath().normalize();
        return dir.resolveSibling(dir.getFileName() + ".tar.gz");
    }

    /**
     * Builds the bundle in {@code out} (replacing an earlier bundle there), with its startup cache if asked, checks it
     * runs, and packs it if asked.
     */
    public static Result build(Path out, List<Path> classPath, boolean archive, boolean startupCache,
                               Consumer<String> progress) {
        Path dir = out.toAbsolutePath().normalize();
        Jlink.require();   // before anything is deleted: without jlink there is nothing to build with
        try {
            prepare(dir, classPath);
            progress.accept("linking the runtime (" + String.join(", ", Jlink.MODULES) + ")...");
            Jlink.link(dir.resolve(RUNTIME));
            progress.accept("copying " + classPath.size() + " class path entries to lib/...");
            Libs.Copied libs = Libs.copy(classPath, dir.resolve("lib"));
            List<String> modules = runtimeModules(dir.resolve(RUNTIME));
            writeLauncher(dir, libs.jars());
            writeReadme(dir, modules, libs.jars().size());
            String noCache = "left out (--no-startup-cache)";
            if (startupCache) {
                progress.accept("writing the JVM's startup cache (" + StartupCache.FILE + ") from a short run...");
                noCache = StartupCache.write(dir);
                if (noCache != null) progress.accept("no startup cache, the bundle will only start slower: " + noCache);
            }
            progress.accept("checking the bundle on its own runtime...");
            List<String> checked = BundleCheck.run(dir);
            Path tgz = archiveOf(dir);
            if (archive) {
                progress.accept("writing " + tgz + "...");
                TarGz.write(dir, tgz);
            } else if (Files.deleteIfExists(tgz)) {
                progress.accept("removed " + tgz + ", which held an earlier bundle");
            }
            long cache = noCache == null ? Files.size(dir.resolve(StartupCache.FILE)) : 0;
            long runtime = size(dir.resolve(RUNTIME)), lib = size(dir.resolve("lib")) - cache;
            return new Result(dir, archive ? tgz : null, modules, libs.jars(), runtime, lib, libs.droppedBytes(),
                    size(dir), archive ? Files.size(tgz) : 0, checked,
                    cache, noCache);
        } catch (IOException e) {
            throw new RopewayException("cannot build the bundle in " + dir + ": " + e, e);
        }
    }

    /** An empty or missing folder, or an earlier bundle, which is deleted; anything else is left alone and refused. */
    private static void prepare(Path dir, List<Path> classPath) throws IOException {
        Path javaHome = Path.of(System.getProperty("java.home")).toAbsolutePath().normalize();
        for (Path p : Stream.concat(Stream.of(javaHome), classPath.stream().map(c -> c.toAbsolutePath().normalize())).toList()) {
            if (p.startsWith(dir)) throw new RopewayException("--out " + dir + " holds " + p + ", which this build reads; choose another folder");
        }
        if (Files.isDirectory(dir)) {
            boolean empty;
            try (Stream<Path> s = Files.list(dir)) {
                empty = s.findAny().isEmpty();
            }
            boolean bundle = Files.isRegularFile(dir.resolve(README)) && Files.isDirectory(dir.resolve(RUNTIME))
                    && Files.isRegularFile(dir.resolve(LAUNCHER));
            if (!empty && !bundle) {
                throw new RopewayException(dir + " exists and is not a Ropeway bundle; choose another --out or remove it");
            }
            FileTrees.delete(dir);
        } else if (Files.exists(dir)) {
            throw new RopewayException(dir + " exists and is not a folder");
        }
        Files.createDirectories(dir);
    }

    /** The launcher, with the jars named in a fixed order (Ropeway's first): the startup cache is made for that one. */
    private static void writeLauncher(Path dir, List<String> jars) throws IOException {
        Path launcher = dir.resolve(LAUNCHER);
        Files.createDirectories(launcher.getParent());
        List<String> ordered = Stream.concat(jars.stream().filter("ropeway.jar"::equals),
                jars.stream().filter(j -> !j.equals("ropeway.jar"))).toList();
        for (String j : ordered) {
            if (!j.matches("[A-Za-z0-9._+-]+")) throw new RopewayException("jar name " + j + " cannot go in the launcher's class path");
        }
        Files.writeString(launcher, resource("ropeway.sh").replace("{classpath}", String.join(" ", ordered)));
        try {
            Files.setPosixFilePermissions(launcher, PosixFilePermissions.fromString("rwxr-xr-x"));
        } catch (UnsupportedOperationException e) {
            launcher.toFile().setExecutable(true, false);
        }
    }

    private static void writeReadme(Path dir, List<String> modules, int jars) throws IOException {
        BuildInfo build = BuildInfo.current();
        String text = resource("README.txt");
        for (Map.Entry<String, String> e : Map.of("version", build.version(), "revision", build.describeRevision(),
                "platform", Libs.platform(), "java", Runtime.version().toString(), "modules", String.join(", ", modules),
                "jars", Integer.toString(jars)).entrySet()) {
            text = text.replace("{" + e.getKey() + "}", e.getValue());
        }
        Files.writeString(dir.resolve(README), text);
    }

    /** The modules jlink put in, required ones included, as its {@code release} file lists them. */
    static List<String> runtimeModules(Path runtime) throws IOException {
        for (String line : Files.readAllLines(runtime.resolve("release"))) {
            if (line.startsWith("MODULES=")) {
                return Arrays.stream(line.substring("MODULES=".length()).replace("\"", "").trim().split("\\s+")).sorted().toList();
            }
        }
        return List.of();
    }

    private static String resource(String name) throws IOException {
        try (InputStream in = Bundle.class.getResourceAsStream(name)) {
            if (in == null) throw new IllegalStateException("resource " + name + " missing from the build");
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    /** Bytes of the regular files under {@code dir}, links not followed. */
    static long size(Path dir) throws IOException {
        try (Stream<Path> walk = Files.walk(dir)) {
            long total = 0;
            for (Path p : walk.filter(p -> Files.isRegularFile(p, LinkOption.NOFOLLOW_LINKS)).toList()) total += Files.size(p);
            return total;
        }
    }

}
