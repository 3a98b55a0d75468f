package dev.ropeway.tensor;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;

/**
 * The few OpenBLAS entry points the CPU backend needs, called through FFM downcalls (no JNI, no JavaCPP).
 *
 * <p>Threading: the library keeps one process-wide thread count. {@code openblas_set_num_threads_local}, despite
 * its name, is not thread-local in this pthreads build: it sets the same global count and returns the previous one.
 * {@link CpuBackend} therefore sets the count to 1 once and splits every product across its own worker threads,
 * which makes concurrent calls from several Java threads safe and keeps OpenBLAS's spinning server threads idle.
 */
@SuppressWarnings("restricted") // native access is this class's job; the JVM runs with --enable-native-access
public final class OpenBlas {
    static final int ROW_MAJOR = 101;
    static final int NO_TRANS = 111;
    static final int TRANS = 112;

    private OpenBlas() {}

    /** Loaded on first use, so a process that never multiplies never loads the library. */
    private static final class Lib {
        static final OpenBlasLoader.Loaded LOADED = OpenBlasLoader.load();
        static final MethodHandle SGEMM;
        static final MethodHandle SGEMM_CRITICAL;
        static final MethodHandle SET_THREADS;
        static final MethodHandle SET_THREADS_LOCAL;
        static final MethodHandle GET_THREADS;
        static final MethodHandle GET_CONFIG;
        static final MethodHandle GET_CORENAME;

        static {
            Linker linker = Linker.nativeLinker();
            SymbolLookup lib = LOADED.lookup();
            // A plain downcall, not a critical one: a product can run for seconds, and a critical call would hold
            // off every safepoint (and so every garbage collection) for that long. The transition costs tens of
            // nanoseconds, which is nothing against even a 32x32x32 product.
            FunctionDescriptor sgemm = FunctionDescriptor.ofVoid(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT,
                    JAVA_FLOAT, ADDRESS, JAVA_INT, ADDRESS, JAVA_INT, JAVA_FLOAT, ADDRESS, JAVA_INT);
            SGEMM = linker.downcallHandle(find(lib, "cblas_sgemm"), sgemm);
            SGEMM_CRITICAL = linker.downcallHandle(find(lib, "cblas_sgemm"), sgemm, Linker.Option.critical(true));
            SET_THREADS = linker.downcallHandle(find(lib, "openblas_set_num_threads"), FunctionDescriptor.ofVoid(JAVA_INT));
            SET_THREADS_LOCAL = lib.find("openblas_set_num_threads_local")
                    .map(s -> linker.downcallHandle(s, FunctionDescriptor.of(JAVA_INT, JAVA_INT))).orElse(null);
            GET_THREADS = linker.downcallHandle(find(lib, "openblas_get_num_threads"), FunctionDescriptor.of(JAVA_INT));
            GET_CONFIG = linker.downcallHandle(find(lib, "openblas_get_config"), FunctionDescriptor.of(ADDRESS));
            GET_CORENAME = lib.find("openblas_get_corename")
                    .map(s -> linker.downcallHandle(s, FunctionDescriptor.of(ADDRESS))).orElse(null);
        }

        private static MemorySegment find(SymbolLookup lib, String name) {
            return lib.find(name).orElseThrow(() -> new UnsatisfiedLinkError(
                    "OpenBLAS at " + LOADED.source() + " has no symbol " + name));
        }
    }

    /** Loads the library now (it is otherwise loaded on first use); throws what {@link OpenBlasLoader} throws. */
    public static void ensureLoaded() {
        var unused = Lib.SGEMM;
    }

    /** Where the library was loaded from. */
    public static String source() {
        return Lib.LOADED.source();
    }

    /**
     * {@code cblas_sgemm} on row-major matrices: {@code C = alpha * op(A) * op(B) + beta * C}. The segments must
     * start at the first element of each matrix; no argument checks are made here beyond OpenBLAS's own.
     */
    public static void sgemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                             MemorySegment a, int lda, MemorySegment b, int ldb, float beta, MemorySegment c, int ldc) {
        try {
            Lib.SGEMM.invokeExact(ROW_MAJOR, transA ? TRANS : NO_TRANS, transB ? TRANS : NO_TRANS, m, n, k, alpha,
                    a, lda, b, ldb, beta, c, ldc);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * {@link #sgemm} as a critical downcall that may also be given heap segments ({@code MemorySegment.ofArray}).
     * Only for short products: while it runs, this thread holds off safepoints, so every other thread waiting for
     * a garbage collection waits for it.
     */
    static void sgemmCritical(boolean transA, boolean transB, int m, int n, int k, float alpha,
                              MemorySegment a, int lda, MemorySegment b, int ldb, float beta, MemorySegment c, int ldc) {
        try {
            Lib.SGEMM_CRITICAL.invokeExact(ROW_MAJOR, transA ? TRANS : NO_TRANS, transB ? TRANS : NO_TRANS, m, n, k, alpha,
                    a, lda, b, ldb, beta, c, ldc);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** Sets OpenBLAS's process-wide thread count. */
    public static void setThreads(int threads) {
        if (threads <= 0) throw new IllegalArgumentException("threads must be positive, got " + threads);
        try {
            Lib.SET_THREADS.invokeExact(threads);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * Calls {@code openblas_set_num_threads_local}, which in this build sets the process-wide count (it is not
     * per-thread) and returns the previous value. Falls back to get + set where the symbol is missing.
     */
    public static int setThreadsLocal(int threads) {
        if (threads <= 0) throw new IllegalArgumentException("threads must be positive, got " + threads);
        if (Lib.SET_THREADS_LOCAL == null) {
            int previous = threads();
            setThreads(threads);
            return previous;
        }
        try {
            return (int) Lib.SET_THREADS_LOCAL.invokeExact(threads);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static int threads() {
        try {
            return (int) Lib.GET_THREADS.invokeExact();
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** The build description, e.g. "OpenBLAS 0.3.31 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64". */
    public static String config() {
        return cString(Lib.GET_CONFIG);
    }

    /** The kernel family chosen for this CPU (e.g. "SkylakeX"), or "unknown". */
    public static String coreName() {
        return Lib.GET_CORENAME == null ? "unknown" : cString(Lib.GET_CORENAME);
    }

    private static String cString(MethodHandle getter) {
        try {
            MemorySegment p = (MemorySegment) getter.invokeExact();
            return p.address() == 0 ? "" : p.reinterpret(4096).getString(0);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    private static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) return r;
        if (t instanceof Error e) throw e;
        return new IllegalStateException(t);
    }
}
