package dev.ropeway.train;

import dev.ropeway.RopewayException;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Where a run stands, saved with every checkpoint: optimizer steps done, training samples consumed (the data
 * position), tokens seen, the seed (every random draw is a function of seed and step, so this is the whole RNG
 * state), wall time spent, and the settings that must not change on resume.
 */
public record TrainingState(long step, long samples, long tokens, long seed, double elapsedSeconds,
                            Map<String, Object> settings) {

    public Map<String, Object> toJson() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("step", step);
        m.put("samples", samples);
        m.put("tokens", tokens);
        m.put("seed", seed);
        m.put("elapsed_seconds", elapsedSeconds);
        m.put("settings", settings);
        return m;
    }

    @SuppressWarnings("unchecked")
    public static TrainingState fromJson(Map<String, Object> m, String source) {
        try {
            return new TrainingState(((Number) m.get("step")).longValue(), ((Number) m.get("samples")).longValue(),
                    ((Number) m.get("tokens")).longValue(), ((Number) m.get("seed")).longValue(),
                    ((Number) m.get("elapsed_seconds")).doubleValue(),
                    (Map<String, Object>) m.getOrDefault("settings", Map.of()));
        } catch (NullPointerException | ClassCastException e) {
            throw new RopewayException(source + " is not a valid training state: " + e.getMessage());
        }
    }
}
