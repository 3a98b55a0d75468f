package dev.ropeway.cli;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ropeway.io.ByteLevelBpeFixture;
import dev.ropeway.io.Json;
import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.rope.E2Rope;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

class GenerateCliTest {

    /** An E²-LLM model (L0 = 16) generating past 16 and 32 tokens: g changes twice and the keys follow. */
    @Test
    void generatesGreedilyWithTheRopeFollowingTheLength(@TempDir Path dir) throws Exception {
        E2Rope e2 = new E2Rope(10000, 16, 16, 0, 4);
        CheckpointWriter.writeRandom(dir, CheckpointWriter.withRope(CheckpointWriter.llamaConfig(ByteLevelBpeFixture.VOCAB_SIZE,
                32, 64, 2, 2, 2, 16, 16, e2, false), e2, 64), 3);
        ByteLevelBpeFixture.write(dir);
        Json.writeAtomic(dir.resolve("tokenizer_config.json"), Map.of("bos_token", "<s>", "eos_token", "</s>"));
        CliRunner.Result r = CliRunner.run("generate", "--model", dir.toString(), "--prompt", "the other", "--max-tokens", "30",
                "--greedy", "--ignore-eos", "--json", "--rope-change", "recompute");
        assertEquals(0, r.exitCode(), r.err());
        JsonNode j = Json.mapper().readTree(r.out());
        assertEquals(30, j.path("tokens").size());
        assertEquals("length", j.path("finish_reason").asText());
        assertEquals(2, j.path("rope_changes").asInt(), "g goes 1 -> 2 -> 3 as the sequence passes 16 and 32 tokens");
        // The same run again gives the same tokens (greedy), and re-rotation changes g just as often.
        CliRunner.Result again = CliRunner.run("generate", "--model", dir.toString(), "--prompt", "the other", "--max-tokens", "30",
                "--greedy", "--ignore-eos", "--json");
        assertEquals(2, Json.mapper().readTree(again.out()).path("rope_changes").asInt());
        // A bfloat16 KV cache on the CPU runs the same generation; float16 is the GPU's and is refused here by name.
        CliRunner.Result bf16 = CliRunner.run("generate", "--model", dir.toString(), "--prompt", "the other", "--max-tokens", "30",
                "--greedy", "--ignore-eos", "--json", "--device", "cpu", "--kv-cache", "bf16");
        assertEquals(0, bf16.exitCode(), bf16.err());
        JsonNode b = Json.mapper().readTree(bf16.out());
        assertEquals(30, b.path("tokens").size());
        assertEquals(2, b.path("rope_changes").asInt());
        CliRunner.Result f16 = CliRunner.run("generate", "--model", dir.toString(), "--prompt", "x", "--device", "cpu",
                "--kv-cache", "f16");
        assertEquals(1, f16.exitCode());
        assertTrue(f16.err().contains("--kv-cache f16 is for the GPU") && f16.err().contains("bf16"), f16.err());

        CliRunner.Result chat = CliRunner.run("generate", "--model", dir.toString(), "--prompt", "hi", "--chat");
        assertEquals(1, chat.exitCode());
        assertTrue(chat.err().contains("chat_template"), chat.err());
        CliRunner.Result folder = CliRunner.run("generate", "--model", dir.toString(), "--prompt-file", dir.toString());
        assertEquals(1, folder.exitCode());
        assertTrue(folder.err().contains("it is a folder"), folder.err());
    }

    /** {@code bench serve} starts the server on a model, runs its clients and reports what they measured. */
    @Test
    void benchServeLoadsTheServer(@TempDir Path dir) throws Exception {
        CheckpointWriter.writeRandom(dir, CheckpointWriter.llamaConfig(ByteLevelBpeFixture.VOCAB_SIZE, 32, 64, 2, 2, 2, 16, 512,
                new dev.ropeway.rope.DefaultRope(10000, 16), false), 3);
        ByteLevelBpeFixture.write(dir);
        Json.writeAtomic(dir.resolve("tokenizer_config.json"), Map.of("bos_token", "<s>", "eos_token", "</s>"));
        CliRunner.Result r = CliRunner.run("bench", "serve", "--model", dir.toString(), "--clients", "2", "--requests", "3",
                "--prompt-words", "12", "--max-tokens", "5", "--json");
        assertEquals(0, r.exitCode(), r.err());
        JsonNode j = Json.mapper().readTree(r.out());
        assertEquals(3, j.path("requests").asInt());
        assertEquals(15, j.path("completion_tokens").asInt());
        assertTrue(j.path("output_tokens_per_second").asDouble() > 0);
        assertTrue(j.path("server").asText().contains("2 slots, batched steps"), j.toString());
        CliRunner.Result text = CliRunner.run("bench", "serve", "--model", dir.toString(), "--clients", "1", "--requests", "1",
                "--prompt-words", "5", "--max-tokens", "3", "--no-batch", "--warmup", "0");
        assertEquals(0, text.exitCode(), text.err());
        assertTrue(text.out().contains("1 client, 1 request in") && text.out().contains("output tokens/s"), text.out());
        CliRunner.Result both = CliRunner.run("bench", "serve", "--model", dir.toString(), "--url", "http://127.0.0.1:9");
        assertEquals(1, both.exitCode());
        assertTrue(both.err().contains("--model") && both.err().contains("--url"), both.err());
        // A random model of a preset gets a tokenizer of its own for the run.
        CliRunner.Result random = CliRunner.run("bench", "serve", "--preset", "tiny", "--clients", "2", "--requests", "2",
                "--prompt-words", "20", "--max-tokens", "4", "--warmup", "0", "--json");
        assertEquals(0, random.exitCode(), random.err());
        JsonNode rj = Json.mapper().readTree(random.out());
        assertEquals(8, rj.path("completion_tokens").asInt());
        assertTrue(rj.path("prompt_tokens").asInt() >= 2 * 20, rj.toString());
        assertTrue(rj.path("server").asText().startsWith("random tiny"), rj.toString());
    }
}
