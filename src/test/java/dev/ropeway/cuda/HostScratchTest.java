package dev.ropeway.cuda;

import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The kernel-argument scratch: nested scopes leave the enclosing scope's memory (small and overflowing) alone. */
class HostScratchTest {

    @Test
    void nestedScopesKeepTheOuterScopesMemory() {
        try (HostScratch outer = HostScratch.begin()) {
            MemorySegment small = outer.allocate(JAVA_LONG, 4);
            MemorySegment big = outer.allocate(JAVA_LONG, 1 << 18);   // 2 MiB: past the block, its own arena
            small.fill((byte) 7);
            big.fill((byte) 9);
            try (HostScratch inner = HostScratch.begin()) {
                inner.allocate(JAVA_LONG, 64).fill((byte) 1);
                inner.allocate(JAVA_LONG, 1 << 18).fill((byte) 1);
            }
            // The inner scope wrote only its own memory, and closing it freed nothing of the outer's.
            assertEquals(0x0707070707070707L, small.getAtIndex(JAVA_LONG, 3));
            assertEquals(0x0909090909090909L, big.getAtIndex(JAVA_LONG, (1 << 18) - 1));
            MemorySegment again = outer.allocate(JAVA_LONG, 1);
            assertEquals(small.address() + 32, again.address(), "the outer scope goes on where it was");
        }
        try (HostScratch next = HostScratch.begin()) {
            MemorySegment first = next.allocate(JAVA_LONG, 1);
            try (HostScratch probe = HostScratch.begin()) {
                assertEquals(first.address() + 8, probe.allocate(JAVA_LONG, 1).address());
            }
        }
    }

    @Test
    void closingMoreThanBegunIsAnError() {
        HostScratch s = HostScratch.begin();
        s.close();
        assertThrows(IllegalStateException.class, s::close);
    }
}
