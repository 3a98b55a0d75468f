package dev.ropeway.cuda;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The CUDA driver, NVRTC, cuBLAS and cuDNN's graph API emulated on the CPU ({@code cpu/emulator.cpp},
 * {@code cpu/cudnn.cpp}), for running the GPU backend's own code without a GPU: one shared library answering for
 * {@code libcuda}, {@code libnvrtc}, {@code libcublas}, {@code libcublasLt} and {@code libcudnn} in {@code <folder>/lib}. A process that puts that folder first on {@code LD_LIBRARY_PATH} (so that
 * the backend finds the stand-ins where it looks for the real ones) calls {@link #install} before the first kernel is
 * compiled: the emulated NVRTC then builds each kernel source for the CPU with the C++ compiler, as a shared library
 * with one launcher per kernel ({@code SHIM_LAUNCHER} in {@code cpu/shim.h}).
 */
final class CudaEmulator {
    static final List<String> LIBRARIES = List.of("libcuda.so.1", "libcuda.so", "libnvrtc.so", "libcublas.so", "libcublasLt.so",
            "libcudnn.so");
    private static final String LIBRARY = "libropeway_cuda_emulator.so";

    private static Path folder, compiler;

    private CudaEmulator() {}

    /** Builds the emulator into {@code folder} with the C++ compiler {@code cxx}; throws with the compiler's output. */
    static void build(Path folder, Path cxx) throws Exception {
        Path lib = Files.createDirectories(folder.resolve("lib"));
        Path include = Files.createDirectories(folder.resolve("include"));
        CpuKernels.writeHeaders(include);
        Files.writeString(include.resolve("emulator.cpp"), CpuKernels.resource("emulator.cpp"));
        Files.writeString(include.resolve("cudnn.cpp"), CpuKernels.resource("cudnn.cpp"));
        CpuKernels.Run r = CpuKernels.run(List.of(cxx.toString(), "-std=c++20", "-O2", "-fPIC", "-shared", "-pthread",
                "-fvisibility=hidden", "emulator.cpp", "-o", lib.resolve(LIBRARY).toString(), "-ldl"), include, 300);
        if (r.exit() != 0) throw new IllegalStateException("the CUDA emulator did not build:\n" + r.output());
        for (String name : LIBRARIES) {
            Files.deleteIfExists(lib.resolve(name));
            Files.createSymbolicLink(lib.resolve(name), Path.of(LIBRARY));
        }
    }

    /**
     * Registers the kernel compiler with the emulator loaded in this process (the library in {@code folder}, which the
     * backend loads by the same path through {@code LD_LIBRARY_PATH}).
     */
    static void install(Path folder, Path cxx) throws Exception {
        CudaEmulator.folder = folder;
        CudaEmulator.compiler = cxx;
        SymbolLookup lib = SymbolLookup.libraryLookup(folder.resolve("lib").resolve(LIBRARY), Arena.global());
        Linker linker = Linker.nativeLinker();
        MethodHandle compile = MethodHandles.lookup().findStatic(CudaEmulator.class, "compile", MethodType.methodType(
                int.class, MemorySegment.class, MemorySegment.class, MemorySegment.class, MemorySegment.class, long.class));
        MemorySegment stub = linker.upcallStub(compile,
                FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS, ADDRESS, JAVA_LONG), Arena.global());
        MethodHandle set = linker.downcallHandle(lib.find("ropeway_emulator_set_compiler").orElseThrow(),
                FunctionDescriptor.ofVoid(ADDRESS));
        try {
            set.invokeExact(stub);
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }

    /**
     * The emulated NVRTC's compiler: builds {@code source} with the NVRTC {@code options} (one per line) for the CPU
     * and writes the library's path into {@code out}, returning 0; or writes the compiler's complaint, returning 1.
     * Never throws (it is called from native code).
     */
    private static int compile(MemorySegment name, MemorySegment source, MemorySegment options, MemorySegment out,
                               long capacity) {
        String result;
        int status;
        try {
            result = build(text(name), text(source), text(options)).toString();
            status = 0;
        } catch (Throwable t) {
            result = t.toString();
            status = 1;
        }
        byte[] bytes = result.getBytes(StandardCharsets.UTF_8);
        MemorySegment dst = out.reinterpret(capacity);
        int n = (int) Math.min(bytes.length, capacity - 1);
        MemorySegment.copy(bytes, 0, dst, JAVA_BYTE, 0, n);
        dst.set(JAVA_BYTE, n, (byte) 0);
        return status;
    }

    private static String text(MemorySegment s) {
        return s.reinterpret(Long.MAX_VALUE).getString(0);
    }

    /** The CPU library for one kernel source and its options, built once per distinct pair. */
    private static synchronized Path build(String name, String source, String options) throws Exception {
        List<String> defines = new ArrayList<>();
        for (String o : options.split("\n")) {
            if (o.startsWith("-D")) defines.add(o);
            else if (!o.startsWith("-arch=") && !o.startsWith("--std=") && !o.isBlank())
                throw new IllegalArgumentException("the emulated NVRTC does not know option " + o);
        }
        StringBuilder cpu = new StringBuilder("#include \"shim.h\"\n#include \"mma_shim.h\"\n");
        String portable = CpuKernels.forCpu(source);
        cpu.append(portable).append('\n');
        List<String> kernels = CpuKernels.kernelNames(source);
        if (kernels.isEmpty()) throw new IllegalArgumentException(name + " defines no kernels");
        for (String k : kernels) cpu.append("SHIM_LAUNCHER(").append(k).append(")\n");
        MessageDigest sha = MessageDigest.getInstance("SHA-256");
        sha.update(cpu.toString().getBytes(StandardCharsets.UTF_8));
        sha.update(String.join(" ", defines).getBytes(StandardCharsets.UTF_8));
        for (String header : List.of("shim.h", "mma_shim.h")) sha.update(CpuKernels.resource(header).getBytes(StandardCharsets.UTF_8));
        String hash = HexFormat.of().formatHex(sha.digest()).substring(0, 16);
        Path modules = Files.createDirectories(folder.resolve("modules"));
        Path library = modules.resolve(name.replaceAll("[^A-Za-z0-9_]", "_") + "-" + hash + ".so");
        if (Files.isRegularFile(library)) return library;
        Path src = modules.resolve(name.replaceAll("[^A-Za-z0-9_]", "_") + "-" + hash + ".cpp");
        Files.writeString(src, cpu);
        List<String> cmd = new ArrayList<>(List.of(compiler.toString(), "-std=c++20", "-O2", "-fPIC", "-shared",
                "-pthread", "-w", "-fvisibility=hidden", "-I", folder.resolve("include").toString()));
        cmd.addAll(defines);
        Path tmp = modules.resolve(library.getFileName() + ".tmp");
        cmd.addAll(List.of(src.toString(), "-o", tmp.toString()));
        long start = System.nanoTime();
        CpuKernels.Run r = CpuKernels.run(cmd, modules, 600);
        if (r.exit() != 0) throw new IOException(name + " " + defines + " did not build for the CPU:\n" + r.output());
        Files.move(tmp, library);
        System.err.printf("[emulator] built %s %s for the CPU in %.1f s (%d kernels)%n", name, defines,
                (System.nanoTime() - start) / 1e9, kernels.size());
        return library;
    }
}
