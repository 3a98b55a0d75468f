package dev.ropeway.train;

import dev.ropeway.RopewayException;
import dev.ropeway.io.HfTokenizer;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.bpe.BpeEncoder;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.function.Consumer;

/**
 * A corpus turned into packed token streams (training and held-out), cached on disk under a key made of the
 * tokenizer file and the corpus files (names, sizes, modification times), so a resumed or repeated run skips
 * tokenising. An unsplit corpus gives up its last documents (about 1% of the text) as the held-out part.
 */
public record TokenizedCorpus(PackedTokens train, PackedTokens heldout, int bos) {

    public static TokenizedCorpus load(Corpus corpus, Tokenizer tokenizer, Path tokenizerFile, Path cacheDir,
                                       Consumer<String> progress) {
        int bos = tokenizer.bosId().orElseThrow(() -> new RopewayException(
                "the tokenizer declares no BOS token; training packs documents with BOS between them"));
        String key = cacheKey(corpus, tokenizerFile);
        Path trainFile = cacheDir.resolve("train-" + key + ".tokens"), heldFile = cacheDir.resolve("heldout-" + key + ".tokens");
        if (Files.isRegularFile(trainFile) && Files.isRegularFile(heldFile)) {
            progress.accept("tokens: reusing " + trainFile.getFileName());
            return new TokenizedCorpus(PackedTokens.read(trainFile), PackedTokens.read(heldFile), bos);
        }
        long t0 = System.nanoTime();
        List<int[]> train = encode(corpus.train(), tokenizer), held;
        if (corpus.hasHeldout()) {
            held = encode(corpus.heldout(), tokenizer);
        } else {
            long total = train.stream().mapToLong(d -> d.length).sum(), taken = 0;
            held = new ArrayList<>();
            while (train.size() > 1 && taken < total / 100) {
                int[] last = train.removeLast();
                held.addFirst(last);
                taken += last.length;
            }
            if (held.isEmpty()) {
                // A single document: hold out its last 1%.
                int[] only = train.getFirst();
                int cut = Math.max(1, only.length - only.length / 100);
                train.set(0, java.util.Arrays.copyOf(only, cut));
                held.add(java.util.Arrays.copyOfRange(only, cut, only.length));
            }
        }
        TokenizedCorpus result = new TokenizedCorpus(PackedTokens.pack(train, bos), PackedTokens.pack(held, bos), bos);
        try {
            Files.createDirectories(cacheDir);
        } catch (IOException e) {
            throw new RopewayException("cannot create " + cacheDir + ": " + e.getMessage());
        }
        result.train().write(trainFile);
        result.heldout().write(heldFile);
        progress.accept(String.format("tokens: %,d training, %,d held-out (%.1f s)", result.train().size(),
                result.heldout().size(), (System.nanoTime() - t0) / 1e9));
        return result;
    }

    /** Encodes in parallel when the tokenizer is the thread-safe pure-Java one; the order is kept. */
    private static List<int[]> encode(List<CorpusDocument> docs, Tokenizer tokenizer) {
        if (tokenizer instanceof BpeEncoder)
            return new ArrayList<>(docs.parallelStream().map(d -> tokenizer.encode(d.text(), false)).toList());
        List<int[]> out = new ArrayList<>(docs.size());
        for (CorpusDocument d : docs) out.add(tokenizer.encode(d.text(), false));
        return out;
    }

    private static String cacheKey(Corpus corpus, Path tokenizerFile) {
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            md.update(Files.readAllBytes(tokenizerFile));
            List<Path> files = new ArrayList<>(corpus.trainFiles());
            files.add(Path.of("--heldout--"));
            files.addAll(corpus.heldoutFiles());
            for (Path f : files) {
                md.update(f.toAbsolutePath().toString().getBytes(java.nio.charset.StandardCharsets.UTF_8));
                if (Files.isRegularFile(f)) {
                    md.update(Long.toString(Files.size(f)).getBytes());
                    md.update(Long.toString(Files.getLastModifiedTime(f).toMillis()).getBytes());
                }
            }
            return HexFormat.of().formatHex(md.digest(), 0, 8);
        } catch (IOException e) {
            throw new RopewayException("cannot read " + e.getMessage());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
