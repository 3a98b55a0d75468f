package dev.ropeway.rope;

import dev.ropeway.RopewayException;

import java.util.Arrays;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;

/** The RoPE methods Ropeway knows, by their transformers rope_type name, with the parameter keys each accepts. */
public enum RopeType {
    DEFAULT(DefaultRope.TYPE, List.of()),
    LINEAR(LinearRope.TYPE, List.of("factor")),
    DYNAMIC(DynamicNtkRope.TYPE, List.of("factor")),
    YARN(YarnRope.TYPE, List.of("factor", "original_max_position_embeddings", "beta_fast", "beta_slow",
            "attention_factor", "mscale", "mscale_all_dim", "truncate")),
    LLAMA3(Llama3Rope.TYPE, List.of("factor", "low_freq_factor", "high_freq_factor",
            "original_max_position_embeddings")),
    LONGROPE(LongRope.TYPE, List.of("short_factor", "long_factor", "factor", "original_max_position_embeddings",
            "attention_factor")),
    NTK(StaticNtkRope.TYPE, List.of("factor")),
    E2(E2Rope.TYPE, List.of("factor", "max_scale", "original_max_position_embeddings")),
    CLEX(ClexRope.TYPE, List.of("factor", "max_factor", "param_factor", "act", "time_dt", "log_scale"));

    private final String hfName;
    private final List<String> keys;

    RopeType(String hfName, List<String> keys) {
        this.hfName = hfName;
        this.keys = keys;
    }

    /** The rope_type string. */
    public String hfName() {
        return hfName;
    }

    /** Every key the method reads, rope_theta first. */
    public List<String> keys() {
        return Stream.concat(Stream.of("rope_theta"), keys.stream()).toList();
    }

    /** Whether transformers copies original_max_position_embeddings into these parameters from the config. */
    public boolean usesOriginalContext() {
        return keys.contains("original_max_position_embeddings");
    }

    /** "default, linear, dynamic, yarn, llama3, longrope, ntk". */
    public static String knownNames() {
        return Arrays.stream(values()).map(RopeType::hfName).collect(Collectors.joining(", "));
    }

    public static RopeType named(String name) {
        for (RopeType t : values()) if (t.hfName.equals(name)) return t;
        throw new RopewayException("unknown rope_type '" + name + "' (known: " + knownNames() + ")");
    }
}
