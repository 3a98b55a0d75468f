package dev.ropeway.cuda;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Every {@code .cu} kernel source compiles with nvcc, for each head size the backend builds it for, where nvcc is on
 * the PATH (machines without CUDA skip this; the GPU tests then compile the same sources with NVRTC), for Ampere and
 * Hopper, with no kernel spilling registers. Compiling without a GPU catches a broken kernel before it reaches one.
 */
class KernelSourcesCompileTest {
    private static final String[] SOURCES = {"ops.cu", "attention.cu", "attention_mma.cu"};
    private static final Pattern ENTRY = Pattern.compile("Compiling entry function '(\\w+)'");
    private static final Pattern SPILLS = Pattern.compile("(\\d+) bytes spill stores, (\\d+) bytes spill loads");

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
        List<String> failures = new ArrayList<>(), spills = new ArrayList<>();
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
                        List.of("-DHEAD_DIM=128", "-DBR=32", "-DBC=32"),   // GPUs with 99 KB of shared memory per block
                        List.of("-DHEAD_DIM=64", "-DBR=64", "-DBC=64", "-DKV_HALF"));
                default -> List.of(List.of("-DHEAD_DIM=64"), List.of("-DHEAD_DIM=64", "-DKV_HALF"),
                        List.of("-DHEAD_DIM=80", "-DKV_HALF"), List.of("-DHEAD_DIM=128"), List.of("-DHEAD_DIM=128", "-DKV_HALF"),
                        List.of("-DHEAD_DIM=128", "-DKV_HALF", "-DFR=64", "-DSTAGES=1"),
                        // float16 queries too (the operands a training pass keeps)
                        List.of("-DHEAD_DIM=64", "-DKV_HALF", "-DQ_HALF"),
                        List.of("-DHEAD_DIM=128", "-DKV_HALF", "-DQ_HALF", "-DOUT_BF16"));
            };
            for (List<String> defines : variants)
                for (String arch : new String[] {"sm_80", "sm_90"}) {
                    // -Xptxas -v reports each kernel's registers and spills.
                    List<String> cmd = new ArrayList<>(List.of(nvcc.toString(), "-arch=" + arch, "-std=c++17", "-cubin",
                            "-Xptxas", "-v", "-o", tmp.resolve("out.cubin").toString()));
                    cmd.addAll(defines);
                    cmd.add(src.toString());
                    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
                    String log = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
                    assertTrue(p.waitFor(120, TimeUnit.SECONDS), "nvcc took over 2 minutes on " + name);
                    String what = name + " " + arch + " " + defines;
                    if (p.exitValue() != 0) failures.add(what + ":\n" + log);
                    else spills.addAll(spills(what, log));
                    compiled++;
                }
        }
        assertEquals(List.of(), failures);
        assertEquals(28, compiled);
        // A kernel that spills registers to local memory has outgrown its launch bounds: a slow path nothing else shows.
        assertEquals(List.of(), spills);
    }

    /** The kernels whose ptxas report (-v) shows spill stores or loads, named. */
    static List<String> spills(String what, String ptxasLog) {
        List<String> found = new ArrayList<>();
        String kernel = "?";
        for (String line : ptxasLog.split("\n")) {
            Matcher entry = ENTRY.matcher(line);
            if (entry.find()) kernel = entry.group(1);
            Matcher m = SPILLS.matcher(line);
            if (m.find() && (Integer.parseInt(m.group(1)) > 0 || Integer.parseInt(m.group(2)) > 0))
                found.add(what + " " + kernel + ": " + line.trim());
        }
        return found;
    }

    @Test
    void spillsAreFoundInAPtxasReport() {
        String log = """
                ptxas info    : Compiling entry function 'fine' for 'sm_90'
                ptxas info    : Function properties for fine
                    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
                ptxas info    : Compiling entry function 'spilling' for 'sm_90'
                ptxas info    : Function properties for spilling
                    16 bytes stack frame, 12 bytes spill stores, 12 bytes spill loads
                """;
        List<String> found = spills("x.cu", log);
        assertEquals(1, found.size(), found.toString());
        assertTrue(found.get(0).startsWith("x.cu spilling: 16 bytes stack frame"), found.get(0));
    }

    @Test
    void aMissingDriverIsAClearError() throws IOException {
        assumeTrue(!CudaBackend.isAvailable(), "a GPU is present");
        CudaException e = org.junit.jupiter.api.Assertions.assertThrows(CudaException.class, () -> new CudaBackend());
        assertTrue(e.getMessage().contains("libcuda") || e.getMessage().contains("no GPU"), e.getMessage());
    }
}
