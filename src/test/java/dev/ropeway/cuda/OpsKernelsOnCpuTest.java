package dev.ropeway.cuda;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.InputStream;
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
 * Runs the element-wise, row and reduction kernels of {@code ops.cu} on the CPU, where a C++20 compiler is on the
 * PATH: the source NVRTC gets is compiled with a small stand-in for the CUDA execution model ({@code cpu/shim.h}: a
 * block's threads as OS threads, {@code __syncthreads} and warp shuffles as barriers) and checked against float64
 * references ({@code cpu/ops_kernels.cpp}). So a machine without a GPU still runs the kernels' indexing, reductions,
 * aliasing and rounding; what it cannot see (memory coalescing, occupancy, the attention kernels' tensor-core
 * instructions) is left to the GPU tests.
 */
class OpsKernelsOnCpuTest {

    private static Path compiler() {
        String path = System.getenv("PATH");
        if (path == null) return null;
        for (String name : new String[] {"g++", "c++", "clang++"})
            for (String dir : path.split(":")) {
                Path p = Path.of(dir, name);
                if (Files.isExecutable(p)) return p;
            }
        return null;
    }

    /** ops.cu with its few lines of inline PTX (float16 conversions) and shared-memory declarations made portable. */
    static String forCpu(String source) {
        String s = source
                .replace("asm(\"cvt.f32.f16 %0, %1;\" : \"=f\"(f) : \"h\"(h));", "f = shimHalfToFloat(h);")
                .replace("asm(\"cvt.rn.f16.f32 %0, %1;\" : \"=h\"(h) : \"f\"(x));", "h = shimHalfBits(x);")
                .replaceAll("extern __shared__ (\\w+) (\\w+)\\[\\];", "$1* $2 = reinterpret_cast<$1*>(dynamicShared);")
                .replace("__shared__", "static");
        assertTrue(!s.contains("asm("), "ops.cu has inline PTX the CPU stand-in does not translate; teach forCpu it");
        return s;
    }

    private static String resource(String name) throws IOException {
        try (InputStream in = OpsKernelsOnCpuTest.class.getResourceAsStream("cpu/" + name)) {
            if (in == null) throw new IOException("test resource cpu/" + name + " is missing");
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    private record Run(int exit, String output) {}

    private static Run run(List<String> cmd, Path dir, int seconds) throws Exception {
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(seconds, TimeUnit.SECONDS), String.join(" ", cmd) + " took over " + seconds + " s");
        return new Run(p.exitValue(), out);
    }

    @Test
    void opsKernelsMatchFloat64References(@TempDir Path tmp) throws Exception {
        Path cxx = compiler();
        assumeTrue(cxx != null, "no C++ compiler on the PATH");
        // The stand-in needs C++20's <barrier> and _Float16; an older compiler is a reason to skip, not to fail.
        Files.writeString(tmp.resolve("probe.cpp"), "#include <barrier>\nint main() { std::barrier<> b(1); _Float16 h = "
                + "(_Float16) 1.5f; b.arrive_and_wait(); return (float) h == 1.5f ? 0 : 1; }\n");
        Run probe = run(List.of(cxx.toString(), "-std=c++20", "-pthread", "probe.cpp", "-o", "probe"), tmp, 120);
        assumeTrue(probe.exit() == 0, "the C++ compiler lacks C++20 <barrier> or _Float16: " + probe.output());

        Files.writeString(tmp.resolve("shim.h"), resource("shim.h"));
        Files.writeString(tmp.resolve("ops_kernels.cpp"), resource("ops_kernels.cpp"));
        Files.writeString(tmp.resolve("ops_for_cpu.h"), forCpu(CudaBackend.source("ops.cu")));
        List<String> build = new ArrayList<>(List.of(cxx.toString(), "-std=c++20", "-O1", "-pthread", "-w",
                "-I", tmp.toString(), "ops_kernels.cpp", "-o", "ops_kernels"));
        Run compiled = run(build, tmp, 300);
        assertEquals(0, compiled.exit(), "ops.cu did not compile for the CPU:\n" + compiled.output());
        Run checks = run(List.of(tmp.resolve("ops_kernels").toString()), tmp, 300);
        System.out.print(checks.output());
        assertEquals(0, checks.exit(), "kernel checks failed:\n" + checks.output());
        assertTrue(checks.output().contains("0 check(s) failed"), checks.output());
        assertTrue(checks.output().lines().filter(l -> l.endsWith(" ok")).count() >= 50,
                "fewer checks ran than written:\n" + checks.output());
    }
}
