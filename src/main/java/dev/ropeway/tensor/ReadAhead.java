package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;

/**
 * Loads that bring a weight matrix's next bytes into the cache while a decode kernel is still working on the bytes
 * before them: the kernels read a few rows of W side by side, which for the short rows of a decode step (768 to a few
 * thousand values) is several short streams at once, too short for the processor's own prefetchers to follow. Each
 * kernel reads one byte per cache line of its next group of rows, spread over its work on the current group (so a
 * handful of misses are in flight at any time), and folds the bytes into a sum it hands to {@link #keep} at the end,
 * so the JIT cannot drop the loads. Measured on one core streaming 126 MB of float16 rows of 768 values: 0.19 ns per
 * weight without, 0.093 with, about the rate of one long row. Nothing computed depends on these loads.
 */
final class ReadAhead {
    /** Bytes per cache line. */
    static final int LINE = 64;
    /** Where {@link #keep} puts the sums; never read. */
    @SuppressWarnings("unused")
    private static long sink;

    private ReadAhead() {}

    /**
     * Where a kernel working on the {@code bytes} bytes from {@code current} should read ahead: the same number from
     * {@code next}, or from {@code current} again (reading what it reads anyway) where those would run past {@code s}.
     */
    static long from(MemorySegment s, long current, long next, long bytes) {
        return next + bytes <= s.byteSize() ? next : current;
    }

    /**
     * The bytes at {@code at}, {@code at + LINE}, ... ({@code count} of them: one per cache line) of {@code s}, summed.
     * The count is the same for every step of a kernel's call ({@link #count}: its per-step lines, or 0).
     */
    static long lines(MemorySegment s, long at, int count) {
        long sum = 0;
        for (int t = 0; t < count; t++) sum += line(s, at + (long) t * LINE);
        return sum;
    }

    /**
     * Cache lines to read per step of a kernel that takes {@code bytes} bytes of W per step (at least one; the kernels
     * read {@code ahead + step * bytes + t * LINE} for t below this, which stays inside the next group's bytes).
     */
    static int perStep(int bytes) {
        return Math.max(1, bytes / LINE);
    }

    /**
     * The most bytes a group of rows may span for reading ahead to pay: beyond about this the lines read a group ahead
     * crowd the level-1 cache the current group is streamed through, and long rows are streams the processor's
     * prefetchers follow anyway (measured, float16 rows on one core: 768 values 2.4 times faster, 1536 about 1.1 times,
     * 2048 and up slower by 1.1 to 2 times with it).
     */
    static final long MAX_GROUP = 12 << 10;

    /**
     * {@code perStep} where the group's bytes are few enough for reading the next group ahead to pay ({@link #MAX_GROUP}),
     * else 0 (none; the one-row float16 kernel then reads {@link #DISTANCE} ahead within each row instead).
     */
    static int count(int perStep, long groupBytes) {
        return groupBytes <= MAX_GROUP ? perStep : 0;
    }

    /**
     * How far ahead within each row the one-row float16 kernel reads where four rows span more than {@link #MAX_GROUP}
     * (past a row's end: into the next group's row). Measured on one core: rows of 2,048 values 0.134 ns per weight
     * against 0.16, 4,096 0.12-0.13 against 0.14-0.15, 11,008 unchanged. The bfloat16 kernel, whose widening is one
     * shift, gained nothing at 2,048 and 4,096 and lost a tenth at 11,008, so it does not.
     */
    static final int DISTANCE = 512;

    /** The byte at {@code at} of {@code s}. */
    static long line(MemorySegment s, long at) {
        return s.get(JAVA_BYTE, at);
    }

    /** Keeps a kernel's sum of read-ahead bytes where the JIT must assume someone reads it. */
    static void keep(long sum) {
        sink = sum;
    }
}
