package dev.ropeway.train;

import org.junit.jupiter.api.Test;

import java.util.HashSet;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PackedTokensTest {

    @Test
    void packsDocumentsWithBosBetween() {
        PackedTokens p = PackedTokens.pack(List.of(new int[]{5, 6}, new int[]{7}), 1);
        assertArrayEquals(new int[]{1, 5, 6, 1, 7}, p.tokens());
        assertArrayEquals(new int[]{5, 6, 7}, PackedTokens.pack(List.of(new int[]{5, 6}, new int[]{7}), -1).tokens());
    }

    @Test
    void permutationIsABijectionForAnySize() {
        for (long n : new long[]{1, 2, 3, 5, 17, 100, 1000, 4097}) {
            Set<Long> seen = new HashSet<>();
            for (long i = 0; i < n; i++) {
                long p = PackedTokens.permute(i, n, 42);
                assertTrue(p >= 0 && p < n);
                seen.add(p);
            }
            assertEquals(n, seen.size(), "n = " + n);
        }
        // A different key gives a different order.
        long same = 0;
        for (long i = 0; i < 1000; i++) if (PackedTokens.permute(i, 1000, 1) == PackedTokens.permute(i, 1000, 2)) same++;
        assertTrue(same < 50, same + " fixed points between two keys");
    }

    @Test
    void everyWindowOncePerEpochTargetsShiftedByOne() {
        int[] tokens = new int[1001];
        for (int i = 0; i < tokens.length; i++) tokens[i] = i;
        PackedTokens p = new PackedTokens(tokens);
        int seq = 10;
        assertEquals(100, p.windows(seq));
        int[] in = new int[seq], tg = new int[seq];
        Set<Integer> starts = new HashSet<>();
        for (int i = 0; i < 100; i++) {
            p.sample(3, i, seq, in, tg, 0);
            assertEquals(0, in[0] % seq);
            for (int j = 0; j < seq; j++) assertEquals(in[j] + 1, tg[j]);
            starts.add(in[0]);
        }
        assertEquals(100, starts.size());
        // The next epoch visits the same windows in another order.
        int[] epoch0 = new int[20], epoch1 = new int[20];
        for (int i = 0; i < 20; i++) {
            p.sample(3, i, seq, in, tg, 0);
            epoch0[i] = in[0];
            p.sample(3, 100 + i, seq, in, tg, 0);
            epoch1[i] = in[0];
        }
        assertNotEquals(java.util.Arrays.toString(epoch0), java.util.Arrays.toString(epoch1));
    }

    @Test
    void scheduleWarmsUpThenDecays() {
        OptimizerSettings s = OptimizerSettings.defaults(1e-3, 10, 110);
        assertEquals(1e-4, s.lrAt(1), 1e-12);
        assertEquals(1e-3, s.lrAt(10), 1e-12);
        assertEquals((1e-3 + 1e-4) / 2, s.lrAt(60), 1e-12);
        assertEquals(1e-4, s.lrAt(110), 1e-12);
        OptimizerSettings lin = new OptimizerSettings(1e-3, 0, 0, 100, OptimizerSettings.Schedule.LINEAR, 0.9, 0.95, 1e-8, 0, 0);
        assertEquals(5e-4, lin.lrAt(50), 1e-12);
    }
}
