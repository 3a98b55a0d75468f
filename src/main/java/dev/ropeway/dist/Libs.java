package dev.ropeway.dist;

import dev.ropeway.RopewayException;
import org.apache.commons.compress.archivers.zip.ZipArchiveEntry;
import org.apache.commons.compress.archivers.zip.ZipArchiveOutputStream;
import org.apache.commons.compress.archivers.zip.ZipFile;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Enumeration;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.jar.Attributes;
import java.util.jar.JarEntry;
import java.util.jar.JarOutputStream;
import java.util.jar.Manifest;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/** Fills a bundle's {@code lib/}: the jars as they are, less what this platform's runtime never loads. */
final class Libs {
    /** Folders of platform-specific files, in the names DJL, JavaCPP and JNA use (linux-x86_64, win32-x86-64, ...). */
    private static final Pattern PLATFORM = Pattern.compile(
            "(linux|osx|macosx|darwin|win|win32|windows|android|ios|freebsd|openbsd|dragonflybsd|sunos|aix)"
                    + "-(x86[_-]64|x86|amd64|i386|aarch64|arm64|arm|armel|armhf|ppc|ppc64|ppc64le|riscv64|s390x|sparc|sparcv9|mips64el|loongarch64)");
    /** JavaCPP's JNI bindings and the C headers of OpenBLAS: Ropeway calls libopenblas itself, through FFM. */
    private static final Pattern OPENBLAS_UNUSED = Pattern.compile(
            "org/bytedeco/openblas/[^/]+/(libjniopenblas[^/]*\\.so|include/.*|lib/(cmake|pkgconfig)/.*)");

    /** What was written: the jar names and the bytes left out of them. */
    record Copied(List<String> jars, long droppedBytes) {}

    private Libs() {}

    static Copied copy(List<Path> classPath, Path lib) throws IOException {
        Files.createDirectories(lib);
        Set<String> names = new HashSet<>();
        long dropped = 0;
        for (Path entry : classPath) {
            String name = Files.isDirectory(entry) ? classFolderJarName(entry) : entry.getFileName().toString();
            if (!names.add(name)) throw new RopewayException("two class path entries would both be lib/" + name + ": " + classPath);
            Path target = lib.resolve(name);
            if (Files.isDirectory(entry)) {
                packClassFolder(entry, target);
            } else {
                dropped += copyJar(entry, target);
            }
        }
        return new Copied(names.stream().sorted().toList(), dropped);
    }

    /** The platform folder name of this runtime, in DJL's and JavaCPP's form (linux-x86_64). */
    static String platform() {
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "").toLowerCase(Locale.ROOT);
        os = os.contains("linux") ? "linux" : os.contains("mac") ? "osx" : os.contains("win") ? "win" : os;
        arch = arch.equals("amd64") ? "x86_64" : arch;
        return os + "-" + arch;
    }

    /** Whether a jar entry is of no use beside a runtime for {@code platform}. */
    static boolean unused(String entry, String platform) {
        if (OPENBLAS_UNUSED.matcher(entry).matches()) return true;
        for (String segment : entry.split("/")) {
            if (PLATFORM.matcher(segment).matches()) return !sameName(segment, platform);
        }
        return false;
    }

    /** One spelling for the names the libraries use for the same platform (x86-64 and x86_64, darwin and osx, ...). */
    private static boolean sameName(String folder, String platform) {
        return canonical(folder).equals(canonical(platform));
    }

    private static String canonical(String platform) {
        String[] p = platform.toLowerCase(Locale.ROOT).replace('_', '-').split("-", 2);
        String os = switch (p[0]) {
            case "darwin", "macosx" -> "osx";
            case "win32", "windows" -> "win";
            default -> p[0];
        };
        String arch = switch (p[1]) {
            case "x86-64", "amd64" -> "x86-64";
            case "arm64" -> "aarch64";
            default -> p[1];
        };
        return os + "-" + arch;
    }

    /** Copies {@code jar}, leaving out unused entries (copied compressed, so fast); returns the bytes left out. */
    private static long copyJar(Path jar, Path target) throws IOException {
        String platform = platform();
        long dropped = 0;
        try (ZipFile in = ZipFile.builder().setPath(jar).get()) {
            boolean trims = false;
            for (Enumeration<ZipArchiveEntry> e = in.getEntries(); e.hasMoreElements(); ) {
                if (unused(e.nextElement().getName(), platform)) trims = true;
            }
            if (!trims) {
                Files.copy(jar, target);
                return 0;
            }
            try (ZipArchiveOutputStream out = new ZipArchiveOutputStream(target)) {
                for (Enumeration<ZipArchiveEntry> e = in.getEntriesInPhysicalOrder(); e.hasMoreElements(); ) {
                    ZipArchiveEntry entry = e.nextElement();
                    if (unused(entry.getName(), platform)) {
                        dropped += Math.max(0, entry.getCompressedSize());
                    } else {
                        out.addRawArchiveEntry(entry, in.getRawInputStream(entry));
                    }
                }
            }
        }
        return dropped;
    }

    /** Ropeway's own class folder (a build without its jar) goes in as ropeway.jar; no other folder belongs in a bundle. */
    private static String classFolderJarName(Path dir) {
        if (!Files.isRegularFile(dir.resolve("dev/ropeway/cli/Main.class"))) {
            throw new RopewayException("class path folder " + dir + " is not Ropeway's classes; only jars and that folder can be bundled");
        }
        return "ropeway.jar";
    }

    private static void packClassFolder(Path dir, Path target) throws IOException {
        Manifest manifest = new Manifest();
        manifest.getMainAttributes().put(Attributes.Name.MANIFEST_VERSION, "1.0");
        manifest.getMainAttributes().put(Attributes.Name.MAIN_CLASS, "dev.ropeway.cli.Main");
        List<Path> files;
        try (Stream<Path> walk = Files.walk(dir)) {
            files = walk.filter(Files::isRegularFile).sorted().toList();
        }
        try (OutputStream file = Files.newOutputStream(target); JarOutputStream jar = new JarOutputStream(file, manifest)) {
            for (Path f : files) {
                jar.putNextEntry(new JarEntry(dir.relativize(f).toString().replace('\\', '/')));
                Files.copy(f, jar);
                jar.closeEntry();
            }
        }
    }
}
