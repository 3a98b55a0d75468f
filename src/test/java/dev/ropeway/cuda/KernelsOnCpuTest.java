package dev.ropeway.cuda;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Runs the CUDA kernels on the CPU, where a C++20 compiler is on the PATH: the source NVRTC gets is compiled with a
 * small stand-in for the CUDA execution model ({@code cpu/shim.h}: a block's threads as fibers, {@code
 * __syncthreads} and warp shuffles as barriers, warps run one at a time between barriers in alternating orders so that
 * a missing barrier shows, {@code cp.async} landing either when its thread waits or at once (block by block, so that
 * reading a tile too early and copying over one another warp still reads both show), misaligned vector accesses and writes
 * past a launch's shared memory caught; {@code cpu/mma_shim.h}: {@code ldmatrix} and {@code mma.sync} gathering their
 * fragments across the warp with the PTX ISA's layouts) and checked against float64 references: {@code ops.cu}'s
 * element-wise, row and reduction kernels ({@code cpu/ops_kernels.cpp}), and the tensor-core attention forward and
 * float16 backward of {@code attention_mma.cu} for several head sizes ({@code cpu/attention_mma_kernels.cpp}). A machine
 * without a GPU thus runs the kernels' indexing, fragment layouts, masks, barriers, reductions, aliasing and rounding;
 * what it cannot see (memory coalescing, occupancy, the device's shared-memory limit, speed) is left to the GPU tests.
 */
class KernelsOnCpuTest {
    private static Path cxx;

    @BeforeAll
    static void findCompiler(@TempDir Path tmp) throws Exception {
        CpuKernels.Compiler c = CpuKernels.compiler(tmp);
        assumeTrue(c.path() != null, c.problem());
        cxx = c.path();
    }

    /** Builds {@code program} against {@code kernels} (written as {@code header}) with the defines, runs it, checks. */
    private static void buildAndRun(Path tmp, String program, String kernels, String header, List<String> defines,
                                    int minimumChecks) throws Exception {
        CpuKernels.writeHeaders(tmp);
        Files.writeString(tmp.resolve(program), CpuKernels.resource(program));
        Files.writeString(tmp.resolve(header), CpuKernels.forCpu(CudaBackend.source(kernels)));
        List<String> build = new ArrayList<>(List.of(cxx.toString(), "-std=c++20", "-O2", "-pthread", "-w"));
        build.addAll(defines);
        build.addAll(List.of("-I", tmp.toString(), program, "-o", "checks"));
        CpuKernels.Run compiled = CpuKernels.run(build, tmp, 300);
        assertEquals(0, compiled.exit(), kernels + " did not compile for the CPU:\n" + compiled.output());
        CpuKernels.Run checks = CpuKernels.run(List.of(tmp.resolve("checks").toString()), tmp, 600);
        System.out.print(checks.output());
        assertEquals(0, checks.exit(), "kernel checks failed:\n" + checks.output());
        assertTrue(checks.output().contains("0 check(s) failed"), checks.output());
        assertTrue(checks.output().lines().filter(l -> l.endsWith(" ok")).count() >= minimumChecks,
                "fewer checks ran than written:\n" + checks.output());
    }

    @Test
    void opsKernelsMatchFloat64References(@TempDir Path tmp) throws Exception {
        buildAndRun(tmp, "ops_kernels.cpp", "ops.cu", "ops_for_cpu.h", List.of(), 77);
    }

    /**
     * The forward with float32 and float16 keys and values, and (float16) the backward: self-attention with GQA and
     * a partial last tile, a chunk appended to a cache under a sliding window, and dOut far below float16's range.
     */
    @ParameterizedTest(name = "head size {0}, float16 K/V {1} {2}")
    @CsvSource({"64, false, ''", "64, true, ''", "80, true, ''", "128, true, ''",
            "128, true, -DFR=64 -DSTAGES=1",    // the variant for GPUs with 99 KB of shared memory per block
            // float16 queries too (a training pass's kept operands), and the output rounded to bfloat16 (mixed precision)
            "64, true, -DQ_HALF -DOUT_BF16", "128, true, -DQ_HALF -DOUT_BF16", "80, true, -DQ_HALF"})
    void tensorCoreAttentionMatchesFloat64References(int headDim, boolean halfKv, String extra, @TempDir Path tmp)
            throws Exception {
        List<String> defines = new ArrayList<>(List.of("-DHEAD_DIM=" + headDim));
        if (halfKv) defines.add("-DKV_HALF");
        if (!extra.isBlank()) defines.addAll(List.of(extra.strip().split(" +")));
        buildAndRun(tmp, "attention_mma_kernels.cpp", "attention_mma.cu", "mma_for_cpu.h", defines, halfKv ? 15 : 6);
    }
}
