package dev.ropeway.train;

import dev.ropeway.RopewayException;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;

/**
 * A corpus as one token stream, each document preceded by BOS, cut into training windows of {@code seq + 1}
 * tokens (inputs plus the next-token targets) that start every {@code seq} tokens, so windows overlap in one token
 * and every token is predicted once per epoch. Windows are visited in a seeded random order that changes every
 * epoch; sample {@code i} of the whole run is a pure function of (seed, i), so a resumed run only needs to know how
 * many samples it has consumed.
 */
public final class PackedTokens {
    private final int[] tokens;

    public PackedTokens(int[] tokens) {
        this.tokens = tokens;
    }

    /** Concatenates documents, a BOS before each (no BOS when {@code bos} is below 0). */
    public static PackedTokens pack(List<int[]> documents, int bos) {
        long total = 0;
        for (int[] d : documents) total += d.length + (bos >= 0 ? 1 : 0);
        if (total > Integer.MAX_VALUE - 8) throw new RopewayException("corpus of " + total + " tokens is too large to pack");
        int[] out = new int[(int) total];
        int p = 0;
        for (int[] d : documents) {
            if (bos >= 0) out[p++] = bos;
            System.arraycopy(d, 0, out, p, d.length);
            p += d.length;
        }
        return new PackedTokens(out);
    }

    public int[] tokens() {
        return tokens;
    }

    public long size() {
        return tokens.length;
    }

    /** Number of windows of {@code seq + 1} tokens. */
    public long windows(int seq) {
        return tokens.length <= seq ? 0 : (tokens.length - 1L) / seq;
    }

    /**
     * Fills {@code inputs} and {@code targets} (each {@code seq} long, at {@code offset}) with sample {@code index}
     * of a run with {@code seed}.
     */
    public void sample(long seed, long index, int seq, int[] inputs, int[] targets, int offset) {
        long w = windows(seq);
        if (w == 0) throw new RopewayException("the corpus has " + tokens.length + " tokens, fewer than one training sequence of "
                + (seq + 1));
        long epoch = index / w, within = index % w;
        long window = permute(within, w, mix(seed, epoch));
        int start = (int) (window * seq);
        System.arraycopy(tokens, start, inputs, offset, seq);
        System.arraycopy(tokens, start + 1, targets, offset, seq);
    }

    /**
     * A bijection on [0, n) keyed by {@code key}: a 4-round Feistel network on the smallest power-of-four domain
     * covering n, cycle-walking out-of-range values back in. A shuffled order without storing a permutation.
     */
    static long permute(long x, long n, long key) {
        int bits = 2;
        while ((1L << bits) < n) bits += 2;
        int half = bits / 2;
        long mask = (1L << half) - 1;
        do {
            long l = x >>> half, r = x & mask;
            for (int round = 0; round < 4; round++) {
                long f = mix(key + round, r) & mask;
                long t = r;
                r = l ^ f;
                l = t;
            }
            x = (l << half) | r;
        } while (x >= n);
        return x;
    }

    /** A 64-bit hash of two values (the splitmix64 finaliser). */
    static long mix(long a, long b) {
        long z = a * 0x9E3779B97F4A7C15L + b + 0x632BE59BD9B4E019L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /** A random source for step {@code step} of a run: pure function of (seed, step), so resuming replays it. */
    public static SplittableRandom random(long seed, long step) {
        return new SplittableRandom(mix(seed ^ 0x5DEECE66DL, step));
    }

    /** Writes the stream as little-endian int32 (a tokenised-corpus cache). */
    public void write(Path file) {
        ByteBuffer buf = ByteBuffer.allocate(tokens.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        buf.asIntBuffer().put(tokens);
        dev.ropeway.io.AtomicWrite.bytes(file, buf.array());
    }

    public static PackedTokens read(Path file) {
        try {
            byte[] bytes = Files.readAllBytes(file);
            if (bytes.length % 4 != 0) throw new RopewayException("token cache " + file + " is truncated");
            int[] t = new int[bytes.length / 4];
            ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asIntBuffer().get(t);
            return new PackedTokens(t);
        } catch (IOException e) {
            throw new RopewayException("cannot read token cache " + file + ": " + e.getMessage());
        }
    }
}
