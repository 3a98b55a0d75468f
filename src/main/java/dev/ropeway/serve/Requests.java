package dev.ropeway.serve;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ropeway.RopewayException;
import dev.ropeway.generate.ChatMessage;
import dev.ropeway.generate.ChatTemplate;
import dev.ropeway.generate.Generator;
import dev.ropeway.generate.SamplingSettings;
import dev.ropeway.generate.TokenLogprob;
import dev.ropeway.io.Tokenizer;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * OpenAI request bodies to validated generation requests. Unknown fields are ignored (clients send many); fields
 * Ropeway does not implement are refused when they ask for something ({@code n > 1}, non-zero presence or frequency
 * penalties, {@code suffix}), so a client never gets silently different behaviour. Log-probabilities: {@code logprobs}
 * (an integer) on completions, with {@code echo} for the prompt's tokens too ({@code max_tokens} 0 then scores the
 * prompt alone); {@code logprobs: true} and {@code top_logprobs} on chat completions. Beyond OpenAI: {@code top_k},
 * {@code min_p}, {@code repetition_penalty}, {@code ignore_eos}.
 */
final class Requests {
    /** Stop strings per request at most. */
    static final int MAX_STOPS = 16;

    /** A request ready to run: prompt ids (and text, for echo), settings, and how to answer. */
    record Parsed(int[] prompt, String promptText, Generator.Settings settings, boolean stream, boolean echo) {}

    private Requests() {}

    static Parsed completion(JsonNode body, Consumer<String> checkModel, Tokenizer tokenizer, ServerSettings limits) {
        checkModel.accept(optionalText(body, "model"));
        JsonNode p = body.get("prompt");
        int[] ids;
        String text;
        if (p == null || p.isNull()) throw ApiError.invalid("prompt", "'prompt' is required");
        if (p.isArray() && p.size() == 1 && (p.get(0).isTextual() || p.get(0).isArray())) p = p.get(0);
        if (p.isTextual()) {
            text = p.textValue();
            ids = withBos(tokenizer, tokenizer.encode(text, false));
        } else if (p.isArray() && !p.isEmpty() && p.get(0).isIntegralNumber()) {
            ids = new int[p.size()];
            for (int i = 0; i < ids.length; i++) {
                JsonNode t = p.get(i);
                if (!t.isIntegralNumber() || t.asLong() < 0 || t.asLong() >= tokenizer.vocabSize())
                    throw ApiError.invalid("prompt", "prompt token " + i + " is not a token id in [0, " + tokenizer.vocabSize() + ")");
                ids[i] = t.intValue();
            }
            text = tokenizer.decode(ids, false);
        } else if (p.isArray() && p.size() > 1) {
            throw ApiError.invalid("prompt", "one prompt per request (got " + p.size() + "); send several requests");
        } else {
            throw ApiError.invalid("prompt", "'prompt' must be a string or an array of token ids");
        }
        if (optionalText(body, "suffix") != null) throw ApiError.invalid("suffix", "'suffix' (insertion) is not supported");
        int maxTokens = intField(body, "max_tokens", 16);
        JsonNode lp = body.get("logprobs");
        int logprobs = -1;
        if (lp != null && !lp.isNull() && !(lp.isBoolean() && !lp.booleanValue())) {
            if (!lp.isIntegralNumber() || lp.asLong() < 0 || lp.asLong() > TokenLogprob.MAX_TOP)
                throw ApiError.invalid("logprobs", "'logprobs' must be an integer from 0 to " + TokenLogprob.MAX_TOP
                        + " (the most likely tokens reported beside each chosen one)");
            logprobs = lp.intValue();
        }
        return finish(body, ids, text, maxTokens, limits, false, logprobs);
    }

    static Parsed chat(JsonNode body, Consumer<String> checkModel, Tokenizer tokenizer, ChatTemplate chat, ServerSettings limits) {
        checkModel.accept(optionalText(body, "model"));
        if (chat == null)
            throw ApiError.invalid("messages", "this model has no chat template (tokenizer_config.json has no chat_template); "
                    + "use /v1/completions");
        JsonNode messages = body.get("messages");
        if (messages == null || !messages.isArray() || messages.isEmpty())
            throw ApiError.invalid("messages", "'messages' must be a non-empty array of {role, content}");
        List<ChatMessage> list = new ArrayList<>();
        for (int i = 0; i < messages.size(); i++) {
            JsonNode m = messages.get(i);
            String role = m.path("role").isTextual() ? m.get("role").textValue() : null;
            if (role == null) throw ApiError.invalid("messages", "message " + i + " has no 'role'");
            list.add(new ChatMessage(role, content(m.get("content"), i)));
        }
        String text;
        try {
            text = chat.render(list, true);
        } catch (RopewayException e) {
            throw ApiError.invalid("messages", e.getMessage());
        }
        int[] ids = tokenizer.encode(text, false);
        JsonNode mt = body.has("max_completion_tokens") ? body : null;
        int room = limits.context() - ids.length;
        int dflt = Math.max(1, Math.min(limits.maxTokens(), room));
        int maxTokens = mt != null ? intField(body, "max_completion_tokens", dflt) : intField(body, "max_tokens", dflt);
        boolean wanted = bool(body, "logprobs", false);
        int top = intField(body, "top_logprobs", wanted ? 0 : -1);
        if (top != -1 && !wanted && body.has("top_logprobs") && !body.get("top_logprobs").isNull())
            throw ApiError.invalid("top_logprobs", "'top_logprobs' needs \"logprobs\": true");
        if (wanted && (top < 0 || top > TokenLogprob.MAX_TOP))
            throw ApiError.invalid("top_logprobs", "'top_logprobs' must be from 0 to " + TokenLogprob.MAX_TOP + ", got " + top);
        return finish(body, ids, text, maxTokens, limits, true, wanted ? top : -1);
    }

    private static String content(JsonNode c, int index) {
        if (c == null || c.isNull()) return "";
        if (c.isTextual()) return c.textValue();
        if (c.isArray()) {
            StringBuilder sb = new StringBuilder();
            for (JsonNode part : c) {
                if (!"text".equals(part.path("type").asText()) || !part.path("text").isTextual())
                    throw ApiError.invalid("messages", "message " + index + ": only text content parts are supported");
                sb.append(part.get("text").textValue());
            }
            return sb.toString();
        }
        throw ApiError.invalid("messages", "message " + index + ": 'content' must be a string or an array of text parts");
    }

    private static Parsed finish(JsonNode body, int[] ids, String text, int maxTokens, ServerSettings limits, boolean isChat,
                                 int logprobs) {
        if (ids.length == 0) throw ApiError.invalid("prompt", "the prompt has no tokens");
        boolean echo = !isChat && bool(body, "echo", false), scoring = echo && logprobs >= 0;
        if (maxTokens < (scoring ? 0 : 1))
            throw ApiError.invalid("max_tokens", "max_tokens must be at least 1 (0 only with echo and logprobs, to score the "
                    + "prompt), got " + maxTokens);
        if (maxTokens > limits.maxTokens())
            throw ApiError.invalid("max_tokens", "max_tokens " + maxTokens + " is over this server's limit of " + limits.maxTokens());
        if ((long) ids.length + maxTokens > limits.context())
            throw new ApiError(400, "invalid_request_error", isChat ? "messages" : "prompt",
                    "this model's context is " + limits.context() + " tokens; the prompt has " + ids.length + " and max_tokens is "
                            + maxTokens + " (context_length_exceeded)");
        int n = intField(body, "n", 1);
        if (n != 1) throw ApiError.invalid("n", "only n = 1 is supported, got " + n);
        for (String f : new String[]{"presence_penalty", "frequency_penalty"})
            if (number(body, f, 0) != 0) throw ApiError.invalid(f, f + " is not supported; use repetition_penalty");
        SamplingSettings sampling;
        try {
            sampling = new SamplingSettings(number(body, "temperature", 1), intField(body, "top_k", 0), number(body, "top_p", 1),
                    number(body, "min_p", 0), number(body, "repetition_penalty", 1), 0,
                    body.has("seed") && !body.get("seed").isNull() ? longField(body, "seed") : System.nanoTime());
        } catch (RopewayException e) {
            throw ApiError.invalid(null, e.getMessage());
        }
        List<String> stops = new ArrayList<>();
        JsonNode stop = body.get("stop");
        if (stop != null && !stop.isNull()) {
            if (stop.isTextual()) stops.add(stop.textValue());
            else if (stop.isArray()) for (JsonNode s : stop) {
                if (!s.isTextual()) throw ApiError.invalid("stop", "'stop' must be a string or an array of strings");
                stops.add(s.textValue());
            }
            else throw ApiError.invalid("stop", "'stop' must be a string or an array of strings");
        }
        if (stops.size() > MAX_STOPS) throw ApiError.invalid("stop", "at most " + MAX_STOPS + " stop strings, got " + stops.size());
        if (stops.contains("")) throw ApiError.invalid("stop", "a stop string must not be empty");
        boolean stream = bool(body, "stream", false);
        return new Parsed(ids, text, new Generator.Settings(maxTokens, sampling, stops, bool(body, "ignore_eos", false),
                logprobs, scoring), stream, echo);
    }

    /** The prompt's ids with the tokenizer's BOS in front when it has one and the encoding did not add it. */
    static int[] withBos(Tokenizer tokenizer, int[] ids) {
        int bos = tokenizer.bosId().orElse(-1);
        if (bos < 0 || ids.length > 0 && ids[0] == bos) return ids;
        int[] out = new int[ids.length + 1];
        out[0] = bos;
        System.arraycopy(ids, 0, out, 1, ids.length);
        return out;
    }

    private static String optionalText(JsonNode body, String field) {
        JsonNode n = body.get(field);
        if (n == null || n.isNull()) return null;
        if (!n.isTextual()) throw ApiError.invalid(field, "'" + field + "' must be a string");
        return n.textValue();
    }

    private static double number(JsonNode body, String field, double dflt) {
        JsonNode n = body.get(field);
        if (n == null || n.isNull()) return dflt;
        if (!n.isNumber()) throw ApiError.invalid(field, "'" + field + "' must be a number");
        return n.doubleValue();
    }

    private static int intField(JsonNode body, String field, int dflt) {
        JsonNode n = body.get(field);
        if (n == null || n.isNull()) return dflt;
        if (!n.isIntegralNumber() || !n.canConvertToInt()) throw ApiError.invalid(field, "'" + field + "' must be an integer");
        return n.intValue();
    }

    private static long longField(JsonNode body, String field) {
        JsonNode n = body.get(field);
        if (!n.isIntegralNumber() || !n.canConvertToLong()) throw ApiError.invalid(field, "'" + field + "' must be an integer");
        return n.longValue();
    }

    private static boolean bool(JsonNode body, String field, boolean dflt) {
        JsonNode n = body.get(field);
        if (n == null || n.isNull()) return dflt;
        if (!n.isBoolean()) throw ApiError.invalid(field, "'" + field + "' must be true or false");
        return n.booleanValue();
    }
}
