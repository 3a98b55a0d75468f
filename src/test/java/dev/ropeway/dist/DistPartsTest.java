package dev.ropeway.dist;

import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveInputStream;
import org.apache.commons.compress.compressors.gzip.GzipCompressorInputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class DistPartsTest {

    @Test
    void theLauncherPassesTheFlagsOfJdkSh() throws IOException {
        Matcher m = Pattern.compile("ROPEWAY_JVM_FLAGS=\\(([^)]*)\\)").matcher(Files.readString(Path.of("bin/jdk.sh")));
        assertTrue(m.find(), "bin/jdk.sh sets ROPEWAY_JVM_FLAGS");
        String launcher;
        try (InputStream in = Bundle.class.getResourceAsStream("ropeway.sh")) {
            launcher = new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        for (String flag : m.group(1).trim().split("\\s+")) assertTrue(launcher.contains(flag), flag);
        assertTrue(launcher.contains("avx512f") && launcher.contains("-XX:UseAVX=3"));
        assertTrue(launcher.startsWith("#!/bin/sh\n"));
    }

    @Test
    void onlyThisPlatformsNativeLibrariesAreKept() {
        String here = "linux-x86_64";
        assertFalse(Libs.unused("native/lib/linux-x86_64/cpu/libtokenizers.so", here));
        assertTrue(Libs.unused("native/lib/osx-aarch64/cpu/libtokenizers.dylib", here));
        assertTrue(Libs.unused("native/lib/win-x86_64/cpu/tokenizers.dll", here));
        assertFalse(Libs.unused("com/sun/jna/linux-x86-64/libjnidispatch.so", here), "JNA's spelling of the same platform");
        assertTrue(Libs.unused("com/sun/jna/darwin-aarch64/libjnidispatch.jnilib", here));
        assertTrue(Libs.unused("com/sun/jna/sunos-sparc/libjnidispatch.so", here));
        assertFalse(Libs.unused("org/bytedeco/openblas/linux-x86_64/libopenblas.so.0", here));
        assertFalse(Libs.unused("org/bytedeco/openblas/linux-x86_64/libgfortran.so.5", here));
        assertTrue(Libs.unused("org/bytedeco/openblas/linux-x86_64/libjniopenblas_full.so", here), "JavaCPP's bindings");
        assertTrue(Libs.unused("org/bytedeco/openblas/linux-x86_64/include/cblas.h", here));
        assertFalse(Libs.unused("com/google/common/collect/ImmutableList.class", here));
        assertFalse(Libs.unused("native/lib/linux-aarch64/cpu/libtokenizers.so", "linux-aarch64"));
        assertFalse(Libs.unused("org/bytedeco/openblas/linux-arm64/libopenblas.so.0", "linux-aarch64"), "JavaCPP says arm64");
    }

    @Test
    void theArchiveUnpacksToOneFolderWithExecutablesAndLinks(@TempDir Path tmp) throws IOException {
        Path dir = tmp.resolve("ropeway");
        Files.createDirectories(dir.resolve("bin"));
        Files.createDirectories(dir.resolve("legal/a"));
        Files.writeString(dir.resolve("bin/ropeway"), "#!/bin/sh\n");
        Files.setPosixFilePermissions(dir.resolve("bin/ropeway"), PosixFilePermissions.fromString("r-xr-xr-x"));
        Files.writeString(dir.resolve("legal/LICENSE"), "text");
        Files.setPosixFilePermissions(dir.resolve("legal/LICENSE"), PosixFilePermissions.fromString("r--r--r--"));
        Files.createSymbolicLink(dir.resolve("legal/a/LICENSE"), Path.of("../LICENSE"));
        Path tgz = Bundle.archiveOf(dir);
        TarGz.write(dir, tgz);
        Map<String, TarArchiveEntry> entries = new HashMap<>();
        try (TarArchiveInputStream in = new TarArchiveInputStream(new GzipCompressorInputStream(Files.newInputStream(tgz)))) {
            for (TarArchiveEntry e; (e = in.getNextEntry()) != null; ) entries.put(e.getName(), e);
        }
        assertTrue(entries.keySet().stream().allMatch(n -> n.startsWith("ropeway")), entries.keySet().toString());
        assertEquals(0755, entries.get("ropeway/bin/ropeway").getMode() & 0777);
        assertEquals(0644, entries.get("ropeway/legal/LICENSE").getMode() & 0777);
        assertEquals(4, entries.get("ropeway/legal/LICENSE").getSize());
        assertTrue(entries.get("ropeway/legal/a/LICENSE").isSymbolicLink());
        assertEquals("../LICENSE", entries.get("ropeway/legal/a/LICENSE").getLinkName());
        assertTrue(entries.get("ropeway/bin/").isDirectory());
        assertFalse(Files.exists(tgz.resolveSibling("ropeway.tar.gz.part")));
    }

    @Test
    void withoutJlinkTheErrorSaysWhatToDo(@TempDir Path tmp) throws IOException {
        Path bundle = tmp.resolve("ropeway");
        Files.createDirectories(bundle.resolve("runtime"));
        Files.createDirectories(bundle.resolve("bin"));
        Files.writeString(bundle.resolve("bin/ropeway"), "#!/bin/sh\n");
        String inBundle = Jlink.unavailable(bundle.resolve("runtime"));
        assertTrue(inBundle.contains("already a self-contained Ropeway (" + bundle + ")"), inBundle);
        String jre = Jlink.unavailable(tmp.resolve("jre"));
        assertTrue(jre.contains("jlink is not available") && jre.contains("JDK 25") && jre.contains("JAVA_HOME"), jre);
    }

    @Test
    void theModuleListComesFromTheRuntimesReleaseFile(@TempDir Path tmp) throws IOException {
        Files.writeString(tmp.resolve("release"), "JAVA_VERSION=\"25\"\nMODULES=\"java.base java.xml jdk.httpserver\"\n");
        assertEquals(List.of("java.base", "java.xml", "jdk.httpserver"), Bundle.runtimeModules(tmp));
        assertTrue(Arrays.asList(Jlink.OPTIONS.toArray()).contains("--compress=zip-9"));
    }
}
