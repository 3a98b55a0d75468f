package dev.ropeway.model;

import dev.ropeway.RopewayException;

import java.util.Locale;

/**
 * Whether a training pass keeps every layer's activations for the backward ({@link #OFF}), keeps only each layer's
 * input and runs the layer's forward again before differentiating it ({@link #ON}: activation memory that no longer
 * grows with depth, for about a third more compute), or decides from the memory the backend has left once the model
 * and optimiser are in place ({@link #AUTO}: keep them when they fit, see {@link TrainingPass.Memory#decide}).
 */
public enum Recompute {
    OFF, ON, AUTO;

    /** {@code auto}, {@code on} or {@code off} (also {@code true} / {@code false}), any case. */
    public static Recompute parse(String s) {
        return switch (s == null ? "" : s.trim().toLowerCase(Locale.ROOT)) {
            case "auto" -> AUTO;
            case "on", "true" -> ON;
            case "off", "false" -> OFF;
            default -> throw new RopewayException("unknown recompute setting '" + s + "' (auto, on or off)");
        };
    }

    @Override
    public String toString() {
        return name().toLowerCase(Locale.ROOT);
    }
}
