package dev.ropeway.tensor;

import jdk.incubator.vector.FloatVector;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import static dev.ropeway.tensor.VectorMath.F;
import static dev.ropeway.tensor.VectorMath.LANES;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/**
 * One thread's attention scratch: up to {@link #MAX_TILES} consecutive query tiles of one sequence and key/value
 * head, which share each key and value tile copied in, plus that copy and the score tile. All of it is O(tile)
 * and reused from call to call.
 *
 * <p>Why several query tiles: copying a 64-row key and value tile out of the strided, mostly cache-cold KV buffers
 * costs about 6 ns per row; with one query tile per copy that was a quarter of the attention time (measured).
 */
final class AttentionWorkspace {
    static final int KEYS = 64;
    static final int MAX_TILES = 8;
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();

    private int width = -1, dim = -1;
    private QueryTile[] tiles;
    private float[] sT, keys, values, sums;
    private int count, batchIndex, kvHead;

    AttentionWorkspace prepare(int width, int dim) {
        if (width != this.width || dim != this.dim) {
            this.width = width;
            this.dim = dim;
            tiles = new QueryTile[MAX_TILES];
            for (int i = 0; i < MAX_TILES; i++) tiles[i] = new QueryTile(width, dim);
            sT = new float[KEYS * width];
            keys = new float[KEYS * dim];
            values = new float[KEYS * dim];
            sums = new float[width];
        }
        return this;
    }

    /** Loads up to {@code count} consecutive tiles of lanes from {@code firstLane} (the last may be partial). */
    void begin(AttentionGeometry g, int batchIndex, int kvHead, long firstLane, int count) {
        this.batchIndex = batchIndex;
        this.kvHead = kvHead;
        long lanesLeft = g.lanesPerKvHead() - firstLane;
        this.count = 0;
        for (int i = 0; i < count && lanesLeft > 0; i++, lanesLeft -= width) {
            tiles[i].begin(g, batchIndex, kvHead, firstLane + (long) i * width, (int) Math.min(width, lanesLeft));
            this.count++;
        }
    }

    int count() {
        return count;
    }

    QueryTile tile(int i) {
        return tiles[i];
    }

    /** Position of the last lane of the last tile: no key after it is needed. */
    int lastPosition() {
        return tiles[count - 1].lastPosition();
    }

    /**
     * Runs the key tiles from {@code keyFrom} (a multiple of {@link #KEYS}) to {@code keyTo} (exclusive) through
     * every query tile, each only up to its own last position; a key tile is masked only for a query tile whose
     * first position it passes.
     */
    void attend(AttentionGeometry g, long keyFrom, long keyTo) {
        long strideBytes = (long) g.kvHeads() * dim * Float.BYTES;
        long rowBytes = ((long) batchIndex * g.kvRowsPerBatch() * g.kvHeads() + kvHead) * dim * Float.BYTES;
        for (long k0 = keyFrom; k0 < keyTo; k0 += KEYS) {
            int nk = (int) Math.min(KEYS, keyTo - k0);
            gather(g.k(), g.v(), rowBytes + k0 * strideBytes, strideBytes, nk, dim, keys, values);
            for (int i = 0; i < count; i++) {
                QueryTile t = tiles[i];
                int n = (int) Math.min(nk, t.lastPosition() + 1L - k0);
                if (n <= 0) continue;
                AttentionKernels.scores(width, t.qT, keys, sT, t.max, n, dim);
                boolean masked = k0 + n - 1 > t.firstPosition();
                AttentionKernels.softmaxStep(width, sT, n, t.max, t.m, t.l, t.alpha, sums, masked, t.pos, (int) k0);
                AttentionKernels.accumulate(width, sT, values, t.oT, t.alpha, n, dim);
            }
        }
    }

    /** Writes every tile's output. */
    void finish(AttentionGeometry g) {
        for (int i = 0; i < count; i++) tiles[i].finish(g);
    }

    /**
     * Copies {@code rows} rows of {@code dim} floats, {@code strideBytes} apart, from both {@code k} and {@code v}
     * into packed arrays, with vector moves: {@link MemorySegment#copy} spends tens of nanoseconds of checks per
     * call, too much for 64-float rows.
     */
    private static void gather(MemorySegment k, MemorySegment v, long offset, long strideBytes, int rows, int dim,
                               float[] keys, float[] values) {
        int bound = F.loopBound(dim);
        for (int j = 0, o = 0; j < rows; j++, o += dim, offset += strideBytes) {
            int d = 0;
            for (; d < bound; d += LANES) {
                FloatVector.fromMemorySegment(F, k, offset + d * 4L, NATIVE).intoArray(keys, o + d);
                FloatVector.fromMemorySegment(F, v, offset + d * 4L, NATIVE).intoArray(values, o + d);
            }
            for (; d < dim; d++) {
                keys[o + d] = k.get(JAVA_FLOAT, offset + d * 4L);
                values[o + d] = v.get(JAVA_FLOAT, offset + d * 4L);
            }
        }
    }
}
