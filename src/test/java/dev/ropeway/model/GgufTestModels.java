package dev.ropeway.model;

import dev.ropeway.io.GgmlType;
import dev.ropeway.io.GgufFile;
import dev.ropeway.io.GgufValue;
import dev.ropeway.io.GgufWriter;
import dev.ropeway.io.Json;
import dev.ropeway.io.SafeTensorsWriter;
import dev.ropeway.io.WeightStore;
import dev.ropeway.io.bpe.BpeModel;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.testutil.Phi3Checkpoints;
import dev.ropeway.train.tokenizer.BpeTrainer;
import dev.ropeway.train.tokenizer.TokenizerFiles;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Small random checkpoints for the GGUF tests, in a folder of their own: a byte-level BPE tokenizer trained on
 * {@link #SAMPLE}, every architecture and RoPE method GGUF carries (the export cases), and the logits helpers that
 * compare two models position by position.
 */
final class GgufTestModels {
    static final int HIDDEN = 64, FFN = 96, LAYERS = 2, HEADS = 4, KV_HEADS = 2, HEAD_DIM = 16, CONTEXT = 128;

    final Path tmp;
    final Path tokenizer;
    final int vocab;

    GgufTestModels(Path tmp) {
        this.tmp = tmp;
        this.tokenizer = tmp.resolve("tokenizer");
        this.vocab = writeTokenizer(tokenizer).vocabSize();
    }

    /** Text with what pre-tokenisers split differently: digits, contractions, runs of spaces, newlines, accents, CJK. */
    static final String SAMPLE = """
            Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse,
            I thought I'd sail about a little and see the watery part of the world. It's 1851; the Pequod's crew
              numbers 30 (or 31?) men --   "whale-ships" ain't cheap: $4,000.50 each!\t\tTabs,\r\nCRLF and   spaces.
            Café, naïve, façade; Ахав; 白鯨; emoji 🐋🐋 and mixed123numbers 1234567 x.y.z ... ok?!
            """;

    private static BpeModel writeTokenizer(Path dir) {
        List<String> docs = new ArrayList<>();
        for (int i = 0; i < 20; i++) docs.add(SAMPLE.repeat(1 + i % 3));
        BpeModel model = BpeTrainer.train(docs, new BpeTrainer.Options(600, 2, 1), BpeTrainer.Progress.NONE).model();
        TokenizerFiles.write(dir, model, CONTEXT);
        return model;
    }

    /**
     * A random checkpoint of {@code config} whose weights make every part of the model count: matrices of standard
     * deviation 0.3 (scores and logits of order one and more, so a wrong rotation shows), norm weights around 1 and
     * every bias the architecture has; with the test tokenizer.
     */
    Path checkpoint(Path dir, Map<String, Object> config, long seed) throws IOException {
        return checkpoint(dir, config, seed, 0.3);
    }

    /** {@link #checkpoint(Path, Map, long)} with matrices of standard deviation {@code std}. */
    Path checkpoint(Path dir, Map<String, Object> config, long seed, double std) throws IOException {
        ModelConfig c = ModelConfig.parse(config, "test config");
        Path plain = dir.resolveSibling(dir.getFileName() + "-plain");
        CheckpointWriter.writeRandom(plain, config, seed);
        SafeTensorsWriter w = new SafeTensorsWriter();
        Random r = new Random(seed + 1);
        try (WeightStore store = WeightStore.open(plain)) {
            for (String name : store.names()) {
                if (addedBelow(name)) continue;
                float[] x = store.readFloats(name);
                boolean norm = store.info(name).shape().length == 1;
                for (int i = 0; i < x.length; i++) x[i] = norm ? (float) (1 + 0.3 * r.nextGaussian()) : (float) (std / 0.02) * x[i];
                w.add(name, x, store.info(name).shape());
            }
        }
        for (int i = 0; i < c.numLayers(); i++) {
            String a = "model.layers." + i + ".self_attn.";
            if (c.qkvBias()) {
                w.add(a + "q_proj.bias", gaussian(r, c.qDim(), 0.5), c.qDim());
                w.add(a + "k_proj.bias", gaussian(r, c.kvDim(), 0.5), c.kvDim());
                w.add(a + "v_proj.bias", gaussian(r, c.kvDim(), 0.5), c.kvDim());
            }
            if (c.outputBias()) w.add(a + "o_proj.bias", gaussian(r, c.hiddenSize(), 0.5), c.hiddenSize());
            if (c.qkNorm()) {
                w.add(a + "q_norm.weight", around1(r, c.headDim()), c.headDim());
                w.add(a + "k_norm.weight", around1(r, c.headDim()), c.headDim());
            }
        }
        Files.createDirectories(dir);
        w.write(dir.resolve("model.safetensors"));
        Json.writeAtomic(dir.resolve("config.json"), config);
        for (String f : List.of(TokenizerFiles.TOKENIZER_JSON, TokenizerFiles.TOKENIZER_CONFIG))
            Files.copy(tokenizer.resolve(f), dir.resolve(f));
        return dir;
    }

    /** The biases and query / key norms, which {@link #checkpoint} draws itself (CheckpointWriter writes 0 and 1). */
    static boolean addedBelow(String name) {
        return name.endsWith(".bias") || name.endsWith("q_norm.weight") || name.endsWith("k_norm.weight");
    }

    private static float[] gaussian(Random r, int n, double std) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float) (std * r.nextGaussian());
        return x;
    }

    private static float[] around1(Random r, int n) {
        float[] x = gaussian(r, n, 0.3);
        for (int i = 0; i < n; i++) x[i] += 1;
        return x;
    }

    Map<String, Object> llamaConfig(boolean tied) {
        return CheckpointWriter.llamaConfig(vocab, HIDDEN, FFN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, CONTEXT,
                new DefaultRope(10000, HEAD_DIM), tied);
    }

    /** One export: a checkpoint, the RoPE spec written into the file (null: the checkpoint's own) and the GGUF type. */
    record Case(String name, Path model, String rope, GgufExport.Dtype dtype) {
        RopeScaling resolvedRope() {
            ModelConfig c = Transformer.loadConfig(model);
            return rope == null ? c.rope() : c.ropeOrSpec(rope);
        }
    }

    private List<Case> cases;

    /** The export cases, written once per folder. */
    synchronized List<Case> cases() throws IOException {
        if (cases == null) cases = List.copyOf(writeCases());
        return cases;
    }

    private List<Case> writeCases() throws IOException {
        List<Case> cases = new ArrayList<>();
        Path llama = checkpoint(tmp.resolve("llama"), llamaConfig(false), 21);
        cases.add(new Case("llama", llama, null, GgufExport.Dtype.F32));
        cases.add(new Case("llama, linear x4", llama, "linear:factor=4", GgufExport.Dtype.F32));
        cases.add(new Case("llama, static NTK x4", llama, "ntk:factor=4", GgufExport.Dtype.F32));
        // From 1024 positions YaRN's ramp spans pairs 1 to 5 of the 8: interpolated, blended and kept pairs.
        cases.add(new Case("llama, YaRN x4 from 1024", llama, "yarn:factor=4,original_max_position_embeddings=1024",
                GgufExport.Dtype.F32));
        cases.add(new Case("llama, YaRN x4 from 1024, attention factor 1.3", llama,
                "yarn:factor=4,original_max_position_embeddings=1024,attention_factor=1.3", GgufExport.Dtype.F32));
        cases.add(new Case("llama, Llama 3 x8 from 32", llama,
                "llama3:factor=8,low_freq_factor=1,high_freq_factor=4,original_max_position_embeddings=32", GgufExport.Dtype.F32));
        String longRope = "longrope:short_factor=1;1.2;1.5;2;3;4;6;8,long_factor=1;1.5;2;4;6;9;12;16,"
                + "original_max_position_embeddings=32,factor=4";
        cases.add(new Case("llama, LongRoPE from 32 (long factors)", llama, longRope, GgufExport.Dtype.F32));
        cases.add(new Case("llama, theta 500000", llama, "default:rope_theta=500000", GgufExport.Dtype.F32));
        cases.add(new Case("llama tied", checkpoint(tmp.resolve("tied"), llamaConfig(true), 22), null, GgufExport.Dtype.F32));

        Map<String, Object> biased = llamaConfig(false);
        biased.put("attention_bias", true);
        cases.add(new Case("llama with attention biases", checkpoint(tmp.resolve("biased"), biased, 23), null, GgufExport.Dtype.F32));

        Map<String, Object> wideHeads = CheckpointWriter.llamaConfig(vocab, HIDDEN, FFN, LAYERS, HEADS, KV_HEADS, 24,
                CONTEXT, new DefaultRope(10000, 24), false);
        cases.add(new Case("llama, head_dim 24 beside hidden 64", checkpoint(tmp.resolve("heads"), wideHeads, 24), null,
                GgufExport.Dtype.F32));

        Map<String, Object> mistral = llamaConfig(false);
        mistral.put("architectures", List.of("MistralForCausalLM"));
        mistral.put("model_type", "mistral");
        mistral.put("sliding_window", 4096);
        cases.add(new Case("mistral", checkpoint(tmp.resolve("mistral"), mistral, 25), null, GgufExport.Dtype.F32));

        Map<String, Object> qwen2 = CheckpointWriter.llamaConfig(vocab, HIDDEN, FFN, LAYERS, HEADS, KV_HEADS, HEAD_DIM,
                CONTEXT, new DefaultRope(1e6, HEAD_DIM), false);
        qwen2.put("architectures", List.of("Qwen2ForCausalLM"));
        qwen2.put("model_type", "qwen2");
        Path qwen2Dir = checkpoint(tmp.resolve("qwen2"), qwen2, 26);
        cases.add(new Case("qwen2 (biases)", qwen2Dir, null, GgufExport.Dtype.F32));
        cases.add(new Case("qwen2, YaRN x4 from 1024", qwen2Dir, "yarn:factor=4,original_max_position_embeddings=1024",
                GgufExport.Dtype.F32));

        Map<String, Object> qwen3 = llamaConfig(false);
        qwen3.put("architectures", List.of("Qwen3ForCausalLM"));
        qwen3.put("model_type", "qwen3");
        qwen3.put("rms_norm_eps", 1e-6);
        Path qwen3Dir = checkpoint(tmp.resolve("qwen3"), qwen3, 27);
        cases.add(new Case("qwen3 (query and key norms)", qwen3Dir, null, GgufExport.Dtype.F32));
        cases.add(new Case("qwen3, YaRN x4 from 1024", qwen3Dir, "yarn:factor=4,original_max_position_embeddings=1024",
                GgufExport.Dtype.F32));

        Path phi3 = Phi3Checkpoints.write(checkpoint(tmp.resolve("phi3-llama"), llamaConfig(false), 28), tmp.resolve("phi3"));
        cases.add(new Case("phi3 (stacked projections)", phi3, null, GgufExport.Dtype.F32));
        // Phi-3's 128k form: LongRoPE from its config, original context at the top level.
        Map<String, Object> longLlama = CheckpointWriter.withRope(llamaConfig(false),
                Transformer.loadConfig(llama).ropeOrSpec(longRope), CONTEXT);
        Path phi3Long = Phi3Checkpoints.write(checkpoint(tmp.resolve("phi3-long-llama"), longLlama, 29), tmp.resolve("phi3-long"));
        cases.add(new Case("phi3, LongRoPE from its config", phi3Long, null, GgufExport.Dtype.F32));
        return cases;
    }

    /** BOS, then random ids from the whole vocabulary but its special tokens. */
    int[] promptIds(int n, long seed) {
        Random r = new Random(seed);
        int[] ids = new int[n];
        ids[0] = BpeTrainer.BOS;
        for (int i = 1; i < n; i++) ids[i] = BpeTrainer.FIRST_BYTE + r.nextInt(vocab - BpeTrainer.FIRST_BYTE);
        return ids;
    }

    static float[][] logits(CpuBackend backend, Path model, RopeScaling rope, int[] ids) {
        try (Transformer t = Transformer.load(backend, model)) {
            float[] flat = new Scorer(t).score(TokenBatch.of(new int[][]{ids}), rope, true).logits();
            int v = flat.length / ids.length;
            float[][] rows = new float[ids.length][];
            for (int i = 0; i < ids.length; i++) rows[i] = Arrays.copyOfRange(flat, i * v, (i + 1) * v);
            return rows;
        }
    }

    static int argmax(float[] x) {
        int best = 0;
        for (int i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    static double maxDifference(float[][] a, float[][] b) {
        assertEquals(a.length, b.length, "rows");
        double worst = 0;
        for (int i = 0; i < a.length; i++) {
            assertEquals(a[i].length, b[i].length, "row " + i + " length");
            for (int j = 0; j < a[i].length; j++) worst = Math.max(worst, Math.abs(a[i][j] - b[i][j]));
        }
        return worst;
    }

    static double maxAbs(float[][] a) {
        double m = 0;
        for (float[] row : a) for (float x : row) m = Math.max(m, Math.abs(x));
        return m;
    }

    /** {@code in} rewritten with metadata keys set or removed; tensors copied as float32 values in their own types. */
    static void rewrite(Path in, Path out, Map<String, GgufValue> set, Set<String> remove) {
        try (GgufFile g = GgufFile.open(in)) {
            GgufWriter w = new GgufWriter();
            for (Map.Entry<String, GgufValue> e : g.metadata().entrySet())
                if (!remove.contains(e.getKey()) && !set.containsKey(e.getKey()) && !e.getKey().equals("general.alignment"))
                    w.put(e.getKey(), e.getValue());
            set.forEach(w::put);
            for (GgufFile.Tensor t : g.tensors().values()) w.tensor(t.name(), t.type(), t.shape(), () -> g.floats(t.name()));
            w.write(out);
        }
    }

    /**
     * A copy of checkpoint folder {@code from} whose SentencePiece-style tokenizer.json says '\u2581' and the prefix
     * space with a Metaspace pre-tokenizer (prepend_scheme first, no split), as transformers writes Mistral's, instead of
     * a Prepend / Replace normalizer; the same ids either way.
     */
    static Path metaspaceCopy(Path from, Path to) throws IOException {
        Files.createDirectories(to);
        try (var files = Files.list(from)) {
            for (Path f : files.toList()) if (Files.isRegularFile(f)) Files.copy(f, to.resolve(f.getFileName()));
        }
        Map<String, Object> tokenizer = Json.readObject(to.resolve("tokenizer.json"));
        tokenizer.put("normalizer", null);
        Map<String, Object> metaspace = new java.util.LinkedHashMap<>();
        metaspace.put("type", "Metaspace");
        metaspace.put("replacement", "\u2581");
        metaspace.put("prepend_scheme", "first");
        metaspace.put("split", false);
        tokenizer.put("pre_tokenizer", metaspace);
        Files.delete(to.resolve("tokenizer.json"));
        Json.writeAtomic(to.resolve("tokenizer.json"), tokenizer);
        return to;
    }

    /**
     * A SentencePiece BPE vocabulary learnt from {@code text} as SentencePiece lays one out: {@code <unk>},
     * {@code <s>}, {@code </s>}, the 256 byte pieces, the merged pieces best first (score minus their rank), the
     * single characters, then unused pieces up to {@code size}. Characters of {@code withheld} are left out, so they
     * take the byte fallback.
     */
    record SentencePieceVocab(List<String> tokens, float[] scores, int[] types) {
        static final String SPACE = "\u2581";

        static SentencePieceVocab learn(String text, int merges, int size, String withheld) {
            List<List<String>> words = new ArrayList<>();
            for (String line : text.split("\n"))
                for (String w : line.split(" ")) {
                    if (w.isEmpty()) continue;
                    List<String> symbols = new ArrayList<>();
                    (SPACE + w).codePoints().forEach(cp -> symbols.add(Character.toString(cp)));
                    words.add(symbols);
                }
            java.util.Set<String> chars = new java.util.TreeSet<>();
            words.forEach(chars::addAll);
            withheld.codePoints().forEach(cp -> chars.remove(Character.toString(cp)));
            List<String> pieces = new ArrayList<>();
            for (int m = 0; m < merges; m++) {
                Map<String, Integer> counts = new java.util.TreeMap<>();
                for (List<String> w : words)
                    for (int i = 0; i + 1 < w.size(); i++)
                        if (valid(w.get(i), chars, pieces) && valid(w.get(i + 1), chars, pieces))
                            counts.merge(w.get(i) + "\u0000" + w.get(i + 1), 1, Integer::sum);
                if (counts.isEmpty()) break;
                String best = counts.entrySet().stream().max(Map.Entry.comparingByValue()).orElseThrow().getKey();
                String left = best.substring(0, best.indexOf('\u0000')), right = best.substring(best.indexOf('\u0000') + 1);
                String merged = left + right;
                if (!pieces.contains(merged) && !chars.contains(merged)) pieces.add(merged);
                for (List<String> w : words)
                    for (int i = 0; i + 1 < w.size(); i++)
                        if (w.get(i).equals(left) && w.get(i + 1).equals(right)) {
                            w.set(i, merged);
                            w.remove(i + 1);
                        }
            }
            List<String> tokens = new ArrayList<>(List.of("<unk>", "<s>", "</s>"));
            List<Float> scores = new ArrayList<>(List.of(0f, 0f, 0f));
            List<Integer> types = new ArrayList<>(List.of(2, 3, 3));
            for (int b = 0; b < 256; b++) {
                tokens.add(String.format("<0x%02X>", b));
                scores.add(0f);
                types.add(6);
            }
            for (int i = 0; i < pieces.size(); i++) {
                tokens.add(pieces.get(i));
                scores.add((float) -i);
                types.add(1);
            }
            int c = 0;
            for (String ch : chars) {
                tokens.add(ch);
                scores.add((float) -(pieces.size() + c++));
                types.add(1);
            }
            if (tokens.size() > size) throw new IllegalArgumentException(tokens.size() + " pieces exceed " + size);
            while (tokens.size() < size) {
                tokens.add("<unused" + tokens.size() + ">");
                scores.add(-1e9f);
                types.add(5);
            }
            float[] s = new float[size];
            int[] t = new int[size];
            for (int i = 0; i < size; i++) {
                s[i] = scores.get(i);
                t[i] = types.get(i);
            }
            return new SentencePieceVocab(tokens, s, t);
        }

        private static boolean valid(String symbol, java.util.Set<String> chars, List<String> pieces) {
            return chars.contains(symbol) || pieces.contains(symbol);
        }

        /** SentencePiece's BPE: merge the adjacent pair whose piece scores best (leftmost on ties), then bytes for the rest. */
        int[] encode(String text, boolean bos) {
            Map<String, Integer> ids = new java.util.HashMap<>();
            for (int i = 0; i < tokens.size(); i++) ids.putIfAbsent(tokens.get(i), i);
            List<String> symbols = new ArrayList<>();
            (SPACE + text.replace(" ", SPACE)).codePoints().forEach(cp -> symbols.add(Character.toString(cp)));
            while (true) {
                int best = -1;
                float bestScore = Float.NEGATIVE_INFINITY;
                for (int i = 0; i + 1 < symbols.size(); i++) {
                    Integer id = ids.get(symbols.get(i) + symbols.get(i + 1));
                    if (id != null && scores[id] > bestScore) {
                        best = i;
                        bestScore = scores[id];
                    }
                }
                if (best < 0) break;
                symbols.set(best, symbols.get(best) + symbols.get(best + 1));
                symbols.remove(best + 1);
            }
            List<Integer> out = new ArrayList<>();
            if (bos) out.add(1);
            for (String s : symbols) {
                Integer id = ids.get(s);
                if (id != null && types[id] != 5) out.add(id);
                else for (byte b : s.getBytes(StandardCharsets.UTF_8)) out.add(3 + (b & 0xFF));
            }
            return out.stream().mapToInt(Integer::intValue).toArray();
        }

        /** The {@code tokenizer.ggml.*} keys of a "llama" (SentencePiece) tokenizer. */
        Map<String, GgufValue> metadata() {
            Map<String, GgufValue> m = new java.util.LinkedHashMap<>();
            m.put("tokenizer.ggml.model", GgufValue.string("llama"));
            m.put("tokenizer.ggml.tokens", GgufValue.strings(tokens));
            m.put("tokenizer.ggml.scores", GgufValue.float32s(scores));
            m.put("tokenizer.ggml.token_type", GgufValue.int32s(types));
            m.put("tokenizer.ggml.bos_token_id", GgufValue.uint32(1));
            m.put("tokenizer.ggml.eos_token_id", GgufValue.uint32(2));
            m.put("tokenizer.ggml.unknown_token_id", GgufValue.uint32(0));
            m.put("tokenizer.ggml.add_bos_token", GgufValue.bool(true));
            m.put("tokenizer.ggml.add_eos_token", GgufValue.bool(false));
            return m;
        }
    }

    /**
     * A Phi-3 checkpoint folder written as llama.cpp's {@code phi3} architecture (as its converter writes Phi-3):
     * fused {@code attn_qkv} and {@code ffn_up} (gate rows, then up), rotary halves as Hugging Face has them, and
     * LongRoPE as {@code rope_factors_short} / {@code rope_factors_long} with the original context and attention
     * factor as keys, and a SentencePiece vocabulary whose last two pieces are Phi-3's end tokens.
     */
    static Path phi3Gguf(Path dir, Path out) {
        ModelConfig c = Transformer.loadConfig(dir);
        GgufWriter w = new GgufWriter();
        w.put("general.architecture", GgufValue.string("phi3"));
        w.put("general.name", GgufValue.string("phi3 test"));
        w.put("general.file_type", GgufValue.uint32(0));
        w.put("phi3.context_length", GgufValue.uint32(c.maxPositionEmbeddings()));
        w.put("phi3.embedding_length", GgufValue.uint32(c.hiddenSize()));
        w.put("phi3.feed_forward_length", GgufValue.uint32(c.intermediateSize()));
        w.put("phi3.block_count", GgufValue.uint32(c.numLayers()));
        w.put("phi3.attention.head_count", GgufValue.uint32(c.numHeads()));
        w.put("phi3.attention.head_count_kv", GgufValue.uint32(c.numKvHeads()));
        w.put("phi3.attention.layer_norm_rms_epsilon", GgufValue.float32(c.rmsNormEps()));
        w.put("phi3.rope.dimension_count", GgufValue.uint32(c.rotaryDim()));
        w.put("phi3.rope.freq_base", GgufValue.float32((float) c.rope().theta()));
        if (c.rope() instanceof dev.ropeway.rope.LongRope l) {
            w.put("phi3.rope.scaling.original_context_length", GgufValue.uint32(l.originalMaxPositionEmbeddings()));
            w.put("phi3.rope.scaling.attn_factor", GgufValue.float32((float) l.resolvedAttentionFactor()));
            w.tensor("rope_factors_long.weight", GgmlType.F32, new long[]{l.longFactor().size()}, () -> floats(l.longFactor()));
            w.tensor("rope_factors_short.weight", GgmlType.F32, new long[]{l.shortFactor().size()}, () -> floats(l.shortFactor()));
        }
        // Phi-3 ships a SentencePiece tokenizer with <|endoftext|> (EOS) and <|end|> (end of turn), which llama.cpp
        // looks up by name for this architecture.
        SentencePieceVocab spm = SentencePieceVocab.learn(SAMPLE, 120, c.vocabSize(), "");
        List<String> tokens = new ArrayList<>(spm.tokens());
        int[] types = spm.types();
        int end = tokens.size() - 1, endOfText = tokens.size() - 2;
        tokens.set(endOfText, "<|endoftext|>");
        tokens.set(end, "<|end|>");
        types[endOfText] = types[end] = 3;
        spm.metadata().forEach(w::put);
        w.put("tokenizer.ggml.tokens", GgufValue.strings(tokens));
        w.put("tokenizer.ggml.token_type", GgufValue.int32s(types));
        w.put("tokenizer.ggml.eos_token_id", GgufValue.uint32(endOfText));
        w.put("tokenizer.ggml.eot_token_id", GgufValue.uint32(end));
        try (WeightStore store = WeightStore.open(dir)) {
            java.util.function.BiConsumer<String, String> copy = (gguf, hf) ->
                    w.tensor(gguf, GgmlType.F32, store.info(hf).shape(), () -> store.readFloats(hf));
            copy.accept("token_embd.weight", "model.embed_tokens.weight");
            for (int i = 0; i < c.numLayers(); i++) {
                String p = "model.layers." + i + ".", b = "blk." + i + ".";
                copy.accept(b + "attn_norm.weight", p + "input_layernorm.weight");
                copy.accept(b + "attn_qkv.weight", p + "self_attn.qkv_proj.weight");
                copy.accept(b + "attn_output.weight", p + "self_attn.o_proj.weight");
                copy.accept(b + "ffn_norm.weight", p + "post_attention_layernorm.weight");
                copy.accept(b + "ffn_up.weight", p + "mlp.gate_up_proj.weight");
                copy.accept(b + "ffn_down.weight", p + "mlp.down_proj.weight");
            }
            copy.accept("output_norm.weight", "model.norm.weight");
            copy.accept("output.weight", "lm_head.weight");
            w.write(out);
        }
        return out;
    }

    private static float[] floats(List<Double> values) {
        float[] out = new float[values.size()];
        for (int i = 0; i < out.length; i++) out[i] = values.get(i).floatValue();
        return out;
    }

    /**
     * {@code in} split as llama.cpp's gguf-split splits a model: {@code <prefix>-0000i-of-0000n.gguf}, the metadata in
     * the first part, the tensors shared out in order, every part with its split.* keys. Returns the first part.
     */
    static Path split(Path in, Path dir, String prefix, int n) {
        try (GgufFile g = GgufFile.open(in)) {
            List<GgufFile.Tensor> tensors = new ArrayList<>(g.tensors().values());
            Path first = null;
            for (int part = 0; part < n; part++) {
                GgufWriter w = new GgufWriter();
                if (part == 0)
                    for (Map.Entry<String, GgufValue> e : g.metadata().entrySet())
                        if (!e.getKey().equals("general.alignment")) w.put(e.getKey(), e.getValue());
                w.put("split.no", new GgufValue(GgufValue.Type.UINT16, (long) part, null));
                w.put("split.count", new GgufValue(GgufValue.Type.UINT16, (long) n, null));
                w.put("split.tensors.count", GgufValue.int32(tensors.size()));
                for (int i = part * tensors.size() / n; i < (part + 1) * tensors.size() / n; i++) {
                    GgufFile.Tensor t = tensors.get(i);
                    w.tensor(t.name(), t.type(), t.shape(), () -> g.floats(t.name()));
                }
                Path out = dir.resolve(String.format("%s-%05d-of-%05d.gguf", prefix, part + 1, n));
                w.write(out);
                if (part == 0) first = out;
            }
            return first;
        }
    }
}
