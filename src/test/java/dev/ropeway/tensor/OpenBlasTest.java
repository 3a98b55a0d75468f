package dev.ropeway.tensor;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

class OpenBlasTest {
    @Test
    void loadsAndDescribesItself() {
        OpenBlas.ensureLoaded();
        assertTrue(OpenBlas.config().startsWith("OpenBLAS 0.3"), OpenBlas.config());
        assertTrue(!OpenBlas.coreName().isBlank());
        assertTrue(OpenBlas.source().contains("libopenblas"), OpenBlas.source());
    }

    /** openblas_set_num_threads_local sets the process-wide count in this build; it is not per thread. */
    @Test
    void setThreadsLocalIsGlobalAndReturnsThePreviousCount() throws Exception {
        OpenBlas.setThreads(1);
        try {
            assertEquals(1, OpenBlas.setThreadsLocal(2));
            AtomicInteger seen = new AtomicInteger();
            Thread other = new Thread(() -> seen.set(OpenBlas.threads()));
            other.start();
            other.join();
            assertEquals(2, seen.get(), "another thread sees the count");
            assertEquals(2, OpenBlas.setThreadsLocal(1));
        } finally {
            OpenBlas.setThreads(1);
        }
    }

    @Test
    void extractionWritesEveryLibraryOnceAndRepairsATruncatedOne(@TempDir Path dir) throws Exception {
        String prefix = "org/bytedeco/openblas/" + OpenBlasLoader.platform() + "/";
        OpenBlasLoader.extract(prefix, dir);
        List<String> names = List.of("libopenblas.so.0", "libgfortran.so.5", "libquadmath.so.0", "libgcc_s.so.1");
        for (String name : names) {
            long expected = OpenBlasLoader.class.getClassLoader().getResource(prefix + name).openConnection().getContentLengthLong();
            assertEquals(expected, Files.size(dir.resolve(name)), name);
        }
        Path lib = dir.resolve("libopenblas.so.0");
        FileTime old = FileTime.fromMillis(1_000_000);
        Files.setLastModifiedTime(lib, old);
        OpenBlasLoader.extract(prefix, dir);
        assertEquals(old, Files.getLastModifiedTime(lib), "a complete file is reused");
        Path gfortran = dir.resolve("libgfortran.so.5");
        long size = Files.size(gfortran);
        Files.write(gfortran, new byte[10]);
        OpenBlasLoader.extract(prefix, dir);
        assertEquals(size, Files.size(gfortran), "a truncated file is replaced");
        try (var files = Files.list(dir)) {
            assertEquals(names.size(), files.count(), "no temporary files left behind");
        }
    }

    @Test
    void avx512KernelsAreForcedOnlyOnAmd() {
        String flags = "flags : fpu sse sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl";
        assertEquals("SkylakeX", CoreType.choose(List.of("vendor_id : AuthenticAMD", flags)));
        assertNull(CoreType.choose(List.of("vendor_id : GenuineIntel", flags)), "Intel: OpenBLAS picks well itself");
        assertNull(CoreType.choose(List.of("vendor_id : AuthenticAMD", "flags : fpu sse avx avx2 fma")), "Zen 3 and older");
        assertNull(CoreType.choose(List.of()));
    }

    @Test
    void platformNamesMatchTheJarFolders() {
        String arch = System.getProperty("os.arch");
        if (System.getProperty("os.name").toLowerCase().contains("linux") && arch.equals("amd64"))
            assertEquals("linux-x86_64", OpenBlasLoader.platform());
        assertTrue(OpenBlasLoader.cacheRoot().isAbsolute(), OpenBlasLoader.cacheRoot().toString());
    }
}
