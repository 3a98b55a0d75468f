package dev.ropeway.testutil;

import dev.ropeway.io.bpe.BpeModel;
import dev.ropeway.train.tokenizer.BpeTrainer;
import dev.ropeway.train.tokenizer.TokenizerFiles;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/** A byte-level BPE of about 300 tokens trained on seeded word salad, written as a tokenizer folder. */
public final class TinyTokenizer {
    private TinyTokenizer() {}

    /** Trains the tokenizer into {@code dir} (tokenizer.json and tokenizer_config.json) and returns it. */
    public static BpeModel write(Path dir) {
        List<String> docs = new ArrayList<>();
        Random r = new Random(7);
        String[] words = {"the", "whale", "sea", "ship", "captain", "white", "harpoon", "deck", "storm", "and", "of", "1851"};
        for (int d = 0; d < 40; d++) {
            StringBuilder b = new StringBuilder();
            for (int w = 0; w < 60; w++) b.append(words[r.nextInt(words.length)]).append(w % 11 == 10 ? ".\n" : " ");
            docs.add(b.toString());
        }
        BpeModel model = BpeTrainer.train(docs, new BpeTrainer.Options(300, 1, 1), BpeTrainer.Progress.NONE).model();
        TokenizerFiles.write(dir, model, 256);
        return model;
    }
}
