package dev.ropeway.cli;

import dev.ropeway.RopewayException;
import dev.ropeway.eval.Perplexity;
import dev.ropeway.eval.PerplexityProtocol;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.rope.RopeSpec;
import dev.ropeway.tensor.Backend;
import dev.ropeway.train.Corpus;
import dev.ropeway.train.CorpusDocument;
import dev.ropeway.train.TokenizedCorpus;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code ropeway eval}: long-context evaluations. */
@Command(name = "eval", mixinStandardHelpOptions = true, description = "Long-context evaluation.",
        subcommands = {EvalCommand.Ppl.class, EvalCommand.PasskeyCommand.class})
final class EvalCommand implements Runnable {
    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    @Command(name = "ppl", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"Perplexity on long documents at several context lengths.",
                    "chunks: non-overlapping windows of exactly L tokens (CLEX's protocol); sliding: windows of L every",
                    "--stride tokens, each scoring only its new tokens (YaRN's and E²-LLM's); prefill: the chunks windows fed",
                    "through the KV cache --stride tokens per forward (CLEX's chunked evaluation)."})
    static final class Ppl implements Callable<Integer> {
        @Option(names = "--model", required = true, paramLabel = "<dir>")
        Path model;
        @Option(names = "--data", required = true, paramLabel = "<dir>",
                description = "Documents: a prepared corpus (its heldout/ part) or any folder of .txt / .jsonl files.")
        Path data;
        @Option(names = "--lengths", required = true, split = ",", paramLabel = "<L>",
                description = "Context lengths in tokens, e.g. 256,512,1k,4k.")
        List<String> lengths;
        @Option(names = "--protocol", defaultValue = "chunks", description = "chunks, sliding or prefill (default: ${DEFAULT-VALUE}).")
        String protocol;
        @Option(names = "--stride", description = "sliding: step between windows (default: L / 2); prefill: tokens per forward (default: min(L, 4096)).")
        Integer stride;
        @Option(names = "--max-tokens", defaultValue = "32768",
                description = "Tokens scored per length at most, 0 = all (default: ${DEFAULT-VALUE}).")
        long maxTokens;
        @Option(names = "--rope", paramLabel = "<spec>", description = "Replace the model's RoPE method (see score --rope).")
        String rope;
        @Option(names = "--json")
        boolean json;
        @Mixin
        BackendOptions backendOptions;

        @Override
        public Integer call() {
            PerplexityProtocol p = PerplexityProtocol.parse(protocol);
            List<Integer> ls = new ArrayList<>();
            for (String l : lengths) ls.add(parseLength(l));
            Corpus corpus = Corpus.open(data);
            List<CorpusDocument> docs = corpus.hasHeldout() ? corpus.heldout() : corpus.train();
            List<int[]> tokens = new ArrayList<>();
            try (Tokenizer tok = TokenizedCorpus.open(model)) {
                for (CorpusDocument d : docs) tokens.add(TokenizedCorpus.encodeWithBos(tok, d.text()));
            }
            List<Map<String, Object>> rows = new ArrayList<>();
            try (Backend backend = backendOptions.open(); Transformer t = Transformer.load(backend, model)) {
                RopeScaling method = t.config().ropeOrSpec(rope);
                if (!json) System.out.printf("%s, %s protocol, RoPE %s%n", model, p.label(), RopeSpec.describe(method));
                for (int len : ls) {
                    int s = stride != null ? stride : p == PerplexityProtocol.PREFILL ? Math.min(len, 4096) : Math.max(1, len / 2);
                    ProgressBar bar = new ProgressBar("L=" + len, maxTokens > 0 ? maxTokens : 1, 0);
                    Perplexity.Result r = Perplexity.evaluate(t, method, tokens, len, p, s, maxTokens,
                            done -> bar.update(Math.min(done, maxTokens > 0 ? maxTokens : done), "tokens"));
                    bar.finish();
                    rows.add(r.toJson());
                    if (!json) System.out.printf(Locale.ROOT, "  L = %,7d  perplexity %10.3f  (loss %.4f, %,d tokens, %d windows)%n",
                            len, r.perplexity(), r.loss(), r.tokens(), r.windows());
                }
                if (json) {
                    Map<String, Object> out = new LinkedHashMap<>();
                    out.put("model", model.toString());
                    out.put("protocol", p.label());
                    out.put("rope", method.toParameters());
                    out.put("results", rows);
                    System.out.println(Output.json(out));
                }
            }
            return 0;
        }

        static int parseLength(String text) {
            String s = text.strip().toLowerCase(Locale.ROOT);
            long mult = 1;
            if (s.endsWith("k")) {
                mult = 1024;
                s = s.substring(0, s.length() - 1);
            }
            try {
                long v = Long.parseLong(s) * mult;
                if (v < 2 || v > Integer.MAX_VALUE) throw new NumberFormatException();
                return (int) v;
            } catch (NumberFormatException e) {
                throw new RopewayException("bad length '" + text + "' (a whole number of tokens, optionally with k = 1024)");
            }
        }
    }

    @Command(name = "passkey", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"Passkey retrieval (the Landmark / LongLoRA / YaRN prompt) over a grid of lengths and needle depths.",
                    "Scores: first integer of the greedy answer, exact key tokens, and the key's log-likelihood."})
    static final class PasskeyCommand implements Callable<Integer> {
        @Option(names = "--model", required = true, paramLabel = "<dir>")
        Path model;
        @Option(names = "--lengths", required = true, split = ",", paramLabel = "<L>", description = "Prompt lengths in tokens.")
        List<String> lengths;
        @Option(names = "--depths", split = ",", defaultValue = "0,0.25,0.5,0.75,1",
                description = "Needle depths in [0, 1] (default: ${DEFAULT-VALUE}).")
        List<Double> depths;
        @Option(names = "--trials", defaultValue = "5", description = "Keys per cell (default: ${DEFAULT-VALUE}).")
        int trials;
        @Option(names = "--seed", defaultValue = "0")
        long seed;
        @Option(names = "--rope", paramLabel = "<spec>", description = "Replace the model's RoPE method.")
        String rope;
        @Option(names = "--json")
        boolean json;
        @Mixin
        BackendOptions backendOptions;

        @Override
        public Integer call() {
            if (trials < 1) throw new RopewayException("--trials must be at least 1");
            for (double d : depths) if (!(d >= 0 && d <= 1)) throw new RopewayException("depths must be in [0, 1], got " + d);
            List<dev.ropeway.eval.Passkey.Cell> cells = new ArrayList<>();
            try (Backend backend = backendOptions.open(); Transformer t = Transformer.load(backend, model);
                 Tokenizer tok = TokenizedCorpus.open(model)) {
                RopeScaling method = t.config().ropeOrSpec(rope);
                ProgressBar bar = new ProgressBar("cells", (long) lengths.size() * depths.size(), 0);
                long done = 0;
                for (String l : lengths) {
                    int len = Ppl.parseLength(l);
                    for (double d : depths) {
                        dev.ropeway.eval.Passkey.Cell c = dev.ropeway.eval.Passkey.run(t, method, tok, len, d, trials, seed);
                        cells.add(c);
                        bar.update(++done, String.format(Locale.ROOT, "L=%d depth=%.2f acc %.2f", len, d, c.regexAccuracy()));
                    }
                }
                bar.finish();
                if (json) {
                    Map<String, Object> out = new LinkedHashMap<>();
                    out.put("model", model.toString());
                    out.put("rope", method.toParameters());
                    out.put("results", cells.stream().map(dev.ropeway.eval.Passkey.Cell::toJson).toList());
                    System.out.println(Output.json(out));
                } else {
                    System.out.printf("%s, RoPE %s, %d trials per cell%n", model, RopeSpec.describe(method), trials);
                    for (dev.ropeway.eval.Passkey.Cell c : cells)
                        System.out.printf(Locale.ROOT, "  L = %,6d  depth %.2f  accuracy %.2f  exact %.2f  key log-likelihood %8.3f%n",
                                c.targetTokens(), c.depth(), c.regexAccuracy(), c.exactAccuracy(), c.meanKeyLogLikelihood());
                }
            }
            return 0;
        }
    }
}
