package dev.ropeway.tensor;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.SymbolLookup;
import java.net.URL;
import java.net.URLConnection;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Properties;

/**
 * Finds and loads libopenblas, in this order:
 * <ol>
 *   <li>the file named by the environment variable {@code ROPEWAY_OPENBLAS} (no fallback when it is set);</li>
 *   <li>the copy inside the {@code org.bytedeco:openblas} jar on the class path, extracted once to
 *       {@code $ROPEWAY_CACHE/native/openblas-<version>/} (default {@code ~/.cache/ropeway/native/...});</li>
 *   <li>the system {@code libopenblas.so.0}, then {@code libopenblas.so}.</li>
 * </ol>
 * The jar's libopenblas finds its companions (libgfortran, libquadmath, libgcc_s) through its RUNPATH
 * {@code $ORIGIN}, so all four files are extracted side by side.
 */
@SuppressWarnings("restricted") // native access is this class's job; the JVM runs with --enable-native-access
final class OpenBlasLoader {
    static final String ENV_LIBRARY = "ROPEWAY_OPENBLAS";
    static final String ENV_CACHE = dev.ropeway.io.UserCache.ENV;
    static final String DEFAULT_VERSION = "0.3.31-1.5.13";
    private static final String[] JAR_FILES = {"libopenblas.so.0", "libgfortran.so.5", "libquadmath.so.0", "libgcc_s.so.1"};
    private static final String[] SYSTEM_NAMES = {"libopenblas.so.0", "libopenblas.so"};

    /** The loaded library and a line saying where it came from. */
    record Loaded(SymbolLookup lookup, String source) {}

    private OpenBlasLoader() {}

    static Loaded load() {
        CoreType.preferAvx512Kernels();
        List<String> tried = new ArrayList<>();
        String override = System.getenv(ENV_LIBRARY);
        if (override != null && !override.isBlank()) {
            try {
                return new Loaded(SymbolLookup.libraryLookup(Path.of(override), Arena.global()), override + " (from $" + ENV_LIBRARY + ")");
            } catch (RuntimeException e) {
                throw new UnsatisfiedLinkError("OpenBLAS: $" + ENV_LIBRARY + "=" + override + " could not be loaded: " + e.getMessage());
            }
        }
        String platform = platform();
        if (platform == null) {
            tried.add("bundled jar: no build for os.name=" + System.getProperty("os.name") + " os.arch=" + System.getProperty("os.arch"));
        } else {
            String prefix = "org/bytedeco/openblas/" + platform + "/";
            URL main = OpenBlasLoader.class.getClassLoader().getResource(prefix + JAR_FILES[0]);
            if (main == null) {
                tried.add("bundled jar: resource " + prefix + JAR_FILES[0] + " not on the class path");
            } else {
                Path dir = cacheRoot().resolve("native").resolve("openblas-" + bundledVersion());
                try {
                    extract(prefix, dir);
                    Path lib = dir.resolve(JAR_FILES[0]);
                    return new Loaded(SymbolLookup.libraryLookup(lib, Arena.global()), lib + " (extracted from the org.bytedeco:openblas jar)");
                } catch (IOException | RuntimeException e) {
                    tried.add("bundled jar extracted to " + dir + ": " + e);
                }
            }
        }
        for (String name : SYSTEM_NAMES) {
            try {
                return new Loaded(SymbolLookup.libraryLookup(name, Arena.global()), name + " (system library)");
            } catch (RuntimeException e) {
                tried.add("system " + name + ": " + e.getMessage());
            }
        }
        throw new UnsatisfiedLinkError("OpenBLAS could not be loaded. Tried: " + String.join("; ", tried)
                + ". Set $" + ENV_LIBRARY + " to a libopenblas.so, or put org.bytedeco:openblas:" + DEFAULT_VERSION
                + ":" + (platform == null ? "linux-x86_64" : platform) + " on the class path.");
    }

    /** The bytedeco platform folder name, or null where there is no known build. */
    static String platform() {
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "").toLowerCase(Locale.ROOT);
        if (!os.contains("linux")) return null;
        return switch (arch) {
            case "amd64", "x86_64" -> "linux-x86_64";
            case "aarch64", "arm64" -> "linux-arm64";
            default -> null;
        };
    }

    static Path cacheRoot() {
        return dev.ropeway.io.UserCache.root();
    }

    /** The version in the jar's Maven metadata, so a new jar gets a new folder. */
    private static String bundledVersion() {
        URL props = OpenBlasLoader.class.getClassLoader().getResource("META-INF/maven/org.bytedeco/openblas/pom.properties");
        if (props == null) return DEFAULT_VERSION;
        try (InputStream in = props.openStream()) {
            Properties p = new Properties();
            p.load(in);
            String v = p.getProperty("version");
            return v == null || !v.matches("[A-Za-z0-9._-]+") ? DEFAULT_VERSION : v;
        } catch (IOException e) {
            return DEFAULT_VERSION;
        }
    }

    /**
     * Copies each library out of the jar unless a file of the same size is already there. Each file is written to a
     * temporary name and renamed into place, so a JVM starting alongside never sees a half-written library.
     */
    static void extract(String prefix, Path dir) throws IOException {
        Files.createDirectories(dir);
        for (String name : JAR_FILES) {
            URL url = OpenBlasLoader.class.getClassLoader().getResource(prefix + name);
            if (url == null) {
                if (name.equals(JAR_FILES[0])) throw new IOException("resource " + prefix + name + " vanished");
                continue;   // a companion the build does not ship; the dynamic linker will look elsewhere
            }
            URLConnection conn = url.openConnection();
            conn.setUseCaches(false);
            long expected = conn.getContentLengthLong();
            Path target = dir.resolve(name);
            if (expected >= 0 && Files.isRegularFile(target) && Files.size(target) == expected) continue;
            Path tmp = Files.createTempFile(dir, name, ".part");
            try {
                try (InputStream in = conn.getInputStream()) {
                    Files.copy(in, tmp, StandardCopyOption.REPLACE_EXISTING);
                }
                if (expected >= 0 && Files.size(tmp) != expected)
                    throw new IOException("short copy of " + name + ": " + Files.size(tmp) + " of " + expected + " bytes");
                Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } finally {
                Files.deleteIfExists(tmp);
            }
        }
    }
}
