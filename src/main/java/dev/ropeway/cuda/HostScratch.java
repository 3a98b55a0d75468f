package dev.ropeway.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SegmentAllocator;

/**
 * Host memory for one op's kernel arguments and small uploads, reused by every op of a thread: a bump allocator over
 * a thread-local block, reset when an op begins. A decode step issues a couple of hundred ops, so a fresh arena per op
 * would cost more than the kernels. Requests that do not fit get their own arena, freed when the op ends.
 */
final class HostScratch implements SegmentAllocator, AutoCloseable {
    private static final long BLOCK = 1L << 20;
    private static final ThreadLocal<HostScratch> LOCAL = ThreadLocal.withInitial(HostScratch::new);

    private final MemorySegment block = Arena.ofAuto().allocate(BLOCK, 64);
    private long used;
    private Arena overflow;

    /** The calling thread's scratch, emptied. Ops do not nest, so nothing in use is overwritten. */
    static HostScratch begin() {
        HostScratch s = LOCAL.get();
        s.used = 0;
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

    /** Frees what did not fit; the block itself is kept for the thread's next op. */
    @Override
    public void close() {
        if (overflow != null) {
            overflow.close();
            overflow = null;
        }
    }
}
