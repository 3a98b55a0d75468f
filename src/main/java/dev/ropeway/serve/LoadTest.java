package dev.ropeway.serve;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ropeway.RopewayException;
import dev.ropeway.io.Json;

import java.io.IOException;
import java.net.ConnectException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A load test of an OpenAI-compatible server: {@code clients} clients at once, each streaming completions one after
 * another ({@code POST /v1/completions}, {@code "stream": true}, greedy, {@code ignore_eos}) until {@code requests}
 * have run. Prompts are words drawn at random per request, after {@code sharedWords} words every prompt starts with (a
 * system prompt). Measures output tokens per second over the whole run, and per request the time to its first text,
 * the gaps between its streamed pieces of text and its whole time.
 */
public final class LoadTest {

    /**
     * What to run. {@code model} is the request's model field (null: left out, the server's only model).
     * {@code warmup} requests run first, one per client at a time, and are not counted.
     */
    public record Settings(URI base, String model, int clients, int requests, int warmup, int promptWords, int sharedWords,
                           int maxTokens, long seed) {
        public Settings {
            if (clients < 1) throw new RopewayException("--clients must be at least 1, got " + clients);
            if (requests < 1) throw new RopewayException("--requests must be at least 1, got " + requests);
            if (warmup < 0) throw new RopewayException("--warmup must be at least 0, got " + warmup);
            if (promptWords < 1) throw new RopewayException("--prompt-words must be at least 1, got " + promptWords);
            if (sharedWords < 0 || sharedWords > promptWords)
                throw new RopewayException("--shared-words must be in [0, --prompt-words], got " + sharedWords);
            if (maxTokens < 1) throw new RopewayException("--max-tokens must be at least 1, got " + maxTokens);
        }
    }

    /** One request as measured: seconds to its first text and in all, and the gaps between its pieces of text. */
    public record Request(int promptTokens, int cachedTokens, int completionTokens, double firstText, double seconds,
                          double[] gaps) {}

    /** The run: totals, rates and percentiles (seconds) over the counted requests. */
    public record Report(int clients, int requests, double seconds, long promptTokens, long cachedTokens,
                         long completionTokens, double outputTokensPerSecond, double requestsPerSecond,
                         double firstTextP50, double firstTextP90, double gapP50, double gapP90, double requestP50,
                         double requestP90) {
        public Map<String, Object> toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("clients", clients);
            m.put("requests", requests);
            m.put("seconds", seconds);
            m.put("prompt_tokens", promptTokens);
            m.put("cached_prompt_tokens", cachedTokens);
            m.put("completion_tokens", completionTokens);
            m.put("output_tokens_per_second", outputTokensPerSecond);
            m.put("requests_per_second", requestsPerSecond);
            m.put("time_to_first_text_p50", firstTextP50);
            m.put("time_to_first_text_p90", firstTextP90);
            m.put("between_texts_p50", gapP50);
            m.put("between_texts_p90", gapP90);
            m.put("request_p50", requestP50);
            m.put("request_p90", requestP90);
            return m;
        }
    }

    private static final String[] WORDS = ("the of and to in a is that for it as was with be by on not he this are or his "
            + "from at which but have an they you were her she there been one all we their has would when if so no what "
            + "can more will other into its only time about out up then them these may could some two first any like "
            + "over new such than our very after most made also did many before must through where much well should "
            + "down each between long little own under world never same another while last might great old year off "
            + "come since against go came right used take three small large next early young important few public "
            + "river ship harbour morning window garden letter winter summer mountain village market candle bridge "
            + "captain whale island forest lantern valley kettle engine signal voyage compass anchor orchard meadow "
            + "silver copper marble thunder harvest journey lighthouse library chapter question answer reason number").split(" ");

    /** Every word the prompts are drawn from, once each (a tokenizer for a random model can be learnt from it). */
    public static String vocabularyText() {
        return String.join(" ", WORDS);
    }

    private final Settings settings;
    private final HttpClient client;

    private LoadTest(Settings settings) {
        this.settings = settings;
        this.client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(10)).build();
    }

    /** Runs the warm-up requests, then the counted ones; the first failed request stops the run with its error. */
    public static Report run(Settings settings) {
        LoadTest t = new LoadTest(settings);
        if (settings.warmup() > 0) t.round(-settings.warmup() * settings.clients(), settings.warmup() * settings.clients());
        long start = System.nanoTime();
        List<Request> done = t.round(0, settings.requests());
        return report(settings.clients(), done, (System.nanoTime() - start) / 1e9);
    }

    /** The prompt of request {@code index}: the shared words, then its own. */
    static String prompt(Settings settings, int index) {
        StringBuilder b = new StringBuilder();
        SplittableRandom shared = new SplittableRandom(settings.seed());
        SplittableRandom own = new SplittableRandom(settings.seed() * 31 + index + 1_000_003L);
        for (int w = 0; w < settings.promptWords(); w++) {
            if (w > 0) b.append(' ');
            b.append(WORDS[(w < settings.sharedWords() ? shared : own).nextInt(WORDS.length)]);
        }
        return b.toString();
    }

    /** Requests {@code first} .. {@code first + count - 1}, taken by the clients in turn. */
    private List<Request> round(int first, int count) {
        AtomicInteger next = new AtomicInteger(first);
        int end = first + count;
        List<Request> done = Collections.synchronizedList(new ArrayList<>());
        try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            List<Future<?>> clients = new ArrayList<>();
            for (int c = 0; c < Math.min(settings.clients(), count); c++)
                clients.add(pool.submit(() -> {
                    for (int i = next.getAndIncrement(); i < end; i = next.getAndIncrement()) done.add(request(i));
                    return null;
                }));
            for (Future<?> f : clients) {
                try {
                    f.get();
                } catch (ExecutionException e) {
                    for (Future<?> other : clients) other.cancel(true);
                    if (e.getCause() instanceof RopewayException r) throw r;
                    throw new RopewayException("a load-test request failed: " + e.getCause(), e.getCause());
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new RopewayException("the load test was interrupted");
                }
            }
        }
        return done;
    }

    private Request request(int index) throws IOException, InterruptedException {
        Map<String, Object> body = new LinkedHashMap<>();
        if (settings.model() != null) body.put("model", settings.model());
        body.put("prompt", prompt(settings, index));
        body.put("max_tokens", settings.maxTokens());
        body.put("temperature", 0);
        body.put("ignore_eos", true);
        body.put("stream", true);
        body.put("stream_options", Map.of("include_usage", true));
        URI uri = settings.base().resolve("/v1/completions");
        HttpRequest req = HttpRequest.newBuilder(uri).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(Json.mapper().writeValueAsString(body))).build();
        long start = System.nanoTime(), last = 0;
        double firstText = -1;
        List<Double> gaps = new ArrayList<>();
        HttpResponse<java.util.stream.Stream<String>> r;
        try {
            r = client.send(req, HttpResponse.BodyHandlers.ofLines());
        } catch (ConnectException e) {
            throw new RopewayException("cannot connect to " + uri + ": is the server running?");
        }
        JsonNode usage = null;
        try (java.util.stream.Stream<String> lines = r.body()) {
            if (r.statusCode() != 200)
                throw new RopewayException(uri + " answered " + r.statusCode() + ": " + String.join("\n", lines.toList()));
            for (Iterator<String> it = lines.iterator(); it.hasNext(); ) {
                String line = it.next();
                if (!line.startsWith("data:")) continue;
                String data = line.substring(5).trim();
                if (data.equals("[DONE]")) break;
                JsonNode event = Json.mapper().readTree(data);
                if (event.has("error")) throw new RopewayException(uri + " failed a request: " + event.get("error"));
                if (event.hasNonNull("usage")) usage = event.get("usage");
                JsonNode choice = event.path("choices").path(0);
                String text = choice.path("text").isTextual() ? choice.path("text").asText()
                        : choice.path("delta").path("content").asText("");
                if (text.isEmpty()) continue;
                long now = System.nanoTime();
                if (firstText < 0) firstText = (now - start) / 1e9;
                else gaps.add((now - last) / 1e9);
                last = now;
            }
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        if (usage == null) throw new RopewayException(uri + " sent no usage with its last chunk (stream_options.include_usage)");
        return new Request(usage.path("prompt_tokens").asInt(), usage.path("prompt_tokens_details").path("cached_tokens").asInt(),
                usage.path("completion_tokens").asInt(), firstText < 0 ? seconds : firstText, seconds,
                gaps.stream().mapToDouble(Double::doubleValue).toArray());
    }

    static Report report(int clients, List<Request> done, double seconds) {
        long prompt = 0, cached = 0, completion = 0;
        double[] first = new double[done.size()], whole = new double[done.size()];
        List<double[]> gapLists = new ArrayList<>();
        for (int i = 0; i < done.size(); i++) {
            Request q = done.get(i);
            prompt += q.promptTokens();
            cached += q.cachedTokens();
            completion += q.completionTokens();
            first[i] = q.firstText();
            whole[i] = q.seconds();
            gapLists.add(q.gaps());
        }
        double[] gaps = gapLists.stream().flatMapToDouble(Arrays::stream).toArray();
        return new Report(clients, done.size(), seconds, prompt, cached, completion, completion / seconds,
                done.size() / seconds, percentile(first, 50), percentile(first, 90), percentile(gaps, 50),
                percentile(gaps, 90), percentile(whole, 50), percentile(whole, 90));
    }

    /** The p-th percentile by linear interpolation between order statistics; NaN for no values. */
    static double percentile(double[] values, double p) {
        if (values.length == 0) return Double.NaN;
        double[] v = values.clone();
        Arrays.sort(v);
        double rank = p / 100 * (v.length - 1);
        int lo = (int) Math.floor(rank), hi = (int) Math.ceil(rank);
        return v[lo] + (rank - lo) * (v[hi] - v[lo]);
    }
}
