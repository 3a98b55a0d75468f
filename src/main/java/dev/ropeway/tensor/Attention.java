package dev.ropeway.tensor;

/**
 * Causal grouped-query attention in tiles with an online softmax (the FlashAttention schedule on CPU).
 *
 * <p>Each task takes up to {@link AttentionWorkspace#MAX_TILES} consecutive query tiles of one sequence and key/value
 * head (see {@link QueryTile}) and streams the keys they need through them, so every key/value tile copied serves
 * several query tiles. A tile reads keys only up to its last query's position and masks only the key tiles that pass
 * its first query's position. Tasks are handed out latest first: those see the most keys, and running them first
 * lets the cheap early ones fill the gaps at the end.
 *
 * <p>When there are fewer tiles than threads and many keys (a decode step with few key/value heads), each tile's
 * keys are also split into contiguous ranges whose partial results are merged afterwards, so every thread gets work.
 *
 * <p>Memory: O(threads x tile) scratch plus, when keys are split, O(tiles x splits x tile); never seqQ x seqKv.
 */
final class Attention {
    private static final ThreadLocal<AttentionWorkspace> WORKSPACE = ThreadLocal.withInitial(AttentionWorkspace::new);

    private Attention() {}

    static void run(WorkerPool pool, AttentionGeometry g) {
        long lanesPerHead = g.lanesPerKvHead();
        int width = lanesPerHead <= AttentionKernels.NARROW ? AttentionKernels.NARROW : AttentionKernels.WIDE;
        long tilesPerHead = (lanesPerHead + width - 1) / width;
        int heads = g.batch() * g.kvHeads();
        if (tilesPerHead * heads > Integer.MAX_VALUE / 2)
            throw new IllegalArgumentException("attention: " + tilesPerHead * heads + " tiles is more than this backend supports");
        int tiles = (int) (tilesPerHead * heads);
        int splits = splits(pool.threads(), tiles, tilesPerHead, g);
        if (splits > 1) {
            runSplit(pool, g, width, heads, tiles, splits);
            return;
        }
        int perTask = tilesPerTask(pool.threads(), tilesPerHead, heads);
        long groupsPerHead = (tilesPerHead + perTask - 1) / perTask;
        pool.run((int) (groupsPerHead * heads), task -> {
            int head = task % heads;
            long group = groupsPerHead - 1 - task / heads;
            AttentionWorkspace w = WORKSPACE.get().prepare(width, g.headDim());
            w.begin(g, head / g.kvHeads(), head % g.kvHeads(), group * perTask * width, perTask);
            w.attend(g, 0, w.lastPosition() + 1L);
            w.finish(g);
        });
    }

    /** Query tiles per task: as many as the workspace holds while leaving at least four tasks per thread. */
    static int tilesPerTask(int threads, long tilesPerHead, int heads) {
        for (int perTask = AttentionWorkspace.MAX_TILES; perTask > 1; perTask /= 2)
            if ((tilesPerHead + perTask - 1) / perTask * heads >= 4L * threads) return perTask;
        return 1;
    }

    /** How many key ranges to cut each tile's keys into. */
    static int splits(int threads, int tiles, long tilesPerHead, AttentionGeometry g) {
        if (tilesPerHead != 1 || tiles >= threads) return 1;
        long keyTiles = (g.qStart() + g.seqQ() + AttentionWorkspace.KEYS - 1) / AttentionWorkspace.KEYS;
        // Two ranges per thread even things out when some ranges run on a busier core.
        return (int) Math.max(1, Math.min(keyTiles / 2, (2L * threads + tiles - 1) / tiles));
    }

    private static void runSplit(WorkerPool pool, AttentionGeometry g, int width, int heads, int tiles, int splits) {
        int dim = g.headDim();
        float[][] partials = new float[tiles * splits][QueryTile.partialSize(width, dim)];
        pool.run(tiles * splits, task -> {
            int head = task / splits, part = task % splits;
            AttentionWorkspace w = begin(g, width, head);
            long end = w.lastPosition() + 1L;
            long keyTiles = (end + AttentionWorkspace.KEYS - 1) / AttentionWorkspace.KEYS;
            long from = keyTiles * part / splits * AttentionWorkspace.KEYS;
            long to = Math.min(end, keyTiles * (part + 1) / splits * AttentionWorkspace.KEYS);
            w.attend(g, from, to);
            w.tile(0).savePartial(partials[task]);
        });
        pool.run(tiles, head -> {
            AttentionWorkspace w = begin(g, width, head);
            w.tile(0).merge(partials, head * splits, splits);
            w.finish(g);
        });
    }

    /** Readies this thread's workspace for the single tile of key/value head {@code head} (batch-major). */
    private static AttentionWorkspace begin(AttentionGeometry g, int width, int head) {
        AttentionWorkspace w = WORKSPACE.get().prepare(width, g.headDim());
        w.begin(g, head / g.kvHeads(), head % g.kvHeads(), 0, 1);
        return w;
    }
}
