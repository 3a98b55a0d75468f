package dev.ropeway.model;

import dev.ropeway.RopewayException;
import dev.ropeway.rope.ClexRope;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.rope.E2Rope;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.tensor.InstrumentedBackend;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/** The KV-cache decoder against whole-sequence forwards of the same tokens ({@link Scorer}'s logits). */
class DecoderTest {
    static final int VOCAB = 64;
    static CpuBackend backend;
    @TempDir
    static Path dir;

    @BeforeAll
    static void open() { backend = new CpuBackend(); }

    @AfterAll
    static void close() { backend.close(); }

    /** A random model with this RoPE method, written as a checkpoint and loaded the way users load one. */
    static Transformer model(String name, int layers, RopeScaling rope, long window) {
        Map<String, Object> json = CheckpointWriter.withRope(
                CheckpointWriter.llamaConfig(VOCAB, 32, 64, layers, 4, 2, 8, 64, new DefaultRope(10000, 8), false), rope,
                rope instanceof ClexRope clex ? clex.originalMax() : 64);
        if (window > 0) json.put("sliding_window", window);
        ModelConfig c = ModelConfig.parse(json, name);
        Path out = dir.resolve(name);
        try (TrainableModel m = TrainableModel.random(backend, c, 7)) {
            m.save(out, json);
        }
        return Transformer.load(backend, out);
    }

    static int[] randomTokens(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        int[] ids = new int[n];
        for (int i = 0; i < n; i++) ids[i] = r.nextInt(VOCAB);
        return ids;
    }

    /** Logits of the last token of {@code seq}, from one whole-sequence forward. */
    static float[] fullForwardLast(Transformer t, RopeScaling rope, int[] seq) {
        float[] all = new Scorer(t).score(TokenBatch.of(seq, 1, seq.length), rope, true).logits();
        return Arrays.copyOfRange(all, (seq.length - 1) * VOCAB, seq.length * VOCAB);
    }

    static void assertClose(float[] expected, float[] actual, double tol, String what) {
        double scale = 0;
        for (float e : expected) scale = Math.max(scale, Math.abs(e));
        for (int i = 0; i < expected.length; i++)
            assertEquals(expected[i], actual[i], tol * Math.max(1, scale), what + " logit " + i);
    }

    static int argmax(float[] x) {
        int best = 0;
        for (int i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    /**
     * Prefills a prompt in chunks of 3, then generates greedily; at every step the cached decoder's logits equal a
     * whole-sequence forward over the same tokens, and the token it picks is that forward's argmax.
     */
    static int checkGreedyAgainstFullForward(Transformer t, RopeScaling rope, Decoder.RopeChange policy, int prompt, int steps) {
        return checkGreedyAgainstFullForward(t, rope, policy, prompt, steps, 1e-4);
    }

    /** The same, with logits equal within {@code tol} of the largest one (a narrow KV cache rounds keys and values). */
    static int checkGreedyAgainstFullForward(Transformer t, RopeScaling rope, Decoder.RopeChange policy, int prompt, int steps,
                                             double tol) {
        int[] seq = randomTokens(prompt, 3);
        try (Decoder d = new Decoder(t, rope, prompt + steps, policy, 3)) {
            float[] logits = d.append(seq);
            for (int step = 0; step < steps; step++) {
                assertClose(fullForwardLast(t, rope, seq), logits, tol, rope.type() + " step " + step + " (length " + seq.length + ")");
                int next = argmax(logits);
                seq = Arrays.copyOf(seq, seq.length + 1);
                seq[seq.length - 1] = next;
                logits = d.next(next);
            }
            assertArrayEquals(Arrays.copyOf(seq, seq.length), d.tokens());
            return d.ropeChanges();
        }
    }

    @Test
    void cachedGreedyEqualsFullRecomputeWithDefaultRope() {
        try (Transformer t = model("default", 2, new DefaultRope(10000, 8), 0)) {
            assertEquals(0, checkGreedyAgainstFullForward(t, t.config().rope(), Decoder.RopeChange.REROTATE, 7, 20));
        }
    }

    @Test
    void slidingWindowAndYarnScaleMatchToo() {
        try (Transformer t = model("window", 2, new DefaultRope(10000, 8), 6)) {
            checkGreedyAgainstFullForward(t, t.config().rope(), Decoder.RopeChange.REROTATE, 5, 12);
            RopeScaling yarn = t.config().ropeOrSpec("yarn:factor=4,original_max_position_embeddings=16");
            assertNotEquals(1f, yarn.attentionScaling(), "YaRN's mscale is what this case checks");
            checkGreedyAgainstFullForward(t, yarn, Decoder.RopeChange.REROTATE, 5, 12);
        }
    }

    /**
     * A prompt is prefilled in the backend's chunks unless the caller names a size (a GPU takes far larger ones than a
     * CPU), and the chunks give the logits a whole-prompt forward gives.
     */
    @Test
    void prefillUsesTheBackendsChunks() {
        model("chunks", 2, new DefaultRope(10000, 8), 0).close();
        int[] prompt = randomTokens(20, 9);
        InstrumentedBackend seven = InstrumentedBackend.of(backend).prefillChunk(7);
        float[] chunked, whole;
        try (Transformer t = Transformer.load(seven.backend(), dir.resolve("chunks"));
             Decoder d = new Decoder(t, t.config().rope(), 24)) {
            long before = seven.calls("embedding");
            chunked = d.append(prompt);
            assertEquals(3, seven.calls("embedding") - before, "20 tokens in chunks of 7: three forwards");
        }
        try (Transformer t = Transformer.load(backend, dir.resolve("chunks"));
             Decoder d = new Decoder(t, t.config().rope(), 24, Decoder.RopeChange.REROTATE, 20)) {
            whole = d.append(prompt);
        }
        assertArrayEquals(whole, chunked, 1e-5f);
        assertEquals(512, backend.prefillChunk(), "the CPU's default");
    }

    /** E²'s g = ceil(S / 8) changes at 9, 17, 25: recomputing the prefix keeps the decoder equal to a full forward. */
    @Test
    void e2ScaleChangesDuringGenerationWithRecompute() {
        E2Rope e2 = new E2Rope(10000, 8, 8, 0, 4);
        try (Transformer t = model("e2", 2, e2, 0)) {
            assertEquals(3, checkGreedyAgainstFullForward(t, e2, Decoder.RopeChange.RECOMPUTE, 5, 24));
        }
    }

    /** CLEX's t = min(ceil(S / 8), 4) changes at 9, 17, 25 and then stays at T past L0·T = 32. */
    @Test
    void clexFactorChangesDuringGenerationWithRecompute() {
        ClexRope clex = new ClexRope(10000, 8, 8, 4, 1, "tanh", 0.01, false, null);
        try (Transformer t = model("clex", 2, clex, 0)) {
            RopeScaling rope = t.config().rope();
            assertInstanceOf(ClexRope.class, rope);
            assertEquals(3, checkGreedyAgainstFullForward(t, rope, Decoder.RopeChange.RECOMPUTE, 6, 34));
        }
    }

    /**
     * Re-rotation (CLEX's reference inference) rotates the cached keys again; with one layer the keys and values come
     * straight from the embeddings, so it too equals a full forward, including CLEX's log scale that changes with S.
     */
    @Test
    void rerotatedKeysEqualFreshlyRotatedOnes() {
        E2Rope e2 = new E2Rope(10000, 8, 8, 0, 4);
        try (Transformer t = model("e2-one-layer", 1, e2, 0)) {
            assertEquals(3, checkGreedyAgainstFullForward(t, e2, Decoder.RopeChange.REROTATE, 5, 24));
        }
        ClexRope clex = new ClexRope(10000, 8, 8, 4, 1, "tanh", 0.01, true, null);
        try (Transformer t = model("clex-one-layer", 1, clex, 0)) {
            assertEquals(3, checkGreedyAgainstFullForward(t, t.config().rope(), Decoder.RopeChange.REROTATE, 6, 24));
            RopeScaling dynamic = t.config().ropeOrSpec("dynamic:factor=2");
            assertTrue(checkGreedyAgainstFullForward(t, dynamic, Decoder.RopeChange.REROTATE, 60, 4) >= 3,
                    "dynamic NTK changes its frequencies at every length past max_position_embeddings");
        }
    }

    /**
     * A bfloat16 KV cache on the CPU (keys and values rounded to 8 bits as they are stored): chunked prefill and greedy
     * steps track whole-sequence forwards, with E²-LLM's g changing three times, by recomputing the prefix and by
     * re-rotating the cached keys (rotated in float32 and rounded once), and recorded steps equal op-by-op ones.
     */
    @Test
    void bfloat16KvCacheTracksWholeForwards() {
        E2Rope e2 = new E2Rope(10000, 8, 8, 0, 4);
        try (Transformer two = model("e2-bf16-kv", 2, e2, 0); Transformer one = model("e2-bf16-kv-one", 1, e2, 0);
             CpuBackend bf16 = new CpuBackend(2, dev.ropeway.tensor.DType.BF16);
             Transformer t2 = Transformer.load(bf16, dir.resolve("e2-bf16-kv"));
             Transformer t1 = Transformer.load(bf16, dir.resolve("e2-bf16-kv-one"))) {
            double tol = 1e-2;
            assertEquals(3, checkGreedyAgainstFullForward(t2, e2, Decoder.RopeChange.RECOMPUTE, 5, 24, tol));
            assertEquals(0, checkGreedyAgainstFullForward(t2, new DefaultRope(10000, 8), Decoder.RopeChange.REROTATE, 7, 20, tol));
            assertEquals(3, checkGreedyAgainstFullForward(t1, e2, Decoder.RopeChange.REROTATE, 5, 24, tol));
            assertEquals(3, compareRecordedSteps(t2, e2, 5, 24, 0.0));
            // The rounding shows: the cached decoder's logits are not those of the float32 cache.
            int[] seq = randomTokens(12, 4);
            try (Decoder wide = new Decoder(two, e2, 16, Decoder.RopeChange.RECOMPUTE, 4);
                 Decoder narrow = new Decoder(t2, e2, 16, Decoder.RopeChange.RECOMPUTE, 4)) {
                wide.append(Arrays.copyOf(seq, 8));
                narrow.append(Arrays.copyOf(seq, 8));
                float[] a = wide.append(Arrays.copyOfRange(seq, 8, 12)), b = narrow.append(Arrays.copyOfRange(seq, 8, 12));
                double diff = 0;
                for (int i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
                double top = 0;
                for (float x : a) top = Math.max(top, Math.abs(x));
                assertTrue(diff > 1e-6 && diff < 5e-3 * top, "bfloat16 keys and values move the logits a little: " + diff
                        + " (largest logit " + top + ")");
            }
        }
    }

    /**
     * The CPU backend keeps its KV caches head by head (every test above runs on that layout); the GPU's are row by
     * row. Both layouts on the CPU track whole-sequence forwards through prefill chunks, steps, re-rotated keys (float32
     * and bfloat16), recorded steps, copied prefixes and batched steps; and the two give the same logits bit for bit
     * (the same sums in the same order, only the addresses differ).
     */
    @Test
    void cachesLaidOutRowByRowOrHeadByHeadGiveTheSameLogits() {
        E2Rope e2 = new E2Rope(10000, 8, 8, 0, 4);
        try (Transformer unused = model("layouts-e2", 1, e2, 0); Transformer unused2 = model("layouts-two", 2, e2, 0)) {
            assertTrue(backend.kvHeadMajor(), "the CPU backend's caches are head by head by default");
        }
        for (dev.ropeway.tensor.DType kv : new dev.ropeway.tensor.DType[]{dev.ropeway.tensor.DType.F32, dev.ropeway.tensor.DType.BF16}) {
            double tol = kv == dev.ropeway.tensor.DType.F32 ? 1e-4 : 1e-2;
            try (CpuBackend rows = new CpuBackend(2, kv, CpuBackend.Weights.AUTO, false);
                 CpuBackend heads = new CpuBackend(2, kv, CpuBackend.Weights.AUTO, true);
                 Transformer r1 = Transformer.load(rows, dir.resolve("layouts-e2"));
                 Transformer r2 = Transformer.load(rows, dir.resolve("layouts-two"));
                 Transformer h2 = Transformer.load(heads, dir.resolve("layouts-two"))) {
                assertFalse(rows.kvHeadMajor());
                assertEquals(3, checkGreedyAgainstFullForward(r1, e2, Decoder.RopeChange.REROTATE, 5, 24, tol));
                assertEquals(3, checkGreedyAgainstFullForward(r2, e2, Decoder.RopeChange.RECOMPUTE, 5, 24, tol));
                assertEquals(3, compareRecordedSteps(r2, e2, 5, 24, 0.0));
                checkCopiedPrefix(r2, e2, Decoder.RopeChange.REROTATE, 12, 22, 0);
                assertEquals(3, compareBatchedSteps(r2, e2, new Decoder.RopeChange[]{Decoder.RopeChange.RECOMPUTE,
                        Decoder.RopeChange.REROTATE}, new int[]{6, 10}, 16));
                int[] seq = randomTokens(9, 21);
                try (Decoder a = new Decoder(r2, e2, 40, Decoder.RopeChange.REROTATE, 4);
                     Decoder b = new Decoder(h2, e2, 40, Decoder.RopeChange.REROTATE, 4)) {
                    float[] la = a.append(seq), lb = b.append(seq);
                    for (int step = 0; step < 20; step++) {
                        assertArrayEquals(la, lb, kv + " cache, step " + step);
                        int next = argmax(la);
                        la = a.next(next);
                        lb = b.next(next);
                    }
                    assertTrue(b.ropeChanges() >= 2, "keys rotated again on the way");
                }
                // A prefix copied between caches of different capacities (each head's rows start elsewhere); prompts in
                // chunks of 4 on both sides, so the products run over the same rows.
                DefaultRope plain = new DefaultRope(10000, 8);
                int[] doc = randomTokens(30, 22);
                for (Transformer t : new Transformer[]{r2, h2})
                    try (Decoder donor = new Decoder(t, plain, 64, Decoder.RopeChange.REROTATE, 4);
                         Decoder receiver = new Decoder(t, plain, 40, Decoder.RopeChange.REROTATE, 4);
                         Decoder fresh = new Decoder(t, plain, 40, Decoder.RopeChange.REROTATE, 4)) {
                        donor.append(doc);
                        receiver.copyPrefix(donor, 20);
                        assertArrayEquals(fresh.append(doc), receiver.append(Arrays.copyOfRange(doc, 20, 30)),
                                "a prefix copied from a larger cache, " + kv);
                    }
            }
        }
    }

    /**
     * Several sequences stepped together ({@link Decoder#next(java.util.List, int[])}) give each one the logits of its
     * own steps, bit for bit on the CPU: different lengths, E²'s g changing at different steps under both policies,
     * YaRN's attention scale with a sliding window, a bfloat16 cache, and sequences joining and leaving the batch.
     */
    @Test
    void batchedStepsEqualEachSequencesOwnSteps() {
        E2Rope e2 = new E2Rope(10000, 8, 8, 0, 4);
        try (Transformer t = model("e2-batched", 2, e2, 0); Transformer w = model("window-batched", 2, new DefaultRope(10000, 8), 6);
             CpuBackend bf16 = new CpuBackend(2, dev.ropeway.tensor.DType.BF16);
             Transformer tb = Transformer.load(bf16, dir.resolve("e2-batched"))) {
            assertEquals(7, compareBatchedSteps(t, e2, new Decoder.RopeChange[]{Decoder.RopeChange.REROTATE,
                    Decoder.RopeChange.RECOMPUTE, Decoder.RopeChange.REROTATE}, new int[]{5, 7, 12}, 24));
            RopeScaling yarn = w.config().ropeOrSpec("yarn:factor=4,original_max_position_embeddings=16");
            assertNotEquals(1f, yarn.attentionScaling(), "YaRN's mscale is what this case checks");
            compareBatchedSteps(w, yarn, new Decoder.RopeChange[]{Decoder.RopeChange.REROTATE, Decoder.RopeChange.REROTATE,
                    Decoder.RopeChange.REROTATE, Decoder.RopeChange.REROTATE}, new int[]{3, 9, 4, 15}, 12);
            assertEquals(3, compareBatchedSteps(tb, e2, new Decoder.RopeChange[]{Decoder.RopeChange.RECOMPUTE,
                    Decoder.RopeChange.REROTATE}, new int[]{6, 10}, 16));
        }
    }

    /**
     * Batched steps recorded once per group of decoders (a GPU's default; here the recording runs its ops on the CPU
     * through the decode-step ops, the path a graph replays) give each sequence exactly its own steps' logits: groups
     * change as members sit out or join, E²'s frequencies change under both policies, YaRN's scale with a window, a
     * bfloat16 cache, and more members than {@link RecordedBatches#LIMIT} groups hold.
     */
    @Test
    void recordedBatchedStepsEqualEachSequencesOwnSteps() {
        E2Rope e2 = new E2Rope(10000, 8, 8, 0, 4);
        try (Transformer t = model("e2-recorded-batches", 2, e2, 0);
             Transformer w = model("window-recorded-batches", 2, new DefaultRope(10000, 8), 6);
             CpuBackend bf16 = new CpuBackend(2, dev.ropeway.tensor.DType.BF16);
             Transformer tb = Transformer.load(bf16, dir.resolve("e2-recorded-batches"))) {
            assertEquals(7, compareBatchedSteps(t, e2, new Decoder.RopeChange[]{Decoder.RopeChange.REROTATE,
                    Decoder.RopeChange.RECOMPUTE, Decoder.RopeChange.REROTATE}, new int[]{5, 7, 12}, 24, 0, true));
            RopeScaling yarn = w.config().ropeOrSpec("yarn:factor=4,original_max_position_embeddings=16");
            compareBatchedSteps(w, yarn, new Decoder.RopeChange[]{Decoder.RopeChange.REROTATE, Decoder.RopeChange.REROTATE,
                    Decoder.RopeChange.REROTATE, Decoder.RopeChange.REROTATE}, new int[]{3, 9, 4, 15}, 12, 0, true);
            assertEquals(3, compareBatchedSteps(tb, e2, new Decoder.RopeChange[]{Decoder.RopeChange.RECOMPUTE,
                    Decoder.RopeChange.REROTATE}, new int[]{6, 10}, 16, 0, true));
        }
    }

    /**
     * A decoder going on to a sequence that shares a start with what it holds keeps that start cached: appending the
     * rest gives a fresh prefill's logits. With static RoPE and with frequencies that follow the length under
     * RECOMPUTE (the kept rows are computed again when the new length changes them); never under REROTATE with such
     * frequencies, whose cached rows keep what earlier lengths made.
     */
    @Test
    void keptPrefixGivesAFreshPrefillsLogits() {
        E2Rope e2 = new E2Rope(10000, 8, 8, 0, 4);
        try (Transformer plain = model("prefix-plain", 2, new DefaultRope(10000, 8), 0);
             Transformer windowed = model("prefix-window", 2, new DefaultRope(10000, 8), 6);
             Transformer t = model("prefix-e2", 2, e2, 0)) {
            assertEquals(0, checkKeptPrefix(plain, plain.config().rope(), Decoder.RopeChange.REROTATE, 12, 20));
            checkKeptPrefix(windowed, windowed.config().rope(), Decoder.RopeChange.REROTATE, 12, 20);
            // E²: g = 2 for the first sequence (length 9..16), 4 for the second (25..32): the kept rows are recomputed.
            assertTrue(checkKeptPrefix(t, e2, Decoder.RopeChange.RECOMPUTE, 6, 30) >= 1);
            // Keys rotated again as g follows the length: rows are kept while the sequence stayed at one g (3 for
            // lengths 17 to 24) and the next prompt's length has it too; the steps after cross to g = 4 in both.
            assertEquals(1, checkKeptPrefix(t, e2, Decoder.RopeChange.REROTATE, 12, 22));
            try (Decoder d = new Decoder(t, e2, 40, Decoder.RopeChange.REROTATE, 4)) {
                int[] seq = randomTokens(17, 3);
                d.append(seq);
                assertEquals(16, d.reusablePrefix(seq));
                assertEquals(0, d.reusablePrefix(concat(seq, randomTokens(9, 4))), "26 tokens get g = 4");
                assertEquals(0, d.reusablePrefix(Arrays.copyOf(seq, 12)), "12 tokens get g = 2");
                d.truncate(12);
                d.append(Arrays.copyOfRange(seq, 12, 17));
                assertEquals(16, d.reusablePrefix(seq), "rows computed at g = 3 throughout");
                d.truncate(8);
                d.append(Arrays.copyOfRange(seq, 8, 12));                     // g = 2: the 8 rows re-rotated
                d.append(Arrays.copyOfRange(seq, 12, 17));                    // g = 3: all 12 rotated again
                assertEquals(0, d.reusablePrefix(seq), "rows of other lengths' values and deeper keys are not kept");
            }
        }
    }

    /**
     * A decoder prefills {@code shared} tokens plus 5 of its own and decodes 3; then goes on to the same {@code shared}
     * tokens followed by others, up to {@code second} tokens. Checks the kept count and the logits against a fresh
     * decoder, each step of greedy decoding after it too; returns the RoPE changes of the reusing decoder.
     */
    static int checkKeptPrefix(Transformer t, RopeScaling rope, Decoder.RopeChange policy, int shared, int second) {
        int[] common = randomTokens(shared, 21), tail = randomTokens(second - shared, 22), own = randomTokens(5, 23);
        int[] first = concat(common, own), next = concat(common, tail);
        try (Decoder d = new Decoder(t, rope, 48, policy, 4); Decoder fresh = new Decoder(t, rope, 48, policy, 4)) {
            float[] logits = d.append(first);
            for (int i = 0; i < 3; i++) logits = d.next(argmax(logits));
            assertEquals(first.length - 1, d.reusablePrefix(first), "the same prompt again keeps all but its last token");
            int kept = d.reusablePrefix(next);
            assertEquals(shared, kept);
            int changes = d.ropeChanges();
            d.truncate(kept);
            float[] got = d.append(Arrays.copyOfRange(next, kept, next.length)), want = fresh.append(next);
            for (int step = 0; step < 4; step++) {
                assertArrayEquals(want, got, "step " + step + " after the kept prefix");
                int token = argmax(want);
                got = d.next(token);
                want = fresh.next(token);
            }
            assertArrayEquals(fresh.tokens(), d.tokens());
            return d.ropeChanges() - changes;
        }
    }

    /**
     * A prefix copied from another decoder's cache gives what a fresh prefill gives: into an empty decoder, into one that
     * already holds part of the prefix (kept rows plus rows of other tokens after them), across E²'s g changes (rows at
     * other frequencies replaced, the copied ones recomputed when the next append changes g), with a sliding window
     * and a bfloat16 cache; the donor is untouched.
     */
    @Test
    void copiedPrefixGivesAFreshPrefillsLogits() {
        E2Rope e2 = new E2Rope(10000, 8, 8, 0, 4);
        try (Transformer plain = model("copy-plain", 2, new DefaultRope(10000, 8), 0);
             Transformer windowed = model("copy-window", 2, new DefaultRope(10000, 8), 6);
             Transformer t = model("copy-e2", 2, e2, 0);
             CpuBackend bf16 = new CpuBackend(2, dev.ropeway.tensor.DType.BF16);
             Transformer narrow = Transformer.load(bf16, dir.resolve("copy-plain"))) {
            DefaultRope rope = new DefaultRope(10000, 8);
            for (int held : new int[]{-1, 0, 5, 12}) {
                checkCopiedPrefix(plain, rope, Decoder.RopeChange.REROTATE, 12, 20, held);
                checkCopiedPrefix(windowed, rope, Decoder.RopeChange.REROTATE, 12, 20, held);
                checkCopiedPrefix(narrow, rope, Decoder.RopeChange.REROTATE, 12, 20, held);
            }
            // g = 3 in the donor (lengths 17 to 20), 4 after the append (30): the copied rows are recomputed.
            assertTrue(checkCopiedPrefix(t, e2, Decoder.RopeChange.RECOMPUTE, 12, 30, -1) >= 1);
            // The receiver's own rows of the prefix were made at g = 4 (length 25): replaced, not kept.
            checkCopiedPrefix(t, e2, Decoder.RopeChange.RECOMPUTE, 12, 30, 5);
            // Re-rotated keys: rows made at one g (3) are copied with their unrotated keys, which the receiver's
            // steps into g = 4 rotate again.
            for (int held : new int[]{-1, 0, 12})
                assertEquals(1, checkCopiedPrefix(t, e2, Decoder.RopeChange.REROTATE, 12, 22, held));

            try (Decoder a = new Decoder(plain, rope, 48); Decoder b = new Decoder(plain, rope, 16);
                 Decoder other = new Decoder(windowed, rope, 48);
                 Decoder raw = new Decoder(t, e2, 48, Decoder.RopeChange.REROTATE, 4);
                 Decoder raw2 = new Decoder(t, e2, 48, Decoder.RopeChange.REROTATE, 4)) {
                a.append(randomTokens(20, 5));
                RopewayException tooLong = assertThrows(RopewayException.class, () -> b.copyPrefix(a, 17));
                assertTrue(tooLong.getMessage().contains("cache of 16"), tooLong.getMessage());
                assertThrows(RopewayException.class, () -> b.copyPrefix(a, 21), "more than the donor holds");
                assertThrows(RopewayException.class, () -> other.copyPrefix(a, 4), "another model");
                raw.append(randomTokens(12, 6));
                raw.append(randomTokens(5, 7));                  // g from 2 to 3: the first 12 keys rotated again
                RopewayException rotated = assertThrows(RopewayException.class, () -> raw2.copyPrefix(raw, 4));
                assertTrue(rotated.getMessage().contains("cannot be copied"), rotated.getMessage());
                assertEquals(0, b.length(), "a refused copy changes nothing");
            }
        }
    }

    /**
     * A donor prefills {@code shared} tokens plus 5 of its own and decodes 3; a receiver holding {@code held} of the
     * shared tokens followed by 4 others (nothing for -1; at a length whose RoPE differs when {@code held} is 5 and the
     * rope is E²) copies the shared prefix from it and goes on to {@code second} tokens. Checks its logits, and greedy
     * steps after them, against a fresh decoder, and that the donor still holds its sequence; returns the receiver's
     * RoPE changes after the copy.
     */
    static int checkCopiedPrefix(Transformer t, RopeScaling rope, Decoder.RopeChange policy, int shared, int second, int held) {
        int[] common = randomTokens(shared, 31), tail = randomTokens(second - shared, 32), own = randomTokens(5, 33);
        int[] first = concat(common, own), next = concat(common, tail);
        try (Decoder donor = new Decoder(t, rope, 48, policy, 4); Decoder d = new Decoder(t, rope, 48, policy, 4);
             Decoder fresh = new Decoder(t, rope, 48, policy, 4)) {
            float[] logits = donor.append(first);
            for (int i = 0; i < 3; i++) logits = donor.next(argmax(logits));
            int[] donorTokens = donor.tokens();
            if (held >= 0) {
                int pad = rope instanceof E2Rope && held == 5 ? 25 - held : 4;
                d.append(concat(Arrays.copyOf(common, held), randomTokens(pad, 34)));
            }
            int n = donor.reusablePrefix(next);
            assertEquals(shared, n);
            d.copyPrefix(donor, n);
            assertEquals(n, d.length());
            assertEquals(n, d.reusablePrefix(next));
            int changes = d.ropeChanges();
            float[] got = d.append(Arrays.copyOfRange(next, n, next.length)), want = fresh.append(next);
            for (int step = 0; step < 4; step++) {
                assertArrayEquals(want, got, "step " + step + " after the copied prefix (held " + held + ")");
                int token = argmax(want);
                got = d.next(token);
                want = fresh.next(token);
            }
            assertArrayEquals(fresh.tokens(), d.tokens());
            assertArrayEquals(donorTokens, donor.tokens(), "the donor keeps its sequence");
            float[] again = donor.next(7);
            try (Decoder replay = new Decoder(t, rope, 48, policy, 4)) {
                replay.append(Arrays.copyOf(donorTokens, first.length));
                for (int i = first.length; i < donorTokens.length; i++) replay.next(donorTokens[i]);
                assertArrayEquals(replay.next(7), again, "the donor's cache is intact");
            }
            return d.ropeChanges() - changes;
        }
    }

    /**
     * Rows of a sequence that another thread keeps appending to are copied while it grows: each copy gives a fresh
     * prefill's logits. Refused where the frequencies follow the length.
     */
    @Test
    void settledRowsAreCopiedWhileTheDonorGrows() throws Exception {
        DefaultRope rope = new DefaultRope(10000, 8);
        try (Transformer plain = model("settled-plain", 2, rope, 0);
             Transformer e2model = model("settled-e2", 1, new E2Rope(10000, 8, 8, 0, 4), 0)) {
            int[] common = randomTokens(12, 41);
            int[] next = concat(common, randomTokens(6, 42));
            float[] want;
            try (Decoder fresh = new Decoder(plain, rope, 64, Decoder.RopeChange.REROTATE, 4)) {
                want = fresh.append(next);
            }
            try (Decoder donor = new Decoder(plain, rope, 400, Decoder.RopeChange.REROTATE, 4)) {
                float[] first = donor.append(concat(common, randomTokens(3, 43)));
                assertEquals(12, donor.settledPrefix(next));
                java.util.concurrent.atomic.AtomicBoolean stop = new java.util.concurrent.atomic.AtomicBoolean();
                Thread grower = Thread.ofPlatform().start(() -> {
                    float[] logits = first;
                    while (!stop.get() && donor.length() < 390) logits = donor.next(argmax(logits));
                });
                try {
                    for (int copy = 0; copy < 20; copy++)
                        try (Decoder d = new Decoder(plain, rope, 64, Decoder.RopeChange.REROTATE, 4)) {
                            int n = donor.settledPrefix(next);
                            assertEquals(12, n);
                            d.copySettledPrefix(donor, n);
                            assertArrayEquals(want, d.append(Arrays.copyOfRange(next, n, next.length)), "copy " + copy);
                        }
                } finally {
                    stop.set(true);
                    grower.join();
                }
                assertTrue(donor.length() > 15, "the donor grew meanwhile");
                try (Decoder d = new Decoder(plain, rope, 64, Decoder.RopeChange.REROTATE, 4)) {
                    assertThrows(RopewayException.class, () -> d.copySettledPrefix(donor, (int) donor.length() + 1));
                }
            }
            E2Rope e2 = new E2Rope(10000, 8, 8, 0, 4);
            try (Decoder donor = new Decoder(e2model, e2, 64, Decoder.RopeChange.RECOMPUTE, 4);
                 Decoder d = new Decoder(e2model, e2, 64, Decoder.RopeChange.RECOMPUTE, 4)) {
                donor.append(common);
                assertEquals(0, donor.settledPrefix(next), "E2's rows change when g does");
                assertThrows(RopewayException.class, () -> d.copySettledPrefix(donor, 4));
            }
        }
    }

    /** A prompt in several chunks waits for each chunk but the last (a GPU's queue holds one chunk at a time). */
    @Test
    void chunkedPrefillWaitsBetweenChunks() {
        try (Transformer plain = model("sync-chunks", 1, new DefaultRope(10000, 8), 0)) {
            dev.ropeway.tensor.InstrumentedBackend counted = dev.ropeway.tensor.InstrumentedBackend.of(backend);
            try (Transformer t = Transformer.load(counted.backend(), dir.resolve("sync-chunks"));
                 Decoder d = new Decoder(t, t.config().rope(), 32, Decoder.RopeChange.REROTATE, 4);
                 Decoder whole = new Decoder(plain, plain.config().rope(), 32, Decoder.RopeChange.REROTATE, 4)) {
                int[] prompt = randomTokens(10, 8);
                long before = counted.calls("synchronize");
                float[] logits = d.append(prompt);
                assertEquals(2, counted.calls("synchronize") - before, "three chunks, a wait after each of the first two");
                d.next(argmax(logits));
                assertEquals(2, counted.calls("synchronize") - before, "a one-token step does not wait");
                float[] want = whole.append(prompt);
                assertArrayEquals(want, logits);
            }
        }
    }

    static int[] concat(int[] a, int[] b) {
        int[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    /** Groups are kept up to the limit, the least recently used dropped, each group's order its decoders' creation order. */
    @Test
    void recordedBatchGroupsAreBoundedAndOrderFree() {
        try (Transformer t = model("recorded-groups", 1, new DefaultRope(10000, 8), 0)) {
            int n = RecordedBatches.LIMIT + 2;
            java.util.List<Decoder> ds = new java.util.ArrayList<>();
            try {
                for (int i = 0; i < n + 1; i++) {
                    Decoder d = new Decoder(t, t.config().rope(), 16).recordSteps(true);
                    ds.add(d);
                    d.append(randomTokens(3, 70 + i));
                }
                // The same pair listed either way is one group.
                Decoder.next(java.util.List.of(ds.get(0), ds.get(1)), new int[]{1, 2});
                Decoder.next(java.util.List.of(ds.get(1), ds.get(0)), new int[]{3, 4});
                assertEquals(1, t.recordedBatches().size());
                for (int i = 1; i < n; i++) Decoder.next(java.util.List.of(ds.get(i), ds.get(i + 1)), new int[]{5, 6});
                assertEquals(RecordedBatches.LIMIT, t.recordedBatches().size());
                ds.get(n).close();
                assertEquals(RecordedBatches.LIMIT - 1, t.recordedBatches().size(), "the group of a closed decoder goes");
            } finally {
                for (Decoder d : ds) d.close();
            }
            assertEquals(0, t.recordedBatches().size());
        }
    }

    /**
     * Greedy steps of {@code prompts.length} sequences, batched and one by one, compared exactly; sequence 1 sits out
     * every third step, the last joins after four steps, and every other step lists them in reverse. Returns the RoPE
     * changes the batched decoders made.
     */
    static int compareBatchedSteps(Transformer t, RopeScaling rope, Decoder.RopeChange[] policies, int[] prompts, int steps) {
        return compareBatchedSteps(t, rope, policies, prompts, steps, 0);
    }

    /** As above, the logits within {@code tol} (relative, as {@link #assertClose}) when it is not 0. */
    static int compareBatchedSteps(Transformer t, RopeScaling rope, Decoder.RopeChange[] policies, int[] prompts, int steps,
                                   double tol) {
        return compareBatchedSteps(t, rope, policies, prompts, steps, tol, null);
    }

    /**
     * As above, the batched decoders recording their steps or not ({@link Decoder#recordSteps}; null: the backend's
     * default). Recorded batched steps must have replayed as graphs where the backend's recordings are graphs, and
     * every group recorded is dropped once its decoders close.
     */
    static int compareBatchedSteps(Transformer t, RopeScaling rope, Decoder.RopeChange[] policies, int[] prompts, int steps,
                                   double tol, Boolean recorded) {
        int k = prompts.length;
        java.util.List<Decoder> batched = new java.util.ArrayList<>(), alone = new java.util.ArrayList<>();
        try {
            float[][] last = new float[k][];
            for (int i = 0; i < k; i++) {
                Decoder d = new Decoder(t, rope, prompts[i] + steps, policies[i], 4);
                batched.add(recorded == null ? d : d.recordSteps(recorded));
                alone.add(new Decoder(t, rope, prompts[i] + steps, policies[i], 4));
                int[] prompt = randomTokens(prompts[i], 40 + i);
                last[i] = batched.get(i).append(prompt);
                float[] first = alone.get(i).append(prompt);
                if (tol == 0) assertArrayEquals(first, last[i]);
                else assertClose(first, last[i], tol, "prompt " + i);
            }
            for (int step = 0; step < steps; step++) {
                java.util.List<Decoder> now = new java.util.ArrayList<>();
                java.util.List<Integer> which = new java.util.ArrayList<>();
                for (int i = 0; i < k; i++) {
                    if (i == 1 && step % 3 == 2) continue;
                    if (i == k - 1 && k > 2 && step < 4) continue;
                    now.add(batched.get(i));
                    which.add(i);
                }
                if (step % 2 == 1) {   // the caller's order is its own: every other step lists them backwards
                    java.util.Collections.reverse(now);
                    java.util.Collections.reverse(which);
                }
                int[] ids = new int[which.size()];
                for (int j = 0; j < ids.length; j++) ids[j] = argmax(last[which.get(j)]);
                java.util.List<float[]> out = Decoder.next(now, ids);
                for (int j = 0; j < ids.length; j++) {
                    int i = which.get(j);
                    float[] expected = alone.get(i).next(ids[j]);
                    String what = "sequence " + i + ", step " + step + " in a batch of " + ids.length;
                    if (tol == 0) assertArrayEquals(expected, out.get(j), what);
                    else assertClose(expected, out.get(j), tol, what);
                    last[i] = out.get(j);
                }
            }
            int changes = 0;
            for (int i = 0; i < k; i++) {
                assertArrayEquals(alone.get(i).tokens(), batched.get(i).tokens());
                assertEquals(alone.get(i).ropeChanges(), batched.get(i).ropeChanges());
                changes += batched.get(i).ropeChanges();
            }
            boolean graphs = (recorded == null || recorded) && t.backend().recordingPays();
            for (int i = 0; i < k; i++)
                if (graphs) assertTrue(batched.get(i).graphSteps() > 0, "sequence " + i + " stepped in recorded batches");
                else if (recorded != null && !recorded) assertEquals(0, batched.get(i).graphSteps());
            if (recorded != null && recorded && k > 1) assertTrue(t.recordedBatches().size() > 0, "groups were recorded");
            return changes;
        } finally {
            for (Decoder d : batched) d.close();
            for (Decoder d : alone) d.close();
            assertEquals(0, t.recordedBatches().size(), "closed decoders leave no recorded group behind");
        }
    }

    @Test
    void batchedStepsRefuseWhatCannotStepTogether() {
        try (Transformer a = model("batch-a", 1, new DefaultRope(10000, 8), 0);
             Transformer b = model("batch-b", 1, new DefaultRope(10000, 8), 0);
             Decoder da = new Decoder(a, a.config().rope(), 4); Decoder db = new Decoder(b, b.config().rope(), 4);
             Decoder full = new Decoder(a, a.config().rope(), 2)) {
            da.append(new int[]{1});
            db.append(new int[]{2});
            full.append(new int[]{1, 2});
            assertTrue(assertThrows(IllegalArgumentException.class, () -> Decoder.next(java.util.List.of(da, db), new int[]{1, 2}))
                    .getMessage().contains("different models"));
            assertTrue(assertThrows(IllegalArgumentException.class, () -> Decoder.next(java.util.List.of(da, da), new int[]{1, 2}))
                    .getMessage().contains("twice"));
            assertTrue(assertThrows(IllegalArgumentException.class, () -> Decoder.next(java.util.List.of(da), new int[]{1, 2}))
                    .getMessage().contains("1 decoders but 2 tokens"));
            assertTrue(assertThrows(RopewayException.class, () -> Decoder.next(java.util.List.of(da, full), new int[]{1, 2}))
                    .getMessage().contains("the context is full"));
            assertTrue(assertThrows(RopewayException.class, () -> Decoder.next(java.util.List.of(da, full), new int[]{VOCAB, 2}))
                    .getMessage().contains("outside the model's vocabulary"));
            assertEquals(1, da.length(), "a refused step appends nothing");
        }
    }

    /** With several layers, re-rotation differs from a full forward only through what earlier lengths produced. */
    @Test
    void rerotationKeepsDeepLayersFromEarlierLengths() {
        E2Rope e2 = new E2Rope(10000, 8, 8, 0, 4);
        try (Transformer t = model("e2-deep", 3, e2, 0)) {
            int[] seq = randomTokens(12, 5);
            try (Decoder rerotate = new Decoder(t, e2, 20, Decoder.RopeChange.REROTATE, 4);
                 Decoder recompute = new Decoder(t, e2, 20, Decoder.RopeChange.RECOMPUTE, 4)) {
                rerotate.append(Arrays.copyOf(seq, 8));
                recompute.append(Arrays.copyOf(seq, 8));
                float[] a = rerotate.append(Arrays.copyOfRange(seq, 8, 12)), b = recompute.append(Arrays.copyOfRange(seq, 8, 12));
                assertClose(fullForwardLast(t, e2, seq), b, 1e-4, "recompute");
                double diff = 0;
                for (int i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
                assertTrue(diff > 1e-5, "re-rotation keeps the values of g = 1: the logits must differ, max diff " + diff);
                assertEquals(1, rerotate.ropeChanges());
            }
        }
    }

    /** A prompt appended in one call is planned at its whole length however it is chunked; rows stream in order. */
    @Test
    void chunkedPrefillStreamsEveryRowLikeOneForward() {
        E2Rope e2 = new E2Rope(10000, 8, 8, 0, 4);
        try (Transformer t = model("e2-prefill", 2, e2, 0)) {
            int[] seq = randomTokens(30, 9);
            float[] expected = new Scorer(t).score(TokenBatch.of(seq, 1, seq.length), e2, true).logits();
            float[] got = new float[expected.length];
            long[] next = {0};
            try (Decoder d = new Decoder(t, e2, 30, Decoder.RopeChange.REROTATE, 7)) {
                d.append(seq, (first, rows, logits) -> {
                    assertEquals(next[0], first, "rows arrive in order");
                    backend.download(logits, 0, got, (int) first * VOCAB, rows * VOCAB);
                    next[0] += rows;
                });
                assertEquals(30, next[0]);
                assertEquals(0, d.ropeChanges());
            }
            assertClose(expected, got, 1e-4, "prefill");
        }
    }

    /**
     * One-token appends run as a recorded step (token, position and frequencies read from a DecodeStep when the ops
     * run): the logits equal op-by-op steps exactly, with re-rotated raw keys, frequencies that change at every step
     * (dynamic NTK), a window and YaRN's attention scale.
     */
    @Test
    void recordedStepsEqualOpByOpSteps() {
        E2Rope e2 = new E2Rope(10000, 8, 8, 0, 4);
        try (Transformer t = model("e2-recorded", 2, e2, 0)) {
            assertEquals(3, compareRecordedSteps(t, e2, 5, 24, 0.0));
            RopeScaling dynamic = t.config().ropeOrSpec("dynamic:factor=2");
            assertTrue(compareRecordedSteps(t, dynamic, 60, 10, 0.0) >= 5, "dynamic NTK's frequencies change at every step past 64");
        }
        try (Transformer t = model("window-recorded", 2, new DefaultRope(10000, 8), 6)) {
            RopeScaling yarn = t.config().ropeOrSpec("yarn:factor=4,original_max_position_embeddings=16");
            compareRecordedSteps(t, yarn, 5, 12, 0.0);
        }
    }

    /**
     * Decodes {@code steps} greedy tokens after a prompt twice, with recorded steps and op by op; the logits must agree within {@code tol} of the largest; returns the recorded decoder's RoPE changes.
     */
    static int compareRecordedSteps(Transformer t, RopeScaling rope, int prompt, int steps, double tol) {
        int[] seq = randomTokens(prompt, 11);
        try (Decoder recorded = new Decoder(t, rope, prompt + steps, Decoder.RopeChange.REROTATE, 64).recordSteps(true);
             Decoder direct = new Decoder(t, rope, prompt + steps, Decoder.RopeChange.REROTATE, 64).recordSteps(false)) {
            float[] a = recorded.append(seq), b = direct.append(seq);
            for (int step = 0; step < steps; step++) {
                if (tol == 0) assertArrayEquals(b, a, "step " + step);
                else assertClose(b, a, tol, "step " + step);
                int next = argmax(b);
                a = recorded.next(next);
                b = direct.next(next);
            }
            if (tol == 0) assertArrayEquals(b, a, "last step");
            else assertClose(b, a, tol, "last step");
            assertArrayEquals(direct.tokens(), recorded.tokens());
            assertEquals(0, direct.graphSteps());
            return recorded.ropeChanges();
        }
    }

    @Test
    void clearErrorsForFullContextAndBadTokens() {
        try (Transformer t = model("errors", 1, new DefaultRope(10000, 8), 0);
             Decoder d = new Decoder(t, t.config().rope(), 4)) {
            d.append(new int[]{1, 2, 3});
            d.next(4);
            RopewayException full = assertThrows(RopewayException.class, () -> d.next(5));
            assertTrue(full.getMessage().contains("context is full"), full.getMessage());
            RopewayException bad = assertThrows(RopewayException.class, () -> { d.reset(); d.append(new int[]{1, VOCAB}); });
            assertTrue(bad.getMessage().contains("outside the model's vocabulary"), bad.getMessage());
            assertEquals(0, d.length(), "a rejected append changes nothing");
            assertThrows(RopewayException.class, () -> Decoder.RopeChange.parse("sometimes"));
        }
    }
}
