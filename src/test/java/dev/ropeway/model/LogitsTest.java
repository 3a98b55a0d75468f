package dev.ropeway.model;

import dev.ropeway.RopewayException;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class LogitsTest {
    @Test
    void argmaxTakesTheLowestIndexOnTiesAndRefusesNaN() {
        assertEquals(2, Logits.argmax(new float[]{-1f, 3f, 5f, 5f, Float.NEGATIVE_INFINITY}));
        assertEquals(0, Logits.argmax(new float[]{Float.NEGATIVE_INFINITY, Float.NEGATIVE_INFINITY}));
        assertEquals(1, Logits.argmax(new float[]{-3f, Float.POSITIVE_INFINITY, 7f}));
        RopewayException e = assertThrows(RopewayException.class, () -> Logits.argmax(new float[]{1f, 2f, Float.NaN}));
        assertTrue(e.getMessage().contains("logit 2 is NaN"), e.getMessage());
        assertThrows(RopewayException.class, () -> Logits.argmax(new float[0]));
    }
}
