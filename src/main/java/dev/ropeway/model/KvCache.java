package dev.ropeway.model;

import dev.ropeway.RopewayException;
import dev.ropeway.tensor.AttentionShape;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.Tensor;

/**
 * The keys and values of one sequence, per layer, in backend memory preallocated for {@code capacity} tokens and
 * indexed by long. Keys are stored rotated with the frequencies in {@link #frequencies()}; when the RoPE method's
 * frequencies depend on the length (dynamic NTK, E²-LLM's g, CLEX's t, LongRoPE), the keys before rotation are kept
 * too, so every cached key can be rotated again when the frequencies change. The backend chooses the storage
 * ({@link Backend#allocateKv}): float32, or narrower ({@link #narrow()}), in which case new rows are computed in float32
 * and copied in; and the layout ({@link #headMajor()}): row by row, or head by head (the CPU's), in which case new rows
 * are computed in float32 and stored with {@link Backend#storeKv}.
 */
public final class KvCache implements AutoCloseable {
    private final Backend backend;
    private final long capacity;
    private final int kvDim, kvHeads, headDim;
    private final Tensor[] keys, values, rawKeys;
    private final int elementBytes;
    /** Whether rows are laid out head by head ({@link Backend#kvHeadMajor}). */
    private final boolean headMajor;
    private long length;
    private float[] frequencies;

    private KvCache(Backend backend, ModelConfig config, long capacity, boolean keepRawKeys) {
        this.backend = backend;
        this.capacity = capacity;
        this.kvDim = config.kvDim();
        this.kvHeads = config.numKvHeads();
        this.headDim = config.headDim();
        this.elementBytes = backend.kvBytesPerElement();
        this.headMajor = backend.kvHeadMajor();
        int layers = config.numLayers();
        keys = new Tensor[layers];
        values = new Tensor[layers];
        rawKeys = keepRawKeys ? new Tensor[layers] : null;
        long floats = Math.multiplyExact(capacity, (long) kvDim);
        try {
            for (int l = 0; l < layers; l++) {
                keys[l] = backend.allocateKv(floats);
                values[l] = backend.allocateKv(floats);
                if (rawKeys != null) rawKeys[l] = backend.allocateKv(floats);
            }
        } catch (RuntimeException | OutOfMemoryError e) {
            close();
            throw new RopewayException("cannot allocate a KV cache of " + capacity + " tokens ("
                    + bytes(config, capacity, keepRawKeys, elementBytes) / (1 << 20) + " MiB): " + e.getMessage()
                    + "; ask for a shorter context", e);
        }
    }

    /** A cache for up to {@code capacity} tokens of a model with this config. */
    public static KvCache allocate(Backend backend, ModelConfig config, long capacity, boolean keepRawKeys) {
        if (capacity <= 0) throw new RopewayException("a KV cache needs a positive capacity, got " + capacity);
        return new KvCache(backend, config, capacity, keepRawKeys);
    }

    /** Bytes a cache of {@code capacity} tokens takes with {@code elementBytes} per element ({@link Backend#kvBytesPerElement}). */
    public static long bytes(ModelConfig config, long capacity, boolean keepRawKeys, int elementBytes) {
        return capacity * config.kvDim() * (long) elementBytes * config.numLayers() * (keepRawKeys ? 3 : 2);
    }

    /** Bytes this cache takes. */
    public long bytes() {
        return capacity * kvDim * (long) elementBytes * keys.length * (rawKeys != null ? 3 : 2);
    }

    /** Whether the cache stores keys and values narrower than float32 (written only by copying float32 rows in). */
    public boolean narrow() {
        return elementBytes < Float.BYTES;
    }

    /**
     * Whether each layer's keys and values are laid out head by head ({@code [kvHeads][capacity][headDim]}, the CPU
     * backend's) rather than row by row; new rows then reach the cache only through {@link Backend#storeKv}.
     */
    public boolean headMajor() { return headMajor; }

    /** {@code shape} (an attention over this cache) in this cache's layout. */
    AttentionShape layout(AttentionShape shape) {
        return shape.withKvHeadMajor(headMajor);
    }

    public long capacity() { return capacity; }

    /** Tokens cached. */
    public long length() { return length; }

    public boolean keepsRawKeys() { return rawKeys != null; }

    /** The inverse frequencies the cached keys are rotated with (null while empty). */
    float[] frequencies() { return frequencies; }

    void setLength(long length, float[] frequencies) {
        if (length < 0 || length > capacity) throw new IllegalArgumentException("length " + length + " outside [0, " + capacity + "]");
        this.length = length;
        this.frequencies = length == 0 ? null : frequencies;
    }

    Tensor keys(int layer) { return keys[layer]; }

    Tensor values(int layer) { return values[layer]; }

    Tensor rawKeys(int layer) { return rawKeys == null ? null : rawKeys[layer]; }

    /** Rows [from, from + rows) of a layer's tensor, as a view: of a cache laid out row by row only. */
    Tensor rows(Tensor t, long from, long rows) {
        if (headMajor) throw new IllegalStateException("rows of a KV cache laid out head by head are not one range");
        return backend.view(t, from * kvDim, rows * kvDim);
    }

    /**
     * Where rows [from, from + rows) of a layer's tensor lie: one range of {@code rows * kvDim} values for a cache laid
     * out row by row, else one of {@code rows * headDim} per key/value head; {@code range} gets each range's first
     * value and length.
     */
    void forEachRange(long from, long rows, java.util.function.BiConsumer<Long, Long> range) {
        if (!headMajor) {
            range.accept(from * kvDim, rows * kvDim);
            return;
        }
        for (int h = 0; h < kvHeads; h++) range.accept((h * capacity + from) * headDim, rows * headDim);
    }

    /** Copies rows [from, to) of every layer's keys, values and unrotated keys from {@code other} (one layout). */
    void copyRows(KvCache other, long from, long to) {
        if (other.headMajor != headMajor || other.kvDim != kvDim || other.keys.length != keys.length
                || (other.rawKeys == null) != (rawKeys == null))
            throw new IllegalArgumentException("KV caches of different layouts");
        if (to <= from) return;
        for (int l = 0; l < keys.length; l++) {
            Tensor[] dst = {keys[l], values[l], rawKeys == null ? null : rawKeys[l]};
            Tensor[] src = {other.keys[l], other.values[l], rawKeys == null ? null : other.rawKeys[l]};
            for (int i = 0; i < dst.length; i++) {
                if (dst[i] == null) continue;
                Tensor d = dst[i], s = src[i];
                if (!headMajor) backend.copy(d, from * kvDim, s, from * kvDim, (to - from) * kvDim);
                else for (int h = 0; h < kvHeads; h++)
                    backend.copy(d, (h * capacity + from) * headDim, s, (h * other.capacity + from) * headDim, (to - from) * headDim);
            }
        }
    }

    /** Forgets every cached token; the memory is kept for the next sequence. */
    public void clear() {
        setLength(0, null);
    }

    @Override
    public void close() {
        for (Tensor[] ts : new Tensor[][]{keys, values, rawKeys})
            if (ts != null)
                for (Tensor t : ts) if (t != null) t.close();
    }
}
