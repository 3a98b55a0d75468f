package dev.ropeway.generate;

import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.LegacyOverrides;
import com.hubspot.jinjava.el.JinjavaInterpreterResolver;
import com.hubspot.jinjava.interpret.Context;
import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import com.hubspot.jinjava.tree.Node;
import dev.ropeway.RopewayException;
import dev.ropeway.io.Json;
import jinjava.javax.el.CompositeELResolver;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;

/**
 * A model's chat template: the Jinja program in its {@code tokenizer_config.json} (or {@code chat_template.jinja})
 * that turns a conversation into the exact prompt text the model was tuned on, rendered as transformers'
 * {@code apply_chat_template(messages, tokenize=False)} renders it.
 *
 * <p>Jinja is run by Jinjava, set up like transformers' environment: {@code trim_blocks} and
 * {@code lstrip_blocks}, {@code raise_exception}, {@code strftime_now}, a {@code tojson} that writes what Python's
 * {@code json.dumps} writes, the {@code generation} tag, and, where Jinjava differs from Jinja, Python's string
 * methods, loop filters ({@code for x in xs if ...}) and slices with a step. Template variables are the messages,
 * {@code add_generation_prompt}, the special tokens ({@code bos_token}, {@code eos_token}...) and any extra
 * variables given (for example {@code enable_thinking}).
 *
 * <p>The template is parsed once when loaded (about 1 to 6 ms; the very first one in a process also starts Jinjava,
 * about 1.5 s); rendering is thread-safe and takes about 30 to 170 microseconds for a four-message conversation
 * with the templates of the tests, 1.5 ms for a hundred messages (measured on two shared cores).
 *
 * <p>A checkpoint without a chat template has no chat format to follow, so {@link #load} refuses it rather than
 * inventing one; a template can still be given explicitly with {@link #of} or {@link #fromFile}.
 *
 * <p>Known differences from Jinja, none used by the templates of the tests: a key holding null counts as undefined
 * (Jinja: defined, value None) and {@code {{ none }}} prints nothing; {@code 'ab' * 3} is an error; text right
 * after a {@code {#- comment #}} loses its leading white space; the filters {@code items}, {@code min} and
 * {@code max} are missing (a template using one is refused when loaded, with its name).
 */
public final class ChatTemplate {
    /** The special-token variables transformers passes to templates, when the tokenizer sets them. */
    private static final List<String> SPECIAL_TOKEN_NAMES = List.of(
            "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token");
    private static final Set<String> RESERVED = Set.of("messages", "add_generation_prompt");

    private static final Jinjava JINJAVA = environment();

    private final String source;
    private final Map<String, Object> specialTokens;
    private final Node tree;

    private ChatTemplate(String source, Map<String, Object> specialTokens) {
        this.source = source;
        this.specialTokens = Map.copyOf(specialTokens);
        String prepared = JinjaSyntax.rewrite(withoutTrailingNewline(source));
        Context globals = JINJAVA.getGlobalContext();
        for (String use : JinjaSyntax.filtersAndTests(prepared)) {
            String name = use.substring(use.indexOf(' ') + 1);
            boolean known = use.startsWith("filter ") ? globals.getFilter(name) != null : globals.getExpTest(name) != null;
            if (!known) throw new RopewayException("the chat template uses the " + use.replace(" ", " '") + "', which is not available here");
        }
        JinjavaInterpreter interpreter = JINJAVA.newInterpreter();
        this.tree = interpreter.parse(prepared);
        for (TemplateError error : interpreter.getErrors()) {
            if (error.getSeverity() == TemplateError.ErrorType.FATAL) {
                throw new RopewayException("the chat template does not parse (line " + error.getLineno() + "): " + error.getMessage());
            }
        }
    }

    /**
     * A template given as text, with the special tokens it may use ({@code bos_token}, {@code eos_token}... as
     * strings, {@code additional_special_tokens} as a list).
     */
    public static ChatTemplate of(String template, Map<String, ?> specialTokens) {
        Objects.requireNonNull(template, "template");
        if (template.isBlank()) throw new RopewayException("the chat template is empty");
        Map<String, Object> tokens = new LinkedHashMap<>();
        specialTokens.forEach((k, v) -> {
            if (v != null) tokens.put(k, v);
        });
        return new ChatTemplate(template, tokens);
    }

    /**
     * The template of a checkpoint folder: {@code chat_template.jinja} if present, else {@code chat_template} in
     * {@code tokenizer_config.json} (the one named "default" when it holds several); empty when there is none.
     */
    public static Optional<ChatTemplate> find(Path folder) {
        Map<String, Object> config = readIfPresent(folder.resolve("tokenizer_config.json"));
        Map<String, Object> specialTokens = specialTokens(config, readIfPresent(folder.resolve("special_tokens_map.json")));
        Path jinja = folder.resolve("chat_template.jinja");
        if (Files.isRegularFile(jinja)) return Optional.of(of(read(jinja), specialTokens));
        Object template = config.get("chat_template");
        if (template == null) return Optional.empty();
        return Optional.of(of(pick(template, folder), specialTokens));
    }

    /** Like {@link #find}, but a folder without a chat template is an error that says what to do. */
    public static ChatTemplate load(Path folder) {
        return find(folder).orElseThrow(() -> new RopewayException(folder + " has no chat template (no chat_template in "
                + "tokenizer_config.json, no chat_template.jinja): it was not tuned for chat, so its prompt format is "
                + "unknown. Use plain text generation, or give a Jinja chat template file explicitly."));
    }

    /**
     * A template file: a {@code .jinja} file holding the template, or a {@code tokenizer_config.json}; the special
     * tokens are read from the {@code tokenizer_config.json} beside a {@code .jinja} file, when there is one.
     */
    public static ChatTemplate fromFile(Path file) {
        if (!Files.isRegularFile(file)) throw new RopewayException("no chat template file " + file);
        if (file.getFileName().toString().endsWith(".json")) {
            Map<String, Object> config = Json.readObject(file);
            Object template = config.get("chat_template");
            if (template == null) throw new RopewayException(file + " has no chat_template");
            return of(pick(template, file), specialTokens(config, Map.of()));
        }
        Path folder = file.toAbsolutePath().getParent();
        Map<String, Object> config = readIfPresent(folder.resolve("tokenizer_config.json"));
        return of(read(file), specialTokens(config, readIfPresent(folder.resolve("special_tokens_map.json"))));
    }

    /** The prompt for {@code messages}; with {@code addGenerationPrompt}, ending where the assistant's reply begins. */
    public String render(List<ChatMessage> messages, boolean addGenerationPrompt) {
        return render(messages, addGenerationPrompt, Map.of());
    }

    /** Like {@link #render(List, boolean)}, with extra template variables (e.g. {@code enable_thinking}). */
    public String render(List<ChatMessage> messages, boolean addGenerationPrompt, Map<String, ?> variables) {
        return renderMessages(messages.stream().map(ChatMessage::asMap).toList(), addGenerationPrompt, variables);
    }

    /**
     * The prompt for messages given as maps, for callers that carry more than role and content (an HTTP server
     * passing {@code tool_calls}, {@code name}, content parts...). Values are strings, numbers, booleans, lists
     * and maps, as parsed from JSON.
     */
    public String renderMessages(List<? extends Map<String, ?>> messages, boolean addGenerationPrompt, Map<String, ?> variables) {
        Objects.requireNonNull(messages, "messages");
        if (messages.isEmpty()) throw new RopewayException("a chat needs at least one message");
        Map<String, Object> bindings = new HashMap<>(specialTokens);
        variables.forEach((name, value) -> {
            if (RESERVED.contains(name)) throw new RopewayException("'" + name + "' is set by the chat itself, not as a template variable");
            if (value != null) bindings.put(name, value);
        });
        bindings.put("messages", messages);
        bindings.put("add_generation_prompt", addGenerationPrompt);

        Context context = new Context(JINJAVA.getGlobalContext(), bindings);
        // Jinjava's functions and filters find the interpreter of the render in progress through a thread-local.
        try (var current = JinjavaInterpreter.closeablePushCurrent(
                new PythonicInterpreter(JINJAVA, context, JINJAVA.getGlobalConfig())).get()) {
            JinjavaInterpreter interpreter = current.value();
            String out = interpreter.render(tree, true);
            for (TemplateError error : interpreter.getErrors()) {
                if (error.getSeverity() == TemplateError.ErrorType.FATAL) throw failure(error);
            }
            return out;
        }
    }

    /** The template text as given. */
    public String source() {
        return source;
    }

    /** The special tokens the template sees. */
    public Map<String, Object> specialTokens() {
        return specialTokens;
    }

    /** Jinja drops one newline at the very end of a template (keep_trailing_newline is off in transformers). */
    private static String withoutTrailingNewline(String template) {
        if (template.endsWith("\r\n")) return template.substring(0, template.length() - 2);
        if (template.endsWith("\n") || template.endsWith("\r")) return template.substring(0, template.length() - 1);
        return template;
    }

    private static RopewayException failure(TemplateError error) {
        for (Throwable t = error.getException(); t != null; t = t.getCause()) {
            if (t instanceof TemplateFunctions.Raised raised) {
                return new RopewayException("the chat template refuses this conversation: " + raised.getMessage());
            }
        }
        return new RopewayException("the chat template failed (line " + error.getLineno() + "): " + error.getMessage());
    }

    private static Jinjava environment() {
        CompositeELResolver resolver = new CompositeELResolver();
        resolver.add(new PythonStringMethods());
        resolver.add(JinjavaInterpreterResolver.DEFAULT_RESOLVER_READ_ONLY);
        JinjavaConfig config = JinjavaConfig.newBuilder()
                // transformers' environment: ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).
                .withTrimBlocks(true)
                .withLstripBlocks(true)
                // Message text is data: "{{" in a user's message must print as is, never run.
                .withNestedInterpretationEnabled(false)
                .withLegacyOverrides(LegacyOverrides.newBuilder()
                        .withUseTrimmingForNotesAndExpressions(true) // {{- x -}} and {#- -#} trim as in Jinja
                        .withUseNaturalOperatorPrecedence(true) // 'a' + x | trim + 'b' filters x alone
                        .withIterateOverMapKeys(true)
                        .withEvaluateMapKeys(true)
                        .withKeepNullableLoopValues(true)
                        .withHandleBackslashInQuotesOnly(true)
                        .withUsePyishObjectMapper(true)
                        .build())
                .withElResolver(resolver)
                .withEnableRecursiveMacroCalls(false)
                .build();
        Jinjava jinjava = new Jinjava(config);
        Context globals = jinjava.getGlobalContext();
        globals.registerFunction(function("raise_exception", "raiseException", Object.class));
        globals.registerFunction(function("strftime_now", "strftimeNow", String.class));
        // In Jinja these are global variables, so templates ask "strftime_now is defined" before calling it.
        globals.put("raise_exception", "<function raise_exception>");
        globals.put("strftime_now", "<function strftime_now>");
        globals.registerFunction(function(JinjaSyntax.SLICE_FUNCTION, "slice", Object.class, Object.class, Object.class, Object.class));
        globals.registerFilter(new PythonJson());
        globals.registerTag(new FilteredForTag());
        globals.registerTag(new GenerationTag());
        globals.registerExpTest(new IterableTest());
        return jinjava;
    }

    private static ELFunctionDefinition function(String name, String method, Class<?>... parameters) {
        return new ELFunctionDefinition("", name, TemplateFunctions.class, method, parameters);
    }

    /** A single template, or the one named "default" among several ([{"name": ..., "template": ...}]). */
    private static String pick(Object template, Path where) {
        if (template instanceof String s) return s;
        if (template instanceof List<?> list) {
            List<String> names = new ArrayList<>();
            for (Object item : list) {
                if (item instanceof Map<?, ?> named && named.get("name") instanceof String name) {
                    names.add(name);
                    if (name.equals("default") && named.get("template") instanceof String s) return s;
                }
            }
            throw new RopewayException(where + ": chat_template lists " + names + " but no \"default\" template");
        }
        throw new RopewayException(where + ": chat_template must be a string or a list of named templates");
    }

    /** The special tokens as strings (an AddedToken object gives its "content"), the tokenizer config first. */
    private static Map<String, Object> specialTokens(Map<String, Object> config, Map<String, Object> specialTokensMap) {
        Map<String, Object> tokens = new LinkedHashMap<>();
        for (Map<String, Object> source : List.of(config, specialTokensMap)) {
            for (String name : SPECIAL_TOKEN_NAMES) {
                String text = tokenText(source.get(name));
                if (text != null) tokens.putIfAbsent(name, text);
            }
            if (source.get("additional_special_tokens") instanceof List<?> extra && !tokens.containsKey("additional_special_tokens")) {
                List<String> texts = new ArrayList<>();
                for (Object token : extra) {
                    String text = tokenText(token);
                    if (text != null) texts.add(text);
                }
                tokens.put("additional_special_tokens", texts);
            }
        }
        return tokens;
    }

    private static String tokenText(Object token) {
        if (token instanceof String s) return s;
        if (token instanceof Map<?, ?> added && added.get("content") instanceof String s) return s;
        return null;
    }

    private static Map<String, Object> readIfPresent(Path file) {
        return Files.isRegularFile(file) ? Json.readObject(file) : Map.of();
    }

    private static String read(Path file) {
        try {
            return Files.readString(file);
        } catch (IOException e) {
            throw new RopewayException("cannot read chat template " + file + ": " + e.getMessage(), e);
        }
    }
}
