package dev.ropeway.cli;

import dev.ropeway.RopewayException;
import dev.ropeway.generate.ChatTemplate;
import dev.ropeway.generate.Generator;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.Tokenizers;
import dev.ropeway.model.Decoder;
import dev.ropeway.model.KvCache;
import dev.ropeway.model.ModelConfig;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.ClexRope;
import dev.ropeway.rope.E2Rope;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.rope.RopeSpec;
import dev.ropeway.serve.Server;
import dev.ropeway.serve.ServerSettings;
import dev.ropeway.tensor.Backend;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Callable;

/** {@code ropeway serve}: an OpenAI-compatible HTTP server for one model. */
@Command(name = "serve", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Serve a model over HTTP with the OpenAI API: POST /v1/completions and /v1/chat/completions "
                + "(\"stream\": true for server-sent events), GET /v1/models and /health. Listens on localhost unless --host "
                + "says otherwise (there is no authentication). Ctrl-C finishes running requests, then stops."})
final class ServeCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, paramLabel = "<dir>", description = "Checkpoint folder, or a GGUF file (imported once into the cache, then read from there).")
    Path model;
    @Option(names = "--name", description = "Model id clients use (default: the folder's name, or the GGUF file's without .gguf).")
    String name;
    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Address to listen on (default: ${DEFAULT-VALUE}).")
    String host;
    @Option(names = "--port", defaultValue = "8080", description = "Port, 0 = any free one (default: ${DEFAULT-VALUE}).")
    int port;
    @Option(names = "--slots", defaultValue = "2", description = "Requests generated at once, each with its own KV cache (default: ${DEFAULT-VALUE}).")
    int slots;
    @Option(names = "--queue", defaultValue = "64", description = "Requests waiting for a slot at most; more get 503 (default: ${DEFAULT-VALUE}).")
    int queue;
    @Option(names = "--context", description = "Tokens per slot, prompt plus output (default: what the RoPE method is made for, at most 8192).")
    Integer context;
    @Option(names = "--max-tokens-limit", description = "Largest max_tokens a request may ask for (default: the context - 1, at most 4096).")
    Integer maxTokensLimit;
    @Option(names = "--max-body", defaultValue = "1048576", description = "Largest request body in bytes (default: ${DEFAULT-VALUE}).")
    int maxBody;
    @Option(names = "--shutdown-grace", defaultValue = "10", description = "Seconds running requests may finish in at shutdown (default: ${DEFAULT-VALUE}).")
    int grace;
    @Option(names = "--batch", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = {"Decode the slots' sequences together, one step for all of them (the weights read once per step; "
                    + "default), or each on its own (--no-batch). Each request's prompt is prefilled on its own either way."})
    boolean batch;
    @Option(names = "--warmup", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = {"Before listening, run a prompt and decode steps on scratch caches, so that the first requests "
                    + "do not wait for the kernels to be compiled (default; --no-warmup listens at once)."})
    boolean warmup;
    @Option(names = "--rope", paramLabel = "<spec>", description = "Replace the model's RoPE method (see score --rope).")
    String rope;
    @Option(names = "--rope-change", defaultValue = "rerotate", description = "rerotate or recompute (see generate --help).")
    String ropeChange;
    @Mixin
    BackendOptions backendOptions;

    @Override
    public Integer call() throws Exception {
        Path given = model;
        model = ModelFolders.resolve(model);
        Decoder.RopeChange policy = Decoder.RopeChange.parse(ropeChange);
        try (Tokenizer tok = Tokenizers.open(model); Backend backend = backendOptions.open();
             Transformer t = Transformer.load(backend, model)) {
            RopeScaling method = t.config().ropeOrSpec(rope);
            int ctx = context != null ? context : defaultContext(t.config(), method);
            int limit = maxTokensLimit != null ? maxTokensLimit : Math.max(1, Math.min(4096, ctx - 1));
            ServerSettings settings = new ServerSettings(host, port, slots, queue, ctx, limit, maxBody, grace, batch);
            ChatTemplate chat = ChatTemplate.find(model).orElse(null);
            String id = name != null ? name : ModelFolders.name(given);
            long kv = KvCache.bytes(t.config(), ctx, true, t.backend().kvBytesPerElement()) * slots;
            Generator generator = new Generator(tok);
            if (warmup) {
                System.err.print("ropeway serve: warming up (prompts and decode steps on scratch caches)... ");
                System.err.printf("%.1f s%n", Server.warmUp(t, method, generator, settings, policy));
            }
            CountDownLatch stopped = new CountDownLatch(1);
            try (Server server = new Server(t, method, generator, chat, id, settings, policy)) {
                Runtime.getRuntime().addShutdownHook(Thread.ofPlatform().unstarted(() -> {
                    System.err.println("ropeway serve: shutting down (running requests get " + grace + " s to finish)");
                    server.close();
                    stopped.countDown();
                }));
                System.err.printf("serving '%s' (RoPE %s) at http://%s:%d/v1  %d slots x %,d tokens (KV caches up to %,d MiB)%s%s%n",
                        id, RopeSpec.describe(method), host, server.port(), slots, ctx, kv >> 20,
                        slots == 1 ? "" : batch ? "; their decode steps batched" : "; each slot decoding on its own",
                        chat == null ? "; no chat template, so /v1/chat/completions answers 400" : "");
                stopped.await();
            }
        }
        return 0;
    }

    /** The context the RoPE method is made for: L0·G for E²-LLM, L0·T for CLEX, else max_position_embeddings; at most 8192. */
    static int defaultContext(ModelConfig c, RopeScaling rope) {
        long n = switch (rope) {
            case E2Rope e2 -> e2.originalMax() * Math.max(1, e2.maxScale());
            case ClexRope clex -> clex.originalMax() * clex.maxFactor();
            default -> c.maxPositionEmbeddings();
        };
        if (n < 2) throw new RopewayException("cannot tell the model's context length; pass --context");
        return (int) Math.min(8192, n);
    }
}
