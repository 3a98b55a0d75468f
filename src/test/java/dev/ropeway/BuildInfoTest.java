package dev.ropeway;

import org.junit.jupiter.api.Test;

import java.util.Properties;

import static org.junit.jupiter.api.Assertions.assertEquals;

class BuildInfoTest {

    private static Properties props(String version, String revision, String modified) {
        Properties p = new Properties();
        if (version != null) p.setProperty("version", version);
        if (revision != null) p.setProperty("revision", revision);
        if (modified != null) p.setProperty("modified", modified);
        return p;
    }

    @Test
    void readsTheRevisionAndFallsBackToUnknown() {
        String rev = "9b00497027e9c9aed309b302223a75d3d2cadf1a";
        BuildInfo clean = BuildInfo.parse(props("1.2.0", rev, "false"), null);
        assertEquals(new BuildInfo("1.2.0", rev, false), clean);
        assertEquals(rev, clean.describeRevision());
        assertEquals(rev + "+modified", BuildInfo.parse(props("1.2.0", rev, "true"), null).describeRevision());
        // No git at build time: an empty revision, and "modified" means nothing then.
        BuildInfo none = BuildInfo.parse(props("1.2.0", "", "true"), null);
        assertEquals("unknown", none.describeRevision());
        // git printing an error instead of a commit.
        assertEquals("unknown", BuildInfo.parse(props("1.2.0", "fatal: not a git repository", "false"), null).revision());
        // No properties file at all: the manifest's version, if any.
        assertEquals(new BuildInfo("0.9", "unknown", false), BuildInfo.parse(new Properties(), "0.9"));
        assertEquals("unknown", BuildInfo.parse(props("${project.version}", null, null), null).version());
    }
}
