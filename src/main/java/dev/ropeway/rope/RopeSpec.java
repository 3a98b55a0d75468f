package dev.ropeway.rope;

import dev.ropeway.RopewayException;

import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The command line's RoPE method: {@code method[:key=value,...]} with transformers' parameter names, e.g.
 * {@code yarn:factor=4,original_max_position_embeddings=2048} or {@code longrope:short_factor=1;1.1,...}
 * (list items separated by semicolons). {@code none} means plain RoPE. Also the one-line description the
 * {@code info} command prints.
 */
public final class RopeSpec {
    private static final Set<String> WHOLE_KEYS = Set.of("original_max_position_embeddings", "max_scale", "max_factor",
            "param_factor");
    private static final Set<String> STRING_KEYS = Set.of("act");
    private static final Set<String> LIST_KEYS = Set.of("short_factor", "long_factor");
    private static final Set<String> FLAG_KEYS = Set.of("truncate", "log_scale");

    private RopeSpec() {
    }

    /** Parses a spec; parameters it leaves out default as in a config (theta from {@code ctx}). */
    public static RopeScaling parse(String spec, RopeContext ctx) {
        String text = spec == null ? "" : spec.strip();
        int colon = text.indexOf(':');
        String method = (colon < 0 ? text : text.substring(0, colon)).strip();
        if (method.isEmpty())
            throw new RopewayException("RoPE spec '" + text + "' names no method (known: none, " + RopeType.knownNames() + ")");
        RopeType type = method.equals("none") ? RopeType.DEFAULT : typeNamed(method);
        Map<String, Object> parameters = new LinkedHashMap<>();
        parameters.put("rope_type", type.hfName());
        if (colon >= 0) {
            for (String item : text.substring(colon + 1).split(",", -1)) {
                int eq = item.indexOf('=');
                String key = (eq < 0 ? item : item.substring(0, eq)).strip();
                if (eq < 0 || key.isEmpty())
                    throw new RopewayException("RoPE spec '" + text + "': expected key=value, got '" + item.strip() + "'");
                if (!type.keys().contains(key))
                    throw new RopewayException("RoPE method '" + method + "' has no key '" + key + "' (allowed: "
                            + String.join(", ", type.keys()) + ")");
                if (parameters.containsKey(key))
                    throw new RopewayException("RoPE spec '" + text + "' gives '" + key + "' twice");
                parameters.put(key, value(key, item.substring(eq + 1).strip()));
            }
        }
        return RopeScalings.fromParameters(parameters, ctx);
    }

    private static RopeType typeNamed(String method) {
        try {
            return RopeType.named(method);
        } catch (RopewayException e) {
            throw new RopewayException("unknown RoPE method '" + method + "' (known: none, " + RopeType.knownNames() + ")");
        }
    }

    private static Object value(String key, String text) {
        if (STRING_KEYS.contains(key)) return text;
        if (FLAG_KEYS.contains(key)) {
            if (text.equals("true") || text.equals("false")) return Boolean.parseBoolean(text);
            throw new RopewayException("RoPE key '" + key + "' needs true or false, got '" + text + "'");
        }
        if (LIST_KEYS.contains(key)) {
            List<Double> list = new ArrayList<>();
            for (String item : text.split(";", -1)) list.add(number(key, item.strip(), text));
            return list;
        }
        double v = number(key, text, text);
        if (WHOLE_KEYS.contains(key)) {
            if (v != Math.rint(v))
                throw new RopewayException("RoPE key '" + key + "' needs a whole number, got '" + text + "'");
            return (long) v;
        }
        return v;
    }

    private static double number(String key, String text, String whole) {
        try {
            double v = Double.parseDouble(text);
            if (Double.isFinite(v) && !text.endsWith("d") && !text.endsWith("f") && !text.endsWith("D")
                    && !text.endsWith("F")) return v;
        } catch (NumberFormatException e) {
            // reported below with the key and the text
        }
        throw new RopewayException("RoPE key '" + key + "' needs a number, got '" + whole + "'");
    }

    /** One line for people, e.g. {@code yarn factor=4 original=2048 beta_fast=32 beta_slow=1 attention_scaling=1.1386 theta=10000}. */
    public static String describe(RopeScaling rope) {
        String body = switch (rope) {
            case DefaultRope r -> "default";
            case LinearRope r -> "linear factor=" + number(r.factor());
            case StaticNtkRope r -> "ntk factor=" + number(r.factor()) + " base=" + number(r.base());
            case DynamicNtkRope r -> "dynamic factor=" + number(r.factor()) + " max_position_embeddings="
                    + r.maxPositionEmbeddings();
            case YarnRope r -> {
                YarnRope.CorrectionRange range = r.correctionRange();
                yield "yarn factor=" + number(r.factor()) + " original=" + r.originalMaxPositionEmbeddings()
                        + " beta_fast=" + number(r.betaFast()) + " beta_slow=" + number(r.betaSlow())
                        + " attention_scaling=" + number(r.resolvedAttentionFactor())
                        + " ramp=" + number(range.low()) + ".." + number(range.high());
            }
            case Llama3Rope r -> "llama3 factor=" + number(r.factor()) + " low_freq_factor=" + number(r.lowFreqFactor())
                    + " high_freq_factor=" + number(r.highFreqFactor()) + " original=" + r.originalMaxPositionEmbeddings();
            case LongRope r -> "longrope factor=" + number(r.factor()) + " original=" + r.originalMaxPositionEmbeddings()
                    + " attention_scaling=" + number(r.resolvedAttentionFactor())
                    + " short=" + span(r.shortFactor()) + " long=" + span(r.longFactor());
            case E2Rope r -> "e2 " + (r.factor() > 0 ? "factor=" + number(r.factor()) : "factor=ceil(length/" + r.originalMax() + ")")
                    + " trained_scales=1.." + r.maxScale() + " original=" + r.originalMax();
            case ClexRope r -> "clex t=min(ceil(length/" + r.originalMax() + ")," + r.maxFactor() + ") param_factor="
                    + r.paramFactor() + " act=" + r.act() + " time_dt=" + number(r.timeDt())
                    + (r.logScale() ? " log_scale" : "") + (r.ode() == null ? " (untrained: NTK alpha=2t-1)" : "");
        };
        return body + " theta=" + number(rope.theta());
    }

    private static String span(List<Double> factors) {
        double lo = factors.stream().mapToDouble(Double::doubleValue).min().orElseThrow();
        double hi = factors.stream().mapToDouble(Double::doubleValue).max().orElseThrow();
        return number(lo) + ".." + number(hi);
    }

    /** At most four decimals, no trailing zeros: 4, 1.1386, 40889.9402. */
    static String number(double v) {
        if (!Double.isFinite(v)) return Double.toString(v);
        return BigDecimal.valueOf(v).setScale(4, RoundingMode.HALF_UP).stripTrailingZeros().toPlainString();
    }
}
