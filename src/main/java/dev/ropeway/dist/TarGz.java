package dev.ropeway.dist;

import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.apache.commons.compress.archivers.tar.TarConstants;
import org.apache.commons.compress.compressors.gzip.GzipCompressorOutputStream;
import org.apache.commons.compress.compressors.gzip.GzipParameters;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermission;
import java.util.List;
import java.util.stream.Stream;

/** Packs a folder into a .tar.gz that unpacks to one folder of the same name, keeping executables and links. */
final class TarGz {
    private TarGz() {}

    static void write(Path dir, Path archive) throws IOException {
        Path part = archive.resolveSibling(archive.getFileName() + ".part");
        String top = dir.getFileName().toString();
        List<Path> paths;
        try (Stream<Path> walk = Files.walk(dir)) {
            paths = walk.sorted().toList();   // parents before children, and the same order on every run
        }
        GzipParameters gzip = new GzipParameters();
        gzip.setCompressionLevel(9);
        try (OutputStream file = new BufferedOutputStream(Files.newOutputStream(part), 1 << 16);
             TarArchiveOutputStream tar = new TarArchiveOutputStream(new GzipCompressorOutputStream(file, gzip))) {
            tar.setLongFileMode(TarArchiveOutputStream.LONGFILE_POSIX);
            tar.setBigNumberMode(TarArchiveOutputStream.BIGNUMBER_POSIX);
            for (Path p : paths) {
                String name = p.equals(dir) ? top : top + "/" + dir.relativize(p).toString().replace('\\', '/');
                TarArchiveEntry entry;
                boolean regular = false;
                if (Files.isSymbolicLink(p)) {
                    // jlink links the runtime's legal notices to java.base's copies.
                    entry = new TarArchiveEntry(name, TarConstants.LF_SYMLINK);
                    entry.setLinkName(Files.readSymbolicLink(p).toString().replace('\\', '/'));
                } else if (Files.isDirectory(p)) {
                    entry = new TarArchiveEntry(name + "/");
                    entry.setMode(TarArchiveEntry.DEFAULT_DIR_MODE);
                } else {
                    entry = new TarArchiveEntry(name);
                    regular = true;
                    entry.setSize(Files.size(p));
                    // Read-write for the owner whatever jlink wrote, so an unpacked bundle can be replaced or deleted.
                    entry.setMode(executable(p) ? 0100755 : 0100644);
                }
                entry.setModTime(Files.getLastModifiedTime(p, LinkOption.NOFOLLOW_LINKS));
                tar.putArchiveEntry(entry);
                if (regular) Files.copy(p, tar);
                tar.closeArchiveEntry();
            }
            tar.finish();
        }
        Files.move(part, archive, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    private static boolean executable(Path p) throws IOException {
        try {
            return Files.getPosixFilePermissions(p).contains(PosixFilePermission.OWNER_EXECUTE);
        } catch (UnsupportedOperationException e) {
            return Files.isExecutable(p);
        }
    }
}
