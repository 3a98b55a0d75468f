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
final class NativeMemory {
    static final long ALIGNMENT = 64;

    private static final MethodHandle CALLOC;
    private static final MethodHandle FREE;

    static {
        Linker linker = Linker.nativeLinker();
        var libc = linker.defaultLookup();
        CALLOC = linker.downcallHandle(libc.find("calloc").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG));
        FREE = linker.downcallHandle(libc.find("free").orElseThrow(),
                FunctionDescriptor.ofVoid(ValueLayout.ADDRESS), Linker.Option.critical(false));
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
        return raw;
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
