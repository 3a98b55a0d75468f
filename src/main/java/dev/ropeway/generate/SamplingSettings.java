package dev.ropeway.generate;

import dev.ropeway.RopewayException;

/**
 * How the next token is chosen from the model's logits, with the meaning (and the defaults) of the Hugging Face
 * generation config of the same names.
 *
 * @param temperature       0 picks the most likely token (greedy); otherwise the logits are divided by it
 * @param topK              keep only the k most likely tokens (ties with the k-th kept too); 0 turns it off
 * @param topP              keep the smallest set of most likely tokens whose probability mass reaches p; 1 turns it off
 * @param minP              drop tokens less likely than {@code minP} times the most likely one; 0 turns it off
 * @param repetitionPenalty divides the positive logits and multiplies the negative ones of every token already in
 *                          the window; 1 turns it off
 * @param repetitionWindow  how many of the last tokens the penalty looks at; 0 means the whole sequence (prompt
 *                          included, as Hugging Face does)
 * @param seed              the random generator's seed: the same seed, settings and logits give the same tokens
 */
public record SamplingSettings(double temperature, int topK, double topP, double minP, double repetitionPenalty,
                               int repetitionWindow, long seed) {

    public SamplingSettings {
        if (!(temperature >= 0) || Double.isInfinite(temperature)) {
            throw new RopewayException("temperature must be a finite number >= 0 (0 = greedy), got " + temperature);
        }
        if (topK < 0) throw new RopewayException("top_k must be >= 0 (0 = off), got " + topK);
        if (!(topP > 0 && topP <= 1)) throw new RopewayException("top_p must be in (0, 1] (1 = off), got " + topP);
        if (!(minP >= 0 && minP <= 1)) throw new RopewayException("min_p must be in [0, 1] (0 = off), got " + minP);
        if (!(repetitionPenalty > 0) || Double.isInfinite(repetitionPenalty)) {
            throw new RopewayException("repetition penalty must be a finite number > 0 (1 = off), got " + repetitionPenalty);
        }
        if (repetitionWindow < 0) {
            throw new RopewayException("repetition window must be >= 0 (0 = the whole sequence), got " + repetitionWindow);
        }
    }

    /** Always the most likely token. */
    public static SamplingSettings greedy() {
        return new SamplingSettings(0, 0, 1, 0, 1, 0, 0);
    }

    /** Hugging Face's sampling defaults (temperature 1, top-k 50, nothing else) with the given seed. */
    public static SamplingSettings sampling(long seed) {
        return new SamplingSettings(1, 50, 1, 0, 1, 0, seed);
    }

    public boolean isGreedy() {
        return temperature == 0;
    }

    public SamplingSettings withTemperature(double value) {
        return new SamplingSettings(value, topK, topP, minP, repetitionPenalty, repetitionWindow, seed);
    }

    public SamplingSettings withTopK(int value) {
        return new SamplingSettings(temperature, value, topP, minP, repetitionPenalty, repetitionWindow, seed);
    }

    public SamplingSettings withTopP(double value) {
        return new SamplingSettings(temperature, topK, value, minP, repetitionPenalty, repetitionWindow, seed);
    }

    public SamplingSettings withMinP(double value) {
        return new SamplingSettings(temperature, topK, topP, value, repetitionPenalty, repetitionWindow, seed);
    }

    public SamplingSettings withRepetitionPenalty(double penalty, int window) {
        return new SamplingSettings(temperature, topK, topP, minP, penalty, window, seed);
    }

    public SamplingSettings withSeed(long value) {
        return new SamplingSettings(temperature, topK, topP, minP, repetitionPenalty, repetitionWindow, value);
    }
}
