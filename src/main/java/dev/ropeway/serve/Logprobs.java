package dev.ropeway.serve;

import dev.ropeway.generate.TokenLogprob;
import dev.ropeway.io.Tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Log-probabilities in the OpenAI response shapes, for one request's tokens in order (prompt tokens when echoed,
 * then the generated ones, in as many calls as there are streamed chunks). A token's string is the text it adds after
 * the tokens before it (a leading space kept; special tokens written out; an incomplete UTF-8 character as U+FFFD);
 * a chat entry's {@code bytes} are the token's own (a piece of a character included), so that a client joining them
 * gets the text back.
 * {@code text_offset} counts characters of the returned text, in which special tokens take no room.
 */
final class Logprobs {
    /** Context tokens a token's string is decoded after. */
    private static final int CONTEXT = 4;
    /** Where a log-probability is -infinity: JSON has no infinities (OpenAI's API writes this value there). */
    private static final double FLOOR = -9999.0;

    private final Tokenizer tokenizer;
    private int[] context;
    /** The context's text with special tokens written out [0] and left out [1], once decoded. */
    private final String[] contextText = new String[2];
    private long offset;

    /** Strings decoded after {@code before}: the prompt when generated tokens follow it, nothing when it is echoed. */
    Logprobs(Tokenizer tokenizer, int[] before) {
        this.tokenizer = tokenizer;
        this.context = Arrays.copyOfRange(before, Math.max(0, before.length - CONTEXT), before.length);
    }

    /**
     * {@code /v1/completions}, no tokens yet ({@link #append} adds them): tokens, token_logprobs, top_logprobs (token
     * string to log-probability, the chosen token's included) and text_offset.
     */
    Map<String, Object> completion() {
        Map<String, Object> m = new LinkedHashMap<>();
        for (String key : new String[]{"tokens", "token_logprobs", "top_logprobs", "text_offset"}) m.put(key, new ArrayList<>());
        return m;
    }

    /** {@code /v1/completions} starting with an echoed prompt's first token, which has no log-probability. */
    Map<String, Object> completionFrom(int first) {
        Map<String, Object> m = completion();
        add(m, piece(first, true), null, null);
        offset += piece(first, false).length();
        push(first);
        return m;
    }

    /** Adds the next tokens to {@code m} (from {@link #completion} or {@link #completionFrom}); returns it. */
    Map<String, Object> append(Map<String, Object> m, List<TokenLogprob> entries) {
        for (TokenLogprob e : entries) {
            Map<String, Object> top = new LinkedHashMap<>();
            for (int i = 0; i < e.topTokens().length; i++) top.putIfAbsent(piece(e.topTokens()[i], true), finite(e.topLogprobs()[i]));
            String chosen = piece(e.token(), true);
            top.putIfAbsent(chosen, finite(e.logprob()));
            add(m, chosen, finite(e.logprob()), top);
            offset += piece(e.token(), false).length();
            push(e.token());
        }
        return m;
    }

    @SuppressWarnings("unchecked")
    private void add(Map<String, Object> m, String token, Double logprob, Map<String, Object> top) {
        ((List<Object>) m.get("tokens")).add(token);
        ((List<Object>) m.get("token_logprobs")).add(logprob);
        ((List<Object>) m.get("top_logprobs")).add(top);
        ((List<Object>) m.get("text_offset")).add(offset);
    }

    /** {@code /v1/chat/completions}: {"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}. */
    Map<String, Object> chat(List<TokenLogprob> entries) {
        List<Object> content = new ArrayList<>();
        for (TokenLogprob e : entries) {
            List<Object> top = new ArrayList<>();
            for (int i = 0; i < e.topTokens().length; i++) top.add(entry(e.topTokens()[i], e.topLogprobs()[i]));
            Map<String, Object> c = entry(e.token(), e.logprob());
            c.put("top_logprobs", top);
            content.add(c);
            push(e.token());
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("content", content);
        return m;
    }

    /** One chat entry; {@code bytes} is the token's own bytes where the tokenizer defines them, else its string's UTF-8. */
    private Map<String, Object> entry(int id, double logprob) {
        String token = piece(id, true);
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("token", token);
        m.put("logprob", finite(logprob));
        byte[] bytes = tokenizer.tokenBytes(id).orElseGet(() -> token.getBytes(StandardCharsets.UTF_8));
        List<Integer> list = new ArrayList<>(bytes.length);
        for (byte b : bytes) list.add(b & 0xff);
        m.put("bytes", list);
        return m;
    }

    private static double finite(double logprob) {
        return Double.isFinite(logprob) ? logprob : FLOOR;
    }

    /** The text {@code id} adds after the context (special tokens written out, or left out). */
    private String piece(int id, boolean specials) {
        int[] with = Arrays.copyOf(context, context.length + 1);
        with[context.length] = id;
        int k = specials ? 0 : 1;
        // The context's own text is decoded once per position, not once per alternative.
        if (contextText[k] == null) contextText[k] = tokenizer.decode(context, !specials);
        String before = contextText[k], after = tokenizer.decode(with, !specials);
        return after.startsWith(before) ? after.substring(before.length()) : tokenizer.decode(new int[]{id}, !specials);
    }

    private void push(int id) {
        contextText[0] = contextText[1] = null;
        int keep = Math.min(context.length, CONTEXT - 1);
        int[] next = Arrays.copyOfRange(context, context.length - keep, context.length + 1);
        next[keep] = id;
        context = next;
    }
}
