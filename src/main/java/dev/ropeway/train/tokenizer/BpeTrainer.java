package dev.ropeway.train.tokenizer;

import dev.ropeway.io.bpe.*;
import dev.ropeway.RopewayException;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Trains a GPT-2-style byte-level BPE: the text is cut into words by GPT-2's pre-tokenizer regex, each word starts as
 * its UTF-8 bytes, and the most frequent adjacent pair of symbols (counted over all words, weighted by how often each
 * word occurs) is merged into a new symbol, again and again until the vocabulary has the size asked for.
 *
 * <p>The ids of a trained vocabulary: {@code <unk>} 0, {@code <s>} 1 (BOS), {@code </s>} 2 (EOS), {@code <pad>} 3 (the
 * Llama layout, and the ids {@code ropeway init} writes into config.json), then the 256 single bytes in byte order
 * (4..259), then one token per merge in the order the merges were learnt. Byte-level text never needs
 * {@code <unk>}; it is there so that the ids line up with Llama's.
 *
 * <p>After a merge only the words that held the pair change, and in them only the pairs beside each merge site; the
 * trainer keeps, for every pair, its count and the words it occurs in, and finds the next best pair in a priority
 * queue whose stale entries are skipped when they come up. Ties go to the pair with the lower left symbol id, then
 * the lower right one, so a corpus and options always give the same merges.
 */
public final class BpeTrainer {
    public static final int UNK = 0, BOS = 1, EOS = 2, PAD = 3;
    public static final List<String> SPECIAL_TOKENS = List.of("<unk>", "<s>", "</s>", "<pad>");
    /** The id of the token for byte 0; byte {@code b} has id {@code FIRST_BYTE + b}. */
    public static final int FIRST_BYTE = SPECIAL_TOKENS.size();
    public static final int MIN_VOCAB_SIZE = FIRST_BYTE + 256;

    /**
     * @param vocabSize    the total number of ids wanted, special and byte tokens included
     * @param minFrequency merges stop before a pair that occurs fewer times than this
     * @param threads      threads for counting words
     */
    public record Options(int vocabSize, long minFrequency, int threads) {
        public Options {
            if (vocabSize < MIN_VOCAB_SIZE)
                throw new RopewayException("vocabulary size " + vocabSize + " is too small: a byte-level BPE needs at least "
                        + MIN_VOCAB_SIZE + " ids (" + FIRST_BYTE + " special tokens " + String.join(" ", SPECIAL_TOKENS)
                        + " and 256 byte tokens) before any merge");
            if (minFrequency < 1) throw new RopewayException("minimum pair frequency must be at least 1, not " + minFrequency);
            if (threads < 1) throw new RopewayException("threads must be at least 1, not " + threads);
        }
    }

    /** What training saw and did. */
    public record Stats(int documents, long bytes, long words, int distinctWords, int merges, long tokens,
                        double countSeconds, double mergeSeconds) {
        /** UTF-8 bytes per token of the training text under the trained merges. */
        public double bytesPerToken() {
            return tokens == 0 ? 0 : (double) bytes / tokens;
        }
    }

    public record Result(BpeModel model, Stats stats) {}

    /** Hears how training goes; called on the training thread, except {@link #counting} which any thread may call. */
    public interface Progress {
        default void counting(long charsDone, long charsTotal) {}

        default void counted(long words, int distinctWords) {}

        default void merged(int done, int total) {}

        Progress NONE = new Progress() {};
    }

    private BpeTrainer() {}

    public static Result train(List<String> documents, Options options, Progress progress) {
        long start = System.nanoTime();
        long chars = 0, bytes = 0;
        for (String d : documents) {
            chars += d.length();
            bytes += utf8Length(d);
        }
        if (bytes == 0) throw new RopewayException("the corpus holds no text to train on");
        long totalChars = chars;
        AddedTokenMatcher specials = new AddedTokenMatcher(specialTokens());
        WordCounter.Counts counts = WordCounter.count(documents, specials, options.threads,
                done -> progress.counting(done, totalChars));
        progress.counted(counts.total(), counts.words().size());
        double countSeconds = (System.nanoTime() - start) / 1e9;

        long mergeStart = System.nanoTime();
        Merger merger = new Merger(counts.words(), options);
        merger.run(progress);
        double mergeSeconds = (System.nanoTime() - mergeStart) / 1e9;

        BpeModel model = merger.model();
        Stats stats = new Stats(documents.size(), bytes, counts.total(), counts.words().size(), model.mergeCount(),
                merger.tokens(), countSeconds, mergeSeconds);
        return new Result(model, stats);
    }

    static List<BpeModel.AddedToken> specialTokens() {
        List<BpeModel.AddedToken> tokens = new ArrayList<>();
        for (int id = 0; id < SPECIAL_TOKENS.size(); id++) tokens.add(new BpeModel.AddedToken(id, SPECIAL_TOKENS.get(id), true));
        return tokens;
    }

    static long utf8Length(CharSequence s) {
        long n = 0;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c < 0x80) n++;
            else if (c < 0x800) n += 2;
            else if (Character.isHighSurrogate(c) && i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1))) {
                n += 4;
                i++;
            } else n += 3;
        }
        return n;
    }

    /** The merge loop. Symbols are numbered 0..255 for the bytes, then in order of creation. */
    private static final class Merger {
        private final Options options;
        // Words: their symbols (compacted in place as merges apply), current length and count.
        private final int[][] symbols;
        private final int[] length;
        private final long[] frequency;
        private final int[] wordStamp;
        // Symbols: their token strings, and the symbol of each token string (a merge can rebuild an existing one).
        private final List<String> tokens = new ArrayList<>();
        private final Map<String, Integer> symbolOf = new HashMap<>();
        private final IntList mergeLeft = new IntList(), mergeRight = new IntList();
        // Pairs: index by packed (left, right); per index the symbols, count and the words that may hold it.
        private final LongIntMap pairIndex;
        private int[] pairLeft, pairRight, whereSize, pairStamp;
        private long[] pairCount;
        private int[][] where;
        private int pairs;
        // The priority queue: a binary heap of (count, pair index) entries; entries whose count is out of date are
        // dropped or re-queued when they reach the top.
        private long[] heapCount = new long[1024];
        private int[] heapPair = new int[1024];
        private int heapSize;
        // The merge in progress.
        private int mergeNumber, left, right, merged;
        private final IntList touched = new IntList();

        Merger(Map<String, long[]> counts, Options options) {
            this.options = options;
            // Sorted, so the arrays (and with them any order-dependent detail) do not depend on hashing.
            String[] words = counts.keySet().toArray(String[]::new);
            Arrays.sort(words);
            symbols = new int[words.length][];
            length = new int[words.length];
            frequency = new long[words.length];
            wordStamp = new int[words.length];
            Arrays.fill(wordStamp, -1);
            for (int b = 0; b < 256; b++) {
                String token = String.valueOf(ByteAlphabet.symbol(b));
                tokens.add(token);
                symbolOf.put(token, b);
            }
            long pairOccurrences = 0;
            for (int w = 0; w < words.length; w++) {
                byte[] utf8 = words[w].getBytes(StandardCharsets.UTF_8);
                int[] s = new int[utf8.length];
                for (int i = 0; i < s.length; i++) s[i] = utf8[i] & 0xFF;
                symbols[w] = s;
                length[w] = s.length;
                frequency[w] = counts.get(words[w])[0];
                pairOccurrences += Math.max(0, s.length - 1);
            }
            int expectedPairs = (int) Math.min(1 << 22, Math.max(1024, pairOccurrences / 4));
            pairIndex = new LongIntMap(expectedPairs);
            pairLeft = new int[expectedPairs];
            pairRight = new int[expectedPairs];
            whereSize = new int[expectedPairs];
            pairStamp = new int[expectedPairs];
            pairCount = new long[expectedPairs];
            where = new int[expectedPairs][];
            for (int w = 0; w < words.length; w++) {
                int[] s = symbols[w];
                for (int i = 0; i + 1 < s.length; i++) {
                    int p = pairFor(s[i], s[i + 1]);
                    pairCount[p] += frequency[w];
                    addWhere(p, w);
                }
            }
            for (int p = 0; p < pairs; p++) push(pairCount[p], p);
        }

        void run(Progress progress) {
            int target = options.vocabSize() - FIRST_BYTE;
            int total = target - 256;
            progress.merged(0, total);
            while (tokens.size() < target && heapSize > 0) {
                long count = heapCount[0];
                int p = heapPair[0];
                pop();
                if (count != pairCount[p]) {
                    if (pairCount[p] > 0) push(pairCount[p], p);
                    continue;
                }
                if (count < options.minFrequency()) break;
                merge(p);
                progress.merged(tokens.size() - 256, total);
            }
        }

        private void merge(int p) {
            left = pairLeft[p];
            right = pairRight[p];
            String token = tokens.get(left) + tokens.get(right);
            Integer existing = symbolOf.get(token);
            if (existing != null) {
                merged = existing;
            } else {
                merged = tokens.size();
                tokens.add(token);
                symbolOf.put(token, merged);
            }
            mergeLeft.add(left);
            mergeRight.add(right);
            mergeNumber++;
            touched.clear();
            int[] list = where[p];
            int n = whereSize[p];
            for (int i = 0; i < n; i++) {
                int w = list[i];
                if (wordStamp[w] == mergeNumber) continue;
                wordStamp[w] = mergeNumber;
                mergeIn(w);
            }
            pairCount[p] = 0;
            where[p] = null;
            whereSize[p] = 0;
            for (int i = 0; i < touched.size(); i++) {
                int q = touched.get(i);
                if (pairCount[q] > 0) push(pairCount[q], q);
            }
        }

        /** Replaces each (left, right) in word {@code w}, left to right, and moves the counts of the pairs beside it. */
        private void mergeIn(int w) {
            int[] s = symbols[w];
            int n = length[w];
            long f = frequency[w];
            int out = 0;
            for (int i = 0; i < n; ) {
                if (i + 1 < n && s[i] == left && s[i + 1] == right) {
                    // The symbol before is already final (s[out - 1]); the one after is still the original.
                    if (out > 0) {
                        change(s[out - 1], left, -f, w);
                        change(s[out - 1], merged, f, w);
                    }
                    if (i + 2 < n) {
                        change(right, s[i + 2], -f, w);
                        change(merged, s[i + 2], f, w);
                    }
                    s[out++] = merged;
                    i += 2;
                } else {
                    s[out++] = s[i++];
                }
            }
            length[w] = out;
        }

        private void change(int a, int b, long delta, int w) {
            // The merged pair itself is zeroed once the merge is done.
            if (a == left && b == right) return;
            int q = pairFor(a, b);
            pairCount[q] += delta;
            if (delta > 0) {
                addWhere(q, w);
                if (pairStamp[q] != mergeNumber) {
                    pairStamp[q] = mergeNumber;
                    touched.add(q);
                }
            }
        }

        private int pairFor(int a, int b) {
            int q = pairIndex.putIfAbsent(LongIntMap.pair(a, b), pairs);
            if (q == pairs) {
                if (pairs == pairLeft.length) growPairs();
                pairLeft[q] = a;
                pairRight[q] = b;
                pairStamp[q] = -1;
                pairs++;
            }
            return q;
        }

        private void growPairs() {
            int n = pairLeft.length * 2;
            pairLeft = Arrays.copyOf(pairLeft, n);
            pairRight = Arrays.copyOf(pairRight, n);
            whereSize = Arrays.copyOf(whereSize, n);
            pairStamp = Arrays.copyOf(pairStamp, n);
            pairCount = Arrays.copyOf(pairCount, n);
            where = Arrays.copyOf(where, n);
        }

        /** Notes that word {@code w} may hold pair {@code p}; repeats within one word are skipped. */
        private void addWhere(int p, int w) {
            int[] list = where[p];
            int n = whereSize[p];
            if (list == null) {
                list = where[p] = new int[4];
            } else if (n > 0 && list[n - 1] == w) {
                return;
            } else if (n == list.length) {
                list = where[p] = Arrays.copyOf(list, n * 2);
            }
            list[n] = w;
            whereSize[p] = n + 1;
        }

        /** Whether heap entry i comes before entry j: higher count, then lower left symbol, then lower right. */
        private boolean before(int i, int j) {
            if (heapCount[i] != heapCount[j]) return heapCount[i] > heapCount[j];
            int pi = heapPair[i], pj = heapPair[j];
            if (pairLeft[pi] != pairLeft[pj]) return pairLeft[pi] < pairLeft[pj];
            return pairRight[pi] < pairRight[pj];
        }

        private void push(long count, int p) {
            if (heapSize == heapCount.length) {
                heapCount = Arrays.copyOf(heapCount, heapSize * 2);
                heapPair = Arrays.copyOf(heapPair, heapSize * 2);
            }
            int i = heapSize++;
            heapCount[i] = count;
            heapPair[i] = p;
            while (i > 0) {
                int parent = (i - 1) >>> 1;
                if (!before(i, parent)) break;
                swap(i, parent);
                i = parent;
            }
        }

        private void pop() {
            heapSize--;
            heapCount[0] = heapCount[heapSize];
            heapPair[0] = heapPair[heapSize];
            int i = 0;
            while (true) {
                int l = 2 * i + 1, r = l + 1, best = i;
                if (l < heapSize && before(l, best)) best = l;
                if (r < heapSize && before(r, best)) best = r;
                if (best == i) return;
                swap(i, best);
                i = best;
            }
        }

        private void swap(int i, int j) {
            long c = heapCount[i];
            heapCount[i] = heapCount[j];
            heapCount[j] = c;
            int p = heapPair[i];
            heapPair[i] = heapPair[j];
            heapPair[j] = p;
        }

        /** The number of tokens the training text now takes: every word at its current length, times its count. */
        long tokens() {
            long n = 0;
            for (int w = 0; w < symbols.length; w++) n += length[w] * frequency[w];
            return n;
        }

        BpeModel model() {
            String[] vocab = new String[FIRST_BYTE + tokens.size()];
            for (int id = 0; id < FIRST_BYTE; id++) vocab[id] = SPECIAL_TOKENS.get(id);
            for (int s = 0; s < tokens.size(); s++) vocab[FIRST_BYTE + s] = tokens.get(s);
            int[] l = new int[mergeLeft.size()], r = new int[mergeRight.size()];
            for (int m = 0; m < l.length; m++) {
                l[m] = FIRST_BYTE + mergeLeft.get(m);
                r[m] = FIRST_BYTE + mergeRight.get(m);
            }
            return new BpeModel(vocab, l, r, specialTokens(), new int[] {BOS}, new int[0]);
        }
    }

    /** A growable int array. */
    private static final class IntList {
        private int[] data = new int[16];
        private int size;

        void add(int v) {
            if (size == data.length) data = Arrays.copyOf(data, size * 2);
            data[size++] = v;
        }

        int get(int i) {
            return data[i];
        }

        int size() {
            return size;
        }

        void clear() {
            size = 0;
        }
    }
}
