package dev.ropeway.train;

import dev.ropeway.io.ByteLevelBpeFixture;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.Tokenizers;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.*;

class RetrievalMixTest {

    @Test
    void aSeededFractionOfWindowsCarriesANeedleAndEndsWithItsAnswer(@TempDir Path dir) {
        ByteLevelBpeFixture.write(dir);
        int seq = 200, n = 2000;
        try (Tokenizer tok = Tokenizers.open(dir)) {
            RetrievalMix mix = RetrievalMix.build(tok, 0.25, 64, 3);
            int[] filler = tok.encode("the sea was calm and the ship sailed on under a grey sky. ".repeat(8), false);
            int mixed = 0;
            Pattern needle = Pattern.compile("The pass key is (\\d{5})\\. Remember it\\. \\1 is the pass key\\.");
            Pattern answer = Pattern.compile("\nWhat is the pass key\\? The pass key is (\\d{5})\\.$");
            for (long index = 0; index < n; index++) {
                int[] in = Arrays.copyOf(filler, seq), target = Arrays.copyOfRange(filler, 1, seq + 1);
                mix.apply(42, index, seq, in, target, 0);
                for (int i = 0; i + 1 < seq; i++) assertEquals(in[i + 1], target[i], "targets stay the inputs shifted by one");
                if (Arrays.equals(in, Arrays.copyOf(filler, seq))) continue;
                mixed++;
                int[] window = Arrays.copyOf(in, seq + 1);
                window[seq] = target[seq - 1];
                String text = tok.decode(window, false);
                Matcher a = answer.matcher(text), k = needle.matcher(text);
                assertTrue(a.find(), "the window ends with the question and answer: " + text);
                assertTrue(k.find(), "the needle is in the text: " + text);
                assertEquals(k.group(1), a.group(1), "the answer is the needle's key");
                // The same (seed, index) always gives the same window.
                int[] again = Arrays.copyOf(filler, seq), againTarget = Arrays.copyOfRange(filler, 1, seq + 1);
                mix.apply(42, index, seq, again, againTarget, 0);
                assertArrayEquals(in, again);
            }
            assertEquals(0.25, mixed / (double) n, 0.04, "about the asked fraction is mixed");
        }
    }
}
