package dev.ropeway.tensor;

import jdk.incubator.vector.FloatVector;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.Arrays;

import static dev.ropeway.tensor.VectorMath.F;
import static dev.ropeway.tensor.VectorMath.LANES;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/**
 * One thread's attention scratch: query tiles of one sequence that share every key and value tile copied in, plus
 * that copy and the score tile. All of it is O(tiles x tile) and reused from call to call.
 *
 * <p>Two ways to fill it. Prefill: up to {@link #MAX_TILES} consecutive tiles of one key/value head. Copying a
 * 64-row key and value tile out of the strided, mostly cache-cold KV buffers costs about 6 ns per row, measured as a
 * quarter of the time when each query tile made its own copy. Decode: one tile per key/value head, so the copy
 * reads whole KV rows, one contiguous stream, instead of a 1/kvHeads slice of every row once per head (measured:
 * 11 GB/s for the slices against 28 GB/s contiguous on one thread).
 */
final class AttentionWorkspace {
    static final int KEYS = 64;
    static final int MAX_TILES = 8;
    /** Floats of keys (and of values) copied per key tile at most: fewer keys per tile when rows are wide. */
    private static final int TILE_FLOATS = KEYS * 1024;
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();

    private int width = -1, dim = -1;
    private QueryTile[] tiles = new QueryTile[0];
    private float[] sT, keys = new float[0], values = new float[0], sums;
    private int count, batchIndex;

    AttentionWorkspace prepare(int width, int dim) {
        if (width != this.width || dim != this.dim) {
            this.width = width;
            this.dim = dim;
            tiles = new QueryTile[0];
            sT = new float[KEYS * width];
            sums = new float[width];
        }
        return this;
    }

    private QueryTile slot(int i) {
        if (i >= tiles.length) {
            int old = tiles.length;
            tiles = Arrays.copyOf(tiles, Math.max(i + 1, 2 * old));
            for (int j = old; j < tiles.length; j++) tiles[j] = new QueryTile(width, dim);
        }
        return tiles[i];
    }

    /** Prefill: up to {@code count} consecutive tiles of key/value head {@code kvHead} from {@code firstLane}. */
    void beginConsecutive(AttentionGeometry g, int batchIndex, int kvHead, long firstLane, int count) {
        this.batchIndex = batchIndex;
        long lanesLeft = g.lanesPerKvHead() - firstLane;
        this.count = 0;
        for (int i = 0; i < count && lanesLeft > 0; i++, lanesLeft -= width) {
            slot(i).begin(g, batchIndex, kvHead, firstLane + (long) i * width, (int) Math.min(width, lanesLeft));
            this.count++;
        }
    }

    /** Decode: the single tile of every key/value head of sequence {@code batchIndex}, in head order. */
    void beginAllHeads(AttentionGeometry g, int batchIndex) {
        this.batchIndex = batchIndex;
        this.count = g.kvHeads();
        for (int h = 0; h < count; h++) slot(h).begin(g, batchIndex, h, 0, (int) g.lanesPerKvHead());
    }

    QueryTile tile(int i) {
        return tiles[i];
    }

    /** The last position of any tile: no key after it is needed. */
    int lastPosition() {
        int last = 0;
        for (int i = 0; i < count; i++) last = Math.max(last, tiles[i].lastPosition());
        return last;
    }

    /** The first key any tile needs, rounded down to a key-tile boundary (0 without a sliding window). */
    long firstNeededKey(AttentionGeometry g) {
        long first = Long.MAX_VALUE;
        for (int i = 0; i < count; i++) first = Math.min(first, g.shape().firstVisibleKey(tiles[i].firstPosition()));
        int step = keysPerTile(tiles[count - 1].kvHead() - tiles[0].kvHead() + 1);
        return first / step * step;
    }

    /** Keys per key tile: {@link #KEYS}, or fewer (a multiple of 4) when a copied row is wider than 1024 floats. */
    int keysPerTile(int kvHeadsCovered) {
        return Math.min(KEYS, Math.max(4, TILE_FLOATS / (kvHeadsCovered * dim) & -4));
    }

    /**
     * Runs the keys {@code [keyFrom, keyTo)} ({@code keyFrom} a multiple of {@link #keysPerTile}) through every
     * query tile, each only up to its own last position; a key tile is masked only for a query tile whose first
     * position it passes. The copy covers the key/value heads from the first tile's to the last tile's.
     */
    void attend(AttentionGeometry g, long keyFrom, long keyTo) {
        int firstHead = tiles[0].kvHead(), heads = tiles[count - 1].kvHead() - firstHead + 1;
        int cols = heads * dim, step = keysPerTile(heads);
        // Rows a multiple of 4 KB apart would all fall in the same few L1 sets and evict each other (measured: the
        // decode kernels ran at half speed on 8 heads x 128 floats); a 64-byte pad spreads them.
        int ld = cols % 1024 == 0 ? cols + 16 : cols;
        if (keys.length < step * ld) {
            keys = new float[step * ld];
            values = new float[step * ld];
        }
        long strideBytes = g.kvStrideBytes();
        // Row by row, the heads' slices of a key are side by side and copied as one; head by head, one at a time.
        boolean headMajor = g.shape().kvHeadMajor();
        int copies = headMajor ? heads : 1, copyCols = headMajor ? dim : cols;
        for (long k0 = keyFrom; k0 < keyTo; k0 += step) {
            int nk = (int) Math.min(step, keyTo - k0);
            for (int c = 0; c < copies; c++) {
                long from = g.kvHeadBytes(batchIndex, firstHead + c) + k0 * strideBytes;
                if (g.kvType() == DType.F32) gather(g.k(), g.v(), from, strideBytes, nk, copyCols, ld, keys, values, c * dim);
                else gatherBf16(g.k(), g.v(), from, strideBytes, nk, copyCols, ld, keys, values, c * dim);
            }
            for (int i = 0; i < count; i++) {
                QueryTile t = tiles[i];
                int n = (int) Math.min(nk, t.lastPosition() + 1L - k0);
                if (n <= 0) continue;
                // With a sliding window, key tiles older than every lane's window are skipped, and a tile that
                // reaches below the last lane's window is masked.
                if (k0 + n - 1 < g.shape().firstVisibleKey(t.firstPosition())) continue;
                int col = (t.kvHead() - firstHead) * dim;
                AttentionKernels.scores(width, t.qT, keys, col, ld, sT, t.max, n, dim);
                boolean masked = k0 + n - 1 > t.firstPosition() || k0 < g.shape().firstVisibleKey(t.lastPosition());
                AttentionKernels.softmaxStep(width, sT, n, t.max, t.m, t.l, t.alpha, sums, masked, t.pos, (int) k0,
                        (int) Math.min(Integer.MAX_VALUE, g.window()));
                AttentionKernels.accumulate(width, sT, values, col, ld, t.oT, t.alpha, n, dim);
            }
        }
    }

    /** Writes every tile's output. */
    void finish(AttentionGeometry g) {
        for (int i = 0; i < count; i++) tiles[i].finish(g);
    }

    /**
     * Copies {@code rows} rows of {@code cols} floats, {@code strideBytes} apart, from both {@code k} and {@code v}
     * into arrays with rows {@code ld} floats apart from column {@code col}, with vector moves: {@link MemorySegment#copy} spends tens of
     * nanoseconds of checks per call, too much for 64-float rows.
     */
    private static void gather(MemorySegment k, MemorySegment v, long offset, long strideBytes, int rows, int cols,
                               int ld, float[] keys, float[] values, int col) {
        int bound = F.loopBound(cols);
        for (int j = 0, o = col; j < rows; j++, o += ld, offset += strideBytes) {
            int d = 0;
            for (; d < bound; d += LANES) {
                FloatVector.fromMemorySegment(F, k, offset + d * 4L, NATIVE).intoArray(keys, o + d);
                FloatVector.fromMemorySegment(F, v, offset + d * 4L, NATIVE).intoArray(values, o + d);
            }
            for (; d < cols; d++) {
                keys[o + d] = k.get(JAVA_FLOAT, offset + d * 4L);
                values[o + d] = v.get(JAVA_FLOAT, offset + d * 4L);
            }
        }
    }

    /** {@link #gather} from a bfloat16 cache, widening each row as it is copied. */
    private static void gatherBf16(MemorySegment k, MemorySegment v, long offset, long strideBytes, int rows, int cols,
                                   int ld, float[] keys, float[] values, int col) {
        for (int j = 0, o = col; j < rows; j++, o += ld, offset += strideBytes) {
            Bf16Rows.widen(k, offset, keys, o, cols);
            Bf16Rows.widen(v, offset, values, o, cols);
        }
    }
}
