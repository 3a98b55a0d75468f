package dev.ropeway.cuda;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.SegmentAllocator;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_DOUBLE;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * A kernel's parameter list as cuLaunchKernel takes it: an array of pointers, each to one argument's value. Values
 * live in slots of the given allocator (a pointer is a 64-bit device address; {@code long} is C's {@code long long}).
 * The array ends with a null pointer, which the driver does not read (it knows the kernel's parameters) but which lets
 * a stand-in for the driver check that the count matches.
 */
final class KernelArgs {
    private static final int MAX = 16;
    private final MemorySegment pointers;
    private final SegmentAllocator arena;
    private int count;

    KernelArgs(SegmentAllocator arena) {
        this.arena = arena;
        this.pointers = arena.allocate(ADDRESS, MAX + 1);
    }

    KernelArgs ptr(long deviceAddress) {
        return add(arena.allocateFrom(JAVA_LONG, deviceAddress));
    }

    KernelArgs i64(long v) {
        return add(arena.allocateFrom(JAVA_LONG, v));
    }

    KernelArgs i32(int v) {
        return add(arena.allocateFrom(JAVA_INT, v));
    }

    KernelArgs f32(float v) {
        return add(arena.allocateFrom(JAVA_FLOAT, v));
    }

    KernelArgs f64(double v) {
        return add(arena.allocateFrom(JAVA_DOUBLE, v));
    }

    /** A struct passed by value: its bytes, laid out as the kernel's C struct. */
    KernelArgs struct(MemorySegment bytes) {
        return add(bytes);
    }

    private KernelArgs add(MemorySegment value) {
        if (count == MAX) throw new IllegalStateException("more than " + MAX + " kernel arguments");
        pointers.setAtIndex(ADDRESS, count++, value);
        return this;
    }

    /** The argument array, ended with a null. */
    MemorySegment pointers() {
        pointers.setAtIndex(ADDRESS, count, MemorySegment.NULL);
        return pointers;
    }
}
