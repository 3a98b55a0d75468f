package dev.ropeway.tensor;

/**
 * Causal grouped-query attention in tiles with an online softmax (the FlashAttention schedule on CPU).
 *
 * <p>Prefill (more than one tile of queries per key/value head): each task takes up to
 * {@link AttentionWorkspace#MAX_TILES} consecutive query tiles of one sequence and key/value head (see
 * {@link QueryTile}) and streams the keys they need through them. A tile reads keys only up to its last query's
 * position and masks only the key tiles that pass its first query's position. Tasks are handed out latest first:
 * those see the most keys, and running them first lets the cheap early ones fill the gaps at the end.
 *
 * <p>Decode (the queries of a sequence fit one tile per key/value head, as in a generation step): each task takes
 * all key/value heads of one sequence, so it reads whole KV rows, and when there are fewer sequences than threads
 * the keys are also cut into contiguous chunks whose partial results are merged afterwards.
 *
 * <p>Memory: O(threads x tile) scratch plus, when keys are split, O(sequences x chunks x heads x tile); never
 * seqQ x seqKv.
 */
final class Attention {
    private static final ThreadLocal<AttentionWorkspace> WORKSPACE = ThreadLocal.withInitial(AttentionWorkspace::new);
    /** A decode key chunk is at least this many keys, so merging never costs more than the chunk. */
    static final int MIN_CHUNK_KEYS = 256;

    private Attention() {}

    static void run(WorkerPool pool, AttentionGeometry g) {
        if (DecodeAttention.applies(g)) {
            DecodeAttention.run(pool, g);
            return;
        }
        long lanesPerHead = g.lanesPerKvHead();
        int width = lanesPerHead <= AttentionKernels.NARROW ? AttentionKernels.NARROW : AttentionKernels.WIDE;
        long tilesPerHead = (lanesPerHead + width - 1) / width;
        if (tilesPerHead == 1) {
            runDecode(pool, g, width);
            return;
        }
        int heads = g.batch() * g.kvHeads();
        int perTask = tilesPerTask(pool.threads(), tilesPerHead, heads);
        long groupsPerHead = (tilesPerHead + perTask - 1) / perTask;
        if (groupsPerHead * heads > Integer.MAX_VALUE)
            throw new IllegalArgumentException("attention: " + groupsPerHead * heads + " tasks is more than this backend supports");
        pool.run((int) (groupsPerHead * heads), task -> {
            int head = task % heads;
            long group = groupsPerHead - 1 - task / heads;
            AttentionWorkspace w = WORKSPACE.get().prepare(width, g.headDim());
            w.beginConsecutive(g, head / g.kvHeads(), head % g.kvHeads(), group * perTask * width, perTask);
            w.attend(g, w.firstNeededKey(g), w.lastPosition() + 1L);
            w.finish(g);
        });
    }

    /** Query tiles per prefill task: as many as the workspace holds while leaving at least four tasks per thread. */
    static int tilesPerTask(int threads, long tilesPerHead, int heads) {
        for (int perTask = AttentionWorkspace.MAX_TILES; perTask > 1; perTask /= 2)
            if ((tilesPerHead + perTask - 1) / perTask * heads >= 4L * threads) return perTask;
        return 1;
    }

    /** Key chunks per sequence in a decode step: enough for two tasks per thread, none under MIN_CHUNK_KEYS. */
    static int decodeChunks(int threads, int batch, long keys) {
        long wanted = (2L * threads + batch - 1) / batch;
        return (int) Math.max(1, Math.min(wanted, keys / MIN_CHUNK_KEYS));
    }

    private static void runDecode(WorkerPool pool, AttentionGeometry g, int width) {
        int batch = g.batch(), kvHeads = g.kvHeads();
        long visible = g.window() == 0 ? g.qStart() + g.seqQ() : Math.min(g.qStart() + g.seqQ(), g.window() + g.seqQ());
        int chunks = decodeChunks(pool.threads(), batch, visible);
        if (chunks == 1) {
            pool.run(batch, b -> {
                AttentionWorkspace w = WORKSPACE.get().prepare(width, g.headDim());
                w.beginAllHeads(g, b);
                w.attend(g, w.firstNeededKey(g), w.lastPosition() + 1L);
                w.finish(g);
            });
            return;
        }
        float[][] partials = new float[batch * kvHeads * chunks][QueryTile.partialSize(width, g.headDim())];
        pool.run(batch * chunks, task -> {
            int b = task / chunks, chunk = task % chunks;
            AttentionWorkspace w = WORKSPACE.get().prepare(width, g.headDim());
            w.beginAllHeads(g, b);
            long start = w.firstNeededKey(g), end = w.lastPosition() + 1L;
            int step = w.keysPerTile(kvHeads);
            long steps = (end - start + step - 1) / step;
            long from = start + steps * chunk / chunks * step;
            long to = Math.min(end, start + steps * (chunk + 1) / chunks * step);
            w.attend(g, from, to);
            for (int h = 0; h < kvHeads; h++) w.tile(h).savePartial(partials[(b * kvHeads + h) * chunks + chunk]);
        });
        pool.run(batch, b -> {
            AttentionWorkspace w = WORKSPACE.get().prepare(width, g.headDim());
            w.beginAllHeads(g, b);
            for (int h = 0; h < kvHeads; h++) w.tile(h).merge(partials, (b * kvHeads + h) * chunks, chunks);
            w.finish(g);
        });
    }
}
