package dev.ropeway.cli;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ropeway.RopewayException;
import dev.ropeway.io.HfTokenizer;
import dev.ropeway.io.Json;
import dev.ropeway.io.SafeTensorsWriter;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.model.ModelConfig;
import dev.ropeway.model.Scorer;
import dev.ropeway.model.TokenBatch;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.rope.RopeSpec;
import dev.ropeway.tensor.Backend;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code ropeway score}: mean next-token loss and perplexity of token ids or text. */
@Command(name = "score", mixinStandardHelpOptions = true,
        description = "Mean next-token loss and perplexity of a batch of token ids or of a text.")
final class ScoreCommand implements Callable<Integer> {

    @Option(names = "--model", required = true, paramLabel = "<dir>", description = "Checkpoint folder, or a GGUF file (imported once into the cache, then read from there).")
    Path model;

    @ArgGroup(multiplicity = "1")
    Input input;

    static final class Input {
        @Option(names = "--ids", paramLabel = "<file.json>", description = "JSON array of token-id arrays (a batch of equal-length sequences), or one flat array.")
        Path ids;

        @Option(names = "--text", paramLabel = "<string>", description = "Text to tokenize with the checkpoint's tokenizer.json.")
        String text;

        @Option(names = "--text-file", paramLabel = "<path>", description = "UTF-8 text file to tokenize.")
        Path textFile;
    }

    @Option(names = "--rope", paramLabel = "<spec>",
            description = "Override the checkpoint's RoPE scaling, e.g. yarn:factor=4,original_max_position_embeddings=2048 "
                    + "(methods: default, linear, dynamic, ntk, yarn, llama3, longrope).")
    String rope;

    @Option(names = "--logits", paramLabel = "<out.safetensors>", description = "Also write the logits [batch, seq, vocab] as float32.")
    Path logitsOut;

    @Option(names = "--json", description = "Print one JSON object.")
    boolean json;

    @Option(names = "--per-token", description = "Also report log p(next token) at every position (with --json: "
            + "\"token_logprobs\", one array per sequence).")
    boolean perToken;

    @Mixin
    BackendOptions backendOptions;

    @Override
    public Integer call() throws IOException {
        model = ModelFolders.resolve(model);
        ModelConfig config = Transformer.loadConfig(model);
        RopeScaling scaling = config.ropeOrSpec(rope);
        TokenBatch batch = readInput(config);
        long start = System.nanoTime();
        Scorer.Score score;
        try (Backend backend = backendOptions.open(); Transformer t = Transformer.load(backend, model)) {
            long loaded = System.nanoTime();
            score = new Scorer(t).score(batch, scaling, logitsOut != null);
            double seconds = (System.nanoTime() - loaded) / 1e9;
            if (logitsOut != null)
                new SafeTensorsWriter().metadata("format", "pt")
                        .add("logits", score.logits(), batch.batch(), batch.seq(), config.vocabSize())
                        .write(logitsOut);
            report(batch, scaling, score, seconds, (loaded - start) / 1e9);
        }
        return 0;
    }

    private void report(TokenBatch batch, RopeScaling scaling, Scorer.Score score, double seconds, double loadSeconds) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("loss", score.loss());
        out.put("perplexity", score.perplexity());
        out.put("tokens", score.tokens());
        out.put("sequences", batch.batch());
        out.put("sequence_length", batch.seq());
        out.put("rope", RopeSpec.describe(scaling));
        out.put("seconds", seconds);
        out.put("tokens_per_second", batch.rows() / seconds);
        out.put("load_seconds", loadSeconds);
        if (logitsOut != null) out.put("logits", logitsOut.toString());
        if (perToken) {
            List<double[]> perSeq = new ArrayList<>();
            for (int b = 0; b < batch.batch(); b++) perSeq.add(score.logProbs(b, batch.seq()));
            out.put("token_logprobs", perSeq);
        }
        if (json) {
            System.out.println(Output.json(out));
            return;
        }
        System.out.printf("loss %.6f  perplexity %.4f  over %,d predicted tokens (%d x %,d tokens)%n",
                score.loss(), score.perplexity(), score.tokens(), batch.batch(), batch.seq());
        System.out.printf("rope %s; %.2f s, %,.0f tokens/s%n", out.get("rope"), seconds, batch.rows() / seconds);
        if (logitsOut != null) System.out.println("logits written to " + logitsOut);
        if (perToken)
            for (int b = 0; b < batch.batch(); b++) {
                double[] lp = score.logProbs(b, batch.seq());
                StringBuilder line = new StringBuilder("sequence " + b + " log p(next):");
                for (double x : lp) line.append(String.format(" %.4f", x));
                System.out.println(line);
            }
    }

    private TokenBatch readInput(ModelConfig config) throws IOException {
        if (input.ids != null) return TokenBatch.of(readIds(input.ids));
        String text = input.text != null ? input.text : readText(input.textFile);
        if (Files.isDirectory(model) && !Files.isRegularFile(model.resolve("tokenizer.json")))
            throw new RopewayException("no tokenizer.json in " + model + " to read the text with; pass token ids with"
                    + " --ids instead");
        try (Tokenizer tok = HfTokenizer.load(model)) {
            int[] ids = tok.encode(text, true);
            if (ids.length < 2)
                throw new RopewayException("the text is " + ids.length + " token(s) long; scoring needs at least 2");
            return TokenBatch.of(new int[][]{ids});
        }
    }

    private static String readText(Path file) throws IOException {
        if (!Files.isRegularFile(file)) throw new RopewayException("--text-file " + file + ": no such file");
        return Files.readString(file, StandardCharsets.UTF_8);
    }

    /** Reads {@code [[1,2,3],[4,5,6]]} or {@code [1,2,3]}. */
    static int[][] readIds(Path file) throws IOException {
        if (!Files.isRegularFile(file)) throw new RopewayException("--ids " + file + ": no such file");
        JsonNode root;
        try {
            root = Json.mapper().readTree(file.toFile());
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new RopewayException("--ids " + file + ": not valid JSON (" + e.getOriginalMessage() + ")");
        }
        if (root == null || !root.isArray() || root.isEmpty())
            throw new RopewayException("--ids " + file + ": expected a JSON array of token-id arrays, e.g. [[1, 2, 3]]");
        boolean flat = !root.get(0).isArray();
        int[][] seqs = new int[flat ? 1 : root.size()][];
        for (int b = 0; b < seqs.length; b++) {
            JsonNode row = flat ? root : root.get(b);
            if (!row.isArray())
                throw new RopewayException("--ids " + file + ": element " + b + " is not an array of token ids");
            seqs[b] = new int[row.size()];
            for (int i = 0; i < row.size(); i++) {
                JsonNode v = row.get(i);
                if (!v.canConvertToInt() || !v.isIntegralNumber())
                    throw new RopewayException("--ids " + file + ": sequence " + b + ", position " + i
                            + " is not an integer token id: " + v);
                seqs[b][i] = v.intValue();
            }
            if (seqs[b].length < 2)
                throw new RopewayException("--ids " + file + ": sequence " + b + " has " + seqs[b].length
                        + " token(s); scoring needs at least 2");
        }
        return seqs;
    }
}
