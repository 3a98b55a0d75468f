package dev.ropeway.rope;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Static and dynamic NTK-aware scaling: both only change the base. */
class NtkRopeTest {

    @Test
    void staticNtkBase() {
        StaticNtkRope rope = new StaticNtkRope(1e4, 128, 4);
        assertEquals(40889.94, rope.base(), 0.01);
        assertArrayEquals(new DefaultRope(rope.base(), 128).inverseFrequencies(1), rope.inverseFrequencies(99999));
    }

    @Test
    void dynamicBaseGrowsWithSequenceBeyondMaxPositions() {
        DynamicNtkRope rope = new DynamicNtkRope(1e4, 128, 2, 4096);
        assertEquals(30527.74, rope.base(8192), 0.01);
        assertEquals(1e4, rope.base(4096), 0);
        assertEquals(1e4, rope.base(10), 0, "short sequences count as max_position_embeddings");
        assertArrayEquals(new DefaultRope(1e4, 128).inverseFrequencies(1), rope.inverseFrequencies(100));
        float[] grown = rope.inverseFrequencies(8192);
        float[] plain = new DefaultRope(1e4, 128).inverseFrequencies(1);
        assertEquals(1f, grown[0]);
        for (int j = 1; j < 64; j++) assertTrue(grown[j] < plain[j], "pair " + j + " rotates slower");
    }
}
