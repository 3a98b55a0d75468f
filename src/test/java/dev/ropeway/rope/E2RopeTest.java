package dev.ropeway.rope;

import org.junit.jupiter.api.Test;

import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;

class E2RopeTest {
    static final RopeContext CTX = new RopeContext(64, 256, 0, 10000);

    @Test
    void scaleFollowsTheLengthAndEqualsPositionInterpolation() {
        E2Rope e2 = assertInstanceOf(E2Rope.class, RopeSpec.parse("e2", CTX));
        assertEquals(256, e2.originalMax());
        assertEquals(1, e2.scaleFor(1));
        assertEquals(1, e2.scaleFor(256));
        assertEquals(2, e2.scaleFor(257));
        assertEquals(16, e2.scaleFor(4096));
        assertEquals(17, e2.scaleFor(4097), "scales past the trained G still apply");
        for (long len : new long[]{100, 256, 1000, 4096})
            assertArrayEquals(new LinearRope(10000, 64, e2.scaleFor(len)).inverseFrequencies(len), e2.inverseFrequencies(len),
                    "length " + len);
        E2Rope fixed = assertInstanceOf(E2Rope.class, RopeSpec.parse("e2:factor=8", CTX));
        assertEquals(8, fixed.scaleFor(10));
        assertEquals(8, fixed.scaleFor(100_000));
    }

    @Test
    void roundTripsThroughConfigParameters() {
        E2Rope e2 = new E2Rope(500000, 64, 512, 0, 16);
        Map<String, Object> p = e2.toParameters();
        assertEquals("e2", p.get("rope_type"));
        assertEquals(e2, RopeScalings.fromParameters(p, new RopeContext(64, 8192, 0, 10000)));
    }
}
