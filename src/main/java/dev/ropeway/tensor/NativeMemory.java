package dev.ropeway.tensor;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * Zero-filled, 64-byte aligned native memory from the C allocator.
 *
 * <p>{@code calloc} is used rather than an {@link java.lang.foreign.Arena} because large blocks come straight from
 * the kernel as zero pages (no memset pass over gigabytes of activations or weights) and freeing is a plain call,
 * with none of the thread handshake a shared arena needs when it closes.
 */
@SuppressWarnings("restricted") // native access is this class's job; the JVM runs with --enable-native-access
final class NativeMemory {
    static final long ALIGNMENT = 64;

    /** Blocks at least this large are offered transparent huge pages. */
    static final long HUGE_PAGE_MIN = 4L << 20;
    private static final long PAGE = 4096;
    /** Linux madvise advice asking for transparent huge pages. */
    private static final int MADV_HUGEPAGE = 14;

    private static final MethodHandle CALLOC;
    private static final MethodHandle FREE;
    private static final MethodHandle MADVISE;

    static {
        Linker linker = Linker.nativeLinker();
        var libc = linker.defaultLookup();
        CALLOC = linker.downcallHandle(libc.find("calloc").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG));
        FREE = linker.downcallHandle(libc.find("free").orElseThrow(),
                FunctionDescriptor.ofVoid(ValueLayout.ADDRESS), Linker.Option.critical(false));
        boolean linux = System.getProperty("os.name", "").toLowerCase(java.util.Locale.ROOT).contains("linux");
        MADVISE = linux ? libc.find("madvise").map(s -> linker.downcallHandle(s, FunctionDescriptor.of(ValueLayout.JAVA_INT,
                ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT), Linker.Option.critical(false))).orElse(null) : null;
    }

    private NativeMemory() {}

    /** Returns the raw block start (to pass to {@link #free}); the aligned start is {@link #align}(raw). */
    static long callocRaw(long bytes) {
        if (bytes < 0) throw new IllegalArgumentException("negative allocation: " + bytes + " bytes");
        long raw;
        try {
            raw = ((MemorySegment) CALLOC.invokeExact(bytes + ALIGNMENT, 1L)).address();
        } catch (Throwable t) {
            throw new IllegalStateException("calloc failed", t);
        }
        if (raw == 0) throw new OutOfMemoryError("native allocation of " + bytes + " bytes failed");
        if (bytes >= HUGE_PAGE_MIN) adviseHugePages(raw, bytes + ALIGNMENT);
        return raw;
    }

    /**
     * Asks Linux for 2 MB pages on the whole pages inside the block (where transparent huge pages are set to
     * "madvise", the common default, they are otherwise not used). Measured here: first-touching a fresh 64 MB
     * tensor took about 26 ms in 4 KB page faults. Failure only costs that speed, so it is ignored.
     */
    private static void adviseHugePages(long raw, long bytes) {
        if (MADVISE == null) return;
        long start = (raw + PAGE - 1) & -PAGE, end = (raw + bytes) & -PAGE;
        if (end <= start) return;
        try {
            int unused = (int) MADVISE.invokeExact(MemorySegment.ofAddress(start), end - start, MADV_HUGEPAGE);
        } catch (Throwable t) {
            // advisory only
        }
    }

    static long align(long raw) {
        return (raw + ALIGNMENT - 1) & -ALIGNMENT;
    }

    static void free(long raw) {
        try {
            FREE.invokeExact(MemorySegment.ofAddress(raw));
        } catch (Throwable t) {
            throw new IllegalStateException("free failed", t);
        }
    }
}
