package dev.ropeway.cli;

import dev.ropeway.generate.SamplingSettings;
import picocli.CommandLine.Option;

/** Sampling options shared by {@code generate} (and anything else that samples). */
final class SamplingOptions {
    @Option(names = "--temperature", defaultValue = "0.8", description = "0 = greedy (default: ${DEFAULT-VALUE}).")
    double temperature;
    @Option(names = "--top-k", defaultValue = "40", description = "Keep the k most likely tokens, 0 = off (default: ${DEFAULT-VALUE}).")
    int topK;
    @Option(names = "--top-p", defaultValue = "0.95", description = "Nucleus: keep the most likely tokens up to this mass, 1 = off (default: ${DEFAULT-VALUE}).")
    double topP;
    @Option(names = "--min-p", defaultValue = "0", description = "Drop tokens below this fraction of the top one's probability (default: ${DEFAULT-VALUE}).")
    double minP;
    @Option(names = "--repetition-penalty", defaultValue = "1", description = "Hugging Face's repetition penalty, 1 = off (default: ${DEFAULT-VALUE}).")
    double repetitionPenalty;
    @Option(names = "--repetition-window", defaultValue = "0", description = "Tokens the penalty looks back over, 0 = all (default: ${DEFAULT-VALUE}).")
    int repetitionWindow;
    @Option(names = "--seed", description = "Seed of the sampler (default: from the clock).")
    Long seed;
    @Option(names = "--greedy", description = "Always the most likely token (same as --temperature 0).")
    boolean greedy;

    SamplingSettings settings() {
        return new SamplingSettings(greedy ? 0 : temperature, topK, topP, minP, repetitionPenalty, repetitionWindow,
                seed != null ? seed : System.nanoTime());
    }
}
