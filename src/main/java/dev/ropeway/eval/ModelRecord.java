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
 * Which checkpoint a result belongs to: its folder, the SHA-256 of its config.json, the total size of its weight files
 * and a digest of samples of their bytes (each file's header and 64 KiB at 32 evenly spaced places). A retrained model
 * has the same config and sizes, but training moves every weight, so the samples change; reading a megabyte or two
 * keeps this cheap for checkpoints of any size.
 */
public record ModelRecord(Path path, String configSha256, long weightBytes, String weightSampleSha256) {
    private static final int SAMPLES = 32, SAMPLE_BYTES = 1 << 16;

    public static ModelRecord of(Path dir) {
        Path abs = dir.toAbsolutePath().normalize();
        Path config = abs.resolve("config.json");
        if (!Files.isRegularFile(config))
            throw new RopewayException(dir + " is not a model folder: it has no config.json");
        try {
            java.util.List<Path> weightFiles;
            try (Stream<Path> files = Files.list(abs)) {
                weightFiles = files.filter(f -> f.getFileName().toString().endsWith(".safetensors") && Files.isRegularFile(f))
                        .sorted().toList();
            }
            long weights = 0;
            MessageDigest samples = digest();
            for (Path f : weightFiles) {
                weights += Files.size(f);
                sample(f, samples);
            }
            return new ModelRecord(abs, sha256(Files.readAllBytes(config)), weights, HexFormat.of().formatHex(samples.digest()));
        } catch (IOException e) {
            throw new RopewayException("cannot read " + dir + ": " + e.getMessage());
        }
    }

    static String sha256(byte[] bytes) {
        return HexFormat.of().formatHex(digest().digest(bytes));
    }

    private static MessageDigest digest() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("every Java runtime has SHA-256", e);
        }
    }

    /** Adds the file's name, size and sampled blocks (the first one holds the safetensors header) to the digest. */
    private static void sample(Path file, MessageDigest md) throws IOException {
        long size = Files.size(file);
        md.update((file.getFileName() + "\u0000" + size + "\u0000").getBytes(java.nio.charset.StandardCharsets.UTF_8));
        try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(file)) {
            java.nio.ByteBuffer buf = java.nio.ByteBuffer.allocate(SAMPLE_BYTES);
            long last = Math.max(0, size - SAMPLE_BYTES);
            for (int i = 0; i < SAMPLES; i++) {
                long at = SAMPLES == 1 ? 0 : last * i / (SAMPLES - 1);
                buf.clear();
                while (buf.hasRemaining()) {
                    int n = ch.read(buf, at + buf.position());
                    if (n < 0) break;
                }
                buf.flip();
                md.update(buf);
            }
        }
    }

    public Map<String, Object> toJson() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("path", path.toString());
        m.put("config_sha256", configSha256);
        m.put("weight_bytes", weightBytes);
        m.put("weight_sample_sha256", weightSampleSha256);
        return m;
    }
}
