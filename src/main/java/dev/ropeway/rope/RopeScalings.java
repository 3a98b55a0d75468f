package dev.ropeway.rope;

import dev.ropeway.RopewayException;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Builds a {@link RopeScaling} from a model's config.json, in either form transformers accepts: 5.x
 * {@code rope_parameters} (rope_type, rope_theta, ...) or 4.x {@code rope_scaling} (type or rope_type, ...) with a
 * top-level {@code rope_theta}. The config is standardised the way transformers does it before the parameters are
 * read.
 */
public final class RopeScalings {
    static final double DEFAULT_THETA = 10000.0;
    private static final String ORIGINAL = "original_max_position_embeddings";

    private RopeScalings() {
    }

    /** The method a whole config.json (as a map) describes, for a rotary dimension the caller has worked out. */
    public static RopeScaling fromConfig(Map<String, Object> config, int rotaryDim) {
        RopeContext ctx = context(config, rotaryDim);
        Map<String, Object> parameters = new LinkedHashMap<>(ropeParametersOf(config));
        RopeType type = typeOf(parameters);
        parameters.put("rope_type", type.hfName());
        // A top-level original_max_position_embeddings (Phi-3 keeps it there) overrides the parameters' own value.
        if (type.usesOriginalContext() && ctx.topLevelOriginalMax() > 0)
            parameters.put(ORIGINAL, ctx.topLevelOriginalMax());
        RopeScaling rope = fromParameters(parameters, ctx);
        // CLEX keeps log_scale at the top level of config.json.
        if (rope instanceof ClexRope clex && config.get("log_scale") instanceof Boolean on && on) rope = clex.withLogScale(true);
        return rope;
    }

    /** What the RoPE methods need to know about the model described by a config.json. */
    public static RopeContext context(Map<String, Object> config, int rotaryDim) {
        if (rotaryDim <= 0 || rotaryDim % 2 != 0)
            throw new RopewayException("the rotary dimension must be even and > 0, got " + rotaryDim);
        long maxPositions = configWhole(config, "max_position_embeddings", 0);
        if (maxPositions <= 0)
            throw new RopewayException("config.json needs 'max_position_embeddings' (a whole number > 0)");
        long original = configWhole(config, ORIGINAL, 0);
        double defaultTheta = DEFAULT_THETA;
        Object topLevel = config.get("rope_theta");
        if (topLevel != null) {
            if (!(topLevel instanceof Number n) || !(n.doubleValue() > 0))
                throw new RopewayException("config.json needs 'rope_theta' (a number > 0), got " + topLevel);
            defaultTheta = n.doubleValue();
        }
        // The parameters' own rope_theta is the model's theta (5.x form); a bad one is reported when they are read.
        if (ropeParametersOf(config).get("rope_theta") instanceof Number n && n.doubleValue() > 0)
            defaultTheta = n.doubleValue();
        return new RopeContext(rotaryDim, maxPositions, original, defaultTheta);
    }

    /**
     * The method a rope_parameters map describes. rope_type (or the legacy key type) names it, "default" when
     * neither is given; rope_theta defaults to {@code ctx.defaultTheta()}; original_max_position_embeddings, when
     * the method uses it and the map leaves it out, to the config's top-level value or else max_position_embeddings.
     * Keys a method does not use are ignored, as transformers only warns about them.
     */
    public static RopeScaling fromParameters(Map<String, Object> ropeParameters, RopeContext ctx) {
        RopeType type = typeOf(ropeParameters);
        String name = type.hfName();
        RopeParameterReader read = new RopeParameterReader(name, ropeParameters);
        double theta = read.positive("rope_theta", ctx.defaultTheta());
        int d = ctx.rotaryDim();
        long original = type.usesOriginalContext() ? read.positiveWhole(ORIGINAL,
                ctx.topLevelOriginalMax() > 0 ? ctx.topLevelOriginalMax() : ctx.maxPositionEmbeddings()) : 0;
        return switch (type) {
            case DEFAULT -> new DefaultRope(theta, d);
            case LINEAR -> new LinearRope(theta, d, read.positive("factor"));
            case DYNAMIC -> new DynamicNtkRope(theta, d, read.positive("factor"), ctx.maxPositionEmbeddings());
            case NTK -> new StaticNtkRope(theta, d, read.positive("factor"));
            case LLAMA3 -> new Llama3Rope(theta, d, read.positive("factor"), read.positive("low_freq_factor"),
                    read.positive("high_freq_factor"), original);
            case YARN -> new YarnRope(theta, d,
                    read.positive("factor", ctx.maxPositionEmbeddings() / (double) original),
                    original,
                    orDefault(read.optionalNumber("beta_fast").orElse(0), YarnRope.DEFAULT_BETA_FAST),
                    orDefault(read.optionalNumber("beta_slow").orElse(0), YarnRope.DEFAULT_BETA_SLOW),
                    read.optionalNumber("attention_factor"), read.optionalNumber("mscale"),
                    read.optionalNumber("mscale_all_dim"), read.flag("truncate", true));
            case LONGROPE -> new LongRope(theta, d, read.numbers("short_factor"), read.numbers("long_factor"),
                    read.positive("factor", ctx.maxPositionEmbeddings() / (double) original),
                    original, read.optionalNumber("attention_factor"));
            case E2 -> new E2Rope(theta, d, original, read.optionalNumber("factor").orElse(0),
                    (int) read.positiveWhole("max_scale", 1));
            // The released checkpoints: act missing means SiLU (the first code hard-coded it), time_dt 0.01.
            case CLEX -> new ClexRope(theta, d, ctx.maxPositionEmbeddings(), (int) read.positiveWhole("max_factor", 16),
                    (int) read.positiveWhole("param_factor", 1), read.string("act", "silu"),
                    read.positive("time_dt", 0.01), read.flag("log_scale", false), null);
        };
    }

    /** Python's {@code value or fallback}: transformers treats a zero beta as unset. */
    private static double orDefault(double value, double fallback) {
        return value == 0 ? fallback : value;
    }

    /**
     * The method's name after transformers' standardisation: rope_type, else type, else "default"; Phi-3's legacy
     * names "su" and "yarn" with per-pair factor lists are LongRoPE.
     */
    static RopeType typeOf(Map<String, Object> parameters) {
        Object name = parameters.get("rope_type");
        if (name == null) name = parameters.get("type");
        if (name == null) return RopeType.DEFAULT;
        if (!(name instanceof String s)) throw new RopewayException("rope_type must be a string, got " + name);
        boolean hasFactorLists = parameters.containsKey("short_factor") || parameters.containsKey("long_factor");
        if (s.equals("su") || (s.equals(YarnRope.TYPE) && hasFactorLists)) return RopeType.LONGROPE;
        return RopeType.named(s);
    }

    /**
     * The RoPE parameters of a config: a non-empty 4.x rope_scaling wins over rope_parameters, as in transformers'
     * conversion; neither means plain RoPE.
     */
    @SuppressWarnings("unchecked")
    private static Map<String, Object> ropeParametersOf(Map<String, Object> config) {
        for (String key : List.of("rope_scaling", "rope_parameters")) {
            Object v = config.get(key);
            if (v == null) continue;
            if (!(v instanceof Map<?, ?> m)) throw new RopewayException("config.json '" + key + "' must be an object, got " + v);
            if (m.isEmpty()) continue;
            if (m.values().stream().allMatch(x -> x instanceof Map<?, ?>))
                throw new RopewayException("config.json '" + key + "' gives RoPE parameters per layer type ("
                        + String.join(", ", ((Map<String, Object>) m).keySet())
                        + "); Ropeway supports one set of RoPE parameters for all layers");
            return (Map<String, Object>) m;
        }
        return Map.of();
    }

    private static long configWhole(Map<String, Object> config, String key, long fallback) {
        Object v = config.get(key);
        if (v == null) return fallback;
        if (v instanceof Number n && n.doubleValue() > 0 && n.doubleValue() == Math.rint(n.doubleValue()))
            return n.longValue();
        throw new RopewayException("config.json needs '" + key + "' (a whole number > 0), got " + v);
    }
}
