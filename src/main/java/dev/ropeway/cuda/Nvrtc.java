package dev.ropeway.cuda;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * NVRTC, bound through FFM: compiles the backend's {@code .cu} sources to machine code (CUBIN) for the GPU in hand at
 * first use. Results are cached on disk ({@code $ROPEWAY_CUDA_CACHE}, else {@code ~/.cache/ropeway/cuda}) under a
 * hash of the source, the options, the NVRTC version and the architecture, so later runs load them at once.
 */
final class Nvrtc {
    private final NativeLibrary lib;
    private final MethodHandle create, compile, logSize, log, cubinSize, cubin, destroy, errorString;
    private final String version;

    Nvrtc() {
        lib = NativeLibrary.load("nvrtc", "the CUDA runtime compiler, which builds the kernels for this GPU");
        create = lib.function("nvrtcCreateProgram", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS));
        compile = lib.function("nvrtcCompileProgram", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, ADDRESS));
        logSize = lib.function("nvrtcGetProgramLogSize", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        log = lib.function("nvrtcGetProgramLog", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cubinSize = lib.function("nvrtcGetCUBINSize", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cubin = lib.function("nvrtcGetCUBIN", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        destroy = lib.function("nvrtcDestroyProgram", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        errorString = lib.function("nvrtcGetErrorString", FunctionDescriptor.of(ADDRESS, JAVA_INT));
        MethodHandle versionOf = lib.function("nvrtcVersion", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        try (Arena a = Arena.ofConfined()) {
            MemorySegment major = a.allocate(JAVA_INT), minor = a.allocate(JAVA_INT);
            check("nvrtcVersion", (int) versionOf.invokeExact(major, minor));
            version = major.get(JAVA_INT, 0) + "." + minor.get(JAVA_INT, 0);
        } catch (Throwable t) {
            throw Driver.wrap(t);
        }
    }

    String version() {
        return version;
    }

    /** CUBIN for {@code source} compiled for {@code sm_<arch>} with {@code options}, from the disk cache if there. */
    byte[] compile(String name, String source, int arch, List<String> options) {
        List<String> all = new java.util.ArrayList<>(options);
        all.add("-arch=sm_" + arch);
        all.add("--std=c++17");
        Path cached = cacheFile(name, source, all);
        if (cached != null && Files.isRegularFile(cached)) {
            try {
                return Files.readAllBytes(cached);
            } catch (IOException e) {
                // unreadable cache entry: compile again
            }
        }
        byte[] image = compileNow(name, source, all);
        if (cached != null) store(cached, image);
        return image;
    }

    private byte[] compileNow(String name, String source, List<String> options) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment prog = a.allocate(ADDRESS);
            check("nvrtcCreateProgram(" + name + ")", (int) create.invokeExact(prog, a.allocateFrom(source),
                    a.allocateFrom(name), 0, MemorySegment.NULL, MemorySegment.NULL));
            MemorySegment p = prog.get(ADDRESS, 0);
            try {
                MemorySegment opts = a.allocate(ADDRESS, options.size());
                for (int i = 0; i < options.size(); i++) opts.setAtIndex(ADDRESS, i, a.allocateFrom(options.get(i)));
                int status = (int) compile.invokeExact(p, options.size(), opts);
                if (status != 0)
                    throw new CudaException("NVRTC " + version + " could not compile " + name + " with " + options + ": "
                            + message(status) + "\n" + programLog(a, p));
                MemorySegment size = a.allocate(JAVA_LONG);
                check("nvrtcGetCUBINSize", (int) cubinSize.invokeExact(p, size));
                MemorySegment out = a.allocate(size.get(JAVA_LONG, 0));
                check("nvrtcGetCUBIN", (int) cubin.invokeExact(p, out));
                return out.toArray(JAVA_BYTE);
            } finally {
                int ignored = (int) destroy.invokeExact(prog);
            }
        } catch (Throwable t) {
            throw Driver.wrap(t);
        }
    }

    private String programLog(Arena a, MemorySegment p) throws Throwable {
        MemorySegment size = a.allocate(JAVA_LONG);
        if ((int) logSize.invokeExact(p, size) != 0) return "";
        MemorySegment text = a.allocate(Math.max(1, size.get(JAVA_LONG, 0)));
        if ((int) log.invokeExact(p, text) != 0) return "";
        return text.getString(0);
    }

    private String message(int status) {
        try {
            return ((MemorySegment) errorString.invokeExact(status)).reinterpret(256).getString(0) + " (" + status + ")";
        } catch (Throwable t) {
            return "NVRTC error " + status;
        }
    }

    private void check(String call, int status) {
        if (status != 0) throw new CudaException(call + " failed: " + message(status));
    }

    private Path cacheFile(String name, String source, List<String> options) {
        String dir = System.getenv("ROPEWAY_CUDA_CACHE");
        Path root = dir != null && !dir.isBlank() ? Path.of(dir)
                : Path.of(System.getProperty("user.home"), ".cache", "ropeway", "cuda");
        try {
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            sha.update(source.getBytes(StandardCharsets.UTF_8));
            sha.update(String.join("\u0000", options).getBytes(StandardCharsets.UTF_8));
            sha.update(version.getBytes(StandardCharsets.UTF_8));
            String hash = HexFormat.of().formatHex(sha.digest()).substring(0, 24);
            return root.resolve(name.replaceAll("[^A-Za-z0-9_.-]", "_") + "-" + hash + ".cubin");
        } catch (NoSuchAlgorithmException e) {
            return null;
        }
    }

    /** Writes the cache entry atomically; a read-only home just means no cache. */
    private static void store(Path file, byte[] image) {
        try {
            Files.createDirectories(file.getParent());
            Path tmp = Files.createTempFile(file.getParent(), file.getFileName().toString(), ".tmp");
            Files.write(tmp, image);
            try {
                Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING);
            }
        } catch (IOException | RuntimeException e) {
            // caching is an optimisation only
        }
    }
}
