package dev.ropeway.serve;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ropeway.generate.ChatTemplate;
import dev.ropeway.generate.Generator;
import dev.ropeway.io.ByteLevelBpeFixture;
import dev.ropeway.io.Json;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.Tokenizers;
import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.model.Decoder;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.train.TokenizedCorpus;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/** The real server on loopback, driven by the JDK's HTTP client; a test that hangs (slots waiting on each other) fails. */
@org.junit.jupiter.api.Timeout(value = 180, threadMode = org.junit.jupiter.api.Timeout.ThreadMode.SEPARATE_THREAD)
class ServerTest {
    static final String CHATML = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
            + "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    @TempDir
    static Path dir;
    static CpuBackend backend;
    static Transformer model;
    static Tokenizer tokenizer;
    static HttpClient client;

    @BeforeAll
    static void start() {
        CheckpointWriter.writeRandom(dir, CheckpointWriter.llamaConfig(ByteLevelBpeFixture.VOCAB_SIZE, 32, 64, 2, 2, 2, 16, 512,
                new DefaultRope(10000, 16), false), 3);
        ByteLevelBpeFixture.write(dir);
        Json.writeAtomic(dir.resolve("tokenizer_config.json"), Map.of("bos_token", "<s>", "eos_token", "</s>", "chat_template", CHATML));
        backend = new CpuBackend(2);
        model = Transformer.load(backend, dir);
        tokenizer = Tokenizers.open(dir);
        client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(5)).build();
    }

    @AfterAll
    static void stop() {
        tokenizer.close();
        model.close();
        backend.close();
    }

    static Server server(int slots, int queue, int grace) throws Exception {
        ServerSettings s = new ServerSettings("127.0.0.1", 0, slots, queue, 256, 200, 4096, grace);
        return new Server(model, model.config().rope(), new Generator(tokenizer), ChatTemplate.find(dir).orElseThrow(), "tiny", s,
                Decoder.RopeChange.REROTATE);
    }

    static HttpResponse<String> post(Server s, String path, String body) throws Exception {
        return client.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + s.port() + path))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body))
                .timeout(Duration.ofSeconds(60)).build(), HttpResponse.BodyHandlers.ofString());
    }

    static HttpResponse<String> get(Server s, String path) throws Exception {
        return client.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + s.port() + path)).GET().build(),
                HttpResponse.BodyHandlers.ofString());
    }

    static String completion(String prompt, int maxTokens, boolean stream) {
        return "{\"model\":\"tiny\",\"prompt\":" + quote(prompt) + ",\"max_tokens\":" + maxTokens
                + ",\"temperature\":0,\"ignore_eos\":true,\"stream\":" + stream + "}";
    }

    static String quote(String s) {
        try {
            return Json.mapper().writeValueAsString(s);
        } catch (Exception e) {
            throw new RuntimeException(e);
        }
    }

    /** Reads a server-sent-event stream to its end: the concatenated text, the finish reason, and whether [DONE] came. */
    record Stream(String text, String finish, boolean done, int events) {}

    static Stream readStream(InputStream body, boolean chat) throws Exception {
        StringBuilder text = new StringBuilder();
        String finish = null;
        boolean done = false;
        int events = 0;
        try (BufferedReader r = new BufferedReader(new InputStreamReader(body, StandardCharsets.UTF_8))) {
            for (String line; (line = r.readLine()) != null; ) {
                if (!line.startsWith("data: ")) continue;
                String data = line.substring(6);
                if (data.equals("[DONE]")) {
                    done = true;
                    continue;
                }
                events++;
                JsonNode choice = Json.mapper().readTree(data).path("choices").path(0);
                text.append(chat ? choice.path("delta").path("content").asText("") : choice.path("text").asText(""));
                if (choice.hasNonNull("finish_reason")) finish = choice.get("finish_reason").asText();
            }
        }
        return new Stream(text.toString(), finish, done, events);
    }

    /**
     * 32 concurrent streaming clients on 4 slots: every stream completes with the text a lone request gets, though
     * the slots' decode steps ran batched (up to four sequences per step on the CPU are bit for bit a lone step).
     */
    @Test
    void manyConcurrentStreamingClients() throws Exception {
        try (Server s = server(4, 64, 5)) {
            List<String> prompts = new ArrayList<>();
            for (int i = 0; i < 32; i++) prompts.add("the " + i + " here " + "ab".repeat(i % 5));
            List<String> expected = new ArrayList<>();
            for (int i = 0; i < prompts.size(); i++) {
                HttpResponse<String> r = post(s, "/v1/completions", completion(prompts.get(i), 12, false));
                assertEquals(200, r.statusCode(), r.body());
                JsonNode body = Json.mapper().readTree(r.body());
                assertEquals("length", body.path("choices").path(0).path("finish_reason").asText());
                assertEquals(12, body.path("usage").path("completion_tokens").asInt());
                expected.add(body.path("choices").path(0).path("text").asText());
            }
            long start = System.nanoTime();
            try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
                List<Future<Stream>> futures = new ArrayList<>();
                for (String p : prompts)
                    futures.add(pool.submit(() -> {
                        HttpResponse<InputStream> r = client.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + s.port() + "/v1/completions"))
                                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(completion(p, 12, true)))
                                .build(), HttpResponse.BodyHandlers.ofInputStream());
                        assertEquals(200, r.statusCode());
                        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("text/event-stream"));
                        return readStream(r.body(), false);
                    }));
                for (int i = 0; i < futures.size(); i++) {
                    Stream st = futures.get(i).get(120, TimeUnit.SECONDS);
                    assertTrue(st.done(), "stream " + i + " ended with [DONE]");
                    assertEquals("length", st.finish(), "stream " + i);
                    assertEquals(expected.get(i), st.text(), "stream " + i + " equals the lone request");
                }
            }
            assertTrue(System.nanoTime() - start < TimeUnit.SECONDS.toNanos(120));
            waitUntil(() -> s.busySlots() == 0 && s.queued() == 0, "every slot free");
            assertEquals(64, s.completed());
            JsonNode health = Json.mapper().readTree(get(s, "/health").body());
            long steps = health.path("decode_steps").asLong(), rows = health.path("decode_rows").asLong();
            assertEquals(64 * 11, rows, "every generated token after the first is one sequence's step: " + health);
            assertTrue(steps < rows, "some steps carried several sequences: " + health);
        }
    }

    /** With --no-batch each slot decodes on its own, and the texts are the same. */
    @Test
    void unbatchedSlotsGiveTheSameTexts() throws Exception {
        ServerSettings settings = new ServerSettings("127.0.0.1", 0, 3, 16, 256, 200, 4096, 5, false);
        List<String> prompts = List.of("one two", "three four five", "six");
        try (Server batched = server(3, 16, 5);
             Server alone = new Server(model, model.config().rope(), new Generator(tokenizer), null, "tiny", settings,
                     Decoder.RopeChange.REROTATE);
             ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            List<Future<String>> a = new ArrayList<>(), b = new ArrayList<>();
            for (String p : prompts) {
                a.add(pool.submit(() -> Json.mapper().readTree(post(batched, "/v1/completions", completion(p, 20, false)).body())
                        .path("choices").path(0).path("text").asText()));
                b.add(pool.submit(() -> Json.mapper().readTree(post(alone, "/v1/completions", completion(p, 20, false)).body())
                        .path("choices").path(0).path("text").asText()));
            }
            for (int i = 0; i < prompts.size(); i++) assertEquals(a.get(i).get(60, TimeUnit.SECONDS), b.get(i).get(60, TimeUnit.SECONDS));
            JsonNode health = Json.mapper().readTree(get(alone, "/health").body());
            assertTrue(health.path("decode_steps").isMissingNode(), "no batched steps without batching: " + health);
        }
    }

    @Test
    void badRequestsGetClearClientErrors() throws Exception {
        try (Server s = server(1, 4, 1)) {
            assertError(post(s, "/v1/completions", "{\"prompt\": \"abc\", "), 400, "not valid JSON");
            assertError(post(s, "/v1/completions", "[1, 2]"), 400, "JSON object");
            assertError(post(s, "/v1/completions", "{\"model\":\"other\",\"prompt\":\"a\"}"), 404, "does not exist");
            assertError(post(s, "/v1/completions", "{\"prompt\":\"" + "x".repeat(5000) + "\"}"), 413, "at most 4096");
            assertError(post(s, "/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":201}"), 400, "limit of 200");
            assertError(post(s, "/v1/completions", "{\"prompt\":\"" + "a ".repeat(200) + "\",\"max_tokens\":100}"), 400, "context");
            assertError(post(s, "/v1/completions", "{\"prompt\":\"a\",\"temperature\":-1}"), 400, "temperature");
            assertError(post(s, "/v1/completions", "{\"prompt\":\"a\",\"n\":3}"), 400, "n = 1");
            assertError(post(s, "/v1/completions", "{\"max_tokens\":3}"), 400, "prompt");
            assertError(post(s, "/v1/chat/completions", "{\"messages\":[]}"), 400, "messages");
            assertError(get(s, "/v1/completions"), 405, "POST");
            assertError(get(s, "/v1/nothing"), 404, "no such endpoint");
            JsonNode models = Json.mapper().readTree(get(s, "/v1/models").body());
            assertEquals("tiny", models.path("data").path(0).path("id").asText());
            assertEquals("ok", Json.mapper().readTree(get(s, "/health").body()).path("status").asText());
            assertEquals(0, s.busySlots());
        }
    }

    static void assertError(HttpResponse<String> r, int status, String text) throws Exception {
        assertEquals(status, r.statusCode(), r.body());
        JsonNode e = Json.mapper().readTree(r.body()).path("error");
        assertTrue(e.path("message").asText().contains(text), e.toString());
    }

    @Test
    void chatCompletionsUseTheChatTemplate() throws Exception {
        try (Server s = server(1, 4, 1)) {
            String body = "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":5,\"temperature\":0,\"ignore_eos\":true}";
            HttpResponse<String> r = post(s, "/v1/chat/completions", body);
            assertEquals(200, r.statusCode(), r.body());
            JsonNode j = Json.mapper().readTree(r.body());
            assertEquals("chat.completion", j.path("object").asText());
            assertEquals("assistant", j.path("choices").path(0).path("message").path("role").asText());
            String prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
            assertEquals(tokenizer.encode(prompt, false).length, j.path("usage").path("prompt_tokens").asInt());
            HttpResponse<InputStream> streamed = client.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + s.port() + "/v1/chat/completions"))
                    .POST(HttpRequest.BodyPublishers.ofString(body.substring(0, body.length() - 1) + ",\"stream\":true}")).build(),
                    HttpResponse.BodyHandlers.ofInputStream());
            Stream st = readStream(streamed.body(), true);
            assertTrue(st.done());
            assertEquals(j.path("choices").path(0).path("message").path("content").asText(), st.text());
        }
    }

    /**
     * A chat's second turn repeats the first and its answer: the request goes to the slot whose cache holds them (not the
     * one idle longest, which an unrelated request used), only the new part is prefilled, and the answer is what a fresh
     * server gives.
     */
    @Test
    void aChatsNextTurnReusesItsCachedStart() throws Exception {
        String user = "{\"role\":\"user\",\"content\":\"hi there\"}";
        String first = "{\"model\":\"tiny\",\"messages\":[" + user + "],\"max_tokens\":8,\"temperature\":0,\"ignore_eos\":true}";
        try (Server s = server(2, 4, 1); Server fresh = server(1, 4, 1)) {
            JsonNode other = Json.mapper().readTree(post(s, "/v1/completions", completion("zz unrelated", 4, false)).body());
            assertEquals(0, other.path("usage").path("prompt_tokens_details").path("cached_tokens").asInt(), other.toString());
            // Its slot is idle longest now, but the next turn must find the other one.
            JsonNode one = Json.mapper().readTree(post(s, "/v1/chat/completions", first).body());
            assertEquals(0, one.path("usage").path("prompt_tokens_details").path("cached_tokens").asInt());
            String answer = one.path("choices").path(0).path("message").path("content").asText();
            String second = "{\"model\":\"tiny\",\"messages\":[" + user + ",{\"role\":\"assistant\",\"content\":" + quote(answer)
                    + "},{\"role\":\"user\",\"content\":\"and then?\"}],\"max_tokens\":8,\"temperature\":0,\"ignore_eos\":true}";
            JsonNode two = Json.mapper().readTree(post(s, "/v1/chat/completions", second).body());
            int firstPrompt = one.path("usage").path("prompt_tokens").asInt(), cached = two.path("usage").path("prompt_tokens_details")
                    .path("cached_tokens").asInt();
            assertTrue(cached >= firstPrompt - 1 && cached < two.path("usage").path("prompt_tokens").asInt(),
                    "the first turn's prompt (and what of its answer tokenises the same) stays cached: " + two.path("usage"));
            JsonNode alone = Json.mapper().readTree(post(fresh, "/v1/chat/completions", second).body());
            assertEquals(0, alone.path("usage").path("prompt_tokens_details").path("cached_tokens").asInt());
            assertEquals(alone.path("choices").path(0).path("message").path("content").asText(),
                    two.path("choices").path(0).path("message").path("content").asText());
            JsonNode health = Json.mapper().readTree(get(s, "/health").body());
            assertEquals(cached, health.path("cached_prompt_tokens").asInt(), health.toString());
        }
    }

    /**
     * A request that shares only a first word with a slot's sequence takes a slot of its own while there is one, so
     * the first sequence's cache is still there for its follow-up.
     */
    @Test
    void aSharedFirstWordDoesNotTakeAnotherConversationsCache() throws Exception {
        try (Server s = server(2, 4, 1)) {
            String first = "the whale and the sea and the ship of the captain";
            JsonNode a = Json.mapper().readTree(post(s, "/v1/completions", completion(first, 6, false)).body());
            JsonNode b = Json.mapper().readTree(post(s, "/v1/completions", completion("the end", 6, false)).body());
            assertEquals(0, b.path("usage").path("prompt_tokens_details").path("cached_tokens").asInt(), b.toString());
            String next = first + a.path("choices").path(0).path("text").asText() + " and more";
            JsonNode c = Json.mapper().readTree(post(s, "/v1/completions", completion(next, 6, false)).body());
            assertTrue(c.path("usage").path("prompt_tokens_details").path("cached_tokens").asInt()
                    >= a.path("usage").path("prompt_tokens").asInt() - 1, c.path("usage").toString());
        }
    }

    /**
     * Requests that share a system prompt with an idle slot, but only a small part of its sequence, get the shared rows
     * copied into another slot: an unused one, then (all slots used) the one idle longest, never the donor, whose
     * conversation goes on with its whole cache. Each answer is a fresh server's.
     */
    @Test
    void aSharedSystemPromptIsCopiedIntoAnotherSlot() throws Exception {
        String system = "you are a kind whale of the sea. ";
        String[] questions = new String[4];
        for (int q = 0; q < questions.length; q++) {
            StringBuilder b = new StringBuilder();
            for (int w = 0; w < 14; w++) b.append(new String[]{"why", "does", "the", "moon", "pull", "tide", "salt", "wind"}[(w * (q + 3) + q) % 8]).append(' ');
            questions[q] = system + b.toString().trim();
        }
        try (Server s = server(2, 4, 1); Server fresh = server(1, 4, 1)) {
            int[] total = {0};
            java.util.function.BiFunction<String, Boolean, JsonNode> ask = (prompt, copied) -> {
                try {
                    JsonNode r = Json.mapper().readTree(post(s, "/v1/completions", completion(prompt, 6, false)).body());
                    int c = cached(r), prompted = r.path("usage").path("prompt_tokens").asInt();
                    total[0] += c;
                    if (copied) {
                        assertTrue(c >= Server.COPY_AT_LEAST && 2 * c < prompted, "the system prompt copied: " + r);
                        JsonNode alone = Json.mapper().readTree(post(fresh, "/v1/completions", completion(prompt, 6, false)).body());
                        assertEquals(alone.path("choices").path(0).path("text").asText(), r.path("choices").path(0).path("text").asText(),
                                "after copied rows: " + prompt);
                    }
                    return r;
                } catch (Exception e) {
                    throw new AssertionError(e);
                }
            };
            assertEquals(0, cached(ask.apply(questions[0], false)));                 // slot A
            JsonNode one = ask.apply(questions[1], true);                            // slot B, copied from A
            ask.apply(questions[2], true);                                           // A (idle longest), copied from B
            String followUp = questions[1] + one.path("choices").path(0).path("text").asText() + " and more";
            JsonNode kept = ask.apply(followUp, false);                              // B: its whole cache
            assertTrue(cached(kept) >= one.path("usage").path("prompt_tokens").asInt() - 1, kept.toString());
            assertTrue(cached(ask.apply("zz unrelated", false)) < Server.COPY_AT_LEAST);  // A, idle longest
            // B alone holds the system prompt, and it is the one idle longest: the copy goes to A, B stays.
            ask.apply(questions[3], true);
            JsonNode again = ask.apply(followUp + kept.path("choices").path(0).path("text").asText() + " again", false);
            assertTrue(cached(again) >= kept.path("usage").path("prompt_tokens").asInt() - 1, again.toString());
            JsonNode health = Json.mapper().readTree(get(s, "/health").body());
            assertEquals(total[0], health.path("cached_prompt_tokens").asInt(), health.toString());
        }
    }

    /**
     * While a slot is unused, a second question about the same document (most of the first request, but not its
     * question and answer) gets the document's rows copied into the unused slot, and the first conversation keeps its
     * whole cache for its follow-up.
     */
    @Test
    void aDocumentAskedAgainKeepsTheFirstConversation() throws Exception {
        String doc = "the whale and the sea and the ship of the captain and the long voyage home. ";
        try (Server s = server(2, 4, 1); Server fresh = server(1, 4, 1)) {
            String first = doc + "who steered the ship through the storm at night?";
            JsonNode a = Json.mapper().readTree(post(s, "/v1/completions", completion(first, 6, false)).body());
            String second = doc + "what did the captain eat on the way back home?";
            JsonNode b = Json.mapper().readTree(post(s, "/v1/completions", completion(second, 6, false)).body());
            assertTrue(cached(b) >= Server.COPY_AT_LEAST && 2 * cached(b) >= a.path("usage").path("prompt_tokens").asInt(), b.toString());
            JsonNode alone = Json.mapper().readTree(post(fresh, "/v1/completions", completion(second, 6, false)).body());
            assertEquals(alone.path("choices").path(0).path("text").asText(), b.path("choices").path(0).path("text").asText());
            String next = first + a.path("choices").path(0).path("text").asText() + " and more";
            JsonNode c = Json.mapper().readTree(post(s, "/v1/completions", completion(next, 6, false)).body());
            assertTrue(cached(c) >= a.path("usage").path("prompt_tokens").asInt() - 1, c.toString());
        }
    }

    /**
     * The load test runs every request once through the streamed API and adds up what the server reported: clients
     * share a system prompt (copied between the slots), each request gets its own words after it.
     */
    @Test
    void loadTestCountsEveryRequest() throws Exception {
        try (Server s = server(3, 8, 1)) {
            LoadTest.Settings settings = new LoadTest.Settings(URI.create("http://127.0.0.1:" + s.port()), null, 3, 7, 1,
                    30, 20, 4, 5);
            long before = s.completed();
            LoadTest.Report r = LoadTest.run(settings);
            assertEquals(7, r.requests());
            assertEquals(10, s.completed() - before, "three warm-up requests and seven counted ones");
            assertEquals(7 * 4, r.completionTokens());
            assertTrue(r.promptTokens() >= 7 * 30, "at least a token per word: " + r.promptTokens());
            assertTrue(r.cachedTokens() > 7 * Server.COPY_AT_LEAST / 2, "the shared words found cached: " + r.cachedTokens());
            assertTrue(r.firstTextP50() > 0 && r.firstTextP50() <= r.requestP90() && r.requestP50() <= r.requestP90());
            assertTrue(r.gapP50() >= 0 && r.gapP50() <= r.gapP90());
            assertEquals(r.completionTokens() / r.seconds(), r.outputTokensPerSecond(), 1e-9);

            String a = LoadTest.prompt(settings, 0), b = LoadTest.prompt(settings, 1);
            assertEquals(30, a.split(" ").length);
            String[] wa = a.split(" "), wb = b.split(" ");
            assertArrayEquals(Arrays.copyOf(wa, 20), Arrays.copyOf(wb, 20), "the shared words");
            assertNotEquals(String.join(" ", Arrays.copyOfRange(wa, 20, 30)), String.join(" ", Arrays.copyOfRange(wb, 20, 30)));
            assertEquals(a, LoadTest.prompt(settings, 0), "the same prompt for the same seed and index");
        }
        assertEquals(2.5, LoadTest.percentile(new double[]{4, 1, 3, 2}, 50), 1e-12);
        assertEquals(3.7, LoadTest.percentile(new double[]{4, 1, 3, 2}, 90), 1e-12);
        assertTrue(Double.isNaN(LoadTest.percentile(new double[0], 50)));
    }

    /** A load test against nothing, or against a model the server does not have, stops with the reason. */
    @Test
    void loadTestFailuresSayWhy() throws Exception {
        int port;
        try (java.net.ServerSocket free = new java.net.ServerSocket(0)) {
            port = free.getLocalPort();
        }
        URI nowhere = URI.create("http://127.0.0.1:" + port);
        dev.ropeway.RopewayException e = assertThrows(dev.ropeway.RopewayException.class,
                () -> LoadTest.run(new LoadTest.Settings(nowhere, null, 2, 2, 0, 5, 0, 2, 1)));
        assertTrue(e.getMessage().contains("cannot connect to " + nowhere), e.getMessage());
        try (Server s = server(1, 4, 1)) {
            URI base = URI.create("http://127.0.0.1:" + s.port());
            dev.ropeway.RopewayException other = assertThrows(dev.ropeway.RopewayException.class,
                    () -> LoadTest.run(new LoadTest.Settings(base, "another", 1, 1, 0, 5, 0, 2, 1)));
            assertTrue(other.getMessage().contains("answered 404"), other.getMessage());
        }
        assertThrows(dev.ropeway.RopewayException.class, () -> new LoadTest.Settings(nowhere, null, 1, 1, 0, 5, 6, 2, 1),
                "more shared words than words");
    }

    /**
     * A request about the same document as one still generating gets the document's rows copied from the busy slot
     * (they no longer change), and the answer a fresh server gives.
     */
    @Test
    void aBusySlotsSettledRowsAreCopied() throws Exception {
        String doc = "the whale and the sea and the ship of the captain and the long voyage home. ";
        ServerSettings settings = new ServerSettings("127.0.0.1", 0, 2, 4, 10_100, 10_000, 4096, 1);
        try (Server s = new Server(model, model.config().rope(), new Generator(tokenizer), null, "tiny", settings,
                Decoder.RopeChange.REROTATE); Server fresh = server(1, 4, 1)) {
            HttpResponse<InputStream> r = client.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + s.port() + "/v1/completions"))
                    .POST(HttpRequest.BodyPublishers.ofString(completion(doc + "who steered?", 10_000, true))).build(),
                    HttpResponse.BodyHandlers.ofInputStream());
            try (InputStream in = r.body()) {
                assertTrue(new String(in.readNBytes(200), StandardCharsets.UTF_8).startsWith("data: "));
                waitUntil(() -> s.busySlots() == 1, "the first request generates");
                String second = doc + "what did they eat?";
                JsonNode b = Json.mapper().readTree(post(s, "/v1/completions", completion(second, 6, false)).body());
                assertTrue(cached(b) >= Server.COPY_AT_LEAST, b.toString());
                // The answered slot is free before its answer is sent.
                assertEquals(1, s.busySlots(), "the first request is still generating");
                JsonNode alone = Json.mapper().readTree(post(fresh, "/v1/completions", completion(second, 6, false)).body());
                assertEquals(alone.path("choices").path(0).path("text").asText(), b.path("choices").path(0).path("text").asText());
            }
            waitUntil(() -> s.busySlots() == 0, "the first request ends once its client is gone");
        }
    }

    /**
     * Two requests about one new document arriving together: the second waits for the first slot's prefill of the
     * document (held here after its first chunk) and copies its rows, and both answer as a fresh server does.
     */
    @Test
    void aDocumentPrefilledInAnotherSlotIsAwaitedNotComputedTwice() throws Exception {
        String doc = "the whale and the sea and the ship of the captain and the long voyage home. ".repeat(3);
        java.util.concurrent.CountDownLatch held = new java.util.concurrent.CountDownLatch(1),
                release = new java.util.concurrent.CountDownLatch(1);
        java.util.concurrent.atomic.AtomicBoolean armed = new java.util.concurrent.atomic.AtomicBoolean(true);
        dev.ropeway.tensor.InstrumentedBackend gated = dev.ropeway.tensor.InstrumentedBackend.of(backend).prefillChunk(16)
                .onSynchronize(() -> {
                    if (!armed.compareAndSet(true, false)) return;
                    held.countDown();
                    try {
                        release.await(60, TimeUnit.SECONDS);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                });
        ServerSettings settings = new ServerSettings("127.0.0.1", 0, 2, 4, 256, 200, 4096, 1);
        String first = doc + "who steered?", second = doc + "what did they eat?";
        try (Transformer t = Transformer.load(gated.backend(), dir);
             Server s = new Server(t, t.config().rope(), new Generator(tokenizer), null, "tiny", settings, Decoder.RopeChange.REROTATE);
             Server fresh = server(1, 4, 1);
             ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            int shared = 0;
            int[] a = tokenizer.encodeWithBos(first), b = tokenizer.encodeWithBos(second);
            while (a[shared] == b[shared]) shared++;
            assertTrue(shared > 3 * 16, "the document spans several chunks: " + shared);
            Future<HttpResponse<String>> one = pool.submit(() -> post(s, "/v1/completions", completion(first, 6, false)));
            assertTrue(held.await(30, TimeUnit.SECONDS), "the first prefill reached its first chunk's end");
            Future<HttpResponse<String>> two = pool.submit(() -> post(s, "/v1/completions", completion(second, 6, false)));
            waitUntil(() -> health(s).path("awaited_prefills").asInt() == 1,
                    "the second request waits for the first one's prefill");
            assertFalse(two.isDone(), "answered while the rows it waits for are not computed");
            release.countDown();
            JsonNode r1 = Json.mapper().readTree(one.get(60, TimeUnit.SECONDS).body());
            JsonNode r2 = Json.mapper().readTree(two.get(60, TimeUnit.SECONDS).body());
            assertEquals(shared, cached(r2), r2.toString());
            assertEquals(0, cached(r1), r1.toString());
            for (String[] pair : new String[][]{{first, r1.toString()}, {second, r2.toString()}}) {
                JsonNode alone = Json.mapper().readTree(post(fresh, "/v1/completions", completion(pair[0], 6, false)).body());
                assertEquals(alone.path("choices").path(0).path("text").asText(),
                        Json.mapper().readTree(pair[1]).path("choices").path(0).path("text").asText());
            }
        } finally {
            release.countDown();
        }
    }

    /**
     * Log-probabilities in OpenAI's shapes: an echoed and scored prompt (its first token without one) then the
     * generated tokens, each top map holding the chosen token, greedy tokens the most likely; the same request streamed
     * gives the same tokens and values across its chunks; max_tokens 0 scores the prompt alone; chat's content list.
     */
    @Test
    void logprobsComeInOpenAisShapes() throws Exception {
        try (Server s = server(1, 4, 1)) {
            String prompt = "the captain of the ship";
            int promptTokens = tokenizer.encodeWithBos(prompt).length;
            String body = "{\"model\":\"tiny\",\"prompt\":" + quote(prompt) + ",\"max_tokens\":5,\"temperature\":0,"
                    + "\"ignore_eos\":true,\"logprobs\":2,\"echo\":true";
            JsonNode whole = Json.mapper().readTree(post(s, "/v1/completions", body + "}").body());
            JsonNode choice = whole.path("choices").path(0), lp = choice.path("logprobs");
            assertEquals(promptTokens + 5, lp.path("tokens").size(), lp.toString());
            assertTrue(lp.path("token_logprobs").get(0).isNull());
            assertTrue(lp.path("top_logprobs").get(0).isNull());
            long lastOffset = -1;
            for (int i = 1; i < lp.path("tokens").size(); i++) {
                String token = lp.path("tokens").get(i).asText();
                double value = lp.path("token_logprobs").get(i).asDouble();
                JsonNode top = lp.path("top_logprobs").get(i);
                assertTrue(value < 0, "a log-probability: " + value);
                assertTrue(top.size() >= 2 && top.size() <= 3, top.toString());
                assertEquals(value, top.path(token).asDouble(), 1e-12, "the chosen token is in the top map");
                if (i >= promptTokens) {
                    double best = Double.NEGATIVE_INFINITY;
                    for (JsonNode v : top) best = Math.max(best, v.asDouble());
                    assertEquals(best, value, 1e-12, "greedy picks the most likely token");
                }
                long offset = lp.path("text_offset").get(i).asLong();
                assertTrue(offset >= lastOffset);
                lastOffset = offset;
            }
            assertTrue(choice.path("text").asText().startsWith(prompt));
            assertEquals(0, cached(whole));

            // Streamed: the chunks' log-probabilities put together are the whole answer's.
            List<String> tokens = new ArrayList<>();
            List<Double> values = new ArrayList<>();
            HttpResponse<InputStream> r = client.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + s.port() + "/v1/completions"))
                    .POST(HttpRequest.BodyPublishers.ofString(body + ",\"stream\":true}")).build(), HttpResponse.BodyHandlers.ofInputStream());
            try (BufferedReader in = new BufferedReader(new InputStreamReader(r.body(), StandardCharsets.UTF_8))) {
                for (String line; (line = in.readLine()) != null; ) {
                    if (!line.startsWith("data: {")) continue;
                    JsonNode l = Json.mapper().readTree(line.substring(6)).path("choices").path(0).path("logprobs");
                    for (int i = 0; i < l.path("tokens").size(); i++) {
                        tokens.add(l.path("tokens").get(i).asText());
                        values.add(l.path("token_logprobs").get(i).isNull() ? null : l.path("token_logprobs").get(i).asDouble());
                    }
                }
            }
            assertEquals(lp.path("tokens").size(), tokens.size());
            for (int i = 0; i < tokens.size(); i++) {
                assertEquals(lp.path("tokens").get(i).asText(), tokens.get(i));
                if (i > 0) assertEquals(lp.path("token_logprobs").get(i).asDouble(), values.get(i), 1e-12);
            }

            // After a plain request left the prompt's rows in the slot, scoring it still computes it whole.
            assertTrue(cached(Json.mapper().readTree(post(s, "/v1/completions", completion(prompt + " sailed", 2, false)).body())) > 0);
            JsonNode scored = Json.mapper().readTree(post(s, "/v1/completions", body.replace("\"max_tokens\":5", "\"max_tokens\":0") + "}").body());
            assertEquals(0, cached(scored));
            assertEquals(prompt, scored.path("choices").path(0).path("text").asText());
            assertEquals(0, scored.path("usage").path("completion_tokens").asInt());
            JsonNode scoredLp = scored.path("choices").path(0).path("logprobs");
            assertEquals(promptTokens, scoredLp.path("tokens").size());
            for (int i = 1; i < promptTokens; i++)
                assertEquals(lp.path("token_logprobs").get(i).asDouble(), scoredLp.path("token_logprobs").get(i).asDouble(), 1e-6);

            JsonNode chat = Json.mapper().readTree(post(s, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                    + "\"max_tokens\":4,\"temperature\":0,\"ignore_eos\":true,\"logprobs\":true,\"top_logprobs\":2}").body());
            JsonNode content = chat.path("choices").path(0).path("logprobs").path("content");
            assertEquals(4, content.size(), chat.toString());
            java.io.ByteArrayOutputStream bytes = new java.io.ByteArrayOutputStream();
            for (JsonNode c : content) {
                assertEquals(2, c.path("top_logprobs").size());
                assertEquals(c.path("top_logprobs").get(0).path("logprob").asDouble(), c.path("logprob").asDouble(), 1e-12);
                assertTrue(c.path("bytes").isArray());
                for (JsonNode b : c.path("bytes")) bytes.write(b.asInt());
            }
            // The tokens' own bytes (a piece of a character included) join into the message's text.
            assertEquals(chat.path("choices").path(0).path("message").path("content").asText(),
                    bytes.toString(java.nio.charset.StandardCharsets.UTF_8));
            JsonNode plain = Json.mapper().readTree(post(s, "/v1/completions", completion(prompt, 2, false)).body());
            assertTrue(plain.path("choices").path(0).path("logprobs").isNull());

            assertError(post(s, "/v1/completions", "{\"prompt\":\"a\",\"logprobs\":21}"), 400, "from 0 to 20");
            assertError(post(s, "/v1/completions", "{\"prompt\":\"a\",\"logprobs\":true}"), 400, "integer");
            assertError(post(s, "/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":0,\"logprobs\":1}"), 400, "0 only with echo");
            assertError(post(s, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"top_logprobs\":2}"),
                    400, "needs");
        }
    }

    /** The start-up warm-up runs prompts, batched steps and a text generation on scratch caches, down to a 2-token context. */
    @Test
    void warmUpRunsOnScratchCaches() throws Exception {
        for (ServerSettings settings : new ServerSettings[]{new ServerSettings("127.0.0.1", 0, 3, 4, 256, 200, 4096, 1),
                new ServerSettings("127.0.0.1", 0, 1, 4, 6, 5, 4096, 1, false),
                new ServerSettings("127.0.0.1", 0, 2, 4, 2, 1, 4096, 1)}) {
            double seconds = Server.warmUp(model, model.config().rope(), new Generator(tokenizer), settings,
                    Decoder.RopeChange.REROTATE);
            assertTrue(seconds > 0);
        }
        // A server started afterwards answers as one that was not warmed up.
        try (Server s = server(1, 4, 1)) {
            assertEquals(200, post(s, "/v1/completions", completion("the", 3, false)).statusCode());
        }
    }

    static int cached(JsonNode response) {
        return response.path("usage").path("prompt_tokens_details").path("cached_tokens").asInt();
    }

    /** A streaming client that hangs up frees its slot long before its 10,000-token budget. */
    @Test
    void disconnectFreesTheSlot() throws Exception {
        try (Server s = new Server(model, model.config().rope(), new Generator(tokenizer), null, "tiny",
                new ServerSettings("127.0.0.1", 0, 1, 4, 10_100, 10_000, 4096, 1), Decoder.RopeChange.REROTATE)) {
            HttpResponse<InputStream> r = client.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + s.port() + "/v1/completions"))
                    .POST(HttpRequest.BodyPublishers.ofString(completion("the", 10_000, true))).build(), HttpResponse.BodyHandlers.ofInputStream());
            InputStream in = r.body();
            byte[] first = in.readNBytes(200);
            assertTrue(new String(first, StandardCharsets.UTF_8).startsWith("data: "));
            waitUntil(() -> s.busySlots() == 1, "the request runs");
            in.close();
            waitUntil(() -> s.busySlots() == 0, "the slot is freed after the client left");
            assertEquals(1, s.completed());
            // The slot serves the next request.
            assertEquals(200, post(s, "/v1/completions", completion("the", 3, false)).statusCode());
        }
    }

    /** A full queue answers 503; shutdown lets a running request finish. */
    @Test
    void fullQueueAndGracefulShutdown() throws Exception {
        Server s = server(1, 0, 30);
        try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            Future<HttpResponse<String>> running = pool.submit(() -> post(s, "/v1/completions", completion("the", 150, false)));
            waitUntil(() -> s.busySlots() == 1, "the first request runs");
            HttpResponse<String> busy = post(s, "/v1/completions", completion("a", 3, false));
            assertEquals(503, busy.statusCode(), busy.body());
            assertTrue(busy.headers().firstValue("Retry-After").isPresent());
            s.close();
            HttpResponse<String> finished = running.get(60, TimeUnit.SECONDS);
            assertEquals(200, finished.statusCode(), finished.body());
            assertEquals("length", Json.mapper().readTree(finished.body()).path("choices").path(0).path("finish_reason").asText());
            assertThrows(java.io.IOException.class, () -> get(s, "/health"), "the listener is closed");
        }
    }

    static JsonNode health(Server s) {
        try {
            return Json.mapper().readTree(get(s, "/health").body());
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    static void waitUntil(java.util.function.BooleanSupplier condition, String what) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) fail("timed out waiting until " + what);
            Thread.sleep(10);
        }
    }
}
