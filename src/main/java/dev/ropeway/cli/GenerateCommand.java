package dev.ropeway.cli;

import dev.ropeway.RopewayException;
import dev.ropeway.generate.ChatMessage;
import dev.ropeway.generate.ChatTemplate;
import dev.ropeway.generate.Generator;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.Tokenizers;
import dev.ropeway.model.Decoder;
import dev.ropeway.model.KvCache;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.rope.RopeSpec;
import dev.ropeway.tensor.Backend;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code ropeway generate}: text after a prompt, streamed as it is generated. */
@Command(name = "generate", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Generate text after a prompt with a KV cache, streamed to standard output.",
                "RoPE follows the method as the sequence grows (dynamic NTK, E²-LLM's g, CLEX's t); statistics go to "
                + "standard error."})
final class GenerateCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, paramLabel = "<dir>", description = "Checkpoint folder (with tokenizer.json), or a GGUF file (imported once into the cache, then read from there).")
    Path model;

    @ArgGroup(multiplicity = "1")
    Prompt prompt;

    static final class Prompt {
        @Option(names = "--prompt", paramLabel = "<text>", description = "The prompt.")
        String text;
        @Option(names = "--prompt-file", paramLabel = "<file>", description = "A UTF-8 file holding the prompt.")
        Path file;
    }

    @Option(names = "--max-tokens", defaultValue = "256", description = "Tokens to generate at most (default: ${DEFAULT-VALUE}).")
    int maxTokens;
    @Mixin
    SamplingOptions sampling;
    @Option(names = "--stop", paramLabel = "<text>", description = "Stop when this text appears (repeatable); it is not printed.")
    List<String> stop = new ArrayList<>();
    @Option(names = "--ignore-eos", description = "Keep going past the end-of-sequence token.")
    boolean ignoreEos;
    @Option(names = "--chat", description = "Wrap the prompt as a user message in the model's chat template (tokenizer_config.json).")
    boolean chat;
    @Option(names = "--system", paramLabel = "<text>", description = "With --chat: a system message first.")
    String system;
    @Option(names = "--rope", paramLabel = "<spec>", description = "Replace the model's RoPE method (see score --rope), e.g. dynamic, e2, yarn:factor=4.")
    String rope;
    @Option(names = "--rope-change", defaultValue = "rerotate", paramLabel = "<policy>",
            description = {"When the RoPE frequencies change with the length: rerotate (rotate the cached keys again, CLEX's "
                    + "reference inference) or recompute (run the prefix again: exactly a whole-sequence forward). Default: ${DEFAULT-VALUE}."})
    String ropeChange;
    @Option(names = "--context", description = "KV-cache capacity in tokens (default: prompt + --max-tokens).")
    Long context;
    @Option(names = "--prefill-chunk", paramLabel = "<tokens>",
            description = "Prompt tokens per forward while prefilling (default: 512 on the CPU, 8192 on a GPU).")
    Integer chunk;
    @Option(names = "--json", description = "Print one JSON object (text, tokens, timings) instead of streaming.")
    boolean json;
    @Mixin
    BackendOptions backendOptions;

    @Override
    public Integer call() throws IOException {
        Path given = model;
        model = ModelFolders.resolve(model);
        if (maxTokens < 1) throw new RopewayException("--max-tokens must be at least 1");
        String text;
        try {
            text = prompt.text != null ? prompt.text : Files.readString(prompt.file, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new RopewayException("cannot read --prompt-file " + prompt.file + ": " + e.getMessage()
                    + (Files.isDirectory(prompt.file) ? " (it is a folder)" : ""));
        }
        Decoder.RopeChange policy = Decoder.RopeChange.parse(ropeChange);
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        try (Tokenizer tok = Tokenizers.open(model); Backend backend = backendOptions.open();
             Transformer t = Transformer.load(backend, model)) {
            int[] ids = promptIds(tok, text);
            RopeScaling method = t.config().ropeOrSpec(rope);
            long capacity = context != null ? context : (long) ids.length + maxTokens;
            if (capacity < ids.length + 1)
                throw new RopewayException("--context " + capacity + " cannot hold the prompt's " + ids.length + " tokens and one more");
            Generator generator = new Generator(tok);
            Generator.Settings settings = new Generator.Settings(maxTokens, sampling.settings(), stop, ignoreEos);
            try (Decoder decoder = new Decoder(t, method, capacity, policy,
                    chunk != null ? chunk : backend.prefillChunk())) {
                if (!json) System.err.printf("%s: %,d prompt tokens, RoPE %s, KV cache %,d tokens (%,d MiB)%n", given, ids.length,
                        RopeSpec.describe(method), capacity,
                        decoder.cacheBytes() >> 20);
                Generator.Result r = generator.generate(decoder, ids, settings, piece -> {
                    if (!json) out.print(piece);
                }, () -> false);
                if (json) {
                    Map<String, Object> o = new LinkedHashMap<>();
                    o.put("text", r.text());
                    o.put("tokens", r.tokens());
                    o.put("finish_reason", r.finish().label());
                    o.put("prompt_tokens", r.promptTokens());
                    o.put("prefill_seconds", r.prefillNanos() / 1e9);
                    o.put("decode_seconds", r.decodeNanos() / 1e9);
                    o.put("decode_tokens_per_second", r.decodeTokensPerSecond());
                    o.put("rope", RopeSpec.describe(method));
                    o.put("rope_changes", decoder.ropeChanges());
                    out.println(Output.json(o));
                } else {
                    out.println();
                    System.err.printf("[%s after %,d tokens; prefill %,.0f tokens/s, decode %.1f tokens/s, RoPE changes %d]%n",
                            r.finish().label(), r.tokens().length, r.promptTokens() / Math.max(1e-9, r.prefillNanos() / 1e9),
                            r.decodeTokensPerSecond(), decoder.ropeChanges());
                }
            }
        }
        return 0;
    }

    private int[] promptIds(Tokenizer tok, String text) {
        if (!chat) {
            if (system != null) throw new RopewayException("--system needs --chat");
            return tok.encodeWithBos(text);
        }
        ChatTemplate template = ChatTemplate.load(model);
        List<ChatMessage> messages = new ArrayList<>();
        if (system != null) messages.add(new ChatMessage("system", system));
        messages.add(new ChatMessage("user", text));
        return tok.encode(template.render(messages, true), false);
    }
}
