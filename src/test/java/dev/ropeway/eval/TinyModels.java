package dev.ropeway.eval;

import dev.ropeway.io.ByteLevelBpeFixture;
import dev.ropeway.io.Json;
import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.rope.DefaultRope;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.SplittableRandom;

/** A random Llama small enough for end-to-end evaluation tests, with a byte-level tokenizer, and a tiny corpus. */
public final class TinyModels {
    private TinyModels() {}

    /** A random model trained (nominally) at {@code maxPositions} tokens, in {@code dir}. */
    public static Path model(Path dir, int maxPositions, long seed) {
        CheckpointWriter.writeRandom(dir, CheckpointWriter.llamaConfig(262, 32, 64, 2, 2, 2, 16, maxPositions,
                new DefaultRope(10000, 16), false), seed);
        ByteLevelBpeFixture.write(dir);
        Json.writeAtomic(dir.resolve("tokenizer_config.json"), Map.of("bos_token", "<s>", "eos_token", "</s>"));
        return dir;
    }

    /**
     * The {@link #model} with a ChatML-style chat template in its tokenizer_config.json: each message
     * {@code <|im_start|>role\ncontent<|im_end|>\n}, the reply opened by {@code <|im_start|>assistant\n}.
     */
    public static Path chatModel(Path dir) {
        model(dir, 64, 3);
        Map<String, Object> config = new java.util.LinkedHashMap<>(Json.readObject(dir.resolve("tokenizer_config.json")));
        config.put("chat_template", "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                + "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}");
        Json.writeAtomic(dir.resolve("tokenizer_config.json"), config);
        return dir;
    }

    /** A prepared-corpus folder whose heldout/ part has two documents of random words. */
    public static Path corpus(Path dir) {
        SplittableRandom r = new SplittableRandom(1);
        String[] words = {"the", "whale", "sea", "ship", "captain", "said", "and", "was", "of", "a", "to", "in", "his"};
        try {
            for (String split : new String[]{"train", "heldout"}) {
                Files.createDirectories(dir.resolve(split));
                for (int d = 0; d < 2; d++) {
                    StringBuilder sb = new StringBuilder();
                    for (int i = 0; i < 600; i++) sb.append(words[r.nextInt(words.length)]).append(i % 11 == 10 ? ".\n" : " ");
                    Files.writeString(dir.resolve(split).resolve("d" + d + ".txt"), sb);
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return dir;
    }

    /** Text of random sentences in paragraphs of 20 to 80 words, blank lines between, every sentence distinct. */
    public static Path prose(Path dir, int paragraphs) {
        SplittableRandom r = new SplittableRandom(5);
        String[] words = {"the", "whale", "sea", "ship", "captain", "said", "and", "was", "of", "a", "to", "in", "his",
                "harpoon", "deck", "wind", "sail", "mast", "boat", "crew"};
        try {
            Path held = Files.createDirectories(dir.resolve("heldout"));
            Files.createDirectories(dir.resolve("train"));
            Files.writeString(dir.resolve("train").resolve("t.txt"), "training text\n");
            StringBuilder sb = new StringBuilder();
            int sentence = 0;
            for (int p = 0; p < paragraphs; p++) {
                int n = 20 + r.nextInt(61);
                for (int i = 0; i < n; i++) {
                    if (i % 10 == 0) sb.append("Number").append(sentence++).append(' ');
                    sb.append(words[r.nextInt(words.length)]).append(i % 10 == 9 || i == n - 1 ? ".\n" : " ");
                }
                sb.append('\n');
            }
            Files.writeString(held.resolve("book.txt"), sb);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return dir;
    }

    /** A small source tree: two Python files in one folder, a Java file in another, and files to skip. */
    public static Path code(Path dir) {
        try {
            Files.createDirectories(dir.resolve("pkg"));
            Files.createDirectories(dir.resolve("src/util"));
            Files.createDirectories(dir.resolve(".git"));
            StringBuilder a = new StringBuilder("import os\n\n\n");
            for (int i = 0; i < 40; i++)
                a.append("def helper_").append(i).append("(value):\n    total = value * ").append(i).append(" + 1\n")
                        .append("    return total\n\n");
            Files.writeString(dir.resolve("pkg/helpers.py"), a);
            StringBuilder b = new StringBuilder("# constants\n");
            for (int i = 0; i < 30; i++) b.append("LIMIT_").append(i).append(" = compute_limit(").append(i).append(")\r\n");
            Files.writeString(dir.resolve("pkg/limits.py"), b);
            StringBuilder c = new StringBuilder("package util;\n\nfinal class Sums {\n");
            for (int i = 0; i < 30; i++) c.append("    static int sum").append(i).append("(int x) { return x + ").append(i).append("; }\n");
            c.append("}\n");
            Files.writeString(dir.resolve("src/util/Sums.java"), c);
            Files.writeString(dir.resolve(".git/hook.py"), "def hidden_function_here(): pass\n".repeat(20));
            Files.createDirectories(dir.resolve(".cache/short"));
            Files.writeString(dir.resolve(".cache/short/a.py"), "x = 1\n".repeat(20));
            Files.write(dir.resolve("pkg/blob.py"), new byte[] {(byte) 0xff, (byte) 0xfe, 0, 1, 2});
            Files.writeString(dir.resolve("README.md"), "not code at all, even if it is long enough\n".repeat(10));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return dir;
    }
}
