package dev.ropeway.tensor;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/**
 * Attention for one new token per sequence (a generation step) reading the KV cache in place (a bfloat16 cache
 * widened in registers as it is read), with the keys in the vector lanes: each 16 keys get 16 dot products (head
 * dimension / 16 FMAs each, one accumulator per key and query head), folded into one vector of 16 scores by four
 * halving steps of blend-and-add (the partner lanes picked from both vectors by one two-vector selection); query heads
 * of a group are scored in pairs, 8 keys for each head per fold, so each key row is loaded and widened once for two.
 * Every 64 keys (16 for a float32 cache without grouped heads), an online-softmax update per head and the weighted sum
 * of those value rows. The query-tile kernels would instead put the few query heads of a key/value head in the lanes,
 * leaving most of them idle at decode time. A cache laid out head by head ({@link AttentionShape#kvHeadMajor}) is read
 * as one stream per head, its keys read ahead.
 *
 * <p>Keys of a sequence are cut into chunks so every thread has work at batch 1; partial states (max, sum, output)
 * are merged in a fixed order afterwards. Sums run in a fixed order throughout, so results do not depend on JIT state.
 */
final class DecodeAttention {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_512;
    private static final VectorSpecies<Integer> I = IntVector.SPECIES_512;
    private static final int LANES = 16;
    /** Keys per online-softmax update (at most; see {@code attend}): four vectors of scores per head. */
    private static final int BLOCK = 4 * LANES;
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    /**
     * Two-vector selections for the fold of scores: lane i of {@code PAIRw.selectFrom(a, b)} is a[i ^ w] where bit w
     * of i is clear and b[i ^ w] where it is set, the partner of the lane that {@code a.blend(b, HIw)} keeps.
     */
    private static final FloatVector PAIR8 = pairs(8), PAIR4 = pairs(4), PAIR2 = pairs(2), PAIR1 = pairs(1);
    /**
     * Where {@link #splitPair} finds key j of each head: after the fold, accumulator i of a half is in lane
     * bitreverse4(i); the first head's keys are accumulators 0..7 of each half, the second head's 8..15.
     */
    private static final FloatVector FIRST_OF_PAIR = splitIndex(0), SECOND_OF_PAIR = splitIndex(LANES / 2);
    /** After the folds, lane i holds the score of key bitreverse4(i); this shuffle puts key j in lane j. */
    private static final VectorShuffle<Float> BITREV = VectorShuffle.fromOp(F, i -> Integer.reverse(i) >>> 28);
    private static final VectorMask<Float> HI8 = VectorMask.fromLong(F, 0xFF00L);
    private static final VectorMask<Float> HI4 = VectorMask.fromLong(F, 0xF0F0L);
    private static final VectorMask<Float> HI2 = VectorMask.fromLong(F, 0xCCCCL);
    private static final VectorMask<Float> HI1 = VectorMask.fromLong(F, 0xAAAAL);
    /** Keys per chunk at least, so merging partial states never costs more than the chunk itself. */
    private static final int MIN_CHUNK_KEYS = 512;

    private DecodeAttention() {}

    private static FloatVector splitIndex(int accumulator0) {
        float[] index = new float[LANES];
        for (int j = 0; j < LANES; j++) {
            int half = j / (LANES / 2), accumulator = accumulator0 + j % (LANES / 2);
            index[j] = half * LANES + (Integer.reverse(accumulator) >>> 28);
        }
        return FloatVector.fromArray(F, index, 0);
    }

    private static FloatVector pairs(int w) {
        float[] index = new float[LANES];
        for (int i = 0; i < LANES; i++) index[i] = (i & w) == 0 ? i ^ w : LANES + (i ^ w);
        return FloatVector.fromArray(F, index, 0);
    }

    /**
     * True for one query per sequence, no log-sum-exp output, 16-lane vectors and a head size that is a multiple of 16
     * (of 32 for a bfloat16 cache, which is widened 32 values at a time).
     */
    static boolean applies(AttentionGeometry g) {
        return g.seqQ() == 1 && g.lse() == null && VectorMath.LANES == LANES
                && g.headDim() % (g.kvType() == DType.F32 ? LANES : 2 * LANES) == 0;
    }

    static void run(WorkerPool pool, AttentionGeometry g) {
        int batch = g.batch(), kvHeads = g.kvHeads(), group = g.group(), dim = g.headDim();
        long pos = g.qStart();
        long first = g.shape().firstVisibleKey(pos), keys = pos + 1 - first;
        int pairs = batch * kvHeads;
        int chunks = (int) Math.max(1, Math.min((2L * pool.threads() + pairs - 1) / pairs, keys / MIN_CHUNK_KEYS));
        int stateSize = group * (dim + 2);
        float[][] partials = new float[pairs * chunks][stateSize];
        pool.run(pairs * chunks, task -> {
            int pair = task / chunks, chunk = task % chunks;
            int b = pair / kvHeads, kvh = pair % kvHeads;
            long from = first + keys * chunk / chunks, to = first + keys * (chunk + 1) / chunks;
            attend(g, b, kvh, from, to, partials[task]);
        });
        int heads = g.heads();
        float[] scratch = new float[dim];
        for (int pair = 0; pair < pairs; pair++) {
            int b = pair / kvHeads, kvh = pair % kvHeads;
            for (int gi = 0; gi < group; gi++) {
                int h = kvh * group + gi, base = gi * (dim + 2);
                float mx = Float.NEGATIVE_INFINITY;
                for (int c = 0; c < chunks; c++) mx = Math.max(mx, partials[pair * chunks + c][base + dim]);
                java.util.Arrays.fill(scratch, 0f);
                float sum = 0;
                for (int c = 0; c < chunks; c++) {
                    float[] p = partials[pair * chunks + c];
                    if (p[base + dim] == Float.NEGATIVE_INFINITY) continue;
                    float w = (float) Math.exp(p[base + dim] - mx);
                    sum += w * p[base + dim + 1];
                    for (int d = 0; d < dim; d++) scratch[d] += w * p[base + d];
                }
                long out = ((long) b * heads + h) * dim * Float.BYTES;
                float inv = 1f / sum;
                for (int d = 0; d < dim; d++) g.out().set(JAVA_FLOAT, out + d * 4L, scratch[d] * inv);
            }
        }
    }

    /**
     * Keys [from, to) of sequence b for the query heads of key/value head kvh; writes per head the unnormalised output,
     * the running max and the running sum into {@code state} (dim + 2 floats per head). Each 16 keys are read from
     * memory once for all the query heads of the group (scored two heads at a time, later pairs finding the keys in
     * L1), and each value row is loaded (and widened) once for up to four heads at a time.
     */
    private static void attend(AttentionGeometry g, int b, int kvh, long from, long to, float[] state) {
        int group = g.group(), dim = g.headDim(), heads = g.heads();
        float scale = g.scale();
        MemorySegment k = g.k(), v = g.v(), q = g.q();
        long rowBytes = g.kvStrideBytes(), base = g.kvHeadBytes(b, kvh);
        float[] qh = new float[group * dim], o = new float[group * dim];
        float[] m = new float[group], l = new float[group], alpha = new float[group];
        float[] p = new float[group * BLOCK], s = new float[group * BLOCK], raw = new float[2 * LANES];
        MemorySegment.copy(q, JAVA_FLOAT, ((long) b * heads + (long) kvh * group) * dim * Float.BYTES, qh, 0, group * dim);
        java.util.Arrays.fill(m, Float.NEGATIVE_INFINITY);
        // A bfloat16 cache is widened in registers as it is read, its elements in pair order (Bf16Rows.pairOrder: the
        // evens, then the odds, of each 32, from one 16-int load by a shift and a mask); the queries are permuted the
        // same way, which leaves the dot products as they are, and the outputs are put back in order at the end.
        boolean bf16 = g.kvType() == DType.BF16;
        if (bf16) Bf16Rows.pairOrder(qh, group * dim);
        // Laid out head by head, this head's keys are one contiguous stream: while 16 keys are scored, the lines of the
        // next 16 are read ahead (where they lie inside the cache); nearer or farther, or the values' lines too, measured
        // slower. Row by row there is nothing to gain: each key is a slice of a wider row.
        boolean contiguous = rowBytes == (long) dim * g.kvBytes();
        int raSub = contiguous ? ReadAhead.perStep((int) (LANES * rowBytes)) : 0;
        long touched = 0;
        // Keys per online-softmax update: 64 amortise its chain of steps, but with one query head per key/value head
        // and a float32 cache (the least arithmetic per byte, so bound by memory) every 16 keep each head's keys and
        // values close together in time: measured 1.2x faster there at 16k keys, slower for grouped heads.
        int block = group == 1 && !bf16 ? LANES : BLOCK;
        for (long k0 = from; k0 < to; k0 += block) {
            int n = (int) Math.min(block, to - k0);
            long at = base + k0 * rowBytes;
            long ahead = at + (long) LANES * rowBytes;
            boolean inside = at + (long) (block + LANES) * rowBytes <= k.byteSize();
            int subLines = inside ? raSub : 0;
            for (int sub = 0; sub < n; sub += LANES) {
                long rows = at + sub * rowBytes;
                int left = n - sub, gi = 0;
                touched += ReadAhead.lines(k, ahead + sub * rowBytes, subLines);
                for (; gi + 2 <= group; gi += 2) {
                    int qa = gi * dim, qb = qa + dim;
                    if (bf16) {
                        scoresBf16Pair(k, rows, rowBytes, 0, left, qh, qa, qb, dim, raw, 0);
                        scoresBf16Pair(k, rows, rowBytes, LANES / 2, left, qh, qa, qb, dim, raw, LANES);
                    } else {
                        scoresPair(k, rows, rowBytes, 0, left, qh, qa, qb, dim, raw, 0);
                        scoresPair(k, rows, rowBytes, LANES / 2, left, qh, qa, qb, dim, raw, LANES);
                    }
                    splitPair(raw, s, gi * BLOCK + sub, (gi + 1) * BLOCK + sub);
                }
                if (gi < group) {
                    if (bf16) scoresBf16(k, rows, rowBytes, left, qh, gi * dim, dim, s, gi * BLOCK + sub);
                    else scores(k, rows, rowBytes, left, qh, gi * dim, dim, s, gi * BLOCK + sub);
                }
            }
            for (int gi = 0; gi < group; gi++) blockSoftmax(s, n, block, scale, m, l, alpha, gi, p);
            int gi = 0;
            if (bf16) {
                for (; gi + 4 <= group; gi += 4) accumulateBf16x4(v, at, rowBytes, n, p, alpha, o, gi, dim);
                if (gi + 2 <= group) {
                    accumulateBf16x2(v, at, rowBytes, n, p, alpha, o, gi, dim);
                    gi += 2;
                }
                if (gi < group) accumulateBf16(v, at, rowBytes, n, p, alpha, o, gi, dim);
            } else {
                for (; gi + 4 <= group; gi += 4) accumulateX4(v, at, rowBytes, n, p, alpha, o, gi, dim);
                for (; gi < group; gi++) accumulate(v, at, rowBytes, n, p, alpha, o, gi, dim);
            }
        }
        ReadAhead.keep(touched);
        if (bf16) Bf16Rows.naturalOrder(o, group * dim);
        for (int gi = 0; gi < group; gi++) {
            int at = gi * (dim + 2);
            System.arraycopy(o, gi * dim, state, at, dim);
            state[at + dim] = m[gi];
            state[at + dim + 1] = l[gi];
        }
    }

    private static final VectorShuffle<Float> DOWN8 = VectorShuffle.fromOp(F, i -> (i + 8) & 15);
    private static final VectorShuffle<Float> DOWN4 = VectorShuffle.fromOp(F, i -> (i + 4) & 15);
    private static final VectorShuffle<Float> DOWN2 = VectorShuffle.fromOp(F, i -> (i + 2) & 15);
    private static final VectorShuffle<Float> DOWN1 = VectorShuffle.fromOp(F, i -> (i + 1) & 15);

    /**
     * The online-softmax update of head gi for one block of n (at most {@code block}, 16 or 64) scores
     * {@code s[gi * 64 ..]} (unscaled): {@code p[gi * 64 + j]} gets exp(scale s_j - m_new) (0 for j >= n),
     * {@code alpha[gi]} the factor exp(m_old - m_new) for what the head has accumulated so far, and m and l the new
     * running max and sum. The block's max and sum are lanewise over its vectors, then lane trees of fixed shape; the
     * exponential is {@link VectorMath#expInPlace}.
     * One update per 64 keys keeps its chain of dependent steps (max, exponential, sum) off the critical path of the
     * dot products.
     */
    private static void blockSoftmax(float[] s, int n, int block, float scale, float[] m, float[] l, float[] alpha, int gi,
                                     float[] p) {
        int at = gi * BLOCK;
        FloatVector mx = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
        for (int c = 0; c < block; c += LANES) {
            FloatVector x = FloatVector.fromArray(F, s, at + c).mul(scale);
            if (n < c + LANES) x = x.blend(Float.NEGATIVE_INFINITY, VectorMask.fromLong(F, 0xFFFFL & (-1L << Math.max(0, n - c))));
            x.intoArray(s, at + c);
            mx = mx.max(x);
        }
        mx = mx.max(mx.rearrange(DOWN8));
        mx = mx.max(mx.rearrange(DOWN4));
        mx = mx.max(mx.rearrange(DOWN2));
        mx = mx.max(mx.rearrange(DOWN1));
        float mOld = m[gi], mNew = Math.max(mOld, mx.lane(0));
        for (int c = 0; c < block; c += LANES) FloatVector.fromArray(F, s, at + c).sub(mNew).intoArray(p, at + c);
        VectorMath.expInPlace(p, at, at + block);
        FloatVector sum = FloatVector.zero(F);
        for (int c = 0; c < block; c += LANES) sum = sum.add(FloatVector.fromArray(F, p, at + c));
        sum = sum.add(sum.rearrange(DOWN8));
        sum = sum.add(sum.rearrange(DOWN4));
        sum = sum.add(sum.rearrange(DOWN2));
        sum = sum.add(sum.rearrange(DOWN1));
        float a = mOld == Float.NEGATIVE_INFINITY ? 0f : (float) Math.exp(mOld - mNew);
        alpha[gi] = a;
        l[gi] = l[gi] * a + sum.lane(0);
        m[gi] = mNew;
    }

    /**
     * {@code s[sOff + j] = k_j · q} for the n key rows (at most 16 are read) starting at byte {@code row0}; missing rows
     * repeat the last.
     */
    private static void scores(MemorySegment k, long row0, long stride, int n, float[] q, int qOff, int dim, float[] s,
                               int sOff) {
        long r0 = row0, r1 = row0 + stride * Math.min(1, n - 1), r2 = row0 + stride * Math.min(2, n - 1),
                r3 = row0 + stride * Math.min(3, n - 1), r4 = row0 + stride * Math.min(4, n - 1),
                r5 = row0 + stride * Math.min(5, n - 1), r6 = row0 + stride * Math.min(6, n - 1),
                r7 = row0 + stride * Math.min(7, n - 1), r8 = row0 + stride * Math.min(8, n - 1),
                r9 = row0 + stride * Math.min(9, n - 1), r10 = row0 + stride * Math.min(10, n - 1),
                r11 = row0 + stride * Math.min(11, n - 1), r12 = row0 + stride * Math.min(12, n - 1),
                r13 = row0 + stride * Math.min(13, n - 1), r14 = row0 + stride * Math.min(14, n - 1),
                r15 = row0 + stride * Math.min(15, n - 1);
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0,
                a8 = a0, a9 = a0, a10 = a0, a11 = a0, a12 = a0, a13 = a0, a14 = a0, a15 = a0;
        for (int d = 0; d < dim; d += LANES) {
            FloatVector x = FloatVector.fromArray(F, q, qOff + d);
            long o = d * 4L;
            a0 = FloatVector.fromMemorySegment(F, k, r0 + o, NATIVE).fma(x, a0);
            a1 = FloatVector.fromMemorySegment(F, k, r1 + o, NATIVE).fma(x, a1);
            a2 = FloatVector.fromMemorySegment(F, k, r2 + o, NATIVE).fma(x, a2);
            a3 = FloatVector.fromMemorySegment(F, k, r3 + o, NATIVE).fma(x, a3);
            a4 = FloatVector.fromMemorySegment(F, k, r4 + o, NATIVE).fma(x, a4);
            a5 = FloatVector.fromMemorySegment(F, k, r5 + o, NATIVE).fma(x, a5);
            a6 = FloatVector.fromMemorySegment(F, k, r6 + o, NATIVE).fma(x, a6);
            a7 = FloatVector.fromMemorySegment(F, k, r7 + o, NATIVE).fma(x, a7);
            a8 = FloatVector.fromMemorySegment(F, k, r8 + o, NATIVE).fma(x, a8);
            a9 = FloatVector.fromMemorySegment(F, k, r9 + o, NATIVE).fma(x, a9);
            a10 = FloatVector.fromMemorySegment(F, k, r10 + o, NATIVE).fma(x, a10);
            a11 = FloatVector.fromMemorySegment(F, k, r11 + o, NATIVE).fma(x, a11);
            a12 = FloatVector.fromMemorySegment(F, k, r12 + o, NATIVE).fma(x, a12);
            a13 = FloatVector.fromMemorySegment(F, k, r13 + o, NATIVE).fma(x, a13);
            a14 = FloatVector.fromMemorySegment(F, k, r14 + o, NATIVE).fma(x, a14);
            a15 = FloatVector.fromMemorySegment(F, k, r15 + o, NATIVE).fma(x, a15);
        }
        // Fold 16 vectors into one: each step adds lane i and lane i ^ w of two vectors and keeps one half of each.
        FloatVector z0 = a0.blend(a1, HI8).add(PAIR8.selectFrom(a0, a1));
        FloatVector z1 = a2.blend(a3, HI8).add(PAIR8.selectFrom(a2, a3));
        FloatVector z2 = a4.blend(a5, HI8).add(PAIR8.selectFrom(a4, a5));
        FloatVector z3 = a6.blend(a7, HI8).add(PAIR8.selectFrom(a6, a7));
        FloatVector z4 = a8.blend(a9, HI8).add(PAIR8.selectFrom(a8, a9));
        FloatVector z5 = a10.blend(a11, HI8).add(PAIR8.selectFrom(a10, a11));
        FloatVector z6 = a12.blend(a13, HI8).add(PAIR8.selectFrom(a12, a13));
        FloatVector z7 = a14.blend(a15, HI8).add(PAIR8.selectFrom(a14, a15));
        FloatVector y0 = z0.blend(z1, HI4).add(PAIR4.selectFrom(z0, z1));
        FloatVector y1 = z2.blend(z3, HI4).add(PAIR4.selectFrom(z2, z3));
        FloatVector y2 = z4.blend(z5, HI4).add(PAIR4.selectFrom(z4, z5));
        FloatVector y3 = z6.blend(z7, HI4).add(PAIR4.selectFrom(z6, z7));
        FloatVector x0 = y0.blend(y1, HI2).add(PAIR2.selectFrom(y0, y1));
        FloatVector x1 = y2.blend(y3, HI2).add(PAIR2.selectFrom(y2, y3));
        FloatVector r = x0.blend(x1, HI1).add(PAIR1.selectFrom(x0, x1));
        r.rearrange(BITREV).intoArray(s, sOff);
    }

    /**
     * {@link #scores} on bfloat16 keys, widened as they are read: each 32 values of a key are one 16-int load whose
     * low halves (the even elements) and high halves (the odd ones) become floats by a shift and a mask, multiplied by
     * the query's matching elements ({@code q} in pair order, {@link Bf16Rows#pairOrder}).
     */
    private static void scoresBf16(MemorySegment k, long row0, long stride, int n, float[] q, int qOff, int dim, float[] s,
                                   int sOff) {
        long r0 = row0, r1 = row0 + stride * Math.min(1, n - 1), r2 = row0 + stride * Math.min(2, n - 1),
                r3 = row0 + stride * Math.min(3, n - 1), r4 = row0 + stride * Math.min(4, n - 1),
                r5 = row0 + stride * Math.min(5, n - 1), r6 = row0 + stride * Math.min(6, n - 1),
                r7 = row0 + stride * Math.min(7, n - 1), r8 = row0 + stride * Math.min(8, n - 1),
                r9 = row0 + stride * Math.min(9, n - 1), r10 = row0 + stride * Math.min(10, n - 1),
                r11 = row0 + stride * Math.min(11, n - 1), r12 = row0 + stride * Math.min(12, n - 1),
                r13 = row0 + stride * Math.min(13, n - 1), r14 = row0 + stride * Math.min(14, n - 1),
                r15 = row0 + stride * Math.min(15, n - 1);
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0,
                a8 = a0, a9 = a0, a10 = a0, a11 = a0, a12 = a0, a13 = a0, a14 = a0, a15 = a0;
        for (int d = 0; d < dim; d += 2 * LANES) {
            FloatVector xe = FloatVector.fromArray(F, q, qOff + d), xo = FloatVector.fromArray(F, q, qOff + d + LANES);
            long o = d * 2L;
            IntVector w0 = IntVector.fromMemorySegment(I, k, r0 + o, NATIVE);
            a0 = w0.and(0xFFFF0000).reinterpretAsFloats().fma(xo, a0);
            a0 = w0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a0);
            IntVector w1 = IntVector.fromMemorySegment(I, k, r1 + o, NATIVE);
            a1 = w1.and(0xFFFF0000).reinterpretAsFloats().fma(xo, a1);
            a1 = w1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a1);
            IntVector w2 = IntVector.fromMemorySegment(I, k, r2 + o, NATIVE);
            a2 = w2.and(0xFFFF0000).reinterpretAsFloats().fma(xo, a2);
            a2 = w2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a2);
            IntVector w3 = IntVector.fromMemorySegment(I, k, r3 + o, NATIVE);
            a3 = w3.and(0xFFFF0000).reinterpretAsFloats().fma(xo, a3);
            a3 = w3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a3);
            IntVector w4 = IntVector.fromMemorySegment(I, k, r4 + o, NATIVE);
            a4 = w4.and(0xFFFF0000).reinterpretAsFloats().fma(xo, a4);
            a4 = w4.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a4);
            IntVector w5 = IntVector.fromMemorySegment(I, k, r5 + o, NATIVE);
            a5 = w5.and(0xFFFF0000).reinterpretAsFloats().fma(xo, a5);
            a5 = w5.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a5);
            IntVector w6 = IntVector.fromMemorySegment(I, k, r6 + o, NATIVE);
            a6 = w6.and(0xFFFF0000).reinterpretAsFloats().fma(xo, a6);
            a6 = w6.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a6);
            IntVector w7 = IntVector.fromMemorySegment(I, k, r7 + o, NATIVE);
            a7 = w7.and(0xFFFF0000).reinterpretAsFloats().fma(xo, a7);
            a7 = w7.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a7);
            IntVector w8 = IntVector.fromMemorySegment(I, k, r8 + o, NATIVE);
            a8 = w8.and(0xFFFF0000).reinterpretAsFloats().fma(xo, a8);
            a8 = w8.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a8);
            IntVector w9 = IntVector.fromMemorySegment(I, k, r9 + o, NATIVE);
            a9 = w9.and(0xFFFF0000).reinterpretAsFloats().fma(xo, a9);
            a9 = w9.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a9);
            IntVector w10 = IntVector.fromMemorySegment(I, k, r10 + o, NATIVE);
            a10 = w10.and(0xFFFF0000).reinterpretAsFloats().fma(xo, a10);
            a10 = w10.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a10);
            IntVector w11 = IntVector.fromMemorySegment(I, k, r11 + o, NATIVE);
            a11 = w11.and(0xFFFF0000).reinterpretAsFloats().fma(xo, a11);
            a11 = w11.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a11);
            IntVector w12 = IntVector.fromMemorySegment(I, k, r12 + o, NATIVE);
            a12 = w12.and(0xFFFF0000).reinterpretAsFloats().fma(xo, a12);
            a12 = w12.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a12);
            IntVector w13 = IntVector.fromMemorySegment(I, k, r13 + o, NATIVE);
            a13 = w13.and(0xFFFF0000).reinterpretAsFloats().fma(xo, a13);
            a13 = w13.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a13);
            IntVector w14 = IntVector.fromMemorySegment(I, k, r14 + o, NATIVE);
            a14 = w14.and(0xFFFF0000).reinterpretAsFloats().fma(xo, a14);
            a14 = w14.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a14);
            IntVector w15 = IntVector.fromMemorySegment(I, k, r15 + o, NATIVE);
            a15 = w15.and(0xFFFF0000).reinterpretAsFloats().fma(xo, a15);
            a15 = w15.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xe, a15);
        }
        // The fold of scores, written out again: a method taking the 16 vectors would box them whenever the JIT
        // left it out of line.
        FloatVector z0 = a0.blend(a1, HI8).add(PAIR8.selectFrom(a0, a1));
        FloatVector z1 = a2.blend(a3, HI8).add(PAIR8.selectFrom(a2, a3));
        FloatVector z2 = a4.blend(a5, HI8).add(PAIR8.selectFrom(a4, a5));
        FloatVector z3 = a6.blend(a7, HI8).add(PAIR8.selectFrom(a6, a7));
        FloatVector z4 = a8.blend(a9, HI8).add(PAIR8.selectFrom(a8, a9));
        FloatVector z5 = a10.blend(a11, HI8).add(PAIR8.selectFrom(a10, a11));
        FloatVector z6 = a12.blend(a13, HI8).add(PAIR8.selectFrom(a12, a13));
        FloatVector z7 = a14.blend(a15, HI8).add(PAIR8.selectFrom(a14, a15));
        FloatVector y0 = z0.blend(z1, HI4).add(PAIR4.selectFrom(z0, z1));
        FloatVector y1 = z2.blend(z3, HI4).add(PAIR4.selectFrom(z2, z3));
        FloatVector y2 = z4.blend(z5, HI4).add(PAIR4.selectFrom(z4, z5));
        FloatVector y3 = z6.blend(z7, HI4).add(PAIR4.selectFrom(z6, z7));
        FloatVector x0 = y0.blend(y1, HI2).add(PAIR2.selectFrom(y0, y1));
        FloatVector x1 = y2.blend(y3, HI2).add(PAIR2.selectFrom(y2, y3));
        FloatVector r = x0.blend(x1, HI1).add(PAIR1.selectFrom(x0, x1));
        r.rearrange(BITREV).intoArray(s, sOff);
    }

    /**
     * Half a block of scores for two query heads of a group on bfloat16 keys: the dot products of keys first..first+7
     * (rows past n repeat the last) with queries {@code qa} and {@code qb}, each key row loaded and widened once for
     * both; per head the same sums in the same order as {@link #scoresBf16}. Stores the folded vector, lanes in
     * bit-reversed order (keys of qa in accumulators 0..7, of qb in 8..15), at {@code raw[rawOff]}; {@link #splitPair}
     * turns two halves into the two heads' blocks.
     */
    private static void scoresBf16Pair(MemorySegment k, long row0, long stride, int first, int n, float[] q, int qa,
                                       int qb, int dim, float[] raw, int rawOff) {
        long r0 = row0 + stride * Math.min(first, n - 1), r1 = row0 + stride * Math.min(first + 1, n - 1),
                r2 = row0 + stride * Math.min(first + 2, n - 1), r3 = row0 + stride * Math.min(first + 3, n - 1),
                r4 = row0 + stride * Math.min(first + 4, n - 1), r5 = row0 + stride * Math.min(first + 5, n - 1),
                r6 = row0 + stride * Math.min(first + 6, n - 1), r7 = row0 + stride * Math.min(first + 7, n - 1);
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0,
                a8 = a0, a9 = a0, a10 = a0, a11 = a0, a12 = a0, a13 = a0, a14 = a0, a15 = a0;
        for (int d = 0; d < dim; d += 2 * LANES) {
            FloatVector ea = FloatVector.fromArray(F, q, qa + d), oa = FloatVector.fromArray(F, q, qa + d + LANES);
            FloatVector eb = FloatVector.fromArray(F, q, qb + d), ob = FloatVector.fromArray(F, q, qb + d + LANES);
            long o = d * 2L;
            IntVector w0 = IntVector.fromMemorySegment(I, k, r0 + o, NATIVE);
            FloatVector h0 = w0.and(0xFFFF0000).reinterpretAsFloats();
            FloatVector l0 = w0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            a0 = l0.fma(ea, h0.fma(oa, a0));
            a8 = l0.fma(eb, h0.fma(ob, a8));
            IntVector w1 = IntVector.fromMemorySegment(I, k, r1 + o, NATIVE);
            FloatVector h1 = w1.and(0xFFFF0000).reinterpretAsFloats();
            FloatVector l1 = w1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            a1 = l1.fma(ea, h1.fma(oa, a1));
            a9 = l1.fma(eb, h1.fma(ob, a9));
            IntVector w2 = IntVector.fromMemorySegment(I, k, r2 + o, NATIVE);
            FloatVector h2 = w2.and(0xFFFF0000).reinterpretAsFloats();
            FloatVector l2 = w2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            a2 = l2.fma(ea, h2.fma(oa, a2));
            a10 = l2.fma(eb, h2.fma(ob, a10));
            IntVector w3 = IntVector.fromMemorySegment(I, k, r3 + o, NATIVE);
            FloatVector h3 = w3.and(0xFFFF0000).reinterpretAsFloats();
            FloatVector l3 = w3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            a3 = l3.fma(ea, h3.fma(oa, a3));
            a11 = l3.fma(eb, h3.fma(ob, a11));
            IntVector w4 = IntVector.fromMemorySegment(I, k, r4 + o, NATIVE);
            FloatVector h4 = w4.and(0xFFFF0000).reinterpretAsFloats();
            FloatVector l4 = w4.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            a4 = l4.fma(ea, h4.fma(oa, a4));
            a12 = l4.fma(eb, h4.fma(ob, a12));
            IntVector w5 = IntVector.fromMemorySegment(I, k, r5 + o, NATIVE);
            FloatVector h5 = w5.and(0xFFFF0000).reinterpretAsFloats();
            FloatVector l5 = w5.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            a5 = l5.fma(ea, h5.fma(oa, a5));
            a13 = l5.fma(eb, h5.fma(ob, a13));
            IntVector w6 = IntVector.fromMemorySegment(I, k, r6 + o, NATIVE);
            FloatVector h6 = w6.and(0xFFFF0000).reinterpretAsFloats();
            FloatVector l6 = w6.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            a6 = l6.fma(ea, h6.fma(oa, a6));
            a14 = l6.fma(eb, h6.fma(ob, a14));
            IntVector w7 = IntVector.fromMemorySegment(I, k, r7 + o, NATIVE);
            FloatVector h7 = w7.and(0xFFFF0000).reinterpretAsFloats();
            FloatVector l7 = w7.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            a7 = l7.fma(ea, h7.fma(oa, a7));
            a15 = l7.fma(eb, h7.fma(ob, a15));
        }
        FloatVector z0 = a0.blend(a1, HI8).add(PAIR8.selectFrom(a0, a1));
        FloatVector z1 = a2.blend(a3, HI8).add(PAIR8.selectFrom(a2, a3));
        FloatVector z2 = a4.blend(a5, HI8).add(PAIR8.selectFrom(a4, a5));
        FloatVector z3 = a6.blend(a7, HI8).add(PAIR8.selectFrom(a6, a7));
        FloatVector z4 = a8.blend(a9, HI8).add(PAIR8.selectFrom(a8, a9));
        FloatVector z5 = a10.blend(a11, HI8).add(PAIR8.selectFrom(a10, a11));
        FloatVector z6 = a12.blend(a13, HI8).add(PAIR8.selectFrom(a12, a13));
        FloatVector z7 = a14.blend(a15, HI8).add(PAIR8.selectFrom(a14, a15));
        FloatVector y0 = z0.blend(z1, HI4).add(PAIR4.selectFrom(z0, z1));
        FloatVector y1 = z2.blend(z3, HI4).add(PAIR4.selectFrom(z2, z3));
        FloatVector y2 = z4.blend(z5, HI4).add(PAIR4.selectFrom(z4, z5));
        FloatVector y3 = z6.blend(z7, HI4).add(PAIR4.selectFrom(z6, z7));
        FloatVector x0 = y0.blend(y1, HI2).add(PAIR2.selectFrom(y0, y1));
        FloatVector x1 = y2.blend(y3, HI2).add(PAIR2.selectFrom(y2, y3));
        FloatVector r = x0.blend(x1, HI1).add(PAIR1.selectFrom(x0, x1));
        r.intoArray(raw, rawOff);
    }

    /** {@link #scoresBf16Pair} on float32 keys: each key vector loaded once for both heads (sums as {@link #scores}). */
    private static void scoresPair(MemorySegment k, long row0, long stride, int first, int n, float[] q, int qa, int qb,
                                   int dim, float[] raw, int rawOff) {
        long r0 = row0 + stride * Math.min(first, n - 1), r1 = row0 + stride * Math.min(first + 1, n - 1),
                r2 = row0 + stride * Math.min(first + 2, n - 1), r3 = row0 + stride * Math.min(first + 3, n - 1),
                r4 = row0 + stride * Math.min(first + 4, n - 1), r5 = row0 + stride * Math.min(first + 5, n - 1),
                r6 = row0 + stride * Math.min(first + 6, n - 1), r7 = row0 + stride * Math.min(first + 7, n - 1);
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0,
                a8 = a0, a9 = a0, a10 = a0, a11 = a0, a12 = a0, a13 = a0, a14 = a0, a15 = a0;
        for (int d = 0; d < dim; d += LANES) {
            FloatVector xa = FloatVector.fromArray(F, q, qa + d), xb = FloatVector.fromArray(F, q, qb + d);
            long o = d * 4L;
            FloatVector k0 = FloatVector.fromMemorySegment(F, k, r0 + o, NATIVE);
            a0 = k0.fma(xa, a0);
            a8 = k0.fma(xb, a8);
            FloatVector k1 = FloatVector.fromMemorySegment(F, k, r1 + o, NATIVE);
            a1 = k1.fma(xa, a1);
            a9 = k1.fma(xb, a9);
            FloatVector k2 = FloatVector.fromMemorySegment(F, k, r2 + o, NATIVE);
            a2 = k2.fma(xa, a2);
            a10 = k2.fma(xb, a10);
            FloatVector k3 = FloatVector.fromMemorySegment(F, k, r3 + o, NATIVE);
            a3 = k3.fma(xa, a3);
            a11 = k3.fma(xb, a11);
            FloatVector k4 = FloatVector.fromMemorySegment(F, k, r4 + o, NATIVE);
            a4 = k4.fma(xa, a4);
            a12 = k4.fma(xb, a12);
            FloatVector k5 = FloatVector.fromMemorySegment(F, k, r5 + o, NATIVE);
            a5 = k5.fma(xa, a5);
            a13 = k5.fma(xb, a13);
            FloatVector k6 = FloatVector.fromMemorySegment(F, k, r6 + o, NATIVE);
            a6 = k6.fma(xa, a6);
            a14 = k6.fma(xb, a14);
            FloatVector k7 = FloatVector.fromMemorySegment(F, k, r7 + o, NATIVE);
            a7 = k7.fma(xa, a7);
            a15 = k7.fma(xb, a15);
        }
        FloatVector z0 = a0.blend(a1, HI8).add(PAIR8.selectFrom(a0, a1));
        FloatVector z1 = a2.blend(a3, HI8).add(PAIR8.selectFrom(a2, a3));
        FloatVector z2 = a4.blend(a5, HI8).add(PAIR8.selectFrom(a4, a5));
        FloatVector z3 = a6.blend(a7, HI8).add(PAIR8.selectFrom(a6, a7));
        FloatVector z4 = a8.blend(a9, HI8).add(PAIR8.selectFrom(a8, a9));
        FloatVector z5 = a10.blend(a11, HI8).add(PAIR8.selectFrom(a10, a11));
        FloatVector z6 = a12.blend(a13, HI8).add(PAIR8.selectFrom(a12, a13));
        FloatVector z7 = a14.blend(a15, HI8).add(PAIR8.selectFrom(a14, a15));
        FloatVector y0 = z0.blend(z1, HI4).add(PAIR4.selectFrom(z0, z1));
        FloatVector y1 = z2.blend(z3, HI4).add(PAIR4.selectFrom(z2, z3));
        FloatVector y2 = z4.blend(z5, HI4).add(PAIR4.selectFrom(z4, z5));
        FloatVector y3 = z6.blend(z7, HI4).add(PAIR4.selectFrom(z6, z7));
        FloatVector x0 = y0.blend(y1, HI2).add(PAIR2.selectFrom(y0, y1));
        FloatVector x1 = y2.blend(y3, HI2).add(PAIR2.selectFrom(y2, y3));
        FloatVector r = x0.blend(x1, HI1).add(PAIR1.selectFrom(x0, x1));
        r.intoArray(raw, rawOff);
    }

    /**
     * Two halves from {@link #scoresBf16Pair} or {@link #scoresPair} ({@code s[0..15]}: keys 0..7, {@code s[16..31]}:
     * keys 8..15) become the blocks of the two heads, in key order: the first head's in {@code s[0..15]}, the second's
     * in {@code s[16..31]}.
     */
    private static void splitPair(float[] raw, float[] s, int first, int second) {
        FloatVector lo = FloatVector.fromArray(F, raw, 0), hi = FloatVector.fromArray(F, raw, LANES);
        FIRST_OF_PAIR.selectFrom(lo, hi).intoArray(s, first);
        SECOND_OF_PAIR.selectFrom(lo, hi).intoArray(s, second);
    }

    /** {@code o_h = o_h * alpha_h + sum_j p_h[j] v_j} for head h = gi, over the n value rows starting at byte {@code row0}. */
    private static void accumulate(MemorySegment v, long row0, long stride, int n, float[] p, float[] alpha, float[] o,
                                   int gi, int dim) {
        if (dim % (4 * LANES) == 0) {
            // Measured at 16k keys, 8 heads of 128, one thread: 10.1-10.6 ms per layer one column at a time, 7.1-7.8 so.
            for (int c = 0; c < dim; c += 4 * LANES)
                accumulate64(v, row0 + c * 4L, stride, n, p, gi * BLOCK, alpha[gi], o, gi * dim + c);
            return;
        }
        float a = alpha[gi];
        int pj = gi * BLOCK, oo = gi * dim;
        for (int d = 0; d < dim; d += LANES) {
            FloatVector acc = FloatVector.fromArray(F, o, oo + d).mul(a);
            long at = row0 + d * 4L;
            for (int j = 0; j < n; j++, at += stride)
                acc = FloatVector.fromMemorySegment(F, v, at, NATIVE).fma(FloatVector.broadcast(F, p[pj + j]), acc);
            acc.intoArray(o, oo + d);
        }
    }

    /**
     * {@link #accumulate} for 64 columns of a head (each 64 of a head size that is a multiple of 64): the four output
     * vectors summed side by side, value row by value row (four independent chains of FMAs instead of one at a time,
     * and the rows read in order); the same sums in the same order. {@code row0} is the first row's byte at the first
     * of the 64 columns, {@code pj} where the head's weights start in {@code p}, {@code oo} where the columns start in
     * {@code o}.
     */
    private static void accumulate64(MemorySegment v, long row0, long stride, int n, float[] p, int pj, float a, float[] o,
                                     int oo) {
        FloatVector o0 = FloatVector.fromArray(F, o, oo).mul(a), o1 = FloatVector.fromArray(F, o, oo + LANES).mul(a);
        FloatVector o2 = FloatVector.fromArray(F, o, oo + 2 * LANES).mul(a), o3 = FloatVector.fromArray(F, o, oo + 3 * LANES).mul(a);
        long at = row0;
        for (int j = 0; j < n; j++, at += stride) {
            FloatVector w = FloatVector.broadcast(F, p[pj + j]);
            o0 = FloatVector.fromMemorySegment(F, v, at, NATIVE).fma(w, o0);
            o1 = FloatVector.fromMemorySegment(F, v, at + 64, NATIVE).fma(w, o1);
            o2 = FloatVector.fromMemorySegment(F, v, at + 128, NATIVE).fma(w, o2);
            o3 = FloatVector.fromMemorySegment(F, v, at + 192, NATIVE).fma(w, o3);
        }
        o0.intoArray(o, oo);
        o1.intoArray(o, oo + LANES);
        o2.intoArray(o, oo + 2 * LANES);
        o3.intoArray(o, oo + 3 * LANES);
    }

    /** {@link #accumulate} for heads gi..gi+3 at once: each value vector is loaded once for the four (same sums each). */
    private static void accumulateX4(MemorySegment v, long row0, long stride, int n, float[] p, float[] alpha, float[] o,
                                     int gi, int dim) {
        if (dim % (4 * LANES) == 0) {
            accumulateX4Rows(v, row0, stride, n, p, alpha, o, gi, dim);
            return;
        }
        int p0 = gi * BLOCK, p1 = p0 + BLOCK, p2 = p1 + BLOCK, p3 = p2 + BLOCK;
        for (int d = 0; d < dim; d += LANES) {
            int o0 = gi * dim + d, o1 = o0 + dim, o2 = o1 + dim, o3 = o2 + dim;
            FloatVector c0 = FloatVector.fromArray(F, o, o0).mul(alpha[gi]), c1 = FloatVector.fromArray(F, o, o1).mul(alpha[gi + 1]);
            FloatVector c2 = FloatVector.fromArray(F, o, o2).mul(alpha[gi + 2]), c3 = FloatVector.fromArray(F, o, o3).mul(alpha[gi + 3]);
            long at = row0 + d * 4L;
            for (int j = 0; j < n; j++, at += stride) {
                FloatVector x = FloatVector.fromMemorySegment(F, v, at, NATIVE);
                c0 = x.fma(FloatVector.broadcast(F, p[p0 + j]), c0);
                c1 = x.fma(FloatVector.broadcast(F, p[p1 + j]), c1);
                c2 = x.fma(FloatVector.broadcast(F, p[p2 + j]), c2);
                c3 = x.fma(FloatVector.broadcast(F, p[p3 + j]), c3);
            }
            c0.intoArray(o, o0);
            c1.intoArray(o, o1);
            c2.intoArray(o, o2);
            c3.intoArray(o, o3);
        }
    }

    /**
     * {@link #accumulateX4} 64 values of each row at a time, row by row: for each 64 columns, the four heads' four output
     * vectors (16 accumulators) summed side by side over the rows in order; the same sums in the same order (measured
     * 1.1x faster for 32 / 8 heads of 128 at 16k keys, one thread).
     */
    private static void accumulateX4Rows(MemorySegment v, long row0, long stride, int n, float[] p, float[] alpha,
                                         float[] o, int gi, int dim) {
        int p0 = gi * BLOCK, p1 = p0 + BLOCK, p2 = p1 + BLOCK, p3 = p2 + BLOCK;
        float s0 = alpha[gi], s1 = alpha[gi + 1], s2 = alpha[gi + 2], s3 = alpha[gi + 3];
        for (int c = 0; c < dim; c += 4 * LANES) {
            int h0 = gi * dim + c, h1 = h0 + dim, h2 = h1 + dim, h3 = h2 + dim;
            FloatVector a00 = FloatVector.fromArray(F, o, h0).mul(s0), a01 = FloatVector.fromArray(F, o, h0 + LANES).mul(s0);
            FloatVector a02 = FloatVector.fromArray(F, o, h0 + 2 * LANES).mul(s0), a03 = FloatVector.fromArray(F, o, h0 + 3 * LANES).mul(s0);
            FloatVector a10 = FloatVector.fromArray(F, o, h1).mul(s1), a11 = FloatVector.fromArray(F, o, h1 + LANES).mul(s1);
            FloatVector a12 = FloatVector.fromArray(F, o, h1 + 2 * LANES).mul(s1), a13 = FloatVector.fromArray(F, o, h1 + 3 * LANES).mul(s1);
            FloatVector a20 = FloatVector.fromArray(F, o, h2).mul(s2), a21 = FloatVector.fromArray(F, o, h2 + LANES).mul(s2);
            FloatVector a22 = FloatVector.fromArray(F, o, h2 + 2 * LANES).mul(s2), a23 = FloatVector.fromArray(F, o, h2 + 3 * LANES).mul(s2);
            FloatVector a30 = FloatVector.fromArray(F, o, h3).mul(s3), a31 = FloatVector.fromArray(F, o, h3 + LANES).mul(s3);
            FloatVector a32 = FloatVector.fromArray(F, o, h3 + 2 * LANES).mul(s3), a33 = FloatVector.fromArray(F, o, h3 + 3 * LANES).mul(s3);
            long at = row0 + c * 4L;
            for (int j = 0; j < n; j++, at += stride) {
                FloatVector x0 = FloatVector.fromMemorySegment(F, v, at, NATIVE), x1 = FloatVector.fromMemorySegment(F, v, at + 64, NATIVE);
                FloatVector x2 = FloatVector.fromMemorySegment(F, v, at + 128, NATIVE), x3 = FloatVector.fromMemorySegment(F, v, at + 192, NATIVE);
                FloatVector w = FloatVector.broadcast(F, p[p0 + j]);
                a00 = x0.fma(w, a00); a01 = x1.fma(w, a01); a02 = x2.fma(w, a02); a03 = x3.fma(w, a03);
                w = FloatVector.broadcast(F, p[p1 + j]);
                a10 = x0.fma(w, a10); a11 = x1.fma(w, a11); a12 = x2.fma(w, a12); a13 = x3.fma(w, a13);
                w = FloatVector.broadcast(F, p[p2 + j]);
                a20 = x0.fma(w, a20); a21 = x1.fma(w, a21); a22 = x2.fma(w, a22); a23 = x3.fma(w, a23);
                w = FloatVector.broadcast(F, p[p3 + j]);
                a30 = x0.fma(w, a30); a31 = x1.fma(w, a31); a32 = x2.fma(w, a32); a33 = x3.fma(w, a33);
            }
            a00.intoArray(o, h0); a01.intoArray(o, h0 + LANES); a02.intoArray(o, h0 + 2 * LANES); a03.intoArray(o, h0 + 3 * LANES);
            a10.intoArray(o, h1); a11.intoArray(o, h1 + LANES); a12.intoArray(o, h1 + 2 * LANES); a13.intoArray(o, h1 + 3 * LANES);
            a20.intoArray(o, h2); a21.intoArray(o, h2 + LANES); a22.intoArray(o, h2 + 2 * LANES); a23.intoArray(o, h2 + 3 * LANES);
            a30.intoArray(o, h3); a31.intoArray(o, h3 + LANES); a32.intoArray(o, h3 + 2 * LANES); a33.intoArray(o, h3 + 3 * LANES);
        }
    }

    /** {@link #accumulate} on bfloat16 values, widened as they are read; {@code o} in pair order. */
    private static void accumulateBf16(MemorySegment v, long row0, long stride, int n, float[] p, float[] alpha, float[] o,
                                       int gi, int dim) {
        if (dim == 4 * LANES) {
            accumulateBf16Dim64(v, row0, stride, n, p, alpha, o, gi);
            return;
        }
        float a = alpha[gi];
        int pj = gi * BLOCK, oo = gi * dim;
        for (int d = 0; d < dim; d += 2 * LANES) {
            FloatVector even = FloatVector.fromArray(F, o, oo + d).mul(a), odd = FloatVector.fromArray(F, o, oo + d + LANES).mul(a);
            long at = row0 + d * 2L;
            for (int j = 0; j < n; j++, at += stride) {
                IntVector w = IntVector.fromMemorySegment(I, v, at, NATIVE);
                FloatVector b = FloatVector.broadcast(F, p[pj + j]);
                even = w.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(b, even);
                odd = w.and(0xFFFF0000).reinterpretAsFloats().fma(b, odd);
            }
            even.intoArray(o, oo + d);
            odd.intoArray(o, oo + d + LANES);
        }
    }

    /**
     * {@link #accumulateBf16} for a head size of 64: both 32-value halves of each value row widened and summed side by
     * side (four independent chains of FMAs, the rows read in order); the same sums in the same order.
     */
    private static void accumulateBf16Dim64(MemorySegment v, long row0, long stride, int n, float[] p, float[] alpha,
                                            float[] o, int gi) {
        float a = alpha[gi];
        int pj = gi * BLOCK, oo = gi * 4 * LANES;
        FloatVector e0 = FloatVector.fromArray(F, o, oo).mul(a), d0 = FloatVector.fromArray(F, o, oo + LANES).mul(a);
        FloatVector e1 = FloatVector.fromArray(F, o, oo + 2 * LANES).mul(a), d1 = FloatVector.fromArray(F, o, oo + 3 * LANES).mul(a);
        long at = row0;
        for (int j = 0; j < n; j++, at += stride) {
            FloatVector b = FloatVector.broadcast(F, p[pj + j]);
            IntVector w0 = IntVector.fromMemorySegment(I, v, at, NATIVE), w1 = IntVector.fromMemorySegment(I, v, at + 64, NATIVE);
            e0 = w0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(b, e0);
            d0 = w0.and(0xFFFF0000).reinterpretAsFloats().fma(b, d0);
            e1 = w1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(b, e1);
            d1 = w1.and(0xFFFF0000).reinterpretAsFloats().fma(b, d1);
        }
        e0.intoArray(o, oo);
        d0.intoArray(o, oo + LANES);
        e1.intoArray(o, oo + 2 * LANES);
        d1.intoArray(o, oo + 3 * LANES);
    }

    /** {@link #accumulateBf16} for heads gi and gi+1: each value row widened once for both (same sums each). */
    private static void accumulateBf16x2(MemorySegment v, long row0, long stride, int n, float[] p, float[] alpha, float[] o,
                                         int gi, int dim) {
        int p0 = gi * BLOCK, p1 = p0 + BLOCK;
        for (int d = 0; d < dim; d += 2 * LANES) {
            int o0 = gi * dim + d, o1 = o0 + dim;
            float a0 = alpha[gi], a1 = alpha[gi + 1];
            FloatVector e0 = FloatVector.fromArray(F, o, o0).mul(a0), d0 = FloatVector.fromArray(F, o, o0 + LANES).mul(a0);
            FloatVector e1 = FloatVector.fromArray(F, o, o1).mul(a1), d1 = FloatVector.fromArray(F, o, o1 + LANES).mul(a1);
            long at = row0 + d * 2L;
            for (int j = 0; j < n; j++, at += stride) {
                IntVector w = IntVector.fromMemorySegment(I, v, at, NATIVE);
                FloatVector even = w.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
                FloatVector odd = w.and(0xFFFF0000).reinterpretAsFloats();
                FloatVector b0 = FloatVector.broadcast(F, p[p0 + j]), b1 = FloatVector.broadcast(F, p[p1 + j]);
                e0 = even.fma(b0, e0);
                d0 = odd.fma(b0, d0);
                e1 = even.fma(b1, e1);
                d1 = odd.fma(b1, d1);
            }
            e0.intoArray(o, o0);
            d0.intoArray(o, o0 + LANES);
            e1.intoArray(o, o1);
            d1.intoArray(o, o1 + LANES);
        }
    }

    /**
     * {@link #accumulateBf16x4} 64 values (two 32-value halves) of each row at a time, row by row: the four heads'
     * even and odd vectors of both halves (16 accumulators) summed side by side over the rows in order; the same sums
     * in the same order.
     */
    private static void accumulateBf16x4Rows(MemorySegment v, long row0, long stride, int n, float[] p, float[] alpha,
                                             float[] o, int gi, int dim) {
        int p0 = gi * BLOCK, p1 = p0 + BLOCK, p2 = p1 + BLOCK, p3 = p2 + BLOCK;
        float s0 = alpha[gi], s1 = alpha[gi + 1], s2 = alpha[gi + 2], s3 = alpha[gi + 3];
        for (int c = 0; c < dim; c += 4 * LANES) {
            int h0 = gi * dim + c, h1 = h0 + dim, h2 = h1 + dim, h3 = h2 + dim;
            FloatVector e00 = FloatVector.fromArray(F, o, h0).mul(s0), d00 = FloatVector.fromArray(F, o, h0 + LANES).mul(s0);
            FloatVector e01 = FloatVector.fromArray(F, o, h0 + 2 * LANES).mul(s0), d01 = FloatVector.fromArray(F, o, h0 + 3 * LANES).mul(s0);
            FloatVector e10 = FloatVector.fromArray(F, o, h1).mul(s1), d10 = FloatVector.fromArray(F, o, h1 + LANES).mul(s1);
            FloatVector e11 = FloatVector.fromArray(F, o, h1 + 2 * LANES).mul(s1), d11 = FloatVector.fromArray(F, o, h1 + 3 * LANES).mul(s1);
            FloatVector e20 = FloatVector.fromArray(F, o, h2).mul(s2), d20 = FloatVector.fromArray(F, o, h2 + LANES).mul(s2);
            FloatVector e21 = FloatVector.fromArray(F, o, h2 + 2 * LANES).mul(s2), d21 = FloatVector.fromArray(F, o, h2 + 3 * LANES).mul(s2);
            FloatVector e30 = FloatVector.fromArray(F, o, h3).mul(s3), d30 = FloatVector.fromArray(F, o, h3 + LANES).mul(s3);
            FloatVector e31 = FloatVector.fromArray(F, o, h3 + 2 * LANES).mul(s3), d31 = FloatVector.fromArray(F, o, h3 + 3 * LANES).mul(s3);
            long at = row0 + c * 2L;
            for (int j = 0; j < n; j++, at += stride) {
                IntVector w0 = IntVector.fromMemorySegment(I, v, at, NATIVE), w1 = IntVector.fromMemorySegment(I, v, at + 64, NATIVE);
                FloatVector x0 = w0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), y0 = w0.and(0xFFFF0000).reinterpretAsFloats();
                FloatVector x1 = w1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), y1 = w1.and(0xFFFF0000).reinterpretAsFloats();
                FloatVector b = FloatVector.broadcast(F, p[p0 + j]);
                e00 = x0.fma(b, e00); d00 = y0.fma(b, d00); e01 = x1.fma(b, e01); d01 = y1.fma(b, d01);
                b = FloatVector.broadcast(F, p[p1 + j]);
                e10 = x0.fma(b, e10); d10 = y0.fma(b, d10); e11 = x1.fma(b, e11); d11 = y1.fma(b, d11);
                b = FloatVector.broadcast(F, p[p2 + j]);
                e20 = x0.fma(b, e20); d20 = y0.fma(b, d20); e21 = x1.fma(b, e21); d21 = y1.fma(b, d21);
                b = FloatVector.broadcast(F, p[p3 + j]);
                e30 = x0.fma(b, e30); d30 = y0.fma(b, d30); e31 = x1.fma(b, e31); d31 = y1.fma(b, d31);
            }
            e00.intoArray(o, h0); d00.intoArray(o, h0 + LANES); e01.intoArray(o, h0 + 2 * LANES); d01.intoArray(o, h0 + 3 * LANES);
            e10.intoArray(o, h1); d10.intoArray(o, h1 + LANES); e11.intoArray(o, h1 + 2 * LANES); d11.intoArray(o, h1 + 3 * LANES);
            e20.intoArray(o, h2); d20.intoArray(o, h2 + LANES); e21.intoArray(o, h2 + 2 * LANES); d21.intoArray(o, h2 + 3 * LANES);
            e30.intoArray(o, h3); d30.intoArray(o, h3 + LANES); e31.intoArray(o, h3 + 2 * LANES); d31.intoArray(o, h3 + 3 * LANES);
        }
    }

    /** {@link #accumulateBf16} for heads gi..gi+3: each value row widened once for the four (same sums each). */
    private static void accumulateBf16x4(MemorySegment v, long row0, long stride, int n, float[] p, float[] alpha, float[] o,
                                         int gi, int dim) {
        if (dim % (4 * LANES) == 0) {
            accumulateBf16x4Rows(v, row0, stride, n, p, alpha, o, gi, dim);
            return;
        }
        int p0 = gi * BLOCK, p1 = p0 + BLOCK, p2 = p1 + BLOCK, p3 = p2 + BLOCK;
        for (int d = 0; d < dim; d += 2 * LANES) {
            int o0 = gi * dim + d, o1 = o0 + dim, o2 = o1 + dim, o3 = o2 + dim;
            float a0 = alpha[gi], a1 = alpha[gi + 1], a2 = alpha[gi + 2], a3 = alpha[gi + 3];
            FloatVector e0 = FloatVector.fromArray(F, o, o0).mul(a0), d0 = FloatVector.fromArray(F, o, o0 + LANES).mul(a0);
            FloatVector e1 = FloatVector.fromArray(F, o, o1).mul(a1), d1 = FloatVector.fromArray(F, o, o1 + LANES).mul(a1);
            FloatVector e2 = FloatVector.fromArray(F, o, o2).mul(a2), d2 = FloatVector.fromArray(F, o, o2 + LANES).mul(a2);
            FloatVector e3 = FloatVector.fromArray(F, o, o3).mul(a3), d3 = FloatVector.fromArray(F, o, o3 + LANES).mul(a3);
            long at = row0 + d * 2L;
            for (int j = 0; j < n; j++, at += stride) {
                IntVector w = IntVector.fromMemorySegment(I, v, at, NATIVE);
                FloatVector even = w.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
                FloatVector odd = w.and(0xFFFF0000).reinterpretAsFloats();
                FloatVector b0 = FloatVector.broadcast(F, p[p0 + j]), b1 = FloatVector.broadcast(F, p[p1 + j]);
                FloatVector b2 = FloatVector.broadcast(F, p[p2 + j]), b3 = FloatVector.broadcast(F, p[p3 + j]);
                e0 = even.fma(b0, e0);
                d0 = odd.fma(b0, d0);
                e1 = even.fma(b1, e1);
                d1 = odd.fma(b1, d1);
                e2 = even.fma(b2, e2);
                d2 = odd.fma(b2, d2);
                e3 = even.fma(b3, e3);
                d3 = odd.fma(b3, d3);
            }
            e0.intoArray(o, o0);
            d0.intoArray(o, o0 + LANES);
            e1.intoArray(o, o1);
            d1.intoArray(o, o1 + LANES);
            e2.intoArray(o, o2);
            d2.intoArray(o, o2 + LANES);
            e3.intoArray(o, o3);
            d3.intoArray(o, o3 + LANES);
        }
    }
}
