package dev.ropeway.serve;

import dev.ropeway.generate.TokenLogprob;
import dev.ropeway.io.ByteLevelBpeFixture;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.Tokenizers;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;

class LogprobsTest {
    @SuppressWarnings("unchecked")
    @Test
    void aTokenThatSplitsACharacterReportsItsOwnBytes(@TempDir Path dir) {
        ByteLevelBpeFixture.write(dir);
        try (Tokenizer tok = Tokenizers.open(dir)) {
            int[] e = tok.encode("é", false);
            assertEquals(2, e.length, "two byte tokens");
            int a = tok.encode("a", false)[0];
            Logprobs lp = new Logprobs(tok, tok.encode("x", false));
            Map<String, Object> chat = lp.chat(List.of(new TokenLogprob(e[0], -1.5, new int[]{e[0], a}, new double[]{-1.5, -2}),
                    new TokenLogprob(e[1], Double.NEGATIVE_INFINITY, new int[0], new double[0])));
            List<Map<String, Object>> content = (List<Map<String, Object>>) chat.get("content");
            // Each half of "é" is U+FFFD as text; its bytes are the half, so that joined they give "é".
            assertEquals("\uFFFD", content.get(0).get("token"));
            assertEquals(List.of(0xC3), content.get(0).get("bytes"));
            assertEquals("\uFFFD", content.get(1).get("token"));
            assertEquals(List.of(0xA9), content.get(1).get("bytes"));
            assertEquals(-9999.0, content.get(1).get("logprob"));
            List<Map<String, Object>> top = (List<Map<String, Object>>) content.get(0).get("top_logprobs");
            assertEquals(List.of(0xC3), top.get(0).get("bytes"));
            assertEquals(List.of((int) 'a'), top.get(1).get("bytes"));
            assertEquals("a", top.get(1).get("token"));
        }
    }
}
