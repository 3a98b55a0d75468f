package dev.ropeway.cuda;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The GPU tests ({@code CudaBackendTest}, {@code CudaParityTest}) without a GPU: the backend's own Java code, the
 * kernels built for the CPU and the products, against the CUDA emulator ({@link CudaEmulator}), in a child JVM whose
 * {@code LD_LIBRARY_PATH} makes the backend find the emulator where it looks for the CUDA libraries. Every GPU test
 * must pass there; one that skips (no device found) fails this test. Where a real GPU is present its own run of the
 * GPU tests is the check, and this one skips.
 */
class EmulatedGpuTest {

    @Test
    void gpuTestsPassOnTheEmulatedDevice(@TempDir Path tmp) throws Exception {
        assumeFalse(CudaBackend.isAvailable(), "a real GPU is present: its own run of the GPU tests is the check");
        CpuKernels.Compiler cxx = CpuKernels.compiler(tmp);
        assumeTrue(cxx.path() != null, cxx.problem());
        CudaEmulator.build(tmp, cxx.path());

        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
        cmd.addAll(ManagementFactory.getRuntimeMXBean().getInputArguments().stream()
                .filter(a -> !a.startsWith("-javaagent") && !a.startsWith("-agentlib")).toList());
        // A kernel that faults takes the child down: its crash report goes with the emulator, and into the failure.
        cmd.add("-XX:ErrorFile=" + tmp.resolve("hs_err_pid%p.log"));
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), EmulatedGpuMain.class.getName(),
                tmp.toString(), cxx.path().toString()));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        Map<String, String> env = pb.environment();
        String inherited = env.get("LD_LIBRARY_PATH");
        env.put("LD_LIBRARY_PATH", tmp.resolve("lib") + (inherited == null || inherited.isBlank() ? "" : ":" + inherited));
        // Emulated "CUBINs" name CPU libraries: they must never land in the real cache.
        env.put("ROPEWAY_CUDA_CACHE", tmp.resolve("cache").toString());
        env.remove("ROPEWAY_CUDA_LIBS");
        Process child = pb.start();
        StringBuilder output = new StringBuilder();
        Thread pump = new Thread(() -> {
            try (var in = child.getInputStream()) {
                var reader = new java.io.BufferedReader(new java.io.InputStreamReader(in, StandardCharsets.UTF_8));
                for (String line; (line = reader.readLine()) != null; ) {
                    System.out.println(line);
                    synchronized (output) {
                        output.append(line).append('\n');
                    }
                }
            } catch (java.io.IOException e) {
                // the child is gone
            }
        });
        pump.start();
        boolean finished = child.waitFor(20, TimeUnit.MINUTES);
        if (!finished) child.destroyForcibly();
        pump.join(10_000);
        String out;
        synchronized (output) {
            out = output.toString();
        }
        assertTrue(finished, "the emulated GPU tests took over 20 minutes:\n" + out);
        assertEquals(0, child.exitValue(), "the GPU tests failed on the emulated device:\n" + out + crashReport(tmp));
        assertTrue(out.contains("EMULATED GPU TESTS: ") && out.contains(" 0 failed, 0 aborted"), out);
    }

    /** The first lines of the child's crash report, if it crashed. */
    private static String crashReport(Path dir) throws java.io.IOException {
        try (var files = java.nio.file.Files.list(dir)) {
            for (Path f : files.filter(p -> p.getFileName().toString().startsWith("hs_err_pid")).toList())
                return "\n" + String.join("\n", java.nio.file.Files.readAllLines(f).stream().limit(80).toList());
        }
        return "";
    }
}
