package dev.ropeway.model;

import dev.ropeway.RopewayException;

/** What every reader of a model's logits needs: the most likely token, and a clear error for broken output. */
public final class Logits {
    private Logits() {}

    /** The index of the largest value, the lowest one on ties; NaN is an error. */
    public static int argmax(float[] logits) {
        return argmax(logits, logits.length);
    }

    /** As {@link #argmax(float[])} among the first {@code count} values (a tokenizer's ids in a padded vocabulary). */
    public static int argmax(float[] logits, int count) {
        if (count <= 0) throw new RopewayException("no logits to choose from (empty vocabulary)");
        if (count > logits.length) throw new IllegalArgumentException(count + " logits asked of " + logits.length);
        int best = 0;
        float max = logits[0];
        for (int i = 0; i < count; i++) {
            float x = logits[i];
            if (Float.isNaN(x)) throw nan(i);
            if (x > max) {
                max = x;
                best = i;
            }
        }
        return best;
    }

    /** The error for a NaN logit at {@code index}. */
    public static RopewayException nan(int index) {
        return new RopewayException("logit " + index + " is NaN; the model output is broken");
    }
}
