package dev.ropeway;

import java.io.IOException;
import java.io.InputStream;
import java.util.Properties;
import java.util.regex.Pattern;

/**
 * What this build of Ropeway is: its version and the git revision its classes were compiled from (written by the
 * build into {@code dev/ropeway/build.properties}). Either is "unknown" when the build could not tell, e.g. a build
 * outside a git clone or without git installed.
 */
public record BuildInfo(String version, String revision, boolean modified) {
    public static final String UNKNOWN = "unknown";
    private static final Pattern COMMIT = Pattern.compile("[0-9a-f]{40}([0-9a-f]{24})?");
    private static final BuildInfo CURRENT = read();

    public static BuildInfo current() {
        return CURRENT;
    }

    /** The revision with "+modified" when tracked files differed from it at build time. */
    public String describeRevision() {
        return revision.equals(UNKNOWN) ? UNKNOWN : revision + (modified ? "+modified" : "");
    }

    static BuildInfo parse(Properties p, String manifestVersion) {
        String version = p.getProperty("version", "").strip();
        if (version.isEmpty() || version.startsWith("${")) version = manifestVersion == null ? UNKNOWN : manifestVersion;
        String revision = p.getProperty("revision", "").strip();
        if (!COMMIT.matcher(revision).matches()) revision = UNKNOWN;
        boolean modified = !revision.equals(UNKNOWN) && Boolean.parseBoolean(p.getProperty("modified", "false").strip());
        return new BuildInfo(version, revision, modified);
    }

    private static BuildInfo read() {
        Properties p = new Properties();
        try (InputStream in = BuildInfo.class.getResourceAsStream("build.properties")) {
            if (in != null) p.load(in);
        } catch (IOException | IllegalArgumentException e) {
            // An unreadable file says no more than a missing one: the fields fall back to "unknown".
        }
        return parse(p, BuildInfo.class.getPackage().getImplementationVersion());
    }
}
