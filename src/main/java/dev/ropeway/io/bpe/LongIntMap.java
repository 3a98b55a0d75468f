package dev.ropeway.io.bpe;

import java.util.Arrays;

/**
 * An open-addressing hash map from non-negative longs to ints, for symbol pairs packed as {@code left << 32 | right}.
 * Boxed {@code HashMap<Long, Integer>} lookups would dominate both the BPE trainer's merge loop and the encoder.
 */
public final class LongIntMap {
    private static final long EMPTY = -1;
    private long[] keys;
    private int[] values;
    private int size, mask, shift;

    public LongIntMap(int expected) {
        int capacity = Integer.highestOneBit(Math.max(16, expected * 2 - 1)) << 1;
        keys = new long[capacity];
        Arrays.fill(keys, EMPTY);
        values = new int[capacity];
        mask = capacity - 1;
        shift = Long.numberOfLeadingZeros(capacity - 1);
    }

    public static long pair(int left, int right) {
        return (long) left << 32 | (right & 0xFFFFFFFFL);
    }

    /** The value of {@code key}, or {@code missing}. */
    int get(long key, int missing) {
        for (int slot = slot(key); ; slot = (slot + 1) & mask) {
            long k = keys[slot];
            if (k == key) return values[slot];
            if (k == EMPTY) return missing;
        }
    }

    /** Sets {@code key} to {@code value} unless it is present; returns the value it then has. */
    public int putIfAbsent(long key, int value) {
        int slot = slot(key);
        for (; ; slot = (slot + 1) & mask) {
            long k = keys[slot];
            if (k == key) return values[slot];
            if (k == EMPTY) break;
        }
        keys[slot] = key;
        values[slot] = value;
        if (++size * 2 > keys.length) grow();
        return value;
    }

    private int slot(long key) {
        // Fibonacci hashing keeps the top bits of the product, which depend on both halves of the pair.
        return (int) ((key * 0x9E3779B97F4A7C15L) >>> shift);
    }

    private void grow() {
        long[] oldKeys = keys;
        int[] oldValues = values;
        keys = new long[oldKeys.length * 2];
        Arrays.fill(keys, EMPTY);
        values = new int[keys.length];
        mask = keys.length - 1;
        shift = Long.numberOfLeadingZeros(mask);
        for (int i = 0; i < oldKeys.length; i++) {
            if (oldKeys[i] == EMPTY) continue;
            int slot = slot(oldKeys[i]);
            while (keys[slot] != EMPTY) slot = (slot + 1) & mask;
            keys[slot] = oldKeys[i];
            values[slot] = oldValues[i];
        }
    }
}
