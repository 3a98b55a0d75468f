package dev.ropeway.model;

import dev.ropeway.RopewayException;

import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/** Named Llama sizes for models Ropeway builds itself. */
public enum ModelPreset {
    TINY(512, 64, 172, 2, 4, 4, 16),
    SMALL_5M(4096, 256, 688, 4, 4, 4, 64),
    SMALL_20M(8192, 384, 1024, 8, 6, 6, 64),
    BASE_134M(32000, 768, 2048, 12, 12, 12, 64),
    /** TinyLlama-1.1B's shape (grouped-query attention, 4 key/value heads). */
    TINYLLAMA_1B(32000, 2048, 5632, 22, 32, 4, 64);

    public final int vocab, hidden, ffn, layers, heads, kvHeads, headDim;

    ModelPreset(int vocab, int hidden, int ffn, int layers, int heads, int kvHeads, int headDim) {
        this.vocab = vocab;
        this.hidden = hidden;
        this.ffn = ffn;
        this.layers = layers;
        this.heads = heads;
        this.kvHeads = kvHeads;
        this.headDim = headDim;
    }

    public String label() {
        return switch (this) {
            case TINY -> "tiny";
            case SMALL_5M -> "5m";
            case SMALL_20M -> "20m";
            case BASE_134M -> "134m";
            case TINYLLAMA_1B -> "1.1b";
        };
    }

    public static ModelPreset parse(String name) {
        for (ModelPreset p : values()) if (p.label().equals(name.toLowerCase(Locale.ROOT))) return p;
        throw new RopewayException("unknown preset '" + name + "' (available: "
                + Arrays.stream(values()).map(ModelPreset::label).collect(Collectors.joining(", ")) + ")");
    }
}
