package dev.ropeway.train;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ropeway.RopewayException;
import dev.ropeway.io.Json;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Predicate;
import java.util.stream.Stream;

/**
 * A text corpus on disk. Any folder of {@code .txt} files (one document each) and {@code .jsonl} files (one document
 * per line, in the field {@code text}) is a corpus. A folder with {@code train/} and {@code heldout/} subfolders (what
 * {@code ropeway corpus prepare} writes) is split: training reads only {@code train/}, long-context evaluation only
 * {@code heldout/}; any other folder is all training text and has no held-out part. Files are read in sorted path
 * order, so a corpus always yields the same documents in the same order.
 */
public final class Corpus {
    public static final String TRAIN = "train", HELDOUT = "heldout";

    private final Path root;
    private final List<Path> trainFiles, heldoutFiles;

    private Corpus(Path root, List<Path> trainFiles, List<Path> heldoutFiles) {
        this.root = root;
        this.trainFiles = trainFiles;
        this.heldoutFiles = heldoutFiles;
    }

    /** Opens the corpus at {@code dir}; fails clearly when it is missing or holds no text files. */
    public static Corpus open(Path dir) {
        if (!Files.isDirectory(dir))
            throw new RopewayException("corpus folder " + dir + " does not exist (get one with `ropeway corpus fetch` "
                    + "and `ropeway corpus prepare`, or pass any folder of .txt / .jsonl files)");
        Path train = dir.resolve(TRAIN), heldout = dir.resolve(HELDOUT);
        Corpus corpus = Files.isDirectory(train)
                ? new Corpus(dir, textFiles(train), Files.isDirectory(heldout) ? textFiles(heldout) : List.of())
                : new Corpus(dir, textFiles(dir), List.of());
        if (corpus.trainFiles.isEmpty())
            throw new RopewayException("corpus folder " + dir + " holds no .txt or .jsonl files");
        return corpus;
    }

    public Path root() {
        return root;
    }

    public boolean hasHeldout() {
        return !heldoutFiles.isEmpty();
    }

    /** The training documents, in order. */
    public List<CorpusDocument> train() {
        return read(trainFiles);
    }

    /**
     * Hands the training documents to {@code sink} in order, reading one file at a time, until it returns false: for a
     * reader that wants only the first part of a large corpus.
     */
    public void readTrain(Predicate<CorpusDocument> sink) {
        read(trainFiles, sink);
    }

    /** The held-out documents (empty for an unsplit folder), in order. */
    public List<CorpusDocument> heldout() {
        return read(heldoutFiles);
    }

    /** Like {@link #readTrain}, for the held-out documents. */
    public void readHeldout(Predicate<CorpusDocument> sink) {
        read(heldoutFiles, sink);
    }

    public List<Path> trainFiles() {
        return trainFiles;
    }

    public List<Path> heldoutFiles() {
        return heldoutFiles;
    }

    private static List<Path> textFiles(Path dir) {
        try (Stream<Path> walk = Files.walk(dir)) {
            return walk.filter(Files::isRegularFile)
                    .filter(p -> p.toString().endsWith(".txt") || p.toString().endsWith(".jsonl"))
                    .sorted()
                    .toList();
        } catch (IOException e) {
            throw new RopewayException("cannot list corpus folder " + dir + ": " + e.getMessage());
        }
    }

    private List<CorpusDocument> read(List<Path> files) {
        List<CorpusDocument> docs = new ArrayList<>();
        read(files, docs::add);
        return docs;
    }

    private void read(List<Path> files, Predicate<CorpusDocument> sink) {
        for (Path file : files) {
            String name = root.relativize(file).toString();
            String text = readUtf8(file);
            if (file.toString().endsWith(".txt")) {
                if (!sink.test(new CorpusDocument(name, text))) return;
                continue;
            }
            String[] lines = text.split("\n", -1);
            for (int i = 0; i < lines.length; i++) {
                if (lines[i].isBlank()) continue;
                JsonNode node;
                try {
                    node = Json.mapper().readTree(lines[i]);
                } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
                    throw new RopewayException(file + " line " + (i + 1) + ": not valid JSON: " + e.getOriginalMessage());
                }
                JsonNode field = node == null ? null : node.get("text");
                if (field == null || !field.isTextual())
                    throw new RopewayException(file + " line " + (i + 1) + ": expected an object with a string field \"text\"");
                if (!sink.test(new CorpusDocument(name + ":" + (i + 1), field.asText()))) return;
            }
        }
    }

    private static String readUtf8(Path file) {
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(java.nio.ByteBuffer.wrap(Files.readAllBytes(file)))
                    .toString();
        } catch (CharacterCodingException e) {
            throw new RopewayException("corpus file " + file + " is not valid UTF-8");
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read corpus file " + file, e);
        }
    }
}
