package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/**
 * One tile of query lanes and its running attention state: the scaled queries transposed ({@code qT[d * width + t]}
 * is feature d of lane t), the output accumulators in the same layout, and per lane the running maximum {@code m},
 * running sum {@code l} and position.
 *
 * <p>Lane {@code f} of a sequence and key/value head stands for query {@code f / group} of query head
 * {@code kvHead * group + f % group}: the query heads sharing a key/value head share its key and value tiles, and a
 * decode step (one query) still fills {@code group} lanes.
 */
final class QueryTile {
    final int width, dim;
    final float[] qT, oT, m, l, alpha, max;
    final int[] pos;
    private final float[] row;
    private int lanes;
    private long firstLane;
    private int batchIndex, kvHead;

    QueryTile(int width, int dim) {
        this.width = width;
        this.dim = dim;
        qT = new float[dim * width];
        oT = new float[dim * width];
        m = new float[width];
        l = new float[width];
        alpha = new float[width];
        max = new float[width];
        pos = new int[width];
        row = new float[dim];
    }

    /** Loads (and scales) the queries of lanes {@code [firstLane, firstLane + lanes)} and resets the state. */
    void begin(AttentionGeometry g, int batchIndex, int kvHead, long firstLane, int lanes) {
        this.batchIndex = batchIndex;
        this.kvHead = kvHead;
        this.firstLane = firstLane;
        this.lanes = lanes;
        Arrays.fill(qT, 0f);
        Arrays.fill(oT, 0f);
        Arrays.fill(m, Float.NEGATIVE_INFINITY);
        Arrays.fill(l, 0f);
        int lastPos = 0;
        for (int t = 0; t < lanes; t++) {
            long f = firstLane + t;
            long query = f / g.group();
            int head = kvHead * g.group() + (int) (f % g.group());
            lastPos = (int) (g.qStart() + query);
            pos[t] = lastPos;
            long offset = (((long) batchIndex * g.seqQ() + query) * g.heads() + head) * dim;
            MemorySegment.copy(g.q(), JAVA_FLOAT, offset * Float.BYTES, row, 0, dim);
            for (int d = 0; d < dim; d++) qT[d * width + t] = row[d] * g.scale();
        }
        // Padding lanes have zero queries; giving them the last real position keeps them out of the masking.
        for (int t = lanes; t < width; t++) pos[t] = lastPos;
    }

    int kvHead() {
        return kvHead;
    }

    /** Position of the first real lane: keys after it need masking. */
    int firstPosition() {
        return pos[0];
    }

    /** Position of the last real lane: keys after it are never needed. */
    int lastPosition() {
        return pos[lanes - 1];
    }

    /** Normalises and writes the real lanes to {@code out} (and their log-sum-exp to {@code lse}). */
    void finish(AttentionGeometry g) {
        for (int t = 0; t < lanes; t++) {
            long f = firstLane + t;
            long outRow = (long) batchIndex * g.seqQ() + f / g.group();
            int head = kvHead * g.group() + (int) (f % g.group());
            float inv = 1f / l[t];
            for (int d = 0; d < dim; d++) row[d] = oT[d * width + t] * inv;
            MemorySegment.copy(row, 0, g.out(), JAVA_FLOAT, ((outRow * g.heads() + head) * dim) * Float.BYTES, dim);
            if (g.lse() != null)
                g.lse().setAtIndex(JAVA_FLOAT, outRow * g.heads() + head, m[t] + (float) Math.log(l[t]));
        }
    }

    /** Floats needed by {@link #savePartial}. */
    static int partialSize(int width, int dim) {
        return width * (dim + 2);
    }

    /** Saves the unnormalised state of a tile that saw only part of the keys. */
    void savePartial(float[] dst) {
        System.arraycopy(oT, 0, dst, 0, width * dim);
        System.arraycopy(m, 0, dst, width * dim, width);
        System.arraycopy(l, 0, dst, width * dim + width, width);
    }

    /**
     * Merges partial states over disjoint key ranges of this tile's lanes (after {@link #begin}) into its own state:
     * each is weighted by e^(its max - overall max), the same rescaling the online softmax does between key tiles.
     */
    void merge(float[][] partials, int from, int count) {
        int wd = width * dim;
        Arrays.fill(oT, 0f);
        for (int t = 0; t < width; t++) {
            float mx = Float.NEGATIVE_INFINITY;
            for (int c = 0; c < count; c++) mx = Math.max(mx, partials[from + c][wd + t]);
            float sum = 0;
            for (int c = 0; c < count; c++) {
                float[] p = partials[from + c];
                float pm = p[wd + t];
                if (pm == Float.NEGATIVE_INFINITY) continue;
                float weight = (float) Math.exp(pm - mx);
                sum += weight * p[wd + width + t];
                for (int d = 0; d < dim; d++) oT[d * width + t] += weight * p[d * width + t];
            }
            m[t] = mx;
            l[t] = sum;
        }
    }
}
