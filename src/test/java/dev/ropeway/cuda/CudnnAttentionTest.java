package dev.ropeway.cuda;

import dev.ropeway.tensor.AttentionShape;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Which attention calls the cuDNN graphs take (no GPU needed: the rules alone). */
class CudnnAttentionTest {
    @Test
    void graphsServeWholeCausalSequences() {
        assertTrue(CudnnAttention.supports(AttentionShape.selfAttention(2, 48, 4, 2, 64)));
        assertTrue(CudnnAttention.supports(AttentionShape.selfAttention(1, 300, 4, 2, 64).withWindow(7)));
        assertFalse(CudnnAttention.supports(new AttentionShape(1, 8, 40, 40, 32, 4, 2, 64, 0.125f)), "queries after cached keys");
        assertFalse(CudnnAttention.supports(AttentionShape.selfAttention(1, 1, 4, 2, 64)), "one query");
        assertFalse(CudnnAttention.supports(AttentionShape.selfAttention(1, 64, 4, 2, 60)), "a head size not a multiple of 8");
        assertFalse(CudnnAttention.supports(AttentionShape.selfAttention(1, 64, 2, 2, 256)), "a head size past 128");
    }

    /** cuDNN up to 9.15.0 needs a padding mask in the backward for lengths off its 128-row tiles; later ones do not. */
    @Test
    void backwardWaitsForWholeTilesUpTo9_15() {
        AttentionShape whole = AttentionShape.selfAttention(2, 2048, 12, 12, 64), odd = AttentionShape.selfAttention(2, 48, 4, 2, 64);
        assertTrue(CudnnAttention.backwardServes(whole, 91002));
        assertTrue(CudnnAttention.backwardServes(whole, 91500));
        assertFalse(CudnnAttention.backwardServes(odd, 91002));
        assertFalse(CudnnAttention.backwardServes(odd, 91500));
        assertTrue(CudnnAttention.backwardServes(odd, 91600));
        assertFalse(CudnnAttention.backwardServes(AttentionShape.selfAttention(1, 256, 2, 2, 256), 91600), "what the graphs never serve");
    }
}
