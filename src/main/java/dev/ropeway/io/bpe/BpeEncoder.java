package dev.ropeway.io.bpe;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ropeway.RopewayException;
import dev.ropeway.io.EndTokens;
import dev.ropeway.io.HfTokenizer;
import dev.ropeway.io.Json;
import dev.ropeway.io.Tokenizer;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A pure-Java encoder for byte-level BPE tokenizers (GPT-2's layout, and what {@code BpeTrainer} writes) that gives
 * the same ids as the tokenizers library does through {@link HfTokenizer}: added tokens are cut out first, the rest is
 * split by {@link GptPreTokenizer}, and each piece's bytes are merged lowest rank first, leftmost first among equal
 * ranks. Safe to use from several threads at once.
 */
public final class BpeEncoder implements Tokenizer {
    /** Pieces longer than this are not cached: they are rare, and would crowd out the common ones. */
    private static final int CACHE_MAX_PIECE = 48;
    private static final int CACHE_CAPACITY = 1 << 18;

    private final BpeModel model;
    private final int[] byteIds = new int[256];
    private final LongIntMap rankOf;
    private final int[] mergeResult;
    private final AddedTokenMatcher addedTokens;
    private final int[] prefix, suffix;
    private final byte[][] tokenBytes;
    private final boolean[] special;
    private final OptionalInt bos, eos;
    private final int[] endIds;
    private final ConcurrentHashMap<String, int[]> cache = new ConcurrentHashMap<>();

    public BpeEncoder(BpeModel model) {
        this(model, OptionalInt.empty(), OptionalInt.empty(), new int[0]);
    }

    private BpeEncoder(BpeModel model, OptionalInt bos, OptionalInt eos, int[] endIds) {
        this.model = model;
        this.endIds = endIds;
        this.bos = bos;
        this.eos = eos;
        Map<String, Integer> ids = new HashMap<>();
        for (int id = 0; id < model.vocabSize(); id++) if (model.token(id) != null) ids.putIfAbsent(model.token(id), id);
        for (int b = 0; b < 256; b++) byteIds[b] = ids.get(String.valueOf(ByteAlphabet.symbol(b)));
        int merges = model.mergeCount();
        rankOf = new LongIntMap(merges);
        mergeResult = new int[merges];
        // Backwards, so that a pair listed twice keeps its last rank, as in the tokenizers library.
        for (int r = merges - 1; r >= 0; r--) {
            int l = model.mergeLeft(r), rt = model.mergeRight(r);
            rankOf.putIfAbsent(LongIntMap.pair(l, rt), r);
            mergeResult[r] = ids.get(model.token(l) + model.token(rt));
        }
        addedTokens = new AddedTokenMatcher(model.addedTokens());
        prefix = model.prefix();
        suffix = model.suffix();
        tokenBytes = new byte[model.vocabSize()][];
        special = new boolean[model.vocabSize()];
        for (int id = 0; id < model.vocabSize(); id++) {
            String token = model.token(id);
            if (token == null) continue;
            byte[] bytes = ByteAlphabet.decode(token);
            // The ByteLevel decoder takes a token it cannot map (an added token like "<s>" maps; "☃" would not) as its UTF-8.
            tokenBytes[id] = bytes != null ? bytes : token.getBytes(StandardCharsets.UTF_8);
        }
        for (BpeModel.AddedToken t : model.addedTokens()) {
            special[t.id()] = t.special();
            byte[] bytes = ByteAlphabet.decode(t.content());
            tokenBytes[t.id()] = bytes != null ? bytes : t.content().getBytes(StandardCharsets.UTF_8);
        }
    }

    /**
     * Loads {@code tokenizer.json} from a folder (or the file itself), with BOS and EOS named by text in the
     * {@code tokenizer_config.json} beside it, when there is one.
     */
    public static BpeEncoder load(Path dirOrFile) {
        Path file = Files.isDirectory(dirOrFile) ? dirOrFile.resolve("tokenizer.json") : dirOrFile;
        BpeModel model = BpeModel.read(file);
        Path config = file.toAbsolutePath().getParent().resolve("tokenizer_config.json");
        OptionalInt bos = OptionalInt.empty(), eos = OptionalInt.empty();
        if (Files.isRegularFile(config)) {
            JsonNode root;
            try {
                root = Json.mapper().readTree(config.toFile());
            } catch (IOException e) {
                throw new RopewayException("cannot read " + config + ": " + e.getMessage(), e);
            }
            bos = tokenId(model, root.path("bos_token"));
            eos = tokenId(model, root.path("eos_token"));
        }
        return new BpeEncoder(model, bos, eos, EndTokens.of(file.toAbsolutePath().getParent(), eos, model.vocabSize()));
    }

    private static OptionalInt tokenId(BpeModel model, JsonNode token) {
        if (token.isObject()) token = token.path("content");
        if (!token.isTextual()) return OptionalInt.empty();
        int id = model.idOf(token.textValue());
        return id < 0 ? OptionalInt.empty() : OptionalInt.of(id);
    }

    public BpeModel model() {
        return model;
    }

    @Override
    public int[] encode(String text, boolean addSpecialTokens) {
        String clean = HfTokenizer.wellFormed(text);
        IdBuffer out = new IdBuffer(clean.length() / 3 + 8);
        if (addSpecialTokens) out.add(prefix);
        addedTokens.split(clean, new AddedTokenMatcher.Sink() {
            @Override
            public void text(int from, int to) {
                for (int i = from; i < to; ) {
                    int end = GptPreTokenizer.pieceEnd(clean, i, to);
                    out.add(piece(clean.substring(i, end)));
                    i = end;
                }
            }

            @Override
            public void token(int id) {
                out.add(id);
            }
        });
        if (addSpecialTokens) out.add(suffix);
        return out.toArray();
    }

    private int[] piece(String piece) {
        int[] ids = cache.get(piece);
        if (ids != null) return ids;
        ids = merge(piece.getBytes(StandardCharsets.UTF_8));
        if (piece.length() <= CACHE_MAX_PIECE && cache.size() < CACHE_CAPACITY) cache.put(piece, ids);
        return ids;
    }

    /**
     * BPE on one piece: the symbols form a linked list, and a min-heap holds (rank, position) of every mergeable
     * adjacent pair. An entry is stale once either symbol has changed; then the pair at its position has another
     * rank (a merged symbol is always longer, so it never re-forms the same pair), which is how it is recognised.
     */
    int[] merge(byte[] utf8) {
        int n = utf8.length;
        if (n == 1) return new int[] {byteIds[utf8[0] & 0xFF]};
        int[] symbol = new int[n], next = new int[n], prev = new int[n];
        for (int i = 0; i < n; i++) {
            symbol[i] = byteIds[utf8[i] & 0xFF];
            next[i] = i + 1 < n ? i + 1 : -1;
            prev[i] = i - 1;
        }
        long[] heap = new long[3 * n];
        int size = 0;
        for (int i = 0; i + 1 < n; i++) {
            int rank = rankOf.get(LongIntMap.pair(symbol[i], symbol[i + 1]), -1);
            if (rank >= 0) size = push(heap, size, (long) rank << 32 | i);
        }
        int remaining = n;
        while (size > 0) {
            long top = heap[0];
            size = pop(heap, size);
            int rank = (int) (top >>> 32), pos = (int) top;
            if (symbol[pos] < 0) continue;
            int right = next[pos];
            if (right < 0 || rankOf.get(LongIntMap.pair(symbol[pos], symbol[right]), -1) != rank) continue;
            symbol[pos] = mergeResult[rank];
            symbol[right] = -1;
            int after = next[right];
            next[pos] = after;
            if (after >= 0) prev[after] = pos;
            remaining--;
            int before = prev[pos];
            if (before >= 0) {
                int r = rankOf.get(LongIntMap.pair(symbol[before], symbol[pos]), -1);
                if (r >= 0) size = push(heap, size, (long) r << 32 | before);
            }
            if (after >= 0) {
                int r = rankOf.get(LongIntMap.pair(symbol[pos], symbol[after]), -1);
                if (r >= 0) size = push(heap, size, (long) r << 32 | pos);
            }
        }
        int[] ids = new int[remaining];
        for (int i = 0, k = 0; i >= 0; i = next[i]) ids[k++] = symbol[i];
        return ids;
    }

    private static int push(long[] heap, int size, long value) {
        int i = size;
        heap[i] = value;
        while (i > 0) {
            int parent = (i - 1) >>> 1;
            if (heap[parent] <= value) break;
            heap[i] = heap[parent];
            i = parent;
        }
        heap[i] = value;
        return size + 1;
    }

    private static int pop(long[] heap, int size) {
        long last = heap[--size];
        int i = 0;
        while (true) {
            int child = 2 * i + 1;
            if (child >= size) break;
            if (child + 1 < size && heap[child + 1] < heap[child]) child++;
            if (heap[child] >= last) break;
            heap[i] = heap[child];
            i = child;
        }
        heap[i] = last;
        return size;
    }

    /**
     * The text of {@code ids}, as the ByteLevel decoder gives it: the bytes of all tokens joined, then read as UTF-8
     * with each malformed sequence replaced by U+FFFD.
     */
    @Override
    public String decode(int[] ids, boolean skipSpecialTokens) {
        int length = 0;
        for (int id : ids) {
            if (id < 0 || id >= tokenBytes.length || tokenBytes[id] == null)
                throw new RopewayException("token id " + id + " is outside the vocabulary (0.." + (tokenBytes.length - 1) + ")");
            if (!(skipSpecialTokens && special[id])) length += tokenBytes[id].length;
        }
        byte[] bytes = new byte[length];
        int at = 0;
        for (int id : ids) {
            if (skipSpecialTokens && special[id]) continue;
            System.arraycopy(tokenBytes[id], 0, bytes, at, tokenBytes[id].length);
            at += tokenBytes[id].length;
        }
        return new String(bytes, StandardCharsets.UTF_8);
    }

    @Override
    public Optional<byte[]> tokenBytes(int id) {
        if (id < 0 || id >= tokenBytes.length || tokenBytes[id] == null)
            throw new RopewayException("token id " + id + " is outside the vocabulary (0.." + (tokenBytes.length - 1) + ")");
        return Optional.of(tokenBytes[id].clone());
    }

    @Override
    public int vocabSize() {
        return model.vocabSize();
    }

    @Override
    public OptionalInt bosId() {
        return bos;
    }

    @Override
    public OptionalInt eosId() {
        return eos;
    }

    @Override
    public int[] endIds() {
        return endIds.clone();
    }

    @Override
    public void close() {}

    /** A growable id array for one encoding. */
    private static final class IdBuffer {
        private int[] data;
        private int size;

        IdBuffer(int capacity) {
            data = new int[capacity];
        }

        void add(int id) {
            if (size == data.length) data = Arrays.copyOf(data, size * 2);
            data[size++] = id;
        }

        void add(int[] ids) {
            if (size + ids.length > data.length) data = Arrays.copyOf(data, Math.max(size * 2, size + ids.length));
            System.arraycopy(ids, 0, data, size, ids.length);
            size += ids.length;
        }

        int[] toArray() {
            return Arrays.copyOf(data, size);
        }
    }
}
