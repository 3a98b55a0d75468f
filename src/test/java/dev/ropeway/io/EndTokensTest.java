package dev.ropeway.io;

import dev.ropeway.generate.StreamingText;
import dev.ropeway.io.bpe.BpeEncoder;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A chat model ends its turn with a token its tokenizer config does not call EOS; generation_config.json and
 * config.json list it, and generation stops there, through either tokenizer.
 */
class EndTokensTest {

    @Test
    void everyListedEndTokenStopsAGeneration(@TempDir Path dir) throws Exception {
        ByteLevelBpeFixture.write(dir);
        Json.writeAtomic(dir.resolve("tokenizer_config.json"), Map.of("bos_token", "<s>", "eos_token", "</s>"));
        // Listed again, out of range, and one id in each file.
        Json.writeAtomic(dir.resolve("generation_config.json"), Map.of("eos_token_id", List.of(1, 200, 100000)));
        Json.writeAtomic(dir.resolve("config.json"), Map.of("eos_token_id", 7));
        int eos = ByteLevelBpeFixture.EOS;
        try (Tokenizer bpe = BpeEncoder.load(dir); Tokenizer hf = HfTokenizer.load(dir)) {
            for (Tokenizer t : List.of(bpe, hf)) {
                assertEquals(eos, t.eosId().getAsInt());
                assertArrayEquals(new int[]{eos, 200, 7}, t.endIds(), t.getClass().getSimpleName());
                StreamingText text = StreamingText.of(t, List.of());
                assertFalse(text.push(72).stopped());
                StreamingText.Step step = text.push(200);
                assertTrue(step.stopped());
                assertEquals(200, step.stop().tokenId());
            }
        }
    }

    @Test
    void withoutListsTheEosAloneEnds(@TempDir Path dir) {
        ByteLevelBpeFixture.write(dir);
        Json.writeAtomic(dir.resolve("tokenizer_config.json"), Map.of("eos_token", "</s>"));
        try (Tokenizer bpe = BpeEncoder.load(dir)) {
            assertArrayEquals(new int[]{ByteLevelBpeFixture.EOS}, bpe.endIds());
        }
    }
}
