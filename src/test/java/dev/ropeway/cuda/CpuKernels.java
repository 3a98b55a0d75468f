package dev.ropeway.cuda;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Building the CUDA kernels for the CPU: the C++ compiler, the kernel source made portable C++ (the stand-in for the
 * CUDA execution model is {@code cpu/shim.h} and {@code cpu/mma_shim.h}), and running the tools. Shared by
 * {@link KernelsOnCpuTest} (the kernels against float64 references) and {@link CudaEmulator} (the backend's own code
 * against an emulated driver).
 */
final class CpuKernels {
    private CpuKernels() {}

    /** A C++ compiler able to build the stand-in, or why there is none. */
    record Compiler(Path path, String problem) {}

    /** The first g++, c++ or clang++ on the PATH that builds C++20 with {@code _Float16} for x86-64. */
    static Compiler compiler(Path scratch) throws Exception {
        Path cxx = onPath();
        if (cxx == null) return new Compiler(null, "no C++ compiler on the PATH");
        // The stand-in needs C++20 and _Float16, and switches fibers in x86-64 assembly: another compiler or machine is
        // a reason to skip, not to fail.
        Files.writeString(scratch.resolve("probe.cpp"), "#ifndef __x86_64__\n#error not x86-64\n#endif\n#include <span>\n"
                + "int main() { _Float16 h = (_Float16) 1.5f; return (float) h == 1.5f ? 0 : 1; }\n");
        Run probe = run(List.of(cxx.toString(), "-std=c++20", "probe.cpp", "-o", "probe"), scratch, 120);
        if (probe.exit() != 0)
            return new Compiler(null, "the C++ compiler does not build C++20 with _Float16 for x86-64: " + probe.output());
        return new Compiler(cxx, null);
    }

    private static Path onPath() {
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
        PTX_HELPERS.put("cp_async16", "shimCpAsync(dst, src, valid);");
        PTX_HELPERS.put("cp_async_commit", "");
        PTX_HELPERS.put("cp_async_wait_all", "shimCpAsyncWait();");
        PTX_HELPERS.put("add_pair", "shimAligned(p, 8, \"red.global.add.v2.f32\"); p[0] += x; p[1] += y;");
    }

    /**
     * A kernel source as NVRTC gets it, made portable C++: inline PTX replaced, shared memory as static storage.
     * Throws where a source has inline PTX that has no CPU body here.
     */
    static String forCpu(String source) {
        String s = source
                .replace("asm(\"cvt.f32.f16 %0, %1;\" : \"=f\"(f) : \"h\"(h));", "f = shimHalfToFloat(h);")
                .replace("asm(\"cvt.rn.f16.f32 %0, %1;\" : \"=h\"(h) : \"f\"(x));", "h = shimHalfBits(x);");
        for (Map.Entry<String, String> e : PTX_HELPERS.entrySet()) s = replaceBody(s, e.getKey(), e.getValue());
        // Loads and stores of 4, 8 and 16 bytes at once must be aligned to their size on a GPU: checked here.
        s = s.replaceAll("reinterpret_cast<(const )?(unsigned|float2|float4|uint4|vraw_t)\\*>\\(", "shimVectorCast<$1$2>(");
        s = s.replaceAll("extern __shared__ (\\w+) (\\w+)\\[\\];", "$1* $2 = reinterpret_cast<$1*>(dynamicShared);")
                .replace("__shared__", "static");
        if (s.contains("asm(") || s.contains("asm volatile"))
            throw new IllegalStateException("a kernel source has inline PTX the CPU stand-in does not translate; give its "
                    + "helper a CPU body in CpuKernels.PTX_HELPERS");
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
        if (i >= s.length()) throw new IllegalStateException("unbalanced braces in " + name);
        return s.substring(0, open) + "{ " + body + " }" + s.substring(i + 1);
    }

    private static final Pattern KERNEL = Pattern.compile("extern \"C\" __global__ void\\s+(?:__launch_bounds__\\((?:[^()]|\\([^()]*\\))*\\)\\s*)?(\\w+)\\s*\\(");

    /** The names of the kernels ({@code extern "C" __global__} functions) a source defines, in order. */
    static List<String> kernelNames(String source) {
        Matcher m = KERNEL.matcher(source);
        List<String> names = new java.util.ArrayList<>();
        while (m.find()) names.add(m.group(1));
        return names;
    }

    /** A test resource of the stand-in ({@code cpu/<name>}). */
    static String resource(String name) throws IOException {
        try (InputStream in = CpuKernels.class.getResourceAsStream("cpu/" + name)) {
            if (in == null) throw new IOException("test resource cpu/" + name + " is missing");
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    /** Writes the stand-in's headers into {@code dir}. */
    static void writeHeaders(Path dir) throws IOException {
        for (String f : new String[] {"shim.h", "mma_shim.h", "checks.h"}) Files.writeString(dir.resolve(f), resource(f));
    }

    record Run(int exit, String output) {}

    /** Runs {@code cmd} in {@code dir}, its output and errors together; fails when it takes over {@code seconds}. */
    static Run run(List<String> cmd, Path dir, int seconds) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(seconds, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new IllegalStateException(String.join(" ", cmd) + " took over " + seconds + " s");
        }
        return new Run(p.exitValue(), out);
    }
}
