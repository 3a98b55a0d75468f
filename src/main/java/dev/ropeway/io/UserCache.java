package dev.ropeway.io;

import java.nio.file.Path;

/**
 * The folder where Ropeway keeps what it can rebuild: unpacked native libraries, imported GGUF models.
 * The system property {@code ropeway.cache} when set (for a program embedding Ropeway), else {@code $ROPEWAY_CACHE},
 * else {@code ~/.cache/ropeway}.
 */
public final class UserCache {
    /** The environment variable that moves the cache. */
    public static final String ENV = "ROPEWAY_CACHE";
    /** The system property that moves it within one JVM, before the environment variable. */
    public static final String PROPERTY = "ropeway.cache";

    private UserCache() {}

    public static Path root() {
        String property = System.getProperty(PROPERTY);
        if (property != null && !property.isBlank()) return Path.of(property);
        String env = System.getenv(ENV);
        if (env != null && !env.isBlank()) return Path.of(env);
        return Path.of(System.getProperty("user.home"), ".cache", "ropeway");
    }
}
