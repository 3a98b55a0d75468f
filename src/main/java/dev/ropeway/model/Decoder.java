package dev.ropeway.model;

import dev.ropeway.RopewayException;
import dev.ropeway.rope.RopePlan;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.tensor.AttentionShape;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.DecodeStep;
import dev.ropeway.tensor.Recording;
import dev.ropeway.tensor.RotaryTable;
import dev.ropeway.tensor.Tensor;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * One sequence's incremental forward pass over a {@link KvCache}: tokens are appended in chunks (a prompt's prefill)
 * or one at a time (generation), and each append returns the logits of what it appended.
 *
 * <p>RoPE follows the method as the sequence grows: every append plans with the total length S = cached + new tokens,
 * so dynamic NTK, E²-LLM's g = ceil(S / L0) and CLEX's t = min(ceil(S / L0), T) take the value a whole-sequence forward
 * of S tokens would use. When that changes the frequencies, the cached keys follow the {@link RopeChange} policy:
 * {@link RopeChange#REROTATE} rotates every cached key again from its unrotated copy (CLEX's reference inference,
 * O(S) per change; values and deeper layers' keys keep what earlier lengths produced), {@link RopeChange#RECOMPUTE}
 * runs the whole prefix again at the new length (exactly a whole-sequence forward, O(S) forward work per change).
 *
 * <p>The attention scale of a plan (YaRN's mscale, CLEX's log scale) multiplies both q and k in a whole-sequence
 * forward; here queries carry its square and keys none, the same logits, so a scale that follows S never forces keys
 * to be rotated again.
 */
public final class Decoder implements AutoCloseable {

    /** What happens to cached keys when the RoPE frequencies change as the sequence grows. */
    public enum RopeChange {
        /** Rotate every cached key again with the new frequencies (CLEX reference semantics). */
        REROTATE,
        /** Recompute the whole cached prefix with the new frequencies (equal to a full forward). */
        RECOMPUTE;

        public static RopeChange parse(String s) {
            return switch (s.toLowerCase(java.util.Locale.ROOT)) {
                case "rerotate" -> REROTATE;
                case "recompute" -> RECOMPUTE;
                default -> throw new RopewayException("unknown RoPE-change policy '" + s + "' (rerotate or recompute)");
            };
        }
    }

    private final Transformer model;
    private final Backend backend;
    private final ModelConfig config;
    private final RopeScaling rope;
    private final RopeChange policy;
    private final int chunk;
    private final KvCache cache;
    private final int[] tokens;
    private int ropeChanges;
    /**
     * Whether every cached row came from forwards planned with the cache's frequencies (no re-rotation since the
     * sequence started): then the rows are what one fresh prefill at a length with those frequencies computes.
     */
    private boolean oneFrequency;
    /** Whether the RoPE frequencies are the same at every length up to the capacity (cached rows never change). */
    private final boolean fixedFrequencies;
    /**
     * The length as last set by the thread appending to this decoder, published for others ({@link #settledPrefix}):
     * the rows and tokens below it were written before it was.
     */
    private volatile long published;
    private boolean recordSteps;
    private StepGraph stepGraph;
    private long recordedSteps;
    /** Creation order: a recorded batched step lists its decoders in it. */
    private final long id = IDS.getAndIncrement();
    private static final java.util.concurrent.atomic.AtomicLong IDS = new java.util.concurrent.atomic.AtomicLong();

    /**
     * A decoder for sequences of up to {@code capacity} tokens with the given RoPE method, policy and prefill chunk size.
     */
    public Decoder(Transformer model, RopeScaling rope, long capacity, RopeChange policy, int chunk) {
        if (capacity <= 0 || capacity > Integer.MAX_VALUE - 8)
            throw new RopewayException("context capacity must be in [1, " + (Integer.MAX_VALUE - 8) + "], got " + capacity);
        if (chunk <= 0) throw new RopewayException("prefill chunk must be positive, got " + chunk);
        this.model = model;
        this.backend = model.backend();
        this.config = model.config();
        this.rope = rope;
        this.policy = policy;
        this.chunk = chunk;
        this.fixedFrequencies = !lengthDependent(rope, capacity);
        boolean raw = policy == RopeChange.REROTATE && !fixedFrequencies;
        this.cache = KvCache.allocate(backend, config, capacity, raw);
        this.tokens = new int[(int) capacity];
        this.recordSteps = backend.recordingPays();
    }

    /** As above, rotating cached keys again when the frequencies change, in the backend's prefill chunks. */
    public Decoder(Transformer model, RopeScaling rope, long capacity) {
        this(model, rope, capacity, RopeChange.REROTATE, model.backend().prefillChunk());
    }

    /** True when the frequencies for some length in [1, capacity] differ from those for length 1. */
    static boolean lengthDependent(RopeScaling rope, long capacity) {
        return !Arrays.equals(rope.inverseFrequencies(1), rope.inverseFrequencies(capacity));
    }

    public ModelConfig config() { return config; }

    public RopeScaling rope() { return rope; }

    /** Where the cache lives and the model computes (logits given to a {@link LogitsSink} are its tensors). */
    public Backend backend() { return backend; }

    /** Tokens in the sequence so far. */
    public long length() { return cache.length(); }

    public long capacity() { return cache.capacity(); }

    /** The sequence so far. */
    public int[] tokens() { return Arrays.copyOf(tokens, (int) cache.length()); }

    /**
     * Whether one-token appends run as a recorded step ({@link Backend#record}: on a GPU one graph launch per token
     * instead of a couple of hundred kernel launches); by default where the backend says recording pays (a GPU), not on
     * the CPU, where a recorded step only runs its ops again. The logits are the same either way up to the order of the
     * attention's partial sums.
     */
    public Decoder recordSteps(boolean on) {
        this.recordSteps = on;
        if (!on && stepGraph != null) {
            stepGraph.close();
            stepGraph = null;
        }
        return this;
    }

    /** How many one-token appends ran as a replayed graph (a GPU's recorded step). */
    public long graphSteps() {
        return recordedSteps;
    }

    /** How many times a frequency change re-rotated or recomputed the cache. */
    public int ropeChanges() { return ropeChanges; }

    /**
     * Keeps only the first {@code n} tokens (a shared prompt prefix, or an undo). The cached keys stay rotated for the
     * length they were last planned at; the next append re-plans at its own length as usual.
     */
    public void truncate(long n) {
        if (n < 0 || n > cache.length()) throw new RopewayException("cannot truncate " + cache.length() + " tokens to " + n);
        lengthIs(n, cache.frequencies());
    }

    /**
     * How many leading tokens of {@code ids} can stay cached when this decoder goes on to {@code ids}: the longest
     * prefix its sequence shares with them, leaving at least one token of {@code ids} to append (for the logits that
     * follow). Kept rows are what a fresh prefill of {@code ids} computes, up to the order of floating-point sums, when
     * the rest is appended in one {@link #append} after {@link #truncate} to them (a chat's next turn, a shared system
     * prompt). Where cached keys are rotated again as the frequencies follow the length (E²-LLM, CLEX, dynamic NTK under
     * {@link RopeChange#REROTATE}), values and deeper layers keep what the lengths they were computed at gave, so
     * rows are kept only while every one of them was computed with the frequencies that {@code ids.length} tokens get
     * (a sequence that stayed within one of E²'s g or CLEX's t steps); otherwise 0.
     */
    public int reusablePrefix(int[] ids) {
        if (cache.keepsRawKeys() && !(oneFrequency && Arrays.equals(cache.frequencies(), rope.inverseFrequencies(ids.length))))
            return 0;
        int n = (int) Math.min(cache.length(), ids.length - 1L), i = 0;
        while (i < n && tokens[i] == ids[i]) i++;
        return i;
    }

    /**
     * Makes this decoder hold the first {@code n} tokens of {@code other}'s sequence, their keys and values copied from
     * its cache rather than computed again (another conversation's copy of a shared system prompt or document; take
     * {@code n} from {@code other.reusablePrefix(ids)}). Afterwards this decoder is what {@code other} truncated to
     * {@code n} would be: the rows a fresh prefill computes, and the frequencies they were rotated with, so the next
     * append handles a frequency change as usual. Rows this decoder already holds for the same tokens at the same
     * frequencies are kept, not copied. Both decoders must be of one model with one RoPE method, policy and cache
     * type, rows that were rotated again (see {@link #reusablePrefix}) are refused, and nothing may append to
     * {@code other} during the call.
     */
    public void copyPrefix(Decoder other, int n) {
        if (other == this) {
            truncate(n);
            return;
        }
        checkCopyable(other);
        if (other.cache.keepsRawKeys() != cache.keepsRawKeys())
            throw new RopewayException("a cached prefix is copied only between caches of one layout (these keep "
                    + (cache.keepsRawKeys() ? "unrotated keys and the other does not" : "no unrotated keys and the other does") + ")");
        if (other.cache.keepsRawKeys() && !other.oneFrequency)
            throw new RopewayException("cached rows that depend on the lengths they were computed at (keys rotated again "
                    + "as the RoPE frequencies followed the length) cannot be copied to another sequence");
        if (n < 0 || n > other.length() || n > capacity())
            throw new RopewayException("cannot copy " + n + " tokens of a sequence of " + other.length()
                    + " into a cache of " + capacity());
        copyRows(other, n, other.cache.frequencies(), other.oneFrequency);
    }

    /**
     * Whether rows stay as they were appended while the sequence grows (RoPE whose frequencies do not follow the
     * length): only then are rows copied from a sequence still growing ({@link #settledPrefix}).
     */
    public boolean settles() {
        return fixedFrequencies;
    }

    /**
     * For another thread, while this decoder's own thread may be appending to it: how many leading tokens of {@code ids}
     * it holds in rows that no longer change, capped as {@link #reusablePrefix} is. Only where the RoPE frequencies do
     * not depend on the length (0 otherwise: a frequency change rewrites cached rows), and only while nothing truncates
     * or resets this decoder meanwhile (appending is fine): rows and tokens below the length its thread last published
     * were written before it, and are never written again while the sequence only grows.
     */
    public int settledPrefix(int[] ids) {
        if (!fixedFrequencies) return 0;
        int n = (int) Math.min(published, ids.length - 1L), i = 0;
        while (i < n && tokens[i] == ids[i]) i++;
        return i;
    }

    /**
     * {@link #copyPrefix} from a decoder that its own thread may be appending to meanwhile (another slot still
     * generating): {@code n} at most its {@link #settledPrefix}, under the same conditions (length-independent RoPE,
     * no truncation or reset of {@code other} during the call).
     */
    public void copySettledPrefix(Decoder other, int n) {
        if (other == this) throw new IllegalArgumentException("a decoder copies its own prefix with truncate");
        checkCopyable(other);
        if (!other.fixedFrequencies || !fixedFrequencies)
            throw new RopewayException("rows of a sequence still growing are copied only where the RoPE frequencies do not "
                    + "depend on the length");
        if (n < 0 || n > other.published || n > capacity())
            throw new RopewayException("cannot copy " + n + " tokens of a sequence of " + other.published
                    + " into a cache of " + capacity());
        copyRows(other, n, rope.inverseFrequencies(Math.max(1, n)), true);
    }

    private void checkCopyable(Decoder other) {
        if (other.model != model || !other.rope.equals(rope) || other.policy != policy)
            throw new RopewayException("a cached prefix is copied only between decoders of one model, RoPE method and policy");
    }

    /** Rows [0, n) from {@code other}, made with {@code freq}; the ones this decoder holds already for the same tokens kept. */
    private void copyRows(Decoder other, int n, float[] freq, boolean otherOneFrequency) {
        int same = 0;
        if (Arrays.equals(freq, cache.frequencies())) {
            int m = (int) Math.min(length(), n);
            while (same < m && tokens[same] == other.tokens[same]) same++;
        }
        cache.copyRows(other.cache, same, n);
        System.arraycopy(other.tokens, same, tokens, same, n - same);
        oneFrequency = otherOneFrequency && (same == 0 || oneFrequency);
        lengthIs(n, freq);
    }

    /** Starts a new sequence (keeps the memory). */
    public void reset() {
        lengthIs(0, null);
    }

    /** Appends one token; returns the logits for the token after it. */
    public float[] next(int token) {
        return append(new int[]{token});
    }

    /** Appends tokens (in chunks); returns the logits that follow the last one. */
    public float[] append(int[] ids) {
        if (ids.length == 0) throw new RopewayException("nothing to append");
        float[] last = new float[config.vocabSize()];
        append(ids, null, last);
        return last;
    }

    /**
     * Appends tokens in chunks, streaming every appended row's logits to {@code sink} (row numbers count from the first
     * appended token).
     */
    public void append(int[] ids, LogitsSink sink) {
        if (ids.length == 0) throw new RopewayException("nothing to append");
        append(ids, sink, null);
    }

    /**
     * One append is one forward of the model, as a Hugging Face call with a KV cache is: every chunk of it is planned
     * at the total length after the append, so a prompt prefilled in chunks gets the RoPE a whole-prompt forward gets.
     */
    private void append(int[] ids, LogitsSink sink, float[] last) {
        checkTokens(ids);
        long s = prepare(ids.length);
        for (int from = 0; from < ids.length; from += chunk) {
            int n = Math.min(chunk, ids.length - from);
            int base = from;
            LogitsSink shifted = sink == null ? null : (first, rows, logits) -> sink.accept(base + first, rows, logits);
            run(Arrays.copyOfRange(ids, from, from + n), s, shifted, from + n == ids.length ? last : null);
            // On a GPU, each chunk is finished before the next is issued: a long prompt then queues at most one chunk
            // of work ahead of other sequences' decode steps on the device (serve's slots), instead of all of it.
            if (from + n < ids.length) backend.synchronize();
        }
    }

    /**
     * Before appending {@code n} tokens: checks that they fit, and when the frequencies at the new length differ from
     * the cached keys', re-rotates or recomputes the cache (the policy). Returns the new length.
     */
    private long prepare(int n) {
        long p = cache.length(), s = p + n;
        if (s > cache.capacity())
            throw new RopewayException("the context is full: " + p + " tokens cached + " + n
                    + " new exceed its capacity of " + cache.capacity() + " tokens");
        float[] freq = rope.inverseFrequencies(s);
        if (p > 0 && !Arrays.equals(freq, cache.frequencies())) {
            ropeChanges++;
            if (policy == RopeChange.RECOMPUTE) {
                int[] prefix = Arrays.copyOf(tokens, (int) p);
                lengthIs(0, null);
                for (int from = 0; from < prefix.length; from += chunk)
                    run(Arrays.copyOfRange(prefix, from, Math.min(prefix.length, from + chunk)), s, null, null);
            } else {
                rerotate(p, freq);
            }
        }
        return s;
    }

    /**
     * Appends one token to each of several sequences at once ({@code ids[i]} to {@code decoders.get(i)}, decoders of one
     * model, each at most once) and returns each one's logits for the token after it. Each sequence keeps its own
     * cache, RoPE (planned at its own length, its frequency changes handled by its own policy) and attention; the
     * matrix products run once over all the rows, so a step of several sequences reads the weights once. The logits
     * are those of {@link #next} on each decoder up to the order of the products' sums (on the CPU, bit for bit up to
     * four sequences). One decoder alone takes {@link #next} (and its recorded step). When every decoder records its
     * steps ({@link #recordSteps}, a GPU's default), the batched step is recorded too, once per group of decoders that
     * step together, and replayed while the same group steps again.
     */
    public static List<float[]> next(List<Decoder> decoders, int[] ids) {
        if (decoders.size() != ids.length)
            throw new IllegalArgumentException(decoders.size() + " decoders but " + ids.length + " tokens");
        if (decoders.isEmpty()) return List.of();
        if (decoders.size() == 1) return List.of(decoders.get(0).next(ids[0]));
        Decoder first = decoders.get(0);
        Transformer model = first.model;
        Backend backend = first.backend;
        ModelConfig c = first.config;
        java.util.Set<Decoder> seen = java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
        for (int i = 0; i < ids.length; i++) {
            Decoder d = decoders.get(i);
            if (d.model != model) throw new IllegalArgumentException("decoders of different models cannot step together");
            if (!seen.add(d)) throw new IllegalArgumentException("a decoder appears twice in one step");
            d.checkTokens(new int[]{ids[i]});
        }
        for (Decoder d : decoders) d.prepare(1);
        if (decoders.stream().allMatch(d -> d.recordSteps && d.cache.length() < 1L << 24))
            return model.recordedBatches().step(decoders, ids);
        int k = ids.length, h = c.hiddenSize();
        List<Transformer.SequenceRow> rows = new ArrayList<>(k);
        float[][] plans = new float[k][];
        List<float[]> out = new ArrayList<>(k);
        try (Owned made = new Owned("a batched decode step"); Tensor x = backend.allocate((long) k * h)) {
            for (int i = 0; i < k; i++) {
                Decoder d = decoders.get(i);
                KvCache cache = d.cache;
                long p = cache.length();
                RopePlan plan = d.nextPlan();
                float scale = plan.attentionScale();
                plans[i] = plan.invFreq();
                RotaryTable queries = made.add(backend.rotaryTable(plan.positions(), plan.invFreq(), scale * scale));
                RotaryTable keys = scale == 1f ? queries : made.add(backend.rotaryTable(plan.positions(), plan.invFreq(), 1f));
                rows.add(new Transformer.SequenceRow(queries, keys, d.attentionShape(p, 1), l -> new Transformer.LayerKv(
                        cache.keys(l), cache.values(l), cache.keepsRawKeys() ? cache.rawKeys(l) : null,
                        cache.keys(l), cache.values(l), null)));
            }
            backend.embedding(x, model.weights().embedding(), ids, h);
            model.layers(x, rows);
            model.finalNorm(x, x, k);
            int vocab = c.vocabSize();
            for (int i = 0; i < k; i++) out.add(new float[vocab]);
            model.emitLogits(x, 0, k, (from, n, logits) -> {
                for (int r = 0; r < n; r++) backend.download(logits, (long) r * vocab, out.get((int) from + r), 0, vocab);
            });
            for (int i = 0; i < k; i++) decoders.get(i).stepped(ids[i], plans[i], false);
        }
        return out;
    }

    /** The RoPE plan of one token appended after the cached ones (planned at the length with it). */
    RopePlan nextPlan() {
        long p = cache.length();
        return rope.plan(positions(p, 1), p + 1);
    }

    long id() { return id; }

    KvCache cache() { return cache; }

    /** After a recorded batched step appended {@code token} with frequencies {@code freq}. */
    void stepped(int token, float[] freq, boolean asGraph) {
        long p = cache.length();
        tokens[(int) p] = token;
        appended(p, freq);
        lengthIs(p + 1, freq);
        if (asGraph) recordedSteps++;
    }

    /** Attention of {@code n} new tokens after {@code p} cached ones, over this decoder's cache. */
    AttentionShape attentionShape(long p, int n) {
        return cache.layout(new AttentionShape(1, n, p + n, cache.capacity(), p, config.numHeads(), config.numKvHeads(),
                config.headDim(), (float) (1.0 / Math.sqrt(config.headDim()))).withWindow(config.slidingWindow()));
    }

    private void checkTokens(int[] ids) {
        for (int i = 0; i < ids.length; i++)
            if (ids[i] < 0 || ids[i] >= config.vocabSize())
                throw new RopewayException("token id " + ids[i] + " (appended token " + i + ") is outside the model's vocabulary [0, "
                        + config.vocabSize() + ")");
    }

    /** Sets the cached length (and the frequencies of its rows) and publishes it. */
    private void lengthIs(long n, float[] freq) {
        cache.setLength(n, freq);
        published = n;
    }

    /** Rows computed with {@code freq} appended after {@code p} cached ones. */
    private void appended(long p, float[] freq) {
        oneFrequency = p == 0 || (oneFrequency && Arrays.equals(freq, cache.frequencies()));
    }

    /** Rotates the first {@code p} cached keys of every layer again, from their unrotated copies. */
    private void rerotate(long p, float[] freq) {
        if (!cache.keepsRawKeys())
            throw new IllegalStateException("frequencies changed but the cache keeps no unrotated keys");
        oneFrequency = false;
        if (!cache.narrow()) {
            // Row by row, one range of p rows of every head; head by head, a range of p rows of one head each.
            int heads = cache.headMajor() ? 1 : config.numKvHeads();
            try (RotaryTable table = backend.rotaryTable(positions(0, p), freq, 1f)) {
                for (int l = 0; l < config.numLayers(); l++) {
                    Tensor keys = cache.keys(l), raw = cache.rawKeys(l);
                    cache.forEachRange(0, p, (at, length) -> {
                        Tensor range = backend.view(keys, at, length);
                        backend.copy(range, 0, raw, at, length);
                        backend.rotary(range, table, p, heads, config.headDim());
                    });
                }
            }
        } else {
            // A narrow cache is rotated in float32, a block of rows at a time (of every head, or of one head at a time
            // head by head), and rounded once on the way back.
            int width = cache.headMajor() ? config.headDim() : config.kvDim(), heads = cache.headMajor() ? 1 : config.numKvHeads();
            long block = Math.max(1, Math.min(p, backend.blockFloats() / width / 4));
            try (Tensor wide = backend.allocate(block * width)) {
                for (long from = 0; from < p; from += block) {
                    long n = Math.min(block, p - from);
                    try (RotaryTable table = backend.rotaryTable(positions(from, (int) n), freq, 1f)) {
                        for (int l = 0; l < config.numLayers(); l++) {
                            Tensor keys = cache.keys(l), raw = cache.rawKeys(l);
                            cache.forEachRange(from, n, (at, length) -> {
                                backend.copy(wide, 0, raw, at, length);
                                backend.rotary(wide, table, n, heads, config.headDim());
                                backend.copy(keys, at, wide, 0, length);
                            });
                        }
                    }
                }
            }
        }
        lengthIs(p, freq);
    }

    /** Runs {@code ids} after the cached tokens, with RoPE planned for a sequence of {@code ropeLength} tokens. */
    private void run(int[] ids, long ropeLength, LogitsSink sink, float[] last) {
        // A step's position travels as a float32 too (the rotary table's input): exact below 2^24.
        if (ids.length == 1 && sink == null && last != null && recordSteps && cache.length() < 1L << 24) {
            step(ids[0], ropeLength, last);
            return;
        }
        long p = cache.length();
        int n = ids.length, h = config.hiddenSize();
        float[] pos = positions(p, n);
        RopePlan plan = rope.plan(pos, ropeLength);
        float scale = plan.attentionScale();
        AttentionShape shape = attentionShape(p, n);
        long kvFloats = (long) n * config.kvDim();
        // New rows are computed into the cache's own rows where it is float32 and row by row; otherwise into float32
        // scratch, stored after rotation (rounded, or laid out head by head).
        boolean scratch = cache.narrow() || cache.headMajor();
        try (Tensor x = backend.allocate((long) n * h);
             RotaryTable queries = backend.rotaryTable(pos, plan.invFreq(), scale * scale);
             RotaryTable keys = scale == 1f ? null : backend.rotaryTable(pos, plan.invFreq(), 1f);
             Tensor newKeys = scratch ? backend.allocate(kvFloats) : null;
             Tensor newValues = scratch ? backend.allocate(kvFloats) : null;
             Tensor newRaw = scratch && cache.keepsRawKeys() ? backend.allocate(kvFloats) : null) {
            backend.embedding(x, model.weights().embedding(), ids, h);
            model.layers(x, n, shape, queries, keys == null ? queries : keys, l -> scratch
                    ? new Transformer.LayerKv(newKeys, newValues, newRaw, cache.keys(l), cache.values(l),
                            new Transformer.LayerKv(null, null, cache.keepsRawKeys() ? cache.rawKeys(l) : null,
                                    cache.keys(l), cache.values(l), null))
                    : new Transformer.LayerKv(cache.rows(cache.keys(l), p, n), cache.rows(cache.values(l), p, n),
                            cache.keepsRawKeys() ? cache.rows(cache.rawKeys(l), p, n) : null, cache.keys(l), cache.values(l), null));
            System.arraycopy(ids, 0, tokens, (int) p, n);
            appended(p, plan.invFreq());
            lengthIs(p + n, plan.invFreq());
            if (sink != null) {
                model.finalNorm(x, x, n);
                model.emitLogits(x, 0, n, sink);
            }
            if (last != null) {
                Tensor row = backend.view(x, (long) (n - 1) * h, h);
                if (sink == null) model.finalNorm(row, row, 1);
                model.emitLogits(row, 0, 1, (first, rows, logits) -> backend.download(logits, 0, last, 0, last.length));
            }
        }
    }

    /** One token through the recorded step: its inputs set, the step replayed, its logits read back. */
    private void step(int token, long ropeLength, float[] last) {
        long p = cache.length();
        RopePlan plan = rope.plan(positions(p, 1), ropeLength);
        float scale = plan.attentionScale();
        if (stepGraph != null && stepGraph.scale != scale) {
            stepGraph.close();
            stepGraph = null;
        }
        if (stepGraph == null) stepGraph = new StepGraph(scale, plan.invFreq().length);
        StepGraph g = stepGraph;
        g.step.set(token, p, plan.invFreq());
        g.recording.replay();
        if (g.recording.replayedAsGraph()) recordedSteps++;
        tokens[(int) p] = token;
        appended(p, plan.invFreq());
        lengthIs(p + 1, plan.invFreq());
        backend.download(g.logits, 0, last, 0, last.length);
    }

    /**
     * The ops of a one-token append, recorded once per decoder (and attention scale) on fixed tensors: the token, its
     * position and the frequencies come from a {@link DecodeStep}, the new keys and values are stored at that position.
     */
    private final class StepGraph implements AutoCloseable {
        final float scale;
        final DecodeStep step;
        final Tensor x, newKeys, newValues, newRaw, logits;
        final RotaryTable queries, keys;
        final Recording recording;
        /** Everything above that this step made, closed in reverse order. */
        private final Owned made = new Owned("a recorded decode step");

        StepGraph(float scale, int half) {
            this.scale = scale;
            int h = config.hiddenSize(), kvd = config.kvDim();
            try {
                step = add(backend.decodeStep(half));
                x = add(backend.allocate(h));
                newKeys = add(backend.allocate(kvd));
                newValues = add(backend.allocate(kvd));
                newRaw = cache.keepsRawKeys() ? add(backend.allocate(kvd)) : null;
                logits = add(backend.allocate(config.vocabSize()));
                queries = new RotaryTable(add(backend.allocate(half)), add(backend.allocate(half)), 1, half);
                keys = scale == 1f ? queries : new RotaryTable(add(backend.allocate(half)), add(backend.allocate(half)), 1, half);
                // Covering the whole cache: the step's position comes from the DecodeStep when it runs.
                AttentionShape shape = attentionShape(cache.capacity() - 1, 1);
                recording = add(backend.record(() -> {
                    backend.embedding(x, model.weights().embedding(), step, h);
                    backend.rotaryTable(queries, step, scale * scale);
                    if (keys != queries) backend.rotaryTable(keys, step, 1f);
                    model.layers(x, 1, shape, queries, keys, l -> new Transformer.LayerKv(newKeys, newValues, newRaw,
                            cache.keys(l), cache.values(l), new Transformer.LayerKv(null, null,
                            cache.keepsRawKeys() ? cache.rawKeys(l) : null, cache.keys(l), cache.values(l), null)), step);
                    model.finalNorm(x, x, 1);
                    model.logits(x, 1, logits);
                }));
            } catch (RuntimeException | Error e) {
                close();
                throw e;
            }
        }

        private <T extends AutoCloseable> T add(T t) {
            return made.add(t);
        }

        @Override
        public void close() {
            made.close();
        }
    }

    /** Bytes the KV cache takes. */
    public long cacheBytes() {
        return cache.bytes();
    }

    /**
     * For benchmarks: makes the sequence {@code n} random tokens long without running the model, filling every cached
     * key and value with random numbers (the cost of a decode step depends on the length, not on what is cached).
     */
    public void fillRandom(long n, long seed) {
        if (n < 0 || n > cache.capacity()) throw new RopewayException("cannot fill " + n + " of " + cache.capacity() + " tokens");
        java.util.SplittableRandom r = new java.util.SplittableRandom(seed);
        int kvd = config.kvDim();
        int blockRows = (int) Math.max(1, Math.min(n, (1 << 20) / kvd));
        float[] block = new float[blockRows * kvd];
        for (int i = 0; i < block.length; i++) block[i] = (float) r.nextGaussian();
        try (Tensor src = backend.upload(block)) {
            for (int l = 0; l < config.numLayers(); l++)
                for (Tensor t : new Tensor[]{cache.keys(l), cache.values(l), cache.rawKeys(l)})
                    if (t != null)
                        cache.forEachRange(0, n, (at, length) -> {
                            for (long i = 0; i < length; i += block.length)
                                backend.copy(t, at + i, src, 0, Math.min(block.length, length - i));
                        });
        }
        for (int i = 0; i < n; i++) tokens[i] = r.nextInt(config.vocabSize());
        oneFrequency = false;
        lengthIs(n, rope.inverseFrequencies(Math.max(1, n)));
    }

    private static float[] positions(long from, long count) {
        float[] pos = new float[(int) count];
        for (int i = 0; i < pos.length; i++) pos[i] = from + i;
        return pos;
    }

    @Override
    public void close() {
        model.recordedBatches().forget(this);
        if (stepGraph != null) stepGraph.close();
        stepGraph = null;
        cache.close();
    }
}
