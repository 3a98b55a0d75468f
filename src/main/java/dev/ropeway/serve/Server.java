package dev.ropeway.serve;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.ropeway.RopewayException;
import dev.ropeway.generate.BatchedSteps;
import dev.ropeway.generate.ChatTemplate;
import dev.ropeway.generate.Generator;
import dev.ropeway.generate.SamplingSettings;
import dev.ropeway.generate.TokenLogprob;
import dev.ropeway.io.Json;
import dev.ropeway.model.Decoder;
import dev.ropeway.model.Logits;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.RopeScaling;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * An OpenAI-compatible HTTP server: {@code POST /v1/completions}, {@code POST /v1/chat/completions} (both with
 * server-sent-event streaming), {@code GET /v1/models}, {@code GET /health}.
 *
 * <p>Requests are read and answered on virtual threads; generation runs on {@code slots} platform threads, fed from a
 * queue of at most {@code queue} waiting requests (a full queue is a 503). There are as many {@link Decoder}s (KV
 * caches) as slots, and each keeps its last sequence: a request takes the idle decoder that already holds the longest
 * start of its prompt (a chat's earlier turns, a document asked about again) and prefills only the rest
 * ({@code usage.prompt_tokens_details.cached_tokens}); a start that is only a small part of that decoder's sequence
 * (a shared system prompt) is copied into another decoder instead ({@link Decoder#copyPrefix}). Each slot prefills on
 * its own; their decode steps run together, one batched step for every slot that is decoding ({@link BatchedSteps}),
 * unless the settings turn that off. A streaming client that goes away is noticed at its next write (and by a
 * keep-alive comment every second while it waits), and its request is cancelled, which frees the slot.
 * {@link #close()} stops taking requests, lets running ones finish for the grace period, then cancels the rest.
 */
public final class Server implements AutoCloseable {
    private static final long KEEP_ALIVE_MILLIS = 1000;
    /**
     * A shared start shorter than this is prefilled again rather than copied (a first word, a template's opening); a
     * sequence that would lose at most this many tokens is continued in place while a slot is unused.
     */
    static final int COPY_AT_LEAST = 16;
    /** How long a request waits for another slot's prefill whose rows have stopped growing. */
    static final long STALLED_MILLIS = 30_000;
    /** Prompts and decode steps {@link #warmUp} runs, one after the other. */
    static final int ROUNDS = 1;

    private final Transformer model;
    private final RopeScaling rope;
    private final Generator generator;
    private final ChatTemplate chat;
    private final String modelId;
    private final ServerSettings settings;
    private final HttpServer http;
    private final ThreadPoolExecutor slots;
    private final ExecutorService handlers;
    private final List<Decoder> decoders = new ArrayList<>();
    private final Decoder.RopeChange policy;
    /** Decoders no request is using, the longest idle first (guarded by {@link #decoders}). */
    private final List<Decoder> idle = new ArrayList<>();
    /** The prompt each busy decoder is working on (written under {@link #decoders}). */
    private final Map<Decoder, int[]> working = new java.util.concurrent.ConcurrentHashMap<>();
    private final AtomicLong cachedPromptTokens = new AtomicLong();
    private final AtomicLong awaitedPrefills = new AtomicLong();
    private final Generator.Steps steps;
    private final BatchedSteps batched;
    private final java.util.Set<Job> running = java.util.concurrent.ConcurrentHashMap.newKeySet();
    private final java.util.Set<Job> pending = java.util.concurrent.ConcurrentHashMap.newKeySet();
    private final AtomicBoolean draining = new AtomicBoolean();
    private final AtomicLong ids = new AtomicLong();
    private final AtomicInteger completed = new AtomicInteger();

    /** One request's generation: its cancel flag and the events it streams to the HTTP thread. */
    private static final class Job {
        final AtomicBoolean cancelled = new AtomicBoolean();
        final BlockingQueue<Object> events = new LinkedBlockingQueue<>();
    }

    private record Failure(RuntimeException error) {}

    /** The prompt's log-probabilities, once it is prefilled. */
    private record PromptScored(List<TokenLogprob> tokens) {}

    /**
     * Starts serving {@code model} (with {@code rope}, the tokenizer's {@code generator}, and {@code chat} for chat
     * requests, or null when the model has no chat template) under the name {@code modelId}.
     */
    public Server(Transformer model, RopeScaling rope, Generator generator, ChatTemplate chat, String modelId,
                  ServerSettings settings, Decoder.RopeChange policy) throws IOException {
        this.model = model;
        this.rope = rope;
        this.generator = generator;
        this.chat = chat;
        this.modelId = modelId;
        this.settings = settings;
        this.policy = policy;
        this.batched = settings.batch() && settings.slots() > 1 ? new BatchedSteps(settings.slots()) : null;
        this.steps = batched != null ? batched : Generator.Steps.ALONE;
        AtomicInteger slotNumber = new AtomicInteger();
        this.slots = new ThreadPoolExecutor(settings.slots(), settings.slots(), 0, TimeUnit.SECONDS,
                settings.queue() == 0 ? new java.util.concurrent.SynchronousQueue<>() : new ArrayBlockingQueue<>(settings.queue()),
                r -> Thread.ofPlatform().daemon().name("ropeway-slot-" + slotNumber.incrementAndGet()).unstarted(r));
        this.handlers = Executors.newVirtualThreadPerTaskExecutor();
        this.http = HttpServer.create(new InetSocketAddress(settings.host(), settings.port()), 128);
        http.setExecutor(handlers);
        http.createContext("/", this::handle);
        http.start();
    }

    /** The port the server listens on (the one picked when the settings asked for 0). */
    /**
     * Runs prompts and decode steps through scratch caches before a server takes requests, so that its first requests
     * do not pay for readying the kernels (the JIT compiling them on the CPU; compiling them and capturing decode
     * graphs on a GPU): {@link #ROUNDS} times a prefill of random tokens (a quarter of the context, at most 256) and 48
     * decode steps, batched over up to 4 sequences when the server batches its slots' steps, then one generation from
     * a text prompt through {@code generator}. Returns the seconds it took.
     */
    public static double warmUp(Transformer model, RopeScaling rope, Generator generator, ServerSettings settings,
                                Decoder.RopeChange policy) {
        long start = System.nanoTime();
        int capacity = Math.min(settings.context(), 512);
        int prompt = Math.max(1, Math.min(256, capacity / 4)), steps = Math.min(48, capacity - prompt);
        int n = settings.batch() ? Math.min(settings.slots(), 4) : 1, vocab = model.config().vocabSize();
        SplittableRandom random = new SplittableRandom(1);
        List<Decoder> ds = new ArrayList<>();
        try {
            for (int i = 0; i < n; i++) ds.add(new Decoder(model, rope, capacity, policy, model.backend().prefillChunk()));
            int[] next = new int[n];
            for (int round = 0; round < ROUNDS; round++) {
                for (int i = 0; i < n; i++) {
                    ds.get(i).reset();
                    next[i] = Logits.argmax(ds.get(i).append(random.ints(prompt, 0, vocab).toArray()));
                }
                for (int s = 0; s < steps; s++) {
                    List<float[]> logits = n == 1 ? List.of(ds.get(0).next(next[0])) : Decoder.next(ds, next);
                    for (int i = 0; i < n; i++) next[i] = Logits.argmax(logits.get(i));
                }
            }
            // Then a text request's own path: the tokenizer both ways, the sampler, the streamed text.
            if (steps >= 1) {
                StringBuilder text = new StringBuilder();
                for (int w = 0; w < prompt / 2; w++) text.append(w % 7 == 0 ? "The " : "river and the harbour ");
                ds.get(0).reset();
                int[] ids = generator.tokenizer().encodeWithBos(text.toString());
                generator.generate(ds.get(0), Arrays.copyOf(ids, Math.min(ids.length, capacity - steps)),
                        new Generator.Settings(steps, SamplingSettings.greedy(), List.of(), true),
                        piece -> {}, () -> false);
            }
        } finally {
            for (Decoder d : ds) d.close();
        }
        return (System.nanoTime() - start) / 1e9;
    }

    public int port() {
        return http.getAddress().getPort();
    }

    public ServerSettings settings() { return settings; }

    /** Requests generating now. */
    public int busySlots() {
        return running.size();
    }

    /** Requests waiting for a slot. */
    public int queued() {
        return slots.getQueue().size();
    }

    /** Requests answered since the start. */
    public int completed() {
        return completed.get();
    }

    private void handle(HttpExchange ex) {
        try (ex) {
            try {
                route(ex);
            } catch (ApiError e) {
                sendJson(ex, e.status, e.body());
            } catch (IOException e) {
                // The client went away; nothing to answer.
            } catch (RuntimeException e) {
                sendJson(ex, 500, new ApiError(500, "server_error", null, String.valueOf(e.getMessage())).body());
            }
        } catch (IOException ignored) {
            // The client went away while the error was being written.
        }
    }

    private void route(HttpExchange ex) throws IOException {
        String path = ex.getRequestURI().getPath();
        String method = ex.getRequestMethod();
        switch (path) {
            case "/health" -> {
                requireMethod(method, "GET");
                Map<String, Object> body = new LinkedHashMap<>();
                body.put("status", draining.get() ? "shutting_down" : "ok");
                body.put("model", modelId);
                body.put("slots", settings.slots());
                body.put("busy", busySlots());
                body.put("queued", queued());
                // Prompt tokens found already cached (not prefilled again), over all requests so far.
                body.put("cached_prompt_tokens", cachedPromptTokens.get());
                // Requests that waited for another slot's prefill of the start they share, and copied it.
                body.put("awaited_prefills", awaitedPrefills.get());
                if (batched != null) {
                    // How many sequences the batched decode steps carried on average.
                    body.put("decode_steps", batched.steps());
                    body.put("decode_rows", batched.rows());
                }
                sendJson(ex, draining.get() ? 503 : 200, body);
            }
            case "/v1/models" -> {
                requireMethod(method, "GET");
                sendJson(ex, 200, Map.of("object", "list", "data", List.of(modelObject())));
            }
            case "/v1/completions" -> {
                requireMethod(method, "POST");
                complete(ex, Requests.completion(readJson(ex), this::checkModel, generator.tokenizer(), settings), false);
            }
            case "/v1/chat/completions" -> {
                requireMethod(method, "POST");
                complete(ex, Requests.chat(readJson(ex), this::checkModel, generator.tokenizer(), chat, settings), true);
            }
            default -> {
                if (path.startsWith("/v1/models/") && path.substring("/v1/models/".length()).equals(modelId)) {
                    requireMethod(method, "GET");
                    sendJson(ex, 200, modelObject());
                } else {
                    throw new ApiError(404, "invalid_request_error", null, "no such endpoint: " + method + " " + path);
                }
            }
        }
    }

    private Map<String, Object> modelObject() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("id", modelId);
        m.put("object", "model");
        m.put("created", 0);
        m.put("owned_by", "ropeway");
        m.put("context_length", settings.context());
        m.put("rope", dev.ropeway.rope.RopeSpec.describe(rope));
        return m;
    }

    private void checkModel(String requested) {
        if (requested != null && !requested.equals(modelId))
            throw new ApiError(404, "invalid_request_error", "model",
                    "the model '" + requested + "' does not exist; this server serves '" + modelId + "'");
    }

    private static void requireMethod(String method, String allowed) {
        if (!method.equals(allowed))
            throw new ApiError(405, "invalid_request_error", null, "method " + method + " is not allowed here; use " + allowed);
    }

    private JsonNode readJson(HttpExchange ex) throws IOException {
        String type = ex.getRequestHeaders().getFirst("Content-Type");
        if (type != null && !type.toLowerCase(java.util.Locale.ROOT).startsWith("application/json"))
            throw new ApiError(415, "invalid_request_error", null, "the body must be application/json, got " + type);
        String declared = ex.getRequestHeaders().getFirst("Content-Length");
        if (declared != null) {
            long n;
            try {
                n = Long.parseLong(declared.strip());
            } catch (NumberFormatException e) {
                throw ApiError.invalid(null, "bad Content-Length: " + declared);
            }
            if (n > settings.maxBodyBytes()) throw tooLarge(n);
        }
        byte[] body;
        try (InputStream in = ex.getRequestBody()) {
            body = in.readNBytes(settings.maxBodyBytes() + 1);
        }
        if (body.length > settings.maxBodyBytes()) throw tooLarge(body.length);
        try {
            JsonNode root = Json.mapper().readTree(body);
            if (root == null || !root.isObject()) throw ApiError.invalid(null, "the body must be a JSON object");
            return root;
        } catch (JacksonException e) {
            throw ApiError.invalid(null, "the body is not valid JSON: " + e.getOriginalMessage());
        }
    }

    private ApiError tooLarge(long n) {
        return new ApiError(413, "invalid_request_error", null,
                "the body has " + n + " bytes; this server accepts at most " + settings.maxBodyBytes());
    }

    /** Runs a validated request on a slot and answers it, streamed or whole. */
    private void complete(HttpExchange ex, Requests.Parsed req, boolean isChat) throws IOException {
        if (draining.get()) throw new ApiError(503, "server_error", null, "the server is shutting down");
        Job job = new Job();
        pending.add(job);
        try {
            slots.execute(() -> run(job, req));
        } catch (RejectedExecutionException e) {
            pending.remove(job);
            ex.getResponseHeaders().set("Retry-After", "1");
            throw new ApiError(503, "server_error", null, "the server is busy: " + settings.slots() + " slots running and "
                    + settings.queue() + " requests waiting; try again shortly");
        }
        String id = (isChat ? "chatcmpl-" : "cmpl-") + ids.incrementAndGet();
        long created = System.currentTimeMillis() / 1000;
        try {
            if (req.stream()) stream(ex, job, req, id, created, isChat);
            else whole(ex, job, req, id, created, isChat);
        } finally {
            job.cancelled.set(true);
        }
    }

    private void run(Job job, Requests.Parsed req) {
        if (job.cancelled.get()) {
            pending.remove(job);
            job.events.add(new Failure(new ApiError(503, "server_error", null, "cancelled before it started")));
            return;
        }
        running.add(job);
        Decoder decoder = null;
        Object outcome = null;
        try {
            decoder = takeDecoder(req.prompt(), !req.settings().promptLogprobs(), job.cancelled::get);
            Generator.Result r = generator.generate(decoder, req.prompt(), req.settings(), new Generator.Listener() {
                @Override
                public void text(String piece) {
                    job.events.add(piece);
                }

                @Override
                public void logprob(TokenLogprob token) {
                    job.events.add(token);
                }

                @Override
                public void promptLogprobs(List<TokenLogprob> tokens) {
                    job.events.add(new PromptScored(tokens));
                }
            }, job.cancelled::get, steps);
            cachedPromptTokens.addAndGet(r.cachedTokens());
            outcome = r;
        } catch (RuntimeException e) {
            outcome = new Failure(e);
        } finally {
            if (decoder != null) giveBack(decoder);
            running.remove(job);
            pending.remove(job);
            completed.incrementAndGet();
            // The slot is free and counted before its client hears the end, so /health agrees with what it has read.
            job.events.add(outcome != null ? outcome
                    : new Failure(new ApiError(500, "server_error", null, "the generation stopped on an internal error")));
        }
    }

    /**
     * A decoder for a request. The idle one that has the longest start of the prompt cached takes it over when the
     * request continues its sequence (a chat's next turn: while a slot is unused, at most {@link #COPY_AT_LEAST} of its
     * tokens would be dropped; once every slot is in use, that start is at least half of what it holds, as for a
     * document asked about again). Otherwise the request takes a new decoder while there are fewer than the slots, else
     * the one idle longest (never the one holding the start), and the shared start (a system prompt, a document) is
     * copied into it ({@link #donor}, {@link #fill}). When another slot is still prefilling a longer shared start than anyone holds
     * yet (requests about one new document arriving together), the request waits for those rows and copies them,
     * instead of computing them a second time beside it ({@link #awaitsPrefill}). A request that does not {@code keep}
     * any of it (its prompt scored, so computed whole) gets its decoder emptied.
     */
    private Decoder takeDecoder(int[] prompt, boolean keep, java.util.function.BooleanSupplier cancelled) {
        Decoder chosen, awaited = null;
        int[] awaitedPrompt = null;
        int target = 0;
        synchronized (decoders) {
            Decoder best = null;
            int longest = 0;
            for (Decoder d : idle) {
                int n = d.reusablePrefix(prompt);
                if (n > 0 && n >= longest) {   // among equals, the one used last
                    best = d;
                    longest = n;
                }
            }
            boolean unused = decoders.size() < settings.slots();
            if (best != null && (unused ? best.length() - longest <= COPY_AT_LEAST : 2L * longest >= best.length())) {
                chosen = best;
            } else if (unused) {
                chosen = new Decoder(model, rope, settings.context(), policy, model.backend().prefillChunk());
                decoders.add(chosen);
                idle.add(chosen);
            } else {
                Decoder holder = best;
                chosen = idle.stream().filter(d -> d != holder).findFirst().orElse(best);
                if (chosen == null) throw new IllegalStateException("no idle decoder for a slot");
            }
            idle.remove(chosen);
            working.put(chosen, prompt);
            if (!keep) {
                // The prompt is computed whole (its log-probabilities need every row's logits): emptied here, under
                // the lock, as any truncation of a slot others may copy from.
                chosen.reset();
                return chosen;
            }
            // What the request can have at once (its own rows, or a copy), against what a busy slot will soon hold.
            Donor donor = donor(chosen, prompt);
            int now = Math.max(donor.tokens(), chosen.reusablePrefix(prompt));
            for (Map.Entry<Decoder, int[]> e : working.entrySet()) {
                // Only slots taken before this one: a request never waits for itself or for one that waits for it.
                if (e.getKey() == chosen) continue;
                int shared = e.getKey().settles() ? sharedStart(e.getValue(), prompt) : 0;
                if (shared - now >= awaitsPrefill() && shared > target) {
                    awaited = e.getKey();
                    awaitedPrompt = e.getValue();
                    target = shared;
                }
            }
            if (awaited == null) {
                fill(chosen, prompt, donor);
                return chosen;
            }
        }
        // Polled: a prefill chunk takes milliseconds at least, and the awaited slot answers to no one. A slot whose rows
        // stop growing for STALLED_MILLIS is not waited for any longer: the request then computes what it lacks.
        awaitedPrefills.incrementAndGet();
        try {
            long lastGrowth = System.nanoTime();
            for (int seen = -1, n; !cancelled.getAsBoolean() && working.get(awaited) == awaitedPrompt
                    && (n = awaited.settledPrefix(prompt)) < target; seen = n) {
                if (n != seen) lastGrowth = System.nanoTime();
                else if (System.nanoTime() - lastGrowth > STALLED_MILLIS * 1_000_000L) break;
                Thread.sleep(1);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        synchronized (decoders) {
            fill(chosen, prompt, donor(chosen, prompt));
        }
        return chosen;
    }

    /** The decoder other than {@code chosen} holding the longest start of a prompt ({@code decoder} null: none). */
    private record Donor(Decoder decoder, int tokens) {}

    /**
     * Under the pool lock: the decoder other than {@code chosen} that holds the longest start of {@code prompt}, an
     * idle one or a busy one in rows that no longer change ({@link Decoder#settledPrefix}).
     */
    private Donor donor(Decoder chosen, int[] prompt) {
        Decoder donor = null;
        int donated = 0;
        for (Decoder d : decoders) {
            if (d == chosen) continue;
            int n = idle.contains(d) ? d.reusablePrefix(prompt) : d.settledPrefix(prompt);
            if (n > donated) {
                donor = d;
                donated = n;
            }
        }
        return new Donor(donor, donated);
    }

    /**
     * Under the pool lock: copies into {@code chosen} the start of {@code prompt} that {@code donor} holds, when it is
     * at least {@link #COPY_AT_LEAST} tokens and longer than what {@code chosen} holds itself (rows copied instead of
     * prefilled, the other conversation's cache kept whole); then truncates {@code chosen} to what it keeps. A failure
     * gives the decoder back, emptied.
     */
    private void fill(Decoder chosen, int[] prompt, Donor donor) {
        try {
            if (donor.decoder() != null && donor.tokens() >= COPY_AT_LEAST && donor.tokens() > chosen.reusablePrefix(prompt)) {
                if (idle.contains(donor.decoder())) chosen.copyPrefix(donor.decoder(), donor.tokens());
                else chosen.copySettledPrefix(donor.decoder(), donor.tokens());
            }
            // Truncated here, under the lock, so that a slot is never cut short while another copies from it.
            chosen.truncate(chosen.reusablePrefix(prompt));
        } catch (RuntimeException e) {
            chosen.reset();
            working.remove(chosen);
            idle.add(chosen);
            throw e;
        }
    }

    /**
     * The fewest tokens worth waiting for another slot's prefill: a quarter of a prefill chunk (16 at least), since
     * that slot publishes its rows a chunk at a time.
     */
    private int awaitsPrefill() {
        return Math.max(COPY_AT_LEAST, model.backend().prefillChunk() / 4);
    }

    /** Tokens {@code prompt} shares with the start of {@code other}, leaving at least its own last token to append. */
    private static int sharedStart(int[] other, int[] prompt) {
        int n = Math.min(other.length, prompt.length - 1), at = Arrays.mismatch(other, 0, n, prompt, 0, n);
        return at < 0 ? n : at;
    }

    private void giveBack(Decoder d) {
        synchronized (decoders) {
            working.remove(d);
            idle.add(d);
        }
    }

    private void whole(HttpExchange ex, Job job, Requests.Parsed req, String id, long created, boolean isChat) throws IOException {
        Generator.Result result;
        while (true) {
            Object e;
            try {
                e = job.events.take();
            } catch (InterruptedException interrupted) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted");
            }
            if (e instanceof Failure f) throw asApiError(f.error());
            if (e instanceof Generator.Result r) {
                result = r;
                break;
            }
        }
        Map<String, Object> choice = new LinkedHashMap<>();
        choice.put("index", 0);
        if (isChat) choice.put("message", Map.of("role", "assistant", "content", result.text()));
        else choice.put("text", req.echo() ? req.promptText() + result.text() : result.text());
        choice.put("logprobs", req.settings().logprobs() < 0 ? null : wholeLogprobs(req, result, isChat));
        choice.put("finish_reason", result.finish().label());
        Map<String, Object> body = envelope(id, created, isChat ? "chat.completion" : "text_completion");
        body.put("choices", List.of(choice));
        body.put("usage", usage(result));
        sendJson(ex, 200, body);
    }

    private void stream(HttpExchange ex, Job job, Requests.Parsed req, String id, long created, boolean isChat) throws IOException {
        ex.getResponseHeaders().set("Content-Type", "text/event-stream; charset=utf-8");
        ex.getResponseHeaders().set("Cache-Control", "no-cache");
        ex.sendResponseHeaders(200, 0);
        OutputStream out = ex.getResponseBody();
        String object = isChat ? "chat.completion.chunk" : "text_completion";
        boolean logprobs = req.settings().logprobs() >= 0, scored = req.settings().promptLogprobs();
        Logprobs format = new Logprobs(generator.tokenizer(), scored ? new int[0] : req.prompt());
        List<TokenLogprob> pending = new ArrayList<>();
        if (isChat) sendEvent(out, chunk(id, created, object, Map.of("role", "assistant", "content", ""), null, true));
        else if (req.echo() && !scored) sendEvent(out, chunk(id, created, object, req.promptText(), null, false));
        while (true) {
            Object e;
            try {
                e = job.events.poll(KEEP_ALIVE_MILLIS, TimeUnit.MILLISECONDS);
            } catch (InterruptedException interrupted) {
                Thread.currentThread().interrupt();
                return;
            }
            if (e == null) {
                out.write(": keep-alive\n\n".getBytes(StandardCharsets.UTF_8));
                out.flush();
            } else if (e instanceof TokenLogprob t) {
                pending.add(t);
            } else if (e instanceof PromptScored p) {
                // The echoed prompt goes out with its log-probabilities.
                Map<String, Object> echo = chunk(id, created, object, req.promptText(), null, false);
                withLogprobs(echo, format.append(format.completionFrom(req.prompt()[0]), p.tokens()));
                sendEvent(out, echo);
            } else if (e instanceof String piece) {
                Map<String, Object> c = chunk(id, created, object, isChat ? Map.of("content", piece) : piece, null, isChat);
                if (logprobs) withLogprobs(c, streamedLogprobs(format, pending, isChat));
                sendEvent(out, c);
            } else if (e instanceof Generator.Result r) {
                Map<String, Object> last = chunk(id, created, object, isChat ? Map.of() : "", r.finish().label(), isChat);
                // Tokens whose text never showed (held back, a stop string) have their log-probabilities here.
                if (logprobs && !pending.isEmpty()) withLogprobs(last, streamedLogprobs(format, pending, isChat));
                last.put("usage", usage(r));
                sendEvent(out, last);
                break;
            } else if (e instanceof Failure f) {
                sendEvent(out, asApiError(f.error()).body());
                break;
            }
        }
        out.write("data: [DONE]\n\n".getBytes(StandardCharsets.UTF_8));
        out.flush();
    }

    /** A whole answer's log-probabilities: the echoed prompt's when it was scored, then the generated tokens'. */
    private Map<String, Object> wholeLogprobs(Requests.Parsed req, Generator.Result result, boolean isChat) {
        boolean scored = result.promptLogprobs() != null;
        Logprobs format = new Logprobs(generator.tokenizer(), scored ? new int[0] : req.prompt());
        if (isChat) return format.chat(result.logprobs());
        Map<String, Object> m = scored ? format.append(format.completionFrom(req.prompt()[0]), result.promptLogprobs()) : format.completion();
        return format.append(m, result.logprobs());
    }

    /** The streamed tokens' log-probabilities since the last chunk (then forgotten). */
    private static Map<String, Object> streamedLogprobs(Logprobs format, List<TokenLogprob> pending, boolean isChat) {
        Map<String, Object> m = isChat ? format.chat(pending) : format.append(format.completion(), pending);
        pending.clear();
        return m;
    }

    @SuppressWarnings("unchecked")
    private static void withLogprobs(Map<String, Object> chunk, Map<String, Object> logprobs) {
        ((Map<String, Object>) ((List<Object>) chunk.get("choices")).get(0)).put("logprobs", logprobs);
    }

    private static ApiError asApiError(RuntimeException e) {
        if (e instanceof ApiError a) return a;
        if (e instanceof RopewayException) return ApiError.invalid(null, e.getMessage());
        return new ApiError(500, "server_error", null, String.valueOf(e.getMessage()));
    }

    private Map<String, Object> envelope(String id, long created, String object) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("id", id);
        m.put("object", object);
        m.put("created", created);
        m.put("model", modelId);
        return m;
    }

    private Map<String, Object> chunk(String id, long created, String object, Object content, String finish, boolean isChat) {
        Map<String, Object> choice = new LinkedHashMap<>();
        choice.put("index", 0);
        choice.put(isChat ? "delta" : "text", content);
        choice.put("logprobs", null);
        choice.put("finish_reason", finish);
        Map<String, Object> m = envelope(id, created, object);
        m.put("choices", List.of(choice));
        return m;
    }

    private static Map<String, Object> usage(Generator.Result r) {
        Map<String, Object> u = new LinkedHashMap<>();
        u.put("prompt_tokens", r.promptTokens());
        u.put("completion_tokens", r.tokens().length);
        u.put("total_tokens", r.promptTokens() + r.tokens().length);
        u.put("prompt_tokens_details", Map.of("cached_tokens", r.cachedTokens()));
        return u;
    }

    private static void sendEvent(OutputStream out, Object data) throws IOException {
        out.write(("data: " + Json.mapper().writeValueAsString(data) + "\n\n").getBytes(StandardCharsets.UTF_8));
        out.flush();
    }

    private static void sendJson(HttpExchange ex, int status, Object body) throws IOException {
        byte[] bytes = Json.mapper().writeValueAsBytes(body);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        ex.sendResponseHeaders(status, bytes.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(bytes);
        }
    }

    /**
     * Stops taking requests (new ones get 503), lets queued and running ones finish for the grace period, cancels what
     * is left, then closes the listener and every slot's KV cache.
     */
    @Override
    public void close() {
        if (!draining.compareAndSet(false, true)) return;
        slots.shutdown();
        try {
            if (!slots.awaitTermination(settings.shutdownSeconds(), TimeUnit.SECONDS)) {
                // Queued requests see the flag before they start; running ones at their next token.
                for (Job j : pending) j.cancelled.set(true);
                slots.awaitTermination(30, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        http.stop(1);
        handlers.shutdownNow();
        synchronized (decoders) {
            for (Decoder d : decoders) d.close();
            decoders.clear();
        }
    }
}
