package dev.ropeway.cli;

import dev.ropeway.BuildInfo;
import picocli.CommandLine;

/** Reports the version and git revision recorded at build time ("unknown" when the build could not tell). */
final class Version implements CommandLine.IVersionProvider {
    static String current() {
        return BuildInfo.current().version();
    }

    @Override
    public String[] getVersion() {
        BuildInfo b = BuildInfo.current();
        return new String[]{"ropeway " + b.version() + " (revision " + b.describeRevision() + ")", "Java " + Runtime.version()};
    }
}
