package dev.ropeway.eval;

import dev.ropeway.RopewayException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.stream.Stream;

/**
 * Which checkpoint a result belongs to: its folder, the SHA-256 of its config.json and the total size of its
 * weight files (cheap to take, and any retraining or edit changes one of them).
 */
public record ModelRecord(Path path, String configSha256, long weightBytes) {

    public static ModelRecord of(Path dir) {
        Path abs = dir.toAbsolutePath().normalize();
        Path config = abs.resolve("config.json");
        if (!Files.isRegularFile(config))
            throw new RopewayException(dir + " is not a model folder: it has no config.json");
        try {
            long weights;
            try (Stream<Path> files = Files.list(abs)) {
                weights = files.filter(f -> f.getFileName().toString().endsWith(".safetensors") && Files.isRegularFile(f))
                        .mapToLong(f -> {
                            try {
                                return Files.size(f);
                            } catch (IOException e) {
                                throw new RopewayException("cannot read the size of " + f + ": " + e.getMessage());
                            }
                        }).sum();
            }
            return new ModelRecord(abs, sha256(Files.readAllBytes(config)), weights);
        } catch (IOException e) {
            throw new RopewayException("cannot read " + dir + ": " + e.getMessage());
        }
    }

    static String sha256(byte[] bytes) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("every Java runtime has SHA-256", e);
        }
    }

    public Map<String, Object> toJson() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("path", path.toString());
        m.put("config_sha256", configSha256);
        m.put("weight_bytes", weightBytes);
        return m;
    }
}
