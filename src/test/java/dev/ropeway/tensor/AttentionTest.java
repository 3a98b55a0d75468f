package dev.ropeway.tensor;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.Random;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class AttentionTest {
    private static CpuBackend cpu;

    @BeforeAll
    static void start() {
        cpu = new CpuBackend(3);
    }

    @AfterAll
    static void stop() {
        cpu.close();
    }

    static float[] random(Random rnd, long n, float scale) {
        float[] x = new float[(int) n];
        for (int i = 0; i < x.length; i++) x[i] = (float) (rnd.nextGaussian() * scale);
        return x;
    }

    /** Runs the backend on random inputs and compares every row (or every stride-th query) with the reference. */
    static void check(AttentionShape s, boolean withLse, long queryStride) {
        Random rnd = new Random(s.hashCode());
        int d = s.headDim();
        long qn = s.batch() * s.seqQ() * s.heads() * d;
        long kvn = ((s.batch() - 1) * s.kvRowsPerBatch() + s.seqKv()) * s.kvHeads() * d;
        float[] q = random(rnd, qn, 1f), k = random(rnd, kvn, 1f), v = random(rnd, kvn, 1f);
        try (Tensor tq = cpu.upload(q); Tensor tk = cpu.upload(k); Tensor tv = cpu.upload(v);
             Tensor out = cpu.allocate(qn); Tensor lse = withLse ? cpu.allocate(s.batch() * s.seqQ() * s.heads()) : null) {
            cpu.attention(out, tq, tk, tv, lse, s);
            float[] o = new float[(int) qn];
            cpu.download(out, 0, o, 0, o.length);
            float[] l = new float[withLse ? (int) (s.batch() * s.seqQ() * s.heads()) : 0];
            if (withLse) cpu.download(lse, 0, l, 0, l.length);
            for (int b = 0; b < s.batch(); b++)
                for (long i : queries(s.seqQ(), queryStride))
                    for (int h = 0; h < s.heads(); h++) checkRow(s, q, k, v, o, withLse ? l : null, b, i, h);
        }
    }

    /** Every stride-th query and always the last one. */
    static long[] queries(long seqQ, long stride) {
        return java.util.stream.LongStream.concat(java.util.stream.LongStream.iterate(0, i -> i < seqQ - 1, i -> i + stride),
                java.util.stream.LongStream.of(seqQ - 1)).toArray();
    }

    static void checkRow(AttentionShape s, float[] q, float[] k, float[] v, float[] o, float[] l, int b, long i, int h) {
        double[] refLse = new double[1];
        double[] ref = Reference.attentionRow(q, k, v, s, b, i, h, refLse);
        int d = s.headDim();
        long base = ((b * s.seqQ() + i) * s.heads() + h) * d;
        String where = " at b=" + b + " i=" + i + " h=" + h + " in " + s;
        for (int x = 0; x < d; x++)
            assertEquals(ref[x], o[(int) (base + x)], 2e-5 * (1 + Math.abs(ref[x])), "out" + where);
        if (l != null)
            assertEquals(refLse[0], l[(int) ((b * s.seqQ() + i) * s.heads() + h)], 2e-5 * (1 + Math.abs(refLse[0])), "lse" + where);
    }

    static Stream<Arguments> shapes() {
        int t = AttentionWorkspace.KEYS;
        return Stream.of(
                Arguments.of(1, 1, 4, 4, 16),
                Arguments.of(2, 37, 4, 2, 16),
                Arguments.of(2, 100, 4, 1, 64),
                Arguments.of(1, t - 1, 4, 2, 80),
                Arguments.of(1, t, 2, 2, 64),
                Arguments.of(2, t + 1, 4, 2, 64),
                Arguments.of(1, 3 * t + 5, 4, 1, 16),
                Arguments.of(1, 200, 2, 2, 8),
                Arguments.of(1, 150, 6, 2, 24),
                Arguments.of(1, 90, 7, 1, 32));
    }

    @ParameterizedTest(name = "batch={0} seq={1} heads={2} kvHeads={3} headDim={4}")
    @MethodSource("shapes")
    void selfAttentionMatchesReference(int batch, int seq, int heads, int kvHeads, int headDim) {
        check(AttentionShape.selfAttention(batch, seq, heads, kvHeads, headDim), true, 1);
    }

    @Test
    void slidingWindowMatchesReference() {
        int t = AttentionWorkspace.KEYS;
        check(AttentionShape.selfAttention(2, 300, 4, 2, 32).withWindow(1), true, 1);
        check(AttentionShape.selfAttention(1, 300, 4, 1, 64).withWindow(t - 3), true, 1);
        check(AttentionShape.selfAttention(2, 5 * t + 7, 4, 2, 16).withWindow(2 * t), true, 1);
        check(AttentionShape.selfAttention(1, 200, 2, 2, 24).withWindow(500), true, 1);
        // decode and prefill chunks against a cache, including keys split between threads
        check(new AttentionShape(2, 1, 3000, 3100, 2999, 4, 2, 64, 0.125f, 700), true, 1);
        check(new AttentionShape(1, 1, 3000, 3000, 2999, 2, 1, 32, 0.2f, 2999), true, 1);
        check(new AttentionShape(2, 70, 400, 420, 330, 4, 1, 16, 0.25f, 100), true, 1);
    }

    @Test
    void prefillChunkIntoCacheWithPadding() {
        // 40 new queries appended after 90 cached keys; each sequence's cache has room for 160 rows.
        check(new AttentionShape(2, 40, 130, 160, 90, 4, 2, 64, 0.125f), true, 1);
        check(new AttentionShape(2, 70, 200, 256, 130, 4, 1, 16, 0.25f), true, 1);
    }

    @Test
    void decodeStepOneQuery() {
        check(new AttentionShape(2, 1, 300, 320, 299, 4, 2, 64, 0.125f), true, 1);
        check(new AttentionShape(1, 1, 1000, 1000, 999, 4, 1, 80, 0.1f), true, 1);
        check(new AttentionShape(1, 1, 1, 1, 0, 2, 2, 16, 0.25f), true, 1);
    }

    @Test
    void decodeSplitsKeysAcrossThreadsWhenFewSequences() {
        AttentionShape s = new AttentionShape(1, 1, 3000, 3000, 2999, 1, 1, 64, 0.125f);
        assertTrue(Attention.decodeChunks(3, 1, 3000) > 1);
        assertEquals(1, Attention.decodeChunks(3, 1, 300), "short caches are not split");
        assertEquals(1, Attention.decodeChunks(3, 8, 100_000), "enough sequences to share out");
        check(s, true, 1);
        check(new AttentionShape(2, 1, 5000, 5100, 4999, 8, 4, 80, 0.1f), true, 1);
        // Rows of 16 x 128 floats: 32-key tiles, cut into chunks that do not fall on 64-key boundaries.
        check(new AttentionShape(1, 1, 700, 700, 699, 16, 16, 128, 0.09f), true, 1);
        check(new AttentionShape(1, 3, 777, 800, 774, 2, 1, 32, 0.2f), true, 1);
    }

    /**
     * Keys and values in a bfloat16 KV cache ({@code CpuBackend(threads, BF16)}): attention reads them widened, so it
     * gives what float32 attention gives on the rounded values, on every path: the decode kernel widening in registers
     * (head sizes that are multiples of 32: groups, tails, windows, keys split between threads), the query tiles'
     * copies (other head sizes, a log-sum-exp asked for, several queries after cached keys).
     */
    @Test
    void bfloat16KvCacheGivesAttentionOnTheRoundedValues() {
        try (CpuBackend bf16 = new CpuBackend(3, DType.BF16)) {
            assertEquals(2, bf16.kvBytesPerElement());
            for (AttentionShape s : new AttentionShape[]{
                    new AttentionShape(1, 1, 3000, 3000, 2999, 1, 1, 64, 0.125f),
                    new AttentionShape(2, 1, 300, 320, 299, 4, 2, 64, 0.125f),
                    new AttentionShape(1, 1, 7, 9, 6, 6, 6, 32, 0.2f),
                    new AttentionShape(2, 1, 5000, 5100, 4999, 8, 4, 128, 0.1f),
                    new AttentionShape(2, 1, 3000, 3100, 2999, 4, 2, 64, 0.125f, 700),
                    new AttentionShape(1, 1, 1000, 1000, 999, 4, 1, 80, 0.1f),
                    new AttentionShape(1, 1, 2001, 2001, 2000, 8, 1, 16, 4f),
                    new AttentionShape(2, 40, 130, 160, 90, 4, 2, 64, 0.125f),
                    new AttentionShape(1, 3, 777, 800, 774, 2, 1, 32, 0.2f),
                    new AttentionShape(2, 1, 1037, 1040, 1036, 6, 2, 64, 0.125f),
                    new AttentionShape(1, 1, 2051, 2051, 2050, 14, 2, 64, 0.125f)})
                for (boolean withLse : new boolean[]{false, true}) checkBf16Kv(bf16, s, withLse);
        }
    }

    /** {@link #check} with keys and values stored in {@code b}'s bfloat16 KV cache, against the reference on their rounding. */
    static void checkBf16Kv(CpuBackend b, AttentionShape s, boolean withLse) {
        Random rnd = new Random(s.hashCode());
        int d = s.headDim();
        long qn = s.batch() * s.seqQ() * s.heads() * d;
        long kvn = ((s.batch() - 1) * s.kvRowsPerBatch() + s.seqKv()) * s.kvHeads() * d;
        float[] q = random(rnd, qn, 1f), k = random(rnd, kvn, 1f), v = random(rnd, kvn, 1f);
        try (Tensor tq = b.upload(q); Tensor wk = b.upload(k); Tensor wv = b.upload(v);
             Tensor tk = b.allocateKv(kvn); Tensor tv = b.allocateKv(kvn);
             Tensor out = b.allocate(qn); Tensor lse = withLse ? b.allocate(s.batch() * s.seqQ() * s.heads()) : null) {
            assertTrue(tk instanceof CpuBf16Tensor, "a bfloat16 KV cache");
            b.copy(tk, 0, wk, 0, kvn);
            b.copy(tv, 0, wv, 0, kvn);
            float[] rk = new float[(int) kvn], rv = new float[(int) kvn];
            b.download(tk, 0, rk, 0, rk.length);
            b.download(tv, 0, rv, 0, rv.length);
            for (int i = 0; i < kvn; i++) {
                assertEquals(Float.intBitsToFloat(Bfloat16.round(k[i]) << 16), rk[i], "stored key " + i);
                assertEquals(Float.intBitsToFloat(Bfloat16.round(v[i]) << 16), rv[i], "stored value " + i);
            }
            b.attention(out, tq, tk, tv, lse, s);
            float[] o = new float[(int) qn];
            b.download(out, 0, o, 0, o.length);
            float[] l = new float[withLse ? (int) (s.batch() * s.seqQ() * s.heads()) : 0];
            if (withLse) b.download(lse, 0, l, 0, l.length);
            for (int bi = 0; bi < s.batch(); bi++)
                for (long i = 0; i < s.seqQ(); i++)
                    for (int h = 0; h < s.heads(); h++) checkRow(s, q, rk, rv, o, withLse ? l : null, bi, i, h);
        }
    }

    /** Views share a bfloat16 KV cache's memory and die with it; mixed key and value types and other ops are refused. */
    @Test
    void bfloat16KvCacheViewsAndRefusals() {
        try (CpuBackend bf16 = new CpuBackend(1, DType.BF16)) {
            Tensor cache = bf16.allocateKv(64);
            Tensor rows = bf16.view(cache, 16, 8);
            try (Tensor src = bf16.upload(new float[]{1.5f, -2.25f, 3.0039062f, 1e-3f, 65504f, -0f, 7f, 8f})) {
                bf16.copy(rows, 0, src, 0, 8);
            }
            float[] back = new float[8];
            bf16.download(cache, 16, back, 0, 8);
            assertEquals(1.5f, back[0]);
            assertEquals(3.0f, back[2], "rounded to bfloat16's 8 bits");
            assertEquals(Float.intBitsToFloat(Bfloat16.round(1e-3f) << 16), back[3]);
            float[] viaView = new float[8];
            bf16.download(rows, 0, viaView, 0, 8);
            assertEquals(java.util.Arrays.toString(back), java.util.Arrays.toString(viaView));
            Tensor q = bf16.allocate(64), f32 = bf16.allocate(64), out = bf16.allocate(64);
            AttentionShape s = new AttentionShape(1, 1, 2, 2, 1, 2, 2, 16, 0.25f);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> bf16.attention(out, q, cache, f32, null, s));
            assertTrue(e.getMessage().contains("one type"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> bf16.addInPlace(f32, cache, 8));
            assertTrue(e.getMessage().contains("bfloat16"), e.getMessage());
            cache.close();
            assertThrows(IllegalStateException.class, () -> bf16.download(rows, 0, new float[1], 0, 1));
            assertThrows(IllegalArgumentException.class, () -> new CpuBackend(1, DType.F16));
        }
    }

    /** One query without a log-sum-exp: the keys-in-lanes decode kernel, on every path it has (tails, windows, groups, chunks). */
    @Test
    void decodeKernelWithKeysInLanes() {
        AttentionShape one = new AttentionShape(1, 1, 3000, 3000, 2999, 1, 1, 64, 0.125f);
        assertTrue(DecodeAttention.applies(new AttentionGeometry(one, null, null, null, null, null)) == (VectorMath.LANES == 16));
        check(one, false, 1);
        check(new AttentionShape(2, 1, 300, 320, 299, 4, 2, 64, 0.125f), false, 1);
        check(new AttentionShape(1, 1, 1, 1, 0, 2, 2, 16, 0.25f), false, 1);
        check(new AttentionShape(1, 1, 7, 9, 6, 6, 6, 32, 0.2f), false, 1);
        check(new AttentionShape(2, 1, 5000, 5100, 4999, 8, 4, 128, 0.1f), false, 1);
        check(new AttentionShape(2, 1, 3000, 3100, 2999, 4, 2, 64, 0.125f, 700), false, 1);
        check(new AttentionShape(1, 1, 2001, 2001, 2000, 8, 1, 16, 4f), false, 1);
        check(new AttentionShape(1, 1, 1000, 1000, 999, 4, 1, 80, 0.1f), false, 1);
        // groups of 3 and 7: query heads scored in pairs, then one alone; a partial last block of keys
        check(new AttentionShape(2, 1, 1037, 1040, 1036, 6, 2, 64, 0.125f), false, 1);
        check(new AttentionShape(1, 1, 2051, 2051, 2050, 14, 2, 64, 0.125f), false, 1);
        // groups of 4 with heads of 128: the four heads' value sums 64 columns at a time
        check(new AttentionShape(1, 1, 1500, 1500, 1499, 8, 2, 128, 0.09f), false, 1);
    }

    /**
     * Keys and values laid out head by head ({@link AttentionShape#kvHeadMajor}, the CPU backend's KV caches) give the
     * attention the same values laid out row by row give, bit for bit, on every path: the decode kernel (one head per
     * key/value head with 16-key blocks, groups, tails, windows, keys split between threads, the last head's keys
     * ending where the cache ends, so reading ahead must stop there) and the query tiles (other head sizes, a
     * log-sum-exp, prefill chunks), float32 and bfloat16.
     */
    @Test
    void headByHeadLayoutGivesTheSameAttention() {
        AttentionShape[] shapes = {
                new AttentionShape(1, 1, 3000, 3000, 2999, 1, 1, 64, 0.125f),
                new AttentionShape(1, 1, 2051, 2051, 2050, 12, 12, 64, 0.125f),
                new AttentionShape(2, 1, 300, 320, 299, 4, 2, 64, 0.125f),
                new AttentionShape(1, 1, 7, 9, 6, 6, 6, 32, 0.2f),
                new AttentionShape(2, 1, 1037, 1040, 1036, 6, 2, 64, 0.125f),
                new AttentionShape(1, 1, 2051, 2051, 2050, 14, 2, 64, 0.125f),
                new AttentionShape(2, 1, 3000, 3100, 2999, 4, 2, 64, 0.125f, 700),
                new AttentionShape(1, 1, 1000, 1000, 999, 4, 1, 80, 0.1f),
                new AttentionShape(1, 1, 700, 700, 699, 16, 16, 128, 0.09f),
                new AttentionShape(1, 1, 1500, 1500, 1499, 8, 2, 128, 0.09f),
                new AttentionShape(2, 40, 130, 160, 90, 4, 2, 64, 0.125f),
                new AttentionShape(2, 70, 400, 420, 330, 4, 1, 16, 0.25f, 100),
                new AttentionShape(1, 3, 777, 800, 774, 2, 1, 32, 0.2f)};
        for (DType type : new DType[]{DType.F32, DType.BF16})
            try (CpuBackend b = new CpuBackend(3, type)) {
                for (AttentionShape s : shapes)
                    for (boolean withLse : new boolean[]{false, true}) checkHeadByHead(b, s, withLse);
            }
    }

    /** Attention on random keys and values stored row by row, then the same values stored head by head: equal outputs. */
    static void checkHeadByHead(CpuBackend b, AttentionShape rows, boolean withLse) {
        AttentionShape heads = rows.withKvHeadMajor(true);
        assertTrue(heads.kvHeadMajor() && !rows.kvHeadMajor());
        Random rnd = new Random(rows.hashCode());
        int d = rows.headDim(), kvHeads = rows.kvHeads();
        long qn = rows.batch() * rows.seqQ() * rows.heads() * d;
        long kvn = rows.batch() * rows.kvRowsPerBatch() * kvHeads * d;
        assertEquals(kvn - (rows.kvRowsPerBatch() - rows.seqKv()) * kvHeads * d, rows.kvValuesNeeded());
        assertEquals(kvn - (rows.kvRowsPerBatch() - rows.seqKv()) * d, heads.kvValuesNeeded());
        float[] q = random(rnd, qn, 1f), k = random(rnd, kvn, 1f), v = random(rnd, kvn, 1f);
        float[] kh = new float[(int) kvn], vh = new float[(int) kvn];
        for (int bi = 0; bi < rows.batch(); bi++)
            for (int h = 0; h < kvHeads; h++)
                for (long r = 0; r < rows.kvRowsPerBatch(); r++) {
                    long from = rows.kvHeadOffset(bi, h) + r * rows.kvRowStride(), to = heads.kvHeadOffset(bi, h) + r * heads.kvRowStride();
                    assertEquals(((bi * rows.kvRowsPerBatch() + r) * kvHeads + h) * d, from);
                    assertEquals(((long) (bi * kvHeads + h) * rows.kvRowsPerBatch() + r) * d, to);
                    System.arraycopy(k, (int) from, kh, (int) to, d);
                    System.arraycopy(v, (int) from, vh, (int) to, d);
                }
        float[][] outs = new float[2][], lses = new float[2][];
        for (int layout = 0; layout < 2; layout++) {
            AttentionShape s = layout == 0 ? rows : heads;
            // Exactly the values the shape needs, so the last head's keys end where the cache does.
            long needed = s.kvValuesNeeded();
            float[] ks = java.util.Arrays.copyOf(layout == 0 ? k : kh, (int) needed), vs = java.util.Arrays.copyOf(layout == 0 ? v : vh, (int) needed);
            try (Tensor tq = b.upload(q); Tensor wk = b.upload(ks); Tensor wv = b.upload(vs);
                 Tensor tk = b.allocateKv(needed); Tensor tv = b.allocateKv(needed);
                 Tensor out = b.allocate(qn); Tensor lse = withLse ? b.allocate(rows.batch() * rows.seqQ() * rows.heads()) : null) {
                b.copy(tk, 0, wk, 0, needed);
                b.copy(tv, 0, wv, 0, needed);
                b.attention(out, tq, tk, tv, lse, s);
                outs[layout] = new float[(int) qn];
                b.download(out, 0, outs[layout], 0, outs[layout].length);
                lses[layout] = new float[withLse ? (int) (rows.batch() * rows.seqQ() * rows.heads()) : 0];
                if (withLse) b.download(lse, 0, lses[layout], 0, lses[layout].length);
            }
        }
        org.junit.jupiter.api.Assertions.assertArrayEquals(outs[0], outs[1], "head by head against row by row, " + rows + " " + b.kvType());
        org.junit.jupiter.api.Assertions.assertArrayEquals(lses[0], lses[1], "log-sum-exp, " + rows);
        // And both are attention: the row-by-row result against the reference on the stored (possibly rounded) values.
        if (b.kvType() == DType.F32)
            for (int bi = 0; bi < rows.batch(); bi++)
                for (long i : queries(rows.seqQ(), Math.max(1, rows.seqQ() / 3)))
                    for (int h = 0; h < rows.heads(); h++) checkRow(rows, q, k, v, outs[0], withLse ? lses[0] : null, bi, i, h);
    }

    /**
     * {@link Backend#storeKv} puts new rows where each layout keeps them: row by row one range, head by head one range
     * per key/value head at the row's position (the CPU's own copy, one call or split between threads by size, equals
     * the contract's default of plain copies); a bfloat16 cache rounds them as copy does; a step stores at its position.
     */
    @Test
    void storeKvPutsRowsWhereEachLayoutKeepsThem() {
        for (DType type : new DType[]{DType.F32, DType.BF16})
            try (CpuBackend b = new CpuBackend(2, type)) {
                for (int[] c : new int[][]{{3, 1, 16, 40, 5, 2}, {2, 7, 32, 60, 20, 7}, {4, 700, 64, 900, 100, 3}}) {
                    int kvHeads = c[0], n = c[1], dim = c[2], capacity = c[3], at = c[4];
                    long width = (long) kvHeads * dim;
                    AttentionShape shape = new AttentionShape(1, n, at + n, capacity, at, kvHeads * c[5], kvHeads, dim, 0.1f);
                    float[] src = random(new Random(n), n * width, 1f);
                    for (boolean headMajor : new boolean[]{false, true}) {
                        AttentionShape s = shape.withKvHeadMajor(headMajor);
                        float[] mine = new float[(int) (capacity * width)], byCopies = new float[mine.length];
                        try (Tensor rows = b.upload(src); Tensor cache = b.allocateKv(capacity * width);
                             Tensor other = b.allocateKv(capacity * width)) {
                            b.storeKv(cache, rows, s);
                            // The contract's default on the same tensors (nothing but copies), through a proxy.
                            Backend contract = (Backend) java.lang.reflect.Proxy.newProxyInstance(Backend.class.getClassLoader(),
                                    new Class<?>[]{Backend.class}, (proxy, method, args) -> method.getName().equals("storeKv")
                                            ? java.lang.reflect.InvocationHandler.invokeDefault(proxy, method, args)
                                            : method.invoke(b, args));
                            contract.storeKv(other, rows, s);
                            b.download(cache, 0, mine, 0, mine.length);
                            b.download(other, 0, byCopies, 0, byCopies.length);
                        }
                        org.junit.jupiter.api.Assertions.assertArrayEquals(byCopies, mine, "storeKv " + s);
                        for (int r = 0; r < n; r++)
                            for (int h = 0; h < kvHeads; h++)
                                for (int x = 0; x < dim; x++) {
                                    float want = src[(int) (r * width + (long) h * dim + x)];
                                    if (type == DType.BF16) want = Float.intBitsToFloat(Bfloat16.round(want) << 16);
                                    long where = s.kvHeadOffset(0, h) + (at + r) * s.kvRowStride() + x;
                                    assertEquals(want, mine[(int) where], "row " + r + " head " + h + " value " + x + " of " + s);
                                }
                        int stored = 0;
                        for (float x : mine) if (x != 0) stored++;
                        assertEquals(n * width, stored, "nothing else written, " + s);
                    }
                }
            }
    }

    @Test
    void largeScoresStayFinite() {
        AttentionShape s = new AttentionShape(1, 130, 130, 130, 0, 2, 1, 16, 4f);
        check(s, true, 1);
    }

    /**
     * 16k tokens: a seq x seq score matrix would be 1 GiB. Once the kernels are compiled (before that, interpreted
     * vector code boxes every operation) the whole call must allocate, on the Java heap (the kernels allocate no
     * native memory), only O(threads x tile), and sampled rows must match the reference.
     */
    @Test
    void longSequenceRunsInLinearMemory() {
        int seq = 16384, dim = 8;
        AttentionShape s = AttentionShape.selfAttention(1, seq, 1, 1, dim);
        Random rnd = new Random(16);
        float[] q = random(rnd, (long) seq * dim, 1f), k = random(rnd, (long) seq * dim, 1f), v = random(rnd, (long) seq * dim, 1f);
        var threads = (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
        try (Tensor tq = cpu.upload(q); Tensor tk = cpu.upload(k); Tensor tv = cpu.upload(v);
             Tensor out = cpu.allocate((long) seq * dim); Tensor lse = cpu.allocate(seq)) {
            AttentionShape warmUp = AttentionShape.selfAttention(1, 2048, 1, 1, dim);
            // Until a warm-up call allocates next to nothing (the kernels compiled), at most 400 calls: the tests before
            // this one may have sent the JIT back to compiling them (other layouts, other paths).
            for (int i = 0; i < 400; i++) {
                long start = threads.getTotalThreadAllocatedBytes();
                cpu.attention(out, tq, tk, tv, lse, warmUp);
                if (i >= 20 && threads.getTotalThreadAllocatedBytes() - start < 1 << 20) break;
            }
            long before = threads.getTotalThreadAllocatedBytes();
            cpu.attention(out, tq, tk, tv, lse, s);
            long allocated = threads.getTotalThreadAllocatedBytes() - before;
            assertTrue(allocated < 16L << 20, "attention allocated " + allocated + " bytes");
            float[] o = new float[seq * dim], l = new float[seq];
            cpu.download(out, 0, o, 0, o.length);
            cpu.download(lse, 0, l, 0, l.length);
            for (long i : new long[]{0, 1, 63, 64, 65, 4095, 8192, 12345, seq - 2, seq - 1})
                checkRow(s, q, k, v, o, l, 0, i, 0);
        }
    }

    @Test
    void rejectsShortBuffers() {
        AttentionShape s = AttentionShape.selfAttention(1, 10, 2, 1, 16);
        try (Tensor q = cpu.allocate(320); Tensor kv = cpu.allocate(160); Tensor shortOut = cpu.allocate(319)) {
            var e = assertThrows(IllegalArgumentException.class, () -> cpu.attention(shortOut, q, kv, kv, null, s));
            assertTrue(e.getMessage().startsWith("attention: out has 319 floats"), e.getMessage());
            try (Tensor shortKv = cpu.allocate(159)) {
                assertThrows(IllegalArgumentException.class, () -> cpu.attention(q, q, shortKv, kv, null, s));
            }
        }
    }
}
