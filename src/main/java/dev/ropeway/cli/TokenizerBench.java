package dev.ropeway.cli;

import dev.ropeway.RopewayException;
import dev.ropeway.io.HfTokenizer;
import dev.ropeway.train.Corpus;
import dev.ropeway.io.bpe.BpeEncoder;
import dev.ropeway.io.bpe.BpeModel;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.ForkJoinPool;

/**
 * {@code ropeway tokenizer bench}: encoding speed of the pure-Java encoder against the tokenizers library (through
 * DJL) on a corpus, the ids of the two compared document by document, and the compression.
 */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Encode a corpus with the pure-Java BPE encoder and with the tokenizers library (DJL); "
                + "report MB/s, tokens/s, bytes/token, and whether the ids agree.")
final class TokenizerBench implements Callable<Integer> {
    @Option(names = "--tokenizer", required = true, paramLabel = "<dir>", description = "Folder with tokenizer.json (or the file).")
    Path tokenizer;

    @Option(names = "--corpus", required = true, paramLabel = "<dir>", description = "Corpus folder (its train/ part when split).")
    Path corpus;

    @Option(names = "--max-bytes", paramLabel = "<size>", converter = TokenizerCommand.ByteSize.class,
            description = "Encode at most this much text (default: 20M).")
    Long maxBytes;

    @Option(names = "--threads", paramLabel = "<n>", description = "Threads for the parallel runs (default: all cores).")
    Integer threads;

    @Option(names = "--json", description = "Print one JSON object.")
    boolean json;

    @Override
    public Integer call() throws Exception {
        int n = threads == null ? Runtime.getRuntime().availableProcessors() : threads;
        if (n < 1) throw new RopewayException("--threads must be at least 1");
        List<String> texts = TokenizerCommand.readUpTo(Corpus.open(corpus), maxBytes == null ? 20_000_000L : maxBytes, true);
        long bytes = 0;
        for (String t : texts) bytes += t.getBytes(StandardCharsets.UTF_8).length;
        if (bytes == 0) throw new RopewayException("the corpus holds no text to encode");
        BpeModel model = BpeModel.read(tokenizer);
        // A fresh encoder for each timed run, so that none starts with a piece cache another run filled.
        BpeEncoder java = BpeEncoder.load(tokenizer);
        Map<String, Object> runs = new LinkedHashMap<>();
        int[][] javaIds;
        int[][] djlIds;
        try (HfTokenizer djl = HfTokenizer.load(tokenizer)) {
            // A first pass over a slice of the text lets the JIT compile both paths before anything is timed.
            List<String> warm = texts.subList(0, Math.max(1, texts.size() / 10));
            for (String t : warm) {
                java.encode(t, false);
                djl.encode(t, false);
            }
            BpeEncoder single = new BpeEncoder(model), parallel = new BpeEncoder(model);
            javaIds = time(runs, "java, 1 thread", bytes, () -> encodeEach(texts, t -> single.encode(t, false)));
            try (ForkJoinPool pool = new ForkJoinPool(n)) {
                time(runs, "java, " + n + " threads", bytes, () -> pool.submit(() ->
                        texts.parallelStream().map(t -> parallel.encode(t, false)).toArray(int[][]::new)).get());
            }
            djlIds = time(runs, "djl, 1 call per document", bytes, () -> encodeEach(texts, t -> djl.encode(t, false)));
            time(runs, "djl, batches of 64 (native threads)", bytes, () -> {
                List<int[]> all = new ArrayList<>();
                for (int i = 0; i < texts.size(); i += 64)
                    all.addAll(Arrays.asList(djl.encodeAll(texts.subList(i, Math.min(texts.size(), i + 64)), false)));
                return all.toArray(int[][]::new);
            });
        }
        long tokens = 0;
        int differing = 0;
        for (int d = 0; d < texts.size(); d++) {
            tokens += javaIds[d].length;
            if (!Arrays.equals(javaIds[d], djlIds[d])) differing++;
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("documents", texts.size());
        out.put("bytes", bytes);
        out.put("tokens", tokens);
        out.put("bytes_per_token", (double) bytes / tokens);
        out.put("documents_with_different_ids", differing);
        out.put("runs", runs);
        if (json) {
            System.out.println(Output.json(out));
        } else {
            System.out.printf(Locale.ROOT, "%,d documents, %s, %,d tokens: %.3f bytes/token; ids %s%n", texts.size(),
                    TokenizerCommand.megabytes(bytes), tokens, (double) bytes / tokens,
                    differing == 0 ? "identical" : "DIFFER in " + differing + " documents");
            for (Map.Entry<String, Object> e : runs.entrySet()) {
                @SuppressWarnings("unchecked") Map<String, Object> r = (Map<String, Object>) e.getValue();
                System.out.printf(Locale.ROOT, "  %-38s %6.2f s  %7.2f MB/s  %,12.0f tokens/s%n", e.getKey(),
                        r.get("seconds"), r.get("mb_per_second"), r.get("tokens_per_second"));
            }
        }
        return differing == 0 ? 0 : 1;
    }

    private interface Run {
        int[][] run() throws Exception;
    }

    private static int[][] time(Map<String, Object> runs, String name, long bytes, Run run) throws Exception {
        long start = System.nanoTime();
        int[][] ids = run.run();
        double seconds = TokenizerCommand.seconds(start);
        long tokens = 0;
        for (int[] doc : ids) tokens += doc.length;
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("seconds", seconds);
        r.put("mb_per_second", bytes / 1e6 / seconds);
        r.put("tokens_per_second", tokens / seconds);
        runs.put(name, r);
        return ids;
    }

    private static int[][] encodeEach(List<String> texts, java.util.function.Function<String, int[]> encode) {
        int[][] out = new int[texts.size()][];
        for (int i = 0; i < out.length; i++) out[i] = encode.apply(texts.get(i));
        return out;
    }
}
