package dev.ropeway.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SegmentAllocator;

/**
 * Host memory for one op's kernel arguments and small uploads, reused by every op of a thread: a bump allocator over
 * a thread-local block. A decode step issues a couple of hundred ops, so a fresh arena per op would cost more than the
 * kernels. Scopes nest (an op that calls a helper which opens its own): closing a scope gives back what was allocated
 * since it began, and nothing before. Requests that do not fit get their own arena, freed when the outermost scope ends.
 */
final class HostScratch implements SegmentAllocator, AutoCloseable {
    private static final long BLOCK = 1L << 20;
    private static final ThreadLocal<HostScratch> LOCAL = ThreadLocal.withInitial(HostScratch::new);

    private final MemorySegment block = Arena.ofAuto().allocate(BLOCK, 64);
    private long used;
    /** Where each open scope began, innermost last. */
    private long[] marks = new long[4];
    private int depth;
    private Arena overflow;

    /** A scope of the calling thread's scratch, starting after whatever enclosing scopes still hold. */
    static HostScratch begin() {
        HostScratch s = LOCAL.get();
        if (s.depth == s.marks.length) s.marks = java.util.Arrays.copyOf(s.marks, 2 * s.depth);
        s.marks[s.depth++] = s.used;
        return s;
    }

    @Override
    public MemorySegment allocate(long byteSize, long byteAlignment) {
        long start = (used + byteAlignment - 1) / byteAlignment * byteAlignment;
        if (start + byteSize <= BLOCK) {
            used = start + byteSize;
            return block.asSlice(start, byteSize);
        }
        if (overflow == null) overflow = Arena.ofConfined();
        return overflow.allocate(byteSize, byteAlignment);
    }

    /** Ends the innermost scope; the outermost also frees what did not fit (the block is kept for the next op). */
    @Override
    public void close() {
        if (depth == 0) throw new IllegalStateException("host scratch closed more often than begun");
        used = marks[--depth];
        if (depth == 0 && overflow != null) {
            overflow.close();
            overflow = null;
        }
    }
}
