package dev.ropeway.generate;

import dev.ropeway.RopewayException;

import java.util.LinkedHashMap;
import java.util.Map;

/** One turn of a conversation: who speaks ("system", "user", "assistant", "tool"...) and what they say. */
public record ChatMessage(String role, String content) {

    public ChatMessage {
        if (role == null || role.isBlank()) throw new RopewayException("a chat message needs a role (system, user, assistant...)");
        if (content == null) throw new RopewayException("the " + role + " message has no content");
    }

    public static ChatMessage system(String content) {
        return new ChatMessage("system", content);
    }

    public static ChatMessage user(String content) {
        return new ChatMessage("user", content);
    }

    public static ChatMessage assistant(String content) {
        return new ChatMessage("assistant", content);
    }

    /** The message as templates see it: {@code {"role": ..., "content": ...}}. */
    public Map<String, Object> asMap() {
        Map<String, Object> map = new LinkedHashMap<>();
        map.put("role", role);
        map.put("content", content);
        return map;
    }
}
