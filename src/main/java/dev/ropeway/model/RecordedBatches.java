package dev.ropeway.model;

import dev.ropeway.rope.RopePlan;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.DecodeStep;
import dev.ropeway.tensor.Recording;
import dev.ropeway.tensor.RotaryTable;
import dev.ropeway.tensor.Tensor;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;

/**
 * A model's batched decode steps, recorded ({@link Backend#record}) once per group of decoders that step together and
 * replayed while the same group steps again: on a GPU one graph launch for the whole step instead of a couple of hundred
 * kernel launches plus a few per sequence. Each sequence's token, position and frequencies reach the recording through
 * its own {@link DecodeStep}. A group is its decoders in creation order, so the order a caller lists them in does not
 * matter; at most {@link #LIMIT} groups are kept (the least recently used goes first: a server's groups change as
 * requests come and go, and a member late for a step makes a subgroup step without it), and a group goes when one of
 * its decoders closes.
 */
final class RecordedBatches implements AutoCloseable {
    static final int LIMIT = 8;

    private final Transformer model;
    private final LinkedHashMap<List<Decoder>, Group> groups = new LinkedHashMap<>(16, 0.75f, true);
    private boolean closed;

    RecordedBatches(Transformer model) {
        this.model = model;
    }

    /**
     * One token for each decoder (checked and prepared by the caller: room for the token, frequencies of the new
     * length in place); returns each one's logits, in the caller's order.
     */
    synchronized List<float[]> step(List<Decoder> decoders, int[] ids) {
        if (closed) throw new IllegalStateException("the model is closed");
        int k = ids.length, vocab = model.config().vocabSize();
        Integer[] order = new Integer[k];
        for (int i = 0; i < k; i++) order[i] = i;
        Arrays.sort(order, Comparator.comparingLong(i -> decoders.get(i).id()));
        Decoder[] sorted = new Decoder[k];
        float[] scales = new float[k];
        float[][] freqs = new float[k][];
        for (int j = 0; j < k; j++) {
            sorted[j] = decoders.get(order[j]);
            RopePlan plan = sorted[j].nextPlan();
            scales[j] = plan.attentionScale();
            freqs[j] = plan.invFreq();
        }
        List<Decoder> members = List.of(sorted);
        Group g = groups.get(members);
        if (g != null && !g.fits(scales, freqs)) {
            groups.remove(members);
            g.close();
            g = null;
        }
        if (g == null) {
            g = new Group(members, scales, freqs);
            groups.put(members, g);
            while (groups.size() > LIMIT) {
                var eldest = groups.entrySet().iterator().next();
                groups.remove(eldest.getKey());
                eldest.getValue().close();
            }
        }
        float[] all = new float[k * vocab];
        try {
            for (int j = 0; j < k; j++) g.steps[j].set(ids[order[j]], members.get(j).length(), freqs[j]);
            g.recording.replay();
            model.backend().download(g.logits, 0, all, 0, all.length);
        } catch (RuntimeException | Error e) {
            groups.remove(members);
            g.close();
            throw e;
        }
        boolean graph = g.recording.replayedAsGraph();
        float[][] out = new float[k][];
        for (int j = 0; j < k; j++) {
            members.get(j).stepped(ids[order[j]], freqs[j], graph);
            out[order[j]] = Arrays.copyOfRange(all, j * vocab, (j + 1) * vocab);
        }
        return Arrays.asList(out);
    }

    /** Groups kept now (for tests). */
    synchronized int size() {
        return groups.size();
    }

    /** Drops the groups {@code d} is in (it is closing; none of them is stepping). */
    synchronized void forget(Decoder d) {
        var it = groups.entrySet().iterator();
        while (it.hasNext()) {
            var e = it.next();
            if (e.getKey().contains(d)) {
                it.remove();
                e.getValue().close();
            }
        }
    }

    @Override
    public synchronized void close() {
        closed = true;
        for (Group g : groups.values()) g.close();
        groups.clear();
    }

    /** One group's recorded step: its inputs, its rotary tables, its hidden rows and logits. */
    private final class Group implements AutoCloseable {
        final float[] scales;
        final int[] halves;
        final DecodeStep[] steps;
        final Tensor logits;
        final Recording recording;
        private final Owned made = new Owned("a recorded batched step");

        Group(List<Decoder> members, float[] scales, float[][] freqs) {
            this.scales = scales.clone();
            Backend backend = model.backend();
            ModelConfig c = model.config();
            int k = members.size(), h = c.hiddenSize();
            halves = new int[k];
            steps = new DecodeStep[k];
            try {
                Tensor x = add(backend.allocate((long) k * h));
                logits = add(backend.allocate((long) k * c.vocabSize()));
                RotaryTable[] queries = new RotaryTable[k], keys = new RotaryTable[k];
                List<Transformer.SequenceRow> rows = new ArrayList<>(k);
                for (int j = 0; j < k; j++) {
                    int half = freqs[j].length;
                    halves[j] = half;
                    steps[j] = add(backend.decodeStep(half));
                    queries[j] = new RotaryTable(add(backend.allocate(half)), add(backend.allocate(half)), 1, half);
                    keys[j] = scales[j] == 1f ? queries[j]
                            : new RotaryTable(add(backend.allocate(half)), add(backend.allocate(half)), 1, half);
                    Decoder d = members.get(j);
                    KvCache cache = d.cache();
                    // Covering the whole cache: each step's position comes from its DecodeStep when the step runs.
                    rows.add(new Transformer.SequenceRow(queries[j], keys[j], d.attentionShape(cache.capacity() - 1, 1),
                            l -> new Transformer.LayerKv(cache.keys(l), cache.values(l),
                                    cache.keepsRawKeys() ? cache.rawKeys(l) : null, cache.keys(l), cache.values(l), null),
                            steps[j]));
                }
                recording = add(backend.record(() -> {
                    for (int j = 0; j < k; j++) {
                        backend.embedding(backend.view(x, (long) j * h, h), model.weights().embedding(), steps[j], h);
                        backend.rotaryTable(queries[j], steps[j], this.scales[j] * this.scales[j]);
                        if (keys[j] != queries[j]) backend.rotaryTable(keys[j], steps[j], 1f);
                    }
                    model.layers(x, rows);
                    model.finalNorm(x, x, k);
                    model.logits(x, k, logits);
                }));
            } catch (RuntimeException | Error e) {
                close();
                throw e;
            }
        }

        /** Whether this recording serves a step at these attention scales and frequency counts. */
        boolean fits(float[] scales, float[][] freqs) {
            if (!Arrays.equals(this.scales, scales)) return false;
            for (int j = 0; j < freqs.length; j++) if (freqs[j].length != halves[j]) return false;
            return true;
        }

        private <T extends AutoCloseable> T add(T t) {
            return made.add(t);
        }

        @Override
        public void close() {
            made.close();
        }
    }
}
