package dev.ropeway.cuda;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Runs the CUDA kernels on the CPU, where a C++20 compiler is on the PATH: the source NVRTC gets is compiled with a
 * small stand-in for the CUDA execution model ({@code cpu/shim.h}: a block's threads as OS threads, {@code
 * __syncthreads} and warp shuffles as barriers; {@code cpu/mma_shim.h}: {@code ldmatrix} and {@code mma.sync}
 * gathering their fragments across the warp with the PTX ISA's layouts, {@code cp.async} copying at once) and checked
 * against float64 references: {@code ops.cu}'s element-wise, row and reduction kernels ({@code cpu/ops_kernels.cpp}),
 * and the tensor-core attention forward and float16 backward of {@code attention_mma.cu} for several head sizes
 * ({@code cpu/attention_mma_kernels.cpp}). A machine without a GPU thus runs the kernels' indexing, fragment layouts,
 * masks, reductions, aliasing and rounding; what it cannot see (timing of asynchronous copies, memory coalescing,
 * occupancy, shared-memory limits) is left to the GPU tests.
 */
class KernelsOnCpuTest {
    private static Path cxx;

    @BeforeAll
    static void findCompiler(@TempDir Path tmp) throws Exception {
        cxx = compiler();
        assumeTrue(cxx != null, "no C++ compiler on the PATH");
        // The stand-in needs C++20's <barrier> and _Float16; an older compiler is a reason to skip, not to fail.
        Files.writeString(tmp.resolve("probe.cpp"), "#include <barrier>\nint main() { std::barrier<> b(1); _Float16 h = "
                + "(_Float16) 1.5f; b.arrive_and_wait(); return (float) h == 1.5f ? 0 : 1; }\n");
        Run probe = run(List.of(cxx.toString(), "-std=c++20", "-pthread", "probe.cpp", "-o", "probe"), tmp, 120);
        assumeTrue(probe.exit() == 0, "the C++ compiler lacks C++20 <barrier> or _Float16: " + probe.output());
    }

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

    /** CPU bodies for the helpers that wrap inline PTX (the stand-ins are in mma_shim.h). */
    private static final Map<String, String> PTX_HELPERS = new LinkedHashMap<>();

    static {
        PTX_HELPERS.put("half_pair", "return shimHalfPair(lo, hi);");
        PTX_HELPERS.put("mma16", "shimMma16(d, a, b0, b1);");
        PTX_HELPERS.put("shared_address", "return 0;");
        PTX_HELPERS.put("ldmatrix_x2", "unsigned r[4]; shimLdmatrix(row, 2, false, r); r0 = r[0]; r1 = r[1];");
        PTX_HELPERS.put("ldmatrix_x4_trans", "shimLdmatrix(row, 4, true, r);");
        PTX_HELPERS.put("ldmatrix_x4", "shimLdmatrix(row, 4, false, r);");
        PTX_HELPERS.put("cp_async16", "if (valid) std::memcpy(dst, src, 16); else std::memset(dst, 0, 16);");
        PTX_HELPERS.put("cp_async_commit", "");
        PTX_HELPERS.put("cp_async_wait_all", "");
    }

    /** A kernel source as NVRTC gets it, made portable C++: inline PTX replaced, shared memory as static storage. */
    static String forCpu(String source) {
        String s = source
                .replace("asm(\"cvt.f32.f16 %0, %1;\" : \"=f\"(f) : \"h\"(h));", "f = shimHalfToFloat(h);")
                .replace("asm(\"cvt.rn.f16.f32 %0, %1;\" : \"=h\"(h) : \"f\"(x));", "h = shimHalfBits(x);");
        for (Map.Entry<String, String> e : PTX_HELPERS.entrySet()) s = replaceBody(s, e.getKey(), e.getValue());
        s = s.replaceAll("extern __shared__ (\\w+) (\\w+)\\[\\];", "$1* $2 = reinterpret_cast<$1*>(dynamicShared);")
                .replace("__shared__", "static");
        assertTrue(!s.contains("asm(") && !s.contains("asm volatile"),
                "a kernel source has inline PTX the CPU stand-in does not translate; give its helper a CPU body here");
        return s;
    }

    /** The body of device function {@code name} (if the source defines it) replaced by {@code body}. */
    private static String replaceBody(String s, String name, String body) {
        Matcher m = Pattern.compile("__device__ __forceinline__ [^\\n]*?\\b" + name + "\\(").matcher(s);
        if (!m.find()) return s;
        int open = s.indexOf('{', m.end()), depth = 0, i = open;
        for (; i < s.length(); i++) {
            if (s.charAt(i) == '{') depth++;
            else if (s.charAt(i) == '}' && --depth == 0) break;
        }
        assertTrue(i < s.length(), "unbalanced braces in " + name);
        return s.substring(0, open) + "{ " + body + " }" + s.substring(i + 1);
    }

    private static String resource(String name) throws IOException {
        try (InputStream in = KernelsOnCpuTest.class.getResourceAsStream("cpu/" + name)) {
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

    /** Builds {@code program} against {@code kernels} (written as {@code header}) with the defines, runs it, checks. */
    private static void buildAndRun(Path tmp, String program, String kernels, String header, List<String> defines,
                                    int minimumChecks) throws Exception {
        for (String f : new String[] {"shim.h", "mma_shim.h", "checks.h", program}) Files.writeString(tmp.resolve(f), resource(f));
        Files.writeString(tmp.resolve(header), forCpu(CudaBackend.source(kernels)));
        List<String> build = new ArrayList<>(List.of(cxx.toString(), "-std=c++20", "-O2", "-pthread", "-w"));
        build.addAll(defines);
        build.addAll(List.of("-I", tmp.toString(), program, "-o", "checks"));
        Run compiled = run(build, tmp, 300);
        assertEquals(0, compiled.exit(), kernels + " did not compile for the CPU:\n" + compiled.output());
        Run checks = run(List.of(tmp.resolve("checks").toString()), tmp, 600);
        System.out.print(checks.output());
        assertEquals(0, checks.exit(), "kernel checks failed:\n" + checks.output());
        assertTrue(checks.output().contains("0 check(s) failed"), checks.output());
        assertTrue(checks.output().lines().filter(l -> l.endsWith(" ok")).count() >= minimumChecks,
                "fewer checks ran than written:\n" + checks.output());
    }

    @Test
    void opsKernelsMatchFloat64References(@TempDir Path tmp) throws Exception {
        buildAndRun(tmp, "ops_kernels.cpp", "ops.cu", "ops_for_cpu.h", List.of(), 60);
    }

    /**
     * The forward with float32 and float16 keys and values, and (float16) the backward: self-attention with GQA and
     * a partial last tile, a chunk appended to a cache under a sliding window, and dOut far below float16's range.
     */
    @ParameterizedTest(name = "head size {0}, float16 K/V {1}")
    @CsvSource({"64, false", "64, true", "80, true", "128, true"})
    void tensorCoreAttentionMatchesFloat64References(int headDim, boolean halfKv, @TempDir Path tmp) throws Exception {
        List<String> defines = new ArrayList<>(List.of("-DHEAD_DIM=" + headDim));
        if (halfKv) defines.add("-DKV_HALF");
        buildAndRun(tmp, "attention_mma_kernels.cpp", "attention_mma.cu", "mma_for_cpu.h", defines, halfKv ? 15 : 6);
    }
}
