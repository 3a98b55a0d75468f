package dev.ropeway.serve;

import dev.ropeway.RopewayException;

/**
 * How the server listens and what it accepts.
 *
 * @param host            address to bind (localhost by default: the server has no authentication)
 * @param port            TCP port, 0 for any free one
 * @param slots           requests generated at the same time, each with its own KV cache of {@code context} tokens
 * @param queue           requests waiting for a slot at most; more get 503
 * @param context         tokens per slot: prompt plus generated
 * @param maxTokens       the largest {@code max_tokens} a request may ask for
 * @param maxBodyBytes    the largest request body
 * @param shutdownSeconds how long a shutdown lets running requests finish before cancelling them
 * @param batch           whether the slots' decode steps run together, one batched step for all of them (the
 *                        weights read once per step), or each on its own
 */
public record ServerSettings(String host, int port, int slots, int queue, int context, int maxTokens, int maxBodyBytes,
                             int shutdownSeconds, boolean batch) {
    /** With the slots' decode steps batched. */
    public ServerSettings(String host, int port, int slots, int queue, int context, int maxTokens, int maxBodyBytes,
                          int shutdownSeconds) {
        this(host, port, slots, queue, context, maxTokens, maxBodyBytes, shutdownSeconds, true);
    }

    public ServerSettings {
        if (port < 0 || port > 65535) throw new RopewayException("--port must be in [0, 65535], got " + port);
        if (slots < 1) throw new RopewayException("--slots must be at least 1, got " + slots);
        if (queue < 0) throw new RopewayException("--queue must be >= 0, got " + queue);
        if (context < 2) throw new RopewayException("--context must be at least 2 tokens, got " + context);
        if (maxTokens < 1) throw new RopewayException("--max-tokens-limit must be at least 1, got " + maxTokens);
        if (maxBodyBytes < 1024) throw new RopewayException("--max-body must be at least 1024 bytes, got " + maxBodyBytes);
        if (shutdownSeconds < 0) throw new RopewayException("shutdown grace must be >= 0 seconds");
    }
}
