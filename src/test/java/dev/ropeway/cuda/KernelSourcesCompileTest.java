package dev.ropeway.cuda;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Every {@code .cu} kernel source compiles with nvcc, for each head size the backend builds it for, where nvcc is on
 * the PATH (machines without CUDA skip this; the GPU tests then compile the same sources with NVRTC). Compiling
 * without a GPU catches a broken kernel before it reaches one.
 */
class KernelSourcesCompileTest {
    private static final String[] SOURCES = {"ops.cu", "attention.cu", "attention_mma.cu"};

    private static Path nvcc() {
        String path = System.getenv("PATH");
        if (path == null) return null;
        for (String dir : path.split(":")) {
            Path p = Path.of(dir, "nvcc");
            if (Files.isExecutable(p)) return p;
        }
        return null;
    }

    @Test
    void everyKernelSourceCompilesWithNvcc(@org.junit.jupiter.api.io.TempDir Path tmp) throws Exception {
        Path nvcc = nvcc();
        assumeTrue(nvcc != null, "nvcc is not on the PATH");
        List<String> failures = new ArrayList<>();
        int compiled = 0;
        for (String name : SOURCES) {
            Path src = tmp.resolve(name);
            // Exactly the text NVRTC gets: the shared definitions in front of the file.
            Files.writeString(src, CudaBackend.source(name));
            List<List<String>> variants = switch (name) {
                case "ops.cu" -> List.of(List.of());
                // Each attention file also as its float16-KV-cache module (-DKV_HALF).
                case "attention.cu" -> List.of(List.of("-DHEAD_DIM=64", "-DBR=64", "-DBC=64"),
                        List.of("-DHEAD_DIM=80", "-DBR=64", "-DBC=64"), List.of("-DHEAD_DIM=256", "-DBR=32", "-DBC=32"),
                        List.of("-DHEAD_DIM=64", "-DBR=64", "-DBC=64", "-DKV_HALF"));
                default -> List.of(List.of("-DHEAD_DIM=64"), List.of("-DHEAD_DIM=128"), List.of("-DHEAD_DIM=128", "-DKV_HALF"));
            };
            for (List<String> defines : variants) {
                List<String> cmd = new ArrayList<>(List.of(nvcc.toString(), "-arch=sm_80", "-std=c++17", "-cubin",
                        "-o", tmp.resolve("out.cubin").toString()));
                cmd.addAll(defines);
                cmd.add(src.toString());
                Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
                String log = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
                assertTrue(p.waitFor(120, TimeUnit.SECONDS), "nvcc took over 2 minutes on " + name);
                if (p.exitValue() != 0) failures.add(name + " " + defines + ":\n" + log);
                compiled++;
            }
        }
        assertEquals(List.of(), failures);
        assertEquals(8, compiled);
    }

    @Test
    void aMissingDriverIsAClearError() throws IOException {
        assumeTrue(!CudaBackend.isAvailable(), "a GPU is present");
        CudaException e = org.junit.jupiter.api.Assertions.assertThrows(CudaException.class, () -> new CudaBackend());
        assertTrue(e.getMessage().contains("libcuda") || e.getMessage().contains("no GPU"), e.getMessage());
    }
}
