package dev.ropeway.cuda;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class NativeLibraryTest {
    /** Of several versions in one folder the newest wins, numbers compared as numbers; look-alikes are ignored. */
    @Test
    void picksTheNewestVersionInAFolder(@TempDir Path dir) throws Exception {
        for (String f : new String[] {"libcublas.so", "libcublas.so.12", "libcublas.so.9.2", "libcublas.so.13.1.0.3",
                "libcublas.so.13", "libcublasLt.so.14", "libcublas_static.a", "libcublas.so.13.1.0.3.bak"})
            Files.createFile(dir.resolve(f));
        assertEquals(Optional.of(dir.resolve("libcublas.so.13.1.0.3")), NativeLibrary.newest(dir, "cublas"));
        assertEquals(Optional.of(dir.resolve("libcublasLt.so.14")), NativeLibrary.newest(dir, "cublasLt"));
        assertTrue(NativeLibrary.newest(dir, "nvrtc").isEmpty());
        assertTrue(NativeLibrary.newest(dir.resolve("missing"), "cublas").isEmpty());
    }

    @Test
    void searchesTheUsualFolders() {
        var folders = NativeLibrary.searchFolders().stream().map(Path::toString).toList();
        assertTrue(folders.contains("/usr/local/cuda/lib64"), folders.toString());
        assertTrue(folders.contains("/usr/lib/x86_64-linux-gnu"), folders.toString());
    }
}
