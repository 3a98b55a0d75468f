package dev.ropeway.train.corpus;

import dev.ropeway.RopewayException;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * Debian packages through apt's own tools: {@code apt-cache madison} lists versions, {@code apt-get download
 * --print-uris} names the file and its checksum, {@code apt-get download} fetches it into a folder (no root needed)
 * and {@code dpkg-deb -x} unpacks it without installing anything.
 */
final class AptArchive implements DebianArchive {
    static final List<String> REQUIRED = List.of("apt-get", "apt-cache", "dpkg-deb");

    private final Path aptGet, aptCache, dpkgDeb;

    private AptArchive(Path aptGet, Path aptCache, Path dpkgDeb) {
        this.aptGet = aptGet;
        this.aptCache = aptCache;
        this.dpkgDeb = dpkgDeb;
    }

    /** The apt tools on this machine's PATH; fails with advice when this is not a Debian-like system. */
    static AptArchive locate() {
        return locate(System.getenv("PATH"));
    }

    static AptArchive locate(String path) {
        List<String> missing = new ArrayList<>();
        List<Path> found = new ArrayList<>();
        for (String tool : REQUIRED) {
            Optional<Path> p = which(tool, path);
            if (p.isEmpty()) missing.add(tool);
            else found.add(p.get());
        }
        if (!missing.isEmpty())
            throw new RopewayException("`ropeway corpus fetch` downloads pinned Debian packages, but "
                    + String.join(", ", missing) + (missing.size() == 1 ? " is" : " are") + " not on the PATH"
                    + (Files.exists(Path.of("/etc/debian_version")) ? "" : " (this does not look like Debian or a derivative)")
                    + ". On other systems, skip fetching and pass any folder of .txt / .jsonl files as the corpus instead.");
        return new AptArchive(found.get(0), found.get(1), found.get(2));
    }

    /** The executable called {@code tool} on {@code path} (a PATH-style list), if any. */
    static Optional<Path> which(String tool, String path) {
        if (path == null) return Optional.empty();
        for (String dir : path.split(File.pathSeparator)) {
            if (dir.isEmpty()) continue;
            Path candidate = Path.of(dir, tool);
            if (Files.isRegularFile(candidate) && Files.isExecutable(candidate)) return Optional.of(candidate);
        }
        return Optional.empty();
    }

    /** Like {@link #which}, on this process's PATH, failing with a message that says what needs it. */
    static Path require(String tool, String forWhat) {
        return which(tool, System.getenv("PATH")).orElseThrow(() -> new RopewayException(
                forWhat + " needs the program `" + tool + "`, which is not on the PATH (Debian package: "
                        + (tool.equals("xz") ? "xz-utils" : tool) + ")"));
    }

    @Override
    public Map<String, List<String>> versions(List<String> pkgs) {
        // Lines look like " jargon-text | 4.4.7-4.1 | http://deb.debian.org/debian bookworm/main amd64 Packages",
        // highest version first; a version served by several mirrors appears once per mirror.
        List<String> command = new ArrayList<>(List.of(aptCache.toString(), "madison"));
        command.addAll(pkgs);
        String out = Processes.capture(null, command);
        Map<String, Set<String>> found = new LinkedHashMap<>();
        for (String pkg : pkgs) found.put(pkg, new LinkedHashSet<>());
        for (String line : out.split("\n")) {
            String[] cols = line.split("\\|");
            if (cols.length < 3 || cols[2].trim().toLowerCase(Locale.ROOT).endsWith("sources")) continue;
            Set<String> versions = found.get(cols[0].trim());
            if (versions != null) versions.add(cols[1].trim());
        }
        Map<String, List<String>> result = new LinkedHashMap<>();
        found.forEach((pkg, versions) -> result.put(pkg, List.copyOf(versions)));
        return result;
    }

    @Override
    public Map<String, DebFile> describe(List<Source.Pin> pins) {
        // One line per package: 'URI' file-name size SHA256:hex, with file names of the form name_version_arch.deb.
        List<String> command = new ArrayList<>(List.of(aptGet.toString(), "download", "--print-uris"));
        for (Source.Pin pin : pins) command.add(pin.pkg() + "=" + pin.version());
        String out = Processes.capture(null, command);
        Map<String, DebFile> files = new LinkedHashMap<>();
        for (String line : out.split("\n")) {
            String[] f = line.trim().split("\\s+");
            if (f.length < 4 || !f[0].startsWith("'") || !f[3].startsWith("SHA256:")) continue;
            String pkg = f[1].substring(0, Math.max(0, f[1].indexOf('_')));
            try {
                files.put(pkg, new DebFile(f[1], Long.parseLong(f[2]), f[3].substring("SHA256:".length()).toLowerCase(Locale.ROOT)));
            } catch (NumberFormatException e) {
                // Not a download line; the check below reports the package.
            }
        }
        for (Source.Pin pin : pins)
            if (!files.containsKey(pin.pkg()))
                throw new RopewayException("cannot tell where apt would download " + pin.pkg() + "=" + pin.version()
                        + " from: `apt-get download --print-uris` printed " + (out.isBlank() ? "nothing" : out.strip()));
        return files;
    }

    @Override
    public void download(List<Source.Pin> pins, Path dir) {
        List<String> command = new ArrayList<>(List.of(aptGet.toString(), "download"));
        for (Source.Pin pin : pins) command.add(pin.pkg() + "=" + pin.version());
        Processes.capture(dir, command);
    }

    @Override
    public void extract(Path deb, Path dir) {
        Processes.capture(null, List.of(dpkgDeb.toString(), "-x", deb.toString(), dir.toString()));
    }

    @Override
    public List<String> dataTarCommand(Path deb) {
        return List.of(dpkgDeb.toString(), "--fsys-tarfile", deb.toString());
    }
}
