package dev.ropeway.tensor;

import jdk.incubator.vector.FloatVector;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.Arrays;

import static dev.ropeway.tensor.VectorMath.F;
import static dev.ropeway.tensor.VectorMath.LANES;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/**
 * Backward of causal grouped-query attention on the FlashAttention-2 schedule: the probabilities are recomputed tile
 * by tile from q, k and the forward's log-sum-exp, so memory stays linear in the length.
 *
 * <p>For a query row with scores {@code s_j = scale * q.k_j}, {@code P_j = exp(s_j - lse)} and output
 * {@code o = sum_j P_j v_j}: {@code dv_j += P_j dO}, {@code dP_j = dO.v_j}, and since the softmax Jacobian is
 * {@code diag(P) - P P^T}, {@code dS_j = P_j (dP_j - sum_i P_i dP_i) = P_j (dP_j - dO.o)}. The row constant
 * {@code D = dO.o} is computed once up front. Then {@code dq += scale sum_j dS_j k_j} and
 * {@code dk_j += scale dS_j q}.
 *
 * <p>Schedule: a task owns one sequence, one key/value head and a range of key tiles, so the dk and dv rows it
 * writes are its own. For each key tile of {@link #KEYS} keys it visits every query head of the group and every
 * block of up to {@link #ROWS} query positions that sees the tile, doing five small products with single-threaded
 * OpenBLAS calls on the strided q, dOut and dq buffers:
 * {@code S = scale Q K^T; P = exp(S - lse), masked; dV += P^T dO; dP = dO V^T; dS = P o (dP - D);
 * dK += scale dS^T Q; dQ += scale dS K}. dK and dV of the tile accumulate in heap arrays, written out once. The key
 * and value tiles are also copied transposed once per key tile, so that S and dP are plain (untransposed) products:
 * OpenBLAS's AVX-512 small-matrix path runs a 64^3 product with a transposed right operand at about 130 GFLOP/s on
 * one Zen 5 core against about 215 without (measured), and the copy is shared by every query block of the tile.
 *
 * <p>dQ of a query head is touched by every key tile of its key/value head. When there are enough
 * (sequence, key/value head) pairs to keep every thread busy, one task takes all keys of a pair and adds into dq
 * directly. Otherwise the keys are cut into chunks of about equal work, each adding into its own dQ scratch (only
 * the rows its keys can reach), and the scratches are summed afterwards.
 */
final class AttentionBackward {
    /** Keys per key tile. */
    static final int KEYS = 64;
    /** Query positions per query block. */
    static final int ROWS = 64;
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();

    /** One thread's heap tiles; the critical sgemm downcall reads and writes them in place. */
    private static final class Scratch {
        final float[] s = new float[ROWS * KEYS], dp = new float[ROWS * KEYS];
        final MemorySegment sSeg = MemorySegment.ofArray(s), dpSeg = MemorySegment.ofArray(dp);
        float[] dK = new float[0], dV = new float[0], kT, vT;
        MemorySegment dKSeg, dVSeg, kTSeg, vTSeg;

        Scratch prepare(int dim) {
            if (dK.length != KEYS * dim) {
                dK = new float[KEYS * dim];
                dV = new float[KEYS * dim];
                kT = new float[KEYS * dim];
                vT = new float[KEYS * dim];
                dKSeg = MemorySegment.ofArray(dK);
                dVSeg = MemorySegment.ofArray(dV);
                kTSeg = MemorySegment.ofArray(kT);
                vTSeg = MemorySegment.ofArray(vT);
            }
            return this;
        }
    }

    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    private final AttentionShape shape;
    private final MemorySegment dq, dk, dv, dOut, q, k, v;
    private final int batch, heads, kvHeads, group, dim, qLd, kvLd;
    private final long seqQ, seqKv, qStart, qEnd, kvRows, window;
    /** Per (sequence, query head), contiguous over the queries: the forward's log-sum-exp and D = dO.o. */
    private final float[] lse, delta;

    private AttentionBackward(AttentionShape s, MemorySegment dq, MemorySegment dk, MemorySegment dv,
                              MemorySegment dOut, MemorySegment q, MemorySegment k, MemorySegment v) {
        this.shape = s;
        this.dq = dq;
        this.dk = dk;
        this.dv = dv;
        this.dOut = dOut;
        this.q = q;
        this.k = k;
        this.v = v;
        batch = s.batch();
        heads = s.heads();
        kvHeads = s.kvHeads();
        group = heads / kvHeads;
        dim = s.headDim();
        qLd = heads * dim;
        kvLd = kvHeads * dim;
        seqQ = s.seqQ();
        seqKv = s.seqKv();
        qStart = s.qStart();
        qEnd = qStart + seqQ;
        kvRows = s.kvRowsPerBatch();
        window = s.window();
        int rowStats = Math.toIntExact((long) batch * heads * seqQ);
        lse = new float[rowStats];
        delta = new float[rowStats];
    }

    /**
     * Writes dq, and rows [0, seqKv) of every sequence of dk and dv. The caller has checked the sizes, that
     * {@code batch * heads * seqQ} fits an array, and that positions fit an int with a tile to spare.
     */
    static void run(WorkerPool pool, AttentionShape s, MemorySegment dq, MemorySegment dk, MemorySegment dv,
                    MemorySegment dOut, MemorySegment q, MemorySegment k, MemorySegment v, MemorySegment out,
                    MemorySegment lse) {
        new AttentionBackward(s, dq, dk, dv, dOut, q, k, v).run(pool, out, lse);
    }

    /**
     * Key chunks per (sequence, key/value head): 1 when those pairs alone give every thread two tasks, else enough
     * for about four tasks per thread, at most one per key tile.
     */
    static int chunks(int threads, long pairs, long keyTiles) {
        if (threads == 1 || pairs >= 2L * threads) return 1;
        return (int) Math.max(1, Math.min(keyTiles, (4L * threads + pairs - 1) / pairs));
    }

    private void run(WorkerPool pool, MemorySegment out, MemorySegment lseIn) {
        rowStats(pool, out, lseIn);
        int pairs = batch * kvHeads;
        long keyTiles = (seqKv + KEYS - 1) / KEYS;
        int chunks = chunks(pool.threads(), pairs, keyTiles);
        if (chunks == 1) {
            pool.run(pairs, task -> {
                int b = task / kvHeads, kvh = task % kvHeads;
                zeroDq(b, kvh);
                keyTiles(b, kvh, 0, keyTiles, dq, (((long) b * seqQ) * heads + (long) kvh * group) * dim, qLd);
            });
            return;
        }
        long[] bounds = chunkBounds(keyTiles, chunks);
        long[] rowFrom = new long[chunks], rowTo = new long[chunks], base = new long[chunks + 1];
        int ld = group * dim;
        for (int c = 0; c < chunks; c++) {
            long first = bounds[c] * KEYS, last = Math.min(seqKv, bounds[c + 1] * KEYS) - 1;
            rowFrom[c] = Math.max(qStart, first) - qStart;
            rowTo[c] = bounds[c] == bounds[c + 1] ? rowFrom[c] : Math.max(rowFrom[c], lastPositionSeeing(last) + 1 - qStart);
            base[c + 1] = base[c] + (rowTo[c] - rowFrom[c]) * ld;
        }
        long perPair = base[chunks];
        try (Arena arena = Arena.ofShared()) {
            MemorySegment scratch = arena.allocate(Math.max(1, perPair * pairs) * Float.BYTES, 64);
            pool.run(pairs * chunks, task -> {
                int pair = task / chunks, c = task % chunks, b = pair / kvHeads, kvh = pair % kvHeads;
                // Scratch rows start at rowFrom[c]; the products address them relative to query row 0.
                long origin = (long) pair * perPair + base[c] - rowFrom[c] * ld;
                keyTiles(b, kvh, bounds[c], bounds[c + 1], scratch, origin, ld);
            });
            sumChunks(pool, scratch, perPair, base, rowFrom, rowTo);
        }
    }

    /** The last query position that sees key {@code key} (it may lie past the last query). */
    private long lastPositionSeeing(long key) {
        long last = qEnd - 1;
        return window == 0 ? last : Math.min(last, key + window - 1);
    }

    /** The first query position that sees key {@code k0} (it may lie past the last query). */
    private long firstPositionSeeing(long k0) {
        return Math.max(qStart, k0);
    }

    /** Key-tile boundaries of {@code chunks} chunks with about equal work: rows that see each tile, plus a fixed cost. */
    private long[] chunkBounds(long keyTiles, int chunks) {
        long[] work = new long[(int) keyTiles];
        long total = 0;
        for (int t = 0; t < keyTiles; t++) {
            long k0 = (long) t * KEYS, k1 = Math.min(seqKv, k0 + KEYS);
            long rows = Math.max(0, lastPositionSeeing(k1 - 1) - firstPositionSeeing(k0) + 1);
            work[t] = rows * group + KEYS;
            total += work[t];
        }
        long[] bounds = new long[chunks + 1];
        bounds[chunks] = keyTiles;
        long sum = 0;
        int t = 0;
        for (int c = 1; c < chunks; c++) {
            long target = total * c / chunks;
            while (t < keyTiles && sum + work[t] / 2 < target) sum += work[t++];
            bounds[c] = t;
        }
        return bounds;
    }

    /** lse and D = dO.o per (sequence, query head, query), rearranged so that a query block reads them in a row. */
    private void rowStats(WorkerPool pool, MemorySegment out, MemorySegment lseIn) {
        pool.forRange((long) batch * seqQ, RowKernels.rowsPerChunk(qLd), (from, to) -> {
            float[] lanes = new float[LANES];
            for (long r = from; r < to; r++) {
                long b = r / seqQ, i = r % seqQ;
                for (int h = 0; h < heads; h++) {
                    int at = (int) ((b * heads + h) * seqQ + i);
                    delta[at] = dot(dOut, out, (r * heads + h) * dim * Float.BYTES, dim, lanes);
                    lse[at] = lseIn.getAtIndex(JAVA_FLOAT, r * heads + h);
                }
            }
        });
    }

    /**
     * The dot product of {@code n} floats of {@code a} and {@code b} from byte {@code offset}, in lanes, then the lanes
     * added in a fixed order through {@code lanes} ({@link #LANES} floats): {@code reduceLanes(ADD)} may add them in
     * a different order once compiled, and the gradients must not change from one call to the next.
     */
    private static float dot(MemorySegment a, MemorySegment b, long offset, int n, float[] lanes) {
        FloatVector acc = FloatVector.zero(F);
        int d = 0;
        for (int bound = F.loopBound(n); d < bound; d += LANES) {
            long o = offset + d * 4L;
            acc = FloatVector.fromMemorySegment(F, a, o, NATIVE).fma(FloatVector.fromMemorySegment(F, b, o, NATIVE), acc);
        }
        acc.intoArray(lanes, 0);
        for (int width = LANES / 2; width > 0; width /= 2)
            for (int x = 0; x < width; x++) lanes[x] += lanes[x + width];
        float sum = lanes[0];
        for (; d < n; d++) sum += a.get(JAVA_FLOAT, offset + d * 4L) * b.get(JAVA_FLOAT, offset + d * 4L);
        return sum;
    }

    /** Zeroes the dq entries of sequence b for the query heads of key/value head kvh (adjacent in every row). */
    private void zeroDq(int b, int kvh) {
        FloatVector zero = FloatVector.zero(F);
        int n = group * dim, bound = F.loopBound(n);
        for (long i = 0; i < seqQ; i++) {
            long offset = ((((long) b * seqQ + i) * heads + (long) kvh * group) * dim) * Float.BYTES;
            int d = 0;
            for (; d < bound; d += LANES) zero.intoMemorySegment(dq, offset + d * 4L, NATIVE);
            for (; d < n; d++) dq.set(JAVA_FLOAT, offset + d * 4L, 0f);
        }
    }

    /**
     * Key tiles [tileFrom, tileTo) of sequence b and key/value head kvh. dQ of query row i, group head g, goes to
     * {@code dqOut} at element {@code dqOrigin + i * dqLd + g * dim}.
     */
    private void keyTiles(int b, int kvh, long tileFrom, long tileTo, MemorySegment dqOut, long dqOrigin, int dqLd) {
        Scratch sc = SCRATCH.get().prepare(dim);
        float scale = shape.scale();
        for (long t = tileFrom; t < tileTo; t++) {
            long k0 = t * KEYS;
            int nk = (int) Math.min(KEYS, seqKv - k0);
            Arrays.fill(sc.dK, 0, nk * dim, 0f);
            Arrays.fill(sc.dV, 0, nk * dim, 0f);
            long kvOffset = (((long) b * kvRows + k0) * kvHeads + kvh) * dim * Float.BYTES;
            MemorySegment kTile = k.asSlice(kvOffset);
            transpose(k, kvOffset, nk, sc.kT);
            transpose(v, kvOffset, nk, sc.vT);
            long pFrom = firstPositionSeeing(k0), pTo = lastPositionSeeing(k0 + nk - 1) + 1;
            for (int g = 0; g < group; g++) {
                int h = kvh * group + g;
                int statsBase = (int) (((long) b * heads + h) * seqQ - qStart);
                for (long p0 = pFrom, p1; p0 < pTo; p0 = p1) {
                    p1 = Math.min(pTo, (p0 / ROWS + 1) * ROWS);
                    int m = (int) (p1 - p0);
                    long i0 = p0 - qStart;
                    long qOffset = (((long) b * seqQ + i0) * heads + h) * dim * Float.BYTES;
                    MemorySegment qBlock = q.asSlice(qOffset), dOutBlock = dOut.asSlice(qOffset);
                    MemorySegment dqBlock = dqOut.asSlice((dqOrigin + i0 * dqLd + (long) g * dim) * Float.BYTES);
                    OpenBlas.sgemmCritical(false, false, m, nk, dim, scale, qBlock, qLd, sc.kTSeg, KEYS, 0f, sc.sSeg, KEYS);
                    // Rows see every key of the tile unless the tile reaches past the block's first position or
                    // starts before its last position's window.
                    boolean masked = k0 + nk - 1 > p0 || shape.firstVisibleKey(p1 - 1) > k0;
                    probabilities(sc.s, m, nk, p0, k0, statsBase + (int) p0, masked);
                    OpenBlas.sgemmCritical(true, false, nk, dim, m, 1f, sc.sSeg, KEYS, dOutBlock, qLd, 1f, sc.dVSeg, dim);
                    OpenBlas.sgemmCritical(false, false, m, nk, dim, 1f, dOutBlock, qLd, sc.vTSeg, KEYS, 0f, sc.dpSeg, KEYS);
                    scoreGradients(sc.s, sc.dp, m, nk, statsBase + (int) p0);
                    OpenBlas.sgemmCritical(true, false, nk, dim, m, scale, sc.dpSeg, KEYS, qBlock, qLd, 1f, sc.dKSeg, dim);
                    OpenBlas.sgemmCritical(false, false, m, dim, nk, scale, sc.dpSeg, KEYS, kTile, kvLd, 1f, dqBlock, dqLd);
                }
            }
            scatter(sc.dK, dk, kvOffset, nk);
            scatter(sc.dV, dv, kvOffset, nk);
        }
    }

    /**
     * {@code s[r, j] = exp(s[r, j] - lse[r])} for the keys row r sees, 0 for the others. Every row sees at least its
     * own key somewhere, so its lse is finite and the kept values are at most about 1.
     */
    private void probabilities(float[] s, int m, int nk, long p0, long k0, int statsAt, boolean masked) {
        for (int r = 0, o = 0; r < m; r++, o += KEYS) {
            int lo = 0, hi = nk;
            if (masked) {
                long p = p0 + r;
                lo = (int) Math.clamp(shape.firstVisibleKey(p) - k0, 0, nk);
                hi = (int) Math.clamp(p - k0 + 1, lo, nk);
            }
            FloatVector shift = FloatVector.broadcast(F, lse[statsAt + r]);
            int j = o + lo;
            for (int bound = o + lo + F.loopBound(hi - lo); j < bound; j += LANES)
                FloatVector.fromArray(F, s, j).sub(shift).intoArray(s, j);
            for (float sh = lse[statsAt + r]; j < o + hi; j++) s[j] -= sh;
            Arrays.fill(s, o, o + lo, Float.NEGATIVE_INFINITY);
            Arrays.fill(s, o + hi, o + nk, Float.NEGATIVE_INFINITY);
            if (nk < KEYS) VectorMath.expInPlace(s, o, o + nk);
        }
        // Whole tiles in one call; exp(-inf) is 0.
        if (nk == KEYS) VectorMath.expInPlace(s, 0, m * KEYS);
    }

    /** {@code dp[r, j] = p[r, j] * (dp[r, j] - D[r])}: the score gradients, in place of dP. */
    private void scoreGradients(float[] p, float[] dp, int m, int nk, int statsAt) {
        int bound = F.loopBound(nk);
        for (int r = 0, o = 0; r < m; r++, o += KEYS) {
            float dr = delta[statsAt + r];
            FloatVector d = FloatVector.broadcast(F, dr);
            int j = 0;
            for (; j < bound; j += LANES) {
                FloatVector pv = FloatVector.fromArray(F, p, o + j);
                FloatVector.fromArray(F, dp, o + j).sub(d).mul(pv).intoArray(dp, o + j);
            }
            for (; j < nk; j++) dp[o + j] = p[o + j] * (dp[o + j] - dr);
        }
    }

    /** {@code t[d * KEYS + j] = x[row j, feature d]} for the {@code rows} kv-layout rows starting at byte {@code offset}. */
    private void transpose(MemorySegment x, long offset, int rows, float[] t) {
        long stride = (long) kvLd * Float.BYTES;
        for (int j = 0; j < rows; j++, offset += stride)
            for (int d = 0; d < dim; d++) t[d * KEYS + j] = x.get(JAVA_FLOAT, offset + d * 4L);
    }

    /** Writes {@code rows} rows of {@code dim} floats from a heap tile to kv-layout rows starting at byte {@code offset}. */
    private void scatter(float[] tile, MemorySegment dst, long offset, int rows) {
        long stride = (long) kvLd * Float.BYTES;
        int bound = F.loopBound(dim);
        for (int j = 0, o = 0; j < rows; j++, o += dim, offset += stride) {
            int d = 0;
            for (; d < bound; d += LANES) FloatVector.fromArray(F, tile, o + d).intoMemorySegment(dst, offset + d * 4L, NATIVE);
            for (; d < dim; d++) dst.set(JAVA_FLOAT, offset + d * 4L, tile[o + d]);
        }
    }

    /**
     * dq of every (sequence, key/value head) and query row = the sum of the chunk scratches that cover the row
     * (every row is covered by the chunk holding its own key).
     */
    private void sumChunks(WorkerPool pool, MemorySegment scratch, long perPair, long[] base, long[] rowFrom, long[] rowTo) {
        int chunks = rowFrom.length, n = group * dim, bound = F.loopBound(n);
        long ld = n;
        pool.forRange((long) batch * kvHeads * seqQ, RowKernels.rowsPerChunk(n), (from, to) -> {
            float[] acc = new float[n];
            for (long idx = from; idx < to; idx++) {
                long pair = idx / seqQ, i = idx % seqQ;
                int b = (int) (pair / kvHeads), kvh = (int) (pair % kvHeads);
                Arrays.fill(acc, 0f);
                for (int c = 0; c < chunks; c++) {
                    if (i < rowFrom[c] || i >= rowTo[c]) continue;
                    long offset = (pair * perPair + base[c] + (i - rowFrom[c]) * ld) * Float.BYTES;
                    int d = 0;
                    for (; d < bound; d += LANES)
                        FloatVector.fromArray(F, acc, d)
                                .add(FloatVector.fromMemorySegment(F, scratch, offset + d * 4L, NATIVE)).intoArray(acc, d);
                    for (; d < n; d++) acc[d] += scratch.get(JAVA_FLOAT, offset + d * 4L);
                }
                long dst = ((((long) b * seqQ + i) * heads + (long) kvh * group) * dim) * Float.BYTES;
                MemorySegment.copy(acc, 0, dq, JAVA_FLOAT, dst, n);
            }
        });
    }
}
