package dev.ropeway.train.corpus;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/** What {@link CorpusFetcher} needs from the Debian package system; {@link AptArchive} is the real one. */
interface DebianArchive {
    /** A {@code .deb} as the package index describes it. */
    record DebFile(String fileName, long size, String sha256) {}

    /**
     * For each of {@code pkgs}, the versions that can be downloaded, highest first (an empty list when the package
     * is unknown). One call for many packages, since each apt query reads the whole package index.
     */
    Map<String, List<String>> versions(List<String> pkgs);

    /** The file each of {@code pins} would be downloaded as, by package name. */
    Map<String, DebFile> describe(List<Source.Pin> pins);

    /** Downloads {@code pins} into {@code dir}, under the names {@link #describe} gives. */
    void download(List<Source.Pin> pins, Path dir);

    /** Unpacks the files of {@code deb} under {@code dir}, without running any of its scripts. */
    void extract(Path deb, Path dir);

    /**
     * A command that writes the package's files as one tar stream to its standard output, for callers that want a
     * few members of a large package without unpacking all of it.
     */
    List<String> dataTarCommand(Path deb);
}
