package dev.ropeway.rope;

import dev.ropeway.RopewayException;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class Llama3RopeTest {

    @Test
    void llama31SplitsPairsIntoKeptSmoothedAndDivided() {
        Llama3Rope rope = new Llama3Rope(500000, 128, 8, 1, 4, 8192);
        float[] inv = rope.inverseFrequencies(131072);
        float[] plain = new DefaultRope(500000, 128).inverseFrequencies(1);
        int kept = 0, smoothed = 0, divided = 0;
        for (int j = 0; j < 64; j++) {
            if (inv[j] == plain[j]) {
                kept++;
                assertEquals(kept - 1, j, "kept pairs are the first ones");
            } else if (inv[j] == plain[j] / 8f) {
                divided++;
            } else {
                smoothed++;
                assertTrue(inv[j] < plain[j] && inv[j] > plain[j] / 8f, "pair " + j + " lies between");
            }
        }
        assertEquals(29, kept);
        assertEquals(6, smoothed);
        assertEquals(29, divided);
        assertEquals(1f, rope.attentionScaling());
    }

    @Test
    void frequencyFactorsMustBeOrdered() {
        RopewayException e = assertThrows(RopewayException.class, () -> new Llama3Rope(500000, 128, 8, 4, 4, 8192));
        assertEquals("rope_type 'llama3' needs 'high_freq_factor' (a number > low_freq_factor 4.0), got 4.0",
                e.getMessage());
    }
}
