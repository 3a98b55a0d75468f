package dev.ropeway.cli;

import dev.ropeway.RopewayException;
import dev.ropeway.train.Corpus;
import dev.ropeway.io.bpe.BpeEncoder;
import dev.ropeway.io.bpe.BpeModel;
import dev.ropeway.train.tokenizer.BpeTrainer;
import dev.ropeway.train.tokenizer.TokenizerFiles;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code ropeway tokenizer}: tokenizers for the models Ropeway trains. */
@Command(name = "tokenizer", mixinStandardHelpOptions = true, description = "Train tokenizers.",
        subcommands = {TokenizerCommand.Train.class, TokenizerBench.class})
final class TokenizerCommand implements Runnable {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(spec.commandLine().getOut());
    }

    @Command(name = "train", mixinStandardHelpOptions = true,
            description = {"Train a GPT-2-style byte-level BPE on a corpus and write a Hugging Face tokenizer "
                    + "(tokenizer.json and tokenizer_config.json).",
                    "Ids: <unk> 0, <s> 1 (BOS, put in front when special tokens are added), </s> 2 (EOS), <pad> 3, "
                            + "the 256 bytes 4..259, then the merges in the order learnt."})
    static final class Train implements Callable<Integer> {
        @Option(names = "--corpus", required = true, paramLabel = "<dir>",
                description = "Folder of .txt / .jsonl files; of a prepared corpus only train/ is used.")
        Path corpus;

        @Option(names = "--vocab-size", required = true, paramLabel = "<n>",
                description = "Total number of ids, the 4 special and 256 byte tokens included (at least 260).")
        int vocabSize;

        @Option(names = "--out", required = true, paramLabel = "<dir>", description = "Folder to write the tokenizer into.")
        Path out;

        @Option(names = "--max-bytes", paramLabel = "<size>", converter = ByteSize.class,
                description = "Train on at most this much text (UTF-8 bytes; suffixes k, M, G are powers of 1000), "
                        + "read from the start of the corpus.")
        Long maxBytes;

        @Option(names = "--min-frequency", defaultValue = "2", paramLabel = "<n>",
                description = "Stop merging before a pair that occurs fewer times (default: ${DEFAULT-VALUE}).")
        long minFrequency;

        @Option(names = "--model-max-length", defaultValue = "1024", paramLabel = "<n>",
                description = "model_max_length for tokenizer_config.json (default: ${DEFAULT-VALUE}).")
        int modelMaxLength;

        @Option(names = "--threads", paramLabel = "<n>", description = "Threads for pre-tokenising (default: all cores).")
        Integer threads;

        @Option(names = "--json", description = "Print one JSON object (progress still goes to standard error).")
        boolean json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() {
            long start = System.nanoTime();
            BpeTrainer.Options options = new BpeTrainer.Options(vocabSize, minFrequency,
                    threads == null ? Runtime.getRuntime().availableProcessors() : threads);
            if (maxBytes != null && maxBytes < 1) throw new RopewayException("--max-bytes must be positive");
            if (modelMaxLength < 1) throw new RopewayException("--model-max-length must be positive");
            PrintWriter log = spec.commandLine().getErr();
            Corpus source = Corpus.open(corpus);
            List<String> texts = readUpTo(source, maxBytes == null ? Long.MAX_VALUE : maxBytes, true);
            double readSeconds = seconds(start);
            log.printf(Locale.ROOT, "read %,d documents from %s%s in %.1f s%n", texts.size(), corpus,
                    source.hasHeldout() ? " (its train/ part)" : "", readSeconds);
            log.flush();

            BpeTrainer.Result result = BpeTrainer.train(texts, options, new ProgressLog(log));
            BpeModel model = result.model();
            TokenizerFiles.write(out, model, modelMaxLength);
            BpeTrainer.Stats stats = result.stats();

            Double heldout = null;
            if (source.hasHeldout()) heldout = bytesPerToken(new BpeEncoder(model), readUpTo(source, HELDOUT_BYTES, false));
            double total = seconds(start);
            report(model, stats, heldout, readSeconds, total);
            return 0;
        }

        /** Enough held-out text for a stable compression figure, without encoding a large held-out part whole. */
        private static final long HELDOUT_BYTES = 8_000_000;

        private void report(BpeModel model, BpeTrainer.Stats stats, Double heldout, double readSeconds, double total) {
            Map<String, Object> specials = new LinkedHashMap<>();
            for (BpeModel.AddedToken t : model.addedTokens()) specials.put(t.content(), t.id());
            Map<String, Object> summary = new LinkedHashMap<>();
            summary.put("tokenizer", out.resolve(TokenizerFiles.TOKENIZER_JSON).toString());
            summary.put("vocab_size", model.vocabSize());
            summary.put("requested_vocab_size", vocabSize);
            summary.put("merges", model.mergeCount());
            summary.put("special_tokens", specials);
            summary.put("bos_token_id", BpeTrainer.BOS);
            summary.put("eos_token_id", BpeTrainer.EOS);
            summary.put("pad_token_id", BpeTrainer.PAD);
            summary.put("documents", stats.documents());
            summary.put("bytes", stats.bytes());
            summary.put("words", stats.words());
            summary.put("distinct_words", stats.distinctWords());
            summary.put("train_bytes_per_token", stats.bytesPerToken());
            if (heldout != null) summary.put("heldout_bytes_per_token", heldout);
            summary.put("read_seconds", readSeconds);
            summary.put("pretokenize_seconds", stats.countSeconds());
            summary.put("merge_seconds", stats.mergeSeconds());
            summary.put("seconds", total);
            if (json) {
                System.out.println(Output.json(summary));
                return;
            }
            System.out.printf(Locale.ROOT, "wrote %s and %s%n", out.resolve(TokenizerFiles.TOKENIZER_JSON),
                    out.resolve(TokenizerFiles.TOKENIZER_CONFIG));
            System.out.printf(Locale.ROOT, "vocabulary %,d: <unk> 0, <s> 1 (BOS), </s> 2 (EOS), <pad> 3, bytes 4..259, "
                    + "%,d merges%s%n", model.vocabSize(), model.mergeCount(),
                    model.mergeCount() == 0 ? "" : " " + BpeTrainer.MIN_VOCAB_SIZE + ".." + (model.vocabSize() - 1));
            if (model.vocabSize() < vocabSize)
                System.out.printf(Locale.ROOT, "stopped short of %,d: no pair left that occurs at least %d times%n",
                        vocabSize, minFrequency);
            System.out.printf(Locale.ROOT, "compression: %.2f bytes/token on the %s of training text%s%n",
                    stats.bytesPerToken(), megabytes(stats.bytes()),
                    heldout == null ? "" : String.format(Locale.ROOT, ", %.2f on held-out text", heldout));
            System.out.printf(Locale.ROOT, "time: %.1f s (reading %.1f s, pre-tokenising %.1f s, merging %.1f s)%n",
                    total, readSeconds, stats.countSeconds(), stats.mergeSeconds());
        }
    }

    /** The texts of the training (or held-out) documents, in order, until {@code maxBytes} of UTF-8 are collected. */
    static List<String> readUpTo(Corpus corpus, long maxBytes, boolean train) {
        List<String> texts = new ArrayList<>();
        long[] bytes = {0};
        java.util.function.Predicate<dev.ropeway.train.CorpusDocument> sink = doc -> {
            String text = doc.text();
            long size = text.getBytes(StandardCharsets.UTF_8).length;
            if (bytes[0] + size > maxBytes) {
                text = prefixWithin(text, maxBytes - bytes[0]);
                size = text.getBytes(StandardCharsets.UTF_8).length;
            }
            if (!text.isEmpty()) texts.add(text);
            bytes[0] += size;
            return bytes[0] < maxBytes;
        };
        if (train) corpus.readTrain(sink);
        else corpus.readHeldout(sink);
        return texts;
    }

    /** The longest prefix of {@code text} whose UTF-8 takes at most {@code bytes}, never splitting a code point. */
    static String prefixWithin(String text, long bytes) {
        long used = 0;
        int i = 0;
        while (i < text.length()) {
            int cp = text.codePointAt(i);
            int size = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
            if (used + size > bytes) break;
            used += size;
            i += Character.charCount(cp);
        }
        return text.substring(0, i);
    }

    static double bytesPerToken(BpeEncoder encoder, List<String> texts) {
        long bytes = 0, tokens = texts.parallelStream().mapToLong(t -> encoder.encode(t, false).length).sum();
        for (String t : texts) bytes += t.getBytes(StandardCharsets.UTF_8).length;
        return tokens == 0 ? 0 : (double) bytes / tokens;
    }

    static double seconds(long since) {
        return (System.nanoTime() - since) / 1e9;
    }

    static String megabytes(long bytes) {
        return String.format(Locale.ROOT, "%.1f MB", bytes / 1e6);
    }

    /** Progress on standard error: a line when a phase starts and ends, and at most one a second in between. */
    private static final class ProgressLog implements BpeTrainer.Progress {
        private final PrintWriter log;
        private final long start = System.nanoTime();
        private long phaseStart = start, lastLine;
        private int lastMerges;

        ProgressLog(PrintWriter log) {
            this.log = log;
        }

        @Override
        public synchronized void counting(long charsDone, long charsTotal) {
            long now = System.nanoTime();
            if (now - lastLine < 1_000_000_000L && charsDone < charsTotal) return;
            lastLine = now;
            log.printf(Locale.ROOT, "pre-tokenising: %.0f%% of %,d chars%n", 100.0 * charsDone / charsTotal, charsTotal);
            log.flush();
        }

        @Override
        public void counted(long words, int distinctWords) {
            long now = System.nanoTime();
            log.printf(Locale.ROOT, "counted %,d words (%,d distinct) in %.1f s%n", words, distinctWords, (now - phaseStart) / 1e9);
            log.flush();
            phaseStart = lastLine = now;
        }

        @Override
        public void merged(int done, int total) {
            long now = System.nanoTime();
            boolean last = done >= total;
            if (done > 0 && !last && now - lastLine < 1_000_000_000L) return;
            if (done == 0) {
                log.printf(Locale.ROOT, "merging: 0 / %,d%n", total);
            } else {
                double rate = (done - lastMerges) / Math.max(1e-9, (now - lastLine) / 1e9);
                log.printf(Locale.ROOT, "merging: %,d / %,d (%,.0f merges/s)%n", done, total, rate);
            }
            log.flush();
            lastLine = now;
            lastMerges = done;
        }
    }

    /** Parses {@code 20000000}, {@code 20M}, {@code 1.5G}, {@code 500kB}: SI multiples of bytes. */
    static final class ByteSize implements CommandLine.ITypeConverter<Long> {
        @Override
        public Long convert(String value) {
            String v = value.trim();
            if (v.endsWith("B") || v.endsWith("b")) v = v.substring(0, v.length() - 1);
            long unit = 1;
            if (!v.isEmpty()) {
                switch (Character.toLowerCase(v.charAt(v.length() - 1))) {
                    case 'k' -> unit = 1_000L;
                    case 'm' -> unit = 1_000_000L;
                    case 'g' -> unit = 1_000_000_000L;
                    default -> unit = 1;
                }
                if (unit > 1) v = v.substring(0, v.length() - 1);
            }
            try {
                double number = Double.parseDouble(v);
                if (!(number > 0) || number * unit > Long.MAX_VALUE) throw new NumberFormatException();
                return (long) (number * unit);
            } catch (NumberFormatException e) {
                throw new CommandLine.TypeConversionException("'" + value + "' is not a size such as 20000000, 20M or 1.5G");
            }
        }
    }
}
