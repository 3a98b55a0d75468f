package dev.ropeway.train.tokenizer;

import dev.ropeway.io.bpe.*;
import dev.ropeway.io.HfTokenizer;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongConsumer;

/**
 * Counts the pre-tokenized pieces ("words") of a set of documents on several threads. BPE only ever merges inside a
 * word, so training needs each distinct word once, with its count, instead of the text.
 */
final class WordCounter {
    /** Work is handed out in units of about this many chars: small enough to balance threads, big enough to be cheap. */
    private static final int UNIT_CHARS = 1 << 18;

    private record Segment(String text, int from, int to) {}

    /** The distinct words with their counts, and the number of words counted. */
    record Counts(Map<String, long[]> words, long total) {}

    private WordCounter() {}

    static Counts count(List<String> documents, AddedTokenMatcher addedTokens, int threads, LongConsumer charsDone) {
        List<List<Segment>> units = units(documents, addedTokens);
        AtomicInteger next = new AtomicInteger();
        AtomicLong done = new AtomicLong();
        int workers = Math.max(1, Math.min(threads, units.size()));
        List<Map<String, long[]>> maps = new ArrayList<>();
        long[] totals = new long[workers];
        if (workers == 1) {
            maps.add(countUnits(units, next, done, charsDone, totals, 0));
        } else {
            ExecutorService pool = Executors.newFixedThreadPool(workers, r -> {
                Thread t = new Thread(r, "bpe-word-count");
                t.setDaemon(true);
                return t;
            });
            try {
                List<Future<Map<String, long[]>>> futures = new ArrayList<>();
                for (int w = 0; w < workers; w++) {
                    int worker = w;
                    futures.add(pool.submit(() -> countUnits(units, next, done, charsDone, totals, worker)));
                }
                for (Future<Map<String, long[]>> f : futures) maps.add(f.get());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while counting words", e);
            } catch (ExecutionException e) {
                if (e.getCause() instanceof RuntimeException r) throw r;
                throw new IllegalStateException(e.getCause());
            } finally {
                pool.shutdownNow();
            }
        }
        // Fold the smaller maps into the largest one; the counts are sums, so the order does not matter.
        maps.sort((x, y) -> Integer.compare(y.size(), x.size()));
        Map<String, long[]> all = maps.getFirst();
        for (int i = 1; i < maps.size(); i++) {
            for (Map.Entry<String, long[]> e : maps.get(i).entrySet()) {
                long[] c = all.putIfAbsent(e.getKey(), e.getValue());
                if (c != null) c[0] += e.getValue()[0];
            }
        }
        long total = 0;
        for (long t : totals) total += t;
        return new Counts(all, total);
    }

    private static Map<String, long[]> countUnits(List<List<Segment>> units, AtomicInteger next, AtomicLong done,
                                                  LongConsumer charsDone, long[] totals, int worker) {
        PieceTable counts = new PieceTable();
        long words = 0;
        for (int u; (u = next.getAndIncrement()) < units.size(); ) {
            long chars = 0;
            for (Segment s : units.get(u)) {
                String text = s.text;
                int i = s.from;
                while (i < s.to) {
                    int end = GptPreTokenizer.pieceEnd(text, i, s.to);
                    counts.add(text, i, end);
                    words++;
                    i = end;
                }
                chars += s.to - s.from;
            }
            charsDone.accept(done.addAndGet(chars));
        }
        totals[worker] = words;
        return counts.toMap();
    }

    /**
     * Counts of pieces, looked up by their place in the text: a piece seen before (nearly all of them) costs a hash
     * and a comparison, with no String made for it. Hashes are String's own, so a stored key's cached hash matches.
     */
    static final class PieceTable {
        private String[] keys = new String[1 << 14];
        private long[] counts = new long[keys.length];
        private int size;

        void add(String text, int from, int to) {
            int h = 0;
            for (int i = from; i < to; i++) h = 31 * h + text.charAt(i);
            int mask = keys.length - 1, length = to - from;
            for (int slot = mix(h) & mask; ; slot = (slot + 1) & mask) {
                String key = keys[slot];
                if (key == null) {
                    keys[slot] = text.substring(from, to);
                    counts[slot] = 1;
                    if (++size * 2 > keys.length) grow();
                    return;
                }
                if (key.hashCode() == h && key.length() == length && key.regionMatches(0, text, from, length)) {
                    counts[slot]++;
                    return;
                }
            }
        }

        private static int mix(int h) {
            return (h * 0x9E3779B9) ^ (h >>> 16);
        }

        private void grow() {
            String[] oldKeys = keys;
            long[] oldCounts = counts;
            keys = new String[oldKeys.length * 2];
            counts = new long[keys.length];
            int mask = keys.length - 1;
            for (int i = 0; i < oldKeys.length; i++) {
                if (oldKeys[i] == null) continue;
                int slot = mix(oldKeys[i].hashCode()) & mask;
                while (keys[slot] != null) slot = (slot + 1) & mask;
                keys[slot] = oldKeys[i];
                counts[slot] = oldCounts[i];
            }
        }

        Map<String, long[]> toMap() {
            Map<String, long[]> map = new HashMap<>(size * 2);
            for (int i = 0; i < keys.length; i++) if (keys[i] != null) map.put(keys[i], new long[] {counts[i]});
            return map;
        }
    }

    /**
     * Cuts the documents into units of work. A long document is cut only where a piece is sure to end anyway:
     * before a white-space char that follows a non-white-space one (no piece runs from a word into the spaces after
     * it, and the regex never looks behind), so cutting changes no piece.
     */
    private static List<List<Segment>> units(List<String> documents, AddedTokenMatcher addedTokens) {
        List<List<Segment>> units = new ArrayList<>();
        List<Segment> unit = new ArrayList<>();
        int[] unitChars = {0};
        for (String document : documents) {
            String text = HfTokenizer.wellFormed(document);
            addedTokens.split(text, new AddedTokenMatcher.Sink() {
                @Override
                public void text(int from, int to) {
                    int start = from;
                    while (to - start > UNIT_CHARS) {
                        int cut = safeCut(text, start + UNIT_CHARS, to);
                        if (cut >= to) break;
                        add(new Segment(text, start, cut));
                        start = cut;
                    }
                    add(new Segment(text, start, to));
                }

                @Override
                public void token(int id) {}

                private void add(Segment s) {
                    unit.add(s);
                    unitChars[0] += s.to - s.from;
                    if (unitChars[0] >= UNIT_CHARS) {
                        units.add(new ArrayList<>(unit));
                        unit.clear();
                        unitChars[0] = 0;
                    }
                }
            });
        }
        if (!unit.isEmpty()) units.add(unit);
        return units;
    }

    /** The first safe place to cut at or after {@code at}, or {@code to} if there is none. */
    static int safeCut(String text, int at, int to) {
        for (int p = Math.max(at, 1); p < to; p++) {
            if (GptPreTokenizer.isWhiteSpace(text.charAt(p)) && !GptPreTokenizer.isWhiteSpace(text.charAt(p - 1))) return p;
        }
        return to;
    }
}
