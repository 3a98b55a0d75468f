package dev.ropeway.generate;

import com.fasterxml.jackson.core.type.TypeReference;
import dev.ropeway.RopewayException;
import dev.ropeway.io.Json;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The chat templates of real models (their {@code tokenizer_config.json} as published, as test resources) against
 * the text transformers' {@code apply_chat_template} renders. Expected strings were rendered with Jinja2 3.1.6 in
 * transformers' environment (trim_blocks, lstrip_blocks, raise_exception, tojson with ensure_ascii=False).
 */
class ChatTemplateTest {
    private static final List<ChatMessage> CONVERSATION = List.of(
            ChatMessage.system("Be brief."),
            ChatMessage.user("Hi!"),
            ChatMessage.assistant(" Hello. "),
            ChatMessage.user("What is RoPE?"));

    private static Path resource(String name) {
        try {
            return Path.of(ChatTemplateTest.class.getResource(name).toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    private static ChatTemplate model(String name) {
        return ChatTemplate.load(resource("chat-templates/" + name));
    }

    @Test
    void llama3() {
        assertEquals("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                        + "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
                        + "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                        + "<|start_header_id|>user<|end_header_id|>\n\nWhat is RoPE?<|eot_id|>"
                        + "<|start_header_id|>assistant<|end_header_id|>\n\n",
                model("llama-3").render(CONVERSATION, true));
    }

    @Test
    void llama2() {
        // Special tokens written as AddedToken objects; the system prompt folds into the first user turn.
        assertEquals("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi! [/INST] Hello. </s><s>[INST] What is RoPE? [/INST]",
                model("llama-2").render(CONVERSATION, true));
    }

    @Test
    void mistral() {
        // v0.3 puts the system prompt in front of the last user message.
        assertEquals("<s>[INST] Hi![/INST] Hello.</s>[INST] Be brief.\n\nWhat is RoPE?[/INST]",
                model("mistral-v0.3").render(CONVERSATION, true));
        // v0.1 has no system role and says so through raise_exception.
        assertEquals("the chat template refuses this conversation: Conversation roles must alternate user/assistant/user/assistant/...",
                assertThrows(RopewayException.class, () -> model("mistral-v0.1").render(CONVERSATION, true)).getMessage());
        assertEquals("<s>[INST] Hi! [/INST] Hello. </s> [INST] What is RoPE? [/INST]",
                model("mistral-v0.1").render(CONVERSATION.subList(1, 4), true));
    }

    @Test
    void qwen2ChatMl() {
        assertEquals("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
                        + "<|im_start|>assistant\n Hello. <|im_end|>\n<|im_start|>user\nWhat is RoPE?<|im_end|>\n"
                        + "<|im_start|>assistant\n",
                model("qwen2").render(CONVERSATION, true));
        assertEquals("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n",
                model("qwen2").render(List.of(ChatMessage.user("Hi!")), false), "the default system prompt");
    }

    @Test
    void zephyr() {
        assertEquals("<|system|>\nBe brief.</s>\n<|user|>\nHi!</s>\n<|assistant|>\n Hello. </s>\n<|user|>\nWhat is RoPE?</s>\n"
                        + "<|assistant|>\n",
                model("zephyr").render(CONVERSATION, true));
        assertEquals("<|system|>\nBe brief.</s>\n<|user|>\nHi!</s>\n<|assistant|>\n Hello. </s>\n<|user|>\nWhat is RoPE?</s>\n",
                model("zephyr").render(CONVERSATION, false));
    }

    /**
     * Eight templates, with and without a system prompt and the generation prompt, with tools (tojson with and
     * without indent), tool calls and results, Qwen3's thinking (slices with a step, namespace, str methods) and
     * conversations a template refuses.
     */
    @Test
    void everyTemplateMatchesJinjaOnEveryCase() throws IOException {
        List<Map<String, Object>> cases = Json.mapper().readValue(resource("chat-templates/expected.json").toFile(),
                new TypeReference<>() {});
        assertEquals(39, cases.size());
        for (Map<String, Object> c : cases) {
            String where = c.get("template") + " / " + c.get("case");
            ChatTemplate template = model((String) c.get("template"));
            @SuppressWarnings("unchecked")
            List<Map<String, Object>> messages = (List<Map<String, Object>>) c.get("messages");
            @SuppressWarnings("unchecked")
            Map<String, Object> variables = (Map<String, Object>) c.get("variables");
            boolean prompt = (Boolean) c.get("add_generation_prompt");
            if (c.containsKey("error")) {
                RopewayException e = assertThrows(RopewayException.class, () -> template.renderMessages(messages, prompt, variables), where);
                assertEquals("the chat template refuses this conversation: " + c.get("error"), e.getMessage(), where);
            } else {
                assertEquals(c.get("output"), template.renderMessages(messages, prompt, variables), where);
            }
        }
    }

    /** Jinja features one at a time (Python string methods, slices, loop filters, tests, tojson...) against Jinja2. */
    @Test
    void jinjaFeaturesMatchJinja2() throws IOException {
        List<Map<String, Object>> features = Json.mapper().readValue(resource("jinja-features.json").toFile(), new TypeReference<>() {});
        assertTrue(features.size() > 60);
        for (Map<String, Object> f : features) {
            @SuppressWarnings("unchecked")
            List<Map<String, Object>> messages = (List<Map<String, Object>>) f.get("messages");
            @SuppressWarnings("unchecked")
            Map<String, Object> variables = (Map<String, Object>) f.get("variables");
            String rendered = ChatTemplate.of((String) f.get("template"), Map.of()).renderMessages(messages, false, variables);
            assertEquals(f.get("expected"), rendered, (String) f.get("name") + ": " + f.get("template"));
        }
    }

    @Test
    void messageTextIsDataNotTemplate() {
        String text = "{{ 7 * 7 }} {% if true %}run{% endif %} {# hidden #}";
        assertEquals("<|im_start|>user\n" + text + "<|im_end|>\n",
                ChatTemplate.of("{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}", Map.of())
                        .render(List.of(ChatMessage.user(text)), false));
    }

    @Test
    void strftimeNowIsDefinedAndDatesTheSystemPrompt() {
        String today = TemplateFunctions.strftime("%d %b %Y", ZonedDateTime.now());
        String rendered = model("llama-3.2").render(List.of(ChatMessage.user("Hi")), true);
        assertTrue(rendered.contains("Today Date: " + today + "\n"), rendered);
        // An explicit date_string wins, as in transformers.
        assertTrue(model("llama-3.2").render(List.of(ChatMessage.user("Hi")), true, Map.of("date_string", "01 Jan 2030"))
                .contains("Today Date: 01 Jan 2030\n"));

        ZonedDateTime t = ZonedDateTime.of(2025, 3, 5, 14, 7, 9, 0, ZoneOffset.UTC);
        assertEquals("05 Mar 2025", TemplateFunctions.strftime("%d %b %Y", t));
        assertEquals("Wednesday 5 March 2025, 02:07:09 PM (day 064) 2025-03-05T14:07:09 +0000 %",
                TemplateFunctions.strftime("%A %-d %B %Y, %I:%M:%S %p (day %j) %FT%T %z %%", t));
    }

    @Test
    void pythonJsonNumbersAndStrings() {
        assertEquals("1e-05", PythonJson.pythonFloat(1e-5));
        assertEquals("0.0001", PythonJson.pythonFloat(1e-4));
        assertEquals("1.5e+16", PythonJson.pythonFloat(1.5e16));
        assertEquals("1234567890123456.0", PythonJson.pythonFloat(1234567890123456.0));
        assertEquals("0.1", PythonJson.pythonFloat(0.1));
        assertEquals("-2.5", PythonJson.pythonFloat(-2.5));
        assertEquals("100.0", PythonJson.pythonFloat(100));
        assertEquals("{\"a\": [1, 2.0, null, true], \"b\": \"\\u0001é\\n\"}",
                PythonJson.dumps(Map.of("a", java.util.Arrays.asList(1, 2.0, null, true), "b", "\u0001é\n"), false, -1, null, null, true));
        assertEquals("\"\\u00e9\\ud83e\\udd99\"", PythonJson.dumps("é🦙", true, -1, null, null, false));
        assertEquals("{\n  \"k\": [],\n  \"m\": {}\n}", PythonJson.dumps(new java.util.TreeMap<>(Map.of("k", List.of(), "m", Map.of())), false, 2, null, null, false));
    }

    @Test
    void syntaxJinjavaReadsDifferentlyIsRewritten() {
        assertEquals(" for m in __slice__(messages, none, none, -1) ", JinjaSyntax.stepSlices(" for m in messages[::-1] "));
        assertEquals("__slice__(a.b[0], 1, none, 2)|length", JinjaSyntax.stepSlices("a.b[0][1::2]|length"));
        assertEquals("'[::-1]' ~ x[1:2]", JinjaSyntax.stepSlices("'[::-1]' ~ x[1:2]"), "strings and plain slices stay");
        assertEquals(" set ns = namespace(a=(m|length - 1), b=(true)) ", JinjaSyntax.namedArguments(" set ns = namespace(a=m|length - 1, b=true) "));
        assertEquals("x == 1 and f(y) != 2", JinjaSyntax.namedArguments("x == 1 and f(y) != 2"));
        assertEquals(" if not (tools is defined) ", JinjaSyntax.notTests(" if not tools is defined "));
        assertEquals("not (t.id is defined) or t.id|length != 9", JinjaSyntax.notTests("not t.id is defined or t.id|length != 9"));
        assertEquals("x is not none and not y", JinjaSyntax.notTests("x is not none and not y"));
        assertEquals("{# not x is y #}{{ 'not a is b' }}", JinjaSyntax.rewrite("{# not x is y #}{{ 'not a is b' }}"));
    }

    @Test
    void aCheckpointFolderIsReadLikeTransformersReadsIt(@TempDir Path dir) throws IOException {
        // No template at all: find says so, load explains.
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"bos_token\": \"<s>\"}");
        assertTrue(ChatTemplate.find(dir).isEmpty());
        String message = assertThrows(RopewayException.class, () -> ChatTemplate.load(dir)).getMessage();
        assertTrue(message.startsWith(dir + " has no chat template"), message);

        // Several named templates: the default one.
        Files.writeString(dir.resolve("tokenizer_config.json"), """
                {"bos_token": {"content": "<s>"}, "eos_token": "</s>", "chat_template": [
                  {"name": "tool_use", "template": "tools"},
                  {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}]}""");
        assertEquals("<s>hi</s>", ChatTemplate.load(dir).render(List.of(ChatMessage.user("hi")), false));

        // chat_template.jinja beside it takes precedence; Jinja drops one trailing newline.
        Files.writeString(dir.resolve("chat_template.jinja"), "[{{ messages|length }}]\n");
        assertEquals("[1]", ChatTemplate.load(dir).render(List.of(ChatMessage.user("hi")), false));
        assertEquals("[1]", ChatTemplate.fromFile(dir.resolve("chat_template.jinja")).render(List.of(ChatMessage.user("hi")), false));
        assertEquals(Map.of("bos_token", "<s>", "eos_token", "</s>"), ChatTemplate.load(dir).specialTokens());

        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"chat_template\": [{\"name\": \"rag\", \"template\": \"x\"}]}");
        Files.delete(dir.resolve("chat_template.jinja"));
        assertEquals(dir + ": chat_template lists [rag] but no \"default\" template",
                assertThrows(RopewayException.class, () -> ChatTemplate.load(dir)).getMessage());
    }

    @Test
    void badTemplatesAndCallsFailClearly() {
        assertEquals("the chat template does not parse (line 1): Syntax error in '{% for m in messages %}': Missing end tag: "
                        + "endfor for tag defined as: {% for m in messages %}",
                assertThrows(RopewayException.class, () -> ChatTemplate.of("{% for m in messages %}", Map.of())).getMessage());
        assertEquals("the chat template uses the filter 'shout', which is not available here",
                assertThrows(RopewayException.class, () -> ChatTemplate.of("{{ messages|shout }}", Map.of())).getMessage());
        assertEquals("the chat template uses the test 'loud', which is not available here",
                assertThrows(RopewayException.class, () -> ChatTemplate.of("{{ x is not loud }}", Map.of())).getMessage());
        assertThrows(RopewayException.class, () -> ChatTemplate.of("  ", Map.of()));
        ChatTemplate plain = ChatTemplate.of("{{ messages[0].content }}", Map.of());
        assertEquals("a chat needs at least one message", assertThrows(RopewayException.class, () -> plain.render(List.of(), true)).getMessage());
        assertEquals("'messages' is set by the chat itself, not as a template variable", assertThrows(RopewayException.class,
                () -> plain.render(List.of(ChatMessage.user("x")), true, Map.of("messages", "y"))).getMessage());
        assertThrows(RopewayException.class, () -> new ChatMessage(" ", "text"));
        assertThrows(RopewayException.class, () -> new ChatMessage("user", null));
        RopewayException failed = assertThrows(RopewayException.class,
                () -> ChatTemplate.of("{{ missing_function(1) }}", Map.of()).render(List.of(ChatMessage.user("x")), true));
        assertTrue(failed.getMessage().startsWith("the chat template failed (line 1): "), failed.getMessage());
    }

    @Test
    void oneTemplateRendersFromManyThreads() throws Exception {
        ChatTemplate template = model("qwen3");
        String expected = template.render(CONVERSATION, true);
        ExecutorService pool = Executors.newFixedThreadPool(4);
        try {
            List<Future<Boolean>> results = new ArrayList<>();
            for (int t = 0; t < 4; t++) {
                results.add(pool.submit(() -> {
                    for (int i = 0; i < 50; i++) if (!template.render(CONVERSATION, true).equals(expected)) return false;
                    return true;
                }));
            }
            for (Future<Boolean> r : results) assertTrue(r.get());
        } finally {
            pool.shutdown();
        }
    }
}
