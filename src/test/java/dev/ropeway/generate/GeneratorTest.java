package dev.ropeway.generate;

import dev.ropeway.io.ByteLevelBpeFixture;
import dev.ropeway.io.Json;
import dev.ropeway.io.Tokenizer;
import dev.ropeway.io.Tokenizers;
import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.model.Decoder;
import dev.ropeway.model.Scorer;
import dev.ropeway.model.TokenBatch;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.DefaultRope;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.train.TokenizedCorpus;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.*;

class GeneratorTest {
    @TempDir
    static Path dir;
    static CpuBackend backend;
    static Transformer model;
    static Tokenizer tok;

    @BeforeAll
    static void start() {
        CheckpointWriter.writeRandom(dir, CheckpointWriter.llamaConfig(ByteLevelBpeFixture.VOCAB_SIZE, 32, 64, 2, 2, 2, 16, 256,
                new DefaultRope(10000, 16), false), 5);
        ByteLevelBpeFixture.write(dir);
        Json.writeAtomic(dir.resolve("tokenizer_config.json"), Map.of("bos_token", "<s>", "eos_token", "</s>"));
        backend = new CpuBackend(2);
        model = Transformer.load(backend, dir);
        tok = Tokenizers.open(dir);
    }

    @AfterAll
    static void stop() {
        tok.close();
        model.close();
        backend.close();
    }

    static Generator.Settings greedy(int n, List<String> stop, boolean ignoreEos) {
        return new Generator.Settings(n, SamplingSettings.greedy(), stop, ignoreEos);
    }

    /**
     * A model whose vocabulary is larger than its tokenizer's (padded for alignment) never generates an id past the
     * tokenizer, greedy or sampled; the same model's plain argmax does reach them here.
     */
    @Test
    void idsPastTheTokenizerAreNeverGenerated(@org.junit.jupiter.api.io.TempDir Path padded) {
        int vocab = ByteLevelBpeFixture.VOCAB_SIZE + 200;
        CheckpointWriter.writeRandom(padded, CheckpointWriter.llamaConfig(vocab, 32, 64, 2, 2, 2, 16, 256,
                new DefaultRope(10000, 16), false), 9);
        ByteLevelBpeFixture.write(padded);
        try (Transformer t = Transformer.load(backend, padded); Tokenizer pt = Tokenizers.open(padded)) {
            assertTrue(pt.vocabSize() < vocab);
            int[] prompt = pt.encodeWithBos("the other");
            boolean reachesPadding = false;
            try (Decoder d = new Decoder(t, t.config().rope(), 64)) {
                float[] logits = d.append(prompt);
                for (int i = 0; i < 30; i++) {
                    int next = Sampler.argmax(logits);
                    reachesPadding |= next >= pt.vocabSize();
                    logits = d.next(next);
                }
            }
            assertTrue(reachesPadding, "the random model's argmax lands past the tokenizer");
            for (SamplingSettings sampling : new SamplingSettings[]{SamplingSettings.greedy(),
                    new SamplingSettings(1.0, 0, 1.0, 0, 1.0, 0, 7L)})
                try (Decoder d = new Decoder(t, t.config().rope(), 64)) {
                    Generator.Result r = new Generator(pt).generate(d, prompt, new Generator.Settings(30, sampling, List.of(), true),
                            piece -> {}, () -> false);
                    assertEquals(30, r.tokens().length);
                    for (int id : r.tokens()) assertTrue(id < pt.vocabSize(), "generated id " + id);
                }
        }
    }

    /** Greedy tokens are the argmax of whole-sequence logits at every step; the streamed text is their decoding. */
    @Test
    void greedyFollowsFullForwardArgmaxAndStreamsItsText() {
        int[] prompt = tok.encodeWithBos("the other");
        StringBuilder streamed = new StringBuilder();
        try (Decoder d = new Decoder(model, model.config().rope(), 64)) {
            Generator.Result r = new Generator(tok).generate(d, prompt, greedy(20, List.of(), true), streamed::append, () -> false);
            assertEquals(20, r.tokens().length);
            assertEquals(Generator.Finish.LENGTH, r.finish());
            int[] seq = prompt;
            Scorer scorer = new Scorer(model);
            int vocab = model.config().vocabSize();
            for (int next : r.tokens()) {
                float[] logits = scorer.score(TokenBatch.of(seq, 1, seq.length), model.config().rope(), true).logits();
                assertEquals(Sampler.argmax(Arrays.copyOfRange(logits, (seq.length - 1) * vocab, seq.length * vocab)), next);
                seq = Arrays.copyOf(seq, seq.length + 1);
                seq[seq.length - 1] = next;
            }
            assertEquals(tok.decode(r.tokens(), true), streamed.toString());
            assertEquals(streamed.toString(), r.text());
        }
    }

    /**
     * Log-probabilities are the log-softmax of whole-sequence logits: of each generated token (sampled, so not always
     * the most likely), with the listener told each one before its text, and of every prompt token after the first,
     * the prompt then computed whole even when a cache holds its start; 0 tokens scores the prompt alone.
     */
    @Test
    void logprobsAreTheWholeForwardsLogSoftmax() {
        int[] prompt = tok.encodeWithBos("the other side of the river");
        int vocab = model.config().vocabSize();
        Scorer scorer = new Scorer(model);
        SamplingSettings sampled = new SamplingSettings(1.5, 0, 1.0, 0, 1.0, 0, 11L);
        try (Decoder d = new Decoder(model, model.config().rope(), 64)) {
            d.append(Arrays.copyOf(prompt, 4));   // a cached start that prompt log-probabilities must not keep
            List<Object> events = new ArrayList<>();
            Generator.Result r = new Generator(tok).generate(d, prompt, new Generator.Settings(12, sampled, List.of(), true, 3, true),
                    new Generator.Listener() {
                        @Override
                        public void text(String piece) {
                            events.add(piece);
                        }

                        @Override
                        public void logprob(TokenLogprob token) {
                            events.add(token);
                        }
                    }, () -> false);
            assertEquals(0, r.cachedTokens());
            assertEquals(12, r.logprobs().size());
            assertEquals(prompt.length - 1, r.promptLogprobs().size());
            int[] seq = Arrays.copyOf(prompt, prompt.length + r.tokens().length);
            System.arraycopy(r.tokens(), 0, seq, prompt.length, r.tokens().length);
            float[] logits = scorer.score(TokenBatch.of(seq, 1, seq.length), model.config().rope(), true).logits();
            boolean notTop = false;
            for (int p = 1; p < seq.length; p++) {
                TokenLogprob got = p < prompt.length ? r.promptLogprobs().get(p - 1) : r.logprobs().get(p - prompt.length);
                TokenLogprob want = TokenLogprob.of(logits, (p - 1) * vocab, tok.vocabSize(), seq[p], 3);
                assertEquals(seq[p], got.token());
                assertEquals(want.logprob(), got.logprob(), 1e-4, "position " + p);
                assertArrayEquals(want.topTokens(), got.topTokens(), "position " + p);
                notTop |= got.token() != got.topTokens()[0];
            }
            assertTrue(notTop, "some sampled token is not the most likely one");
            // Each token's log-probability comes before the text it makes final, and all of them before the end.
            int seen = 0;
            for (Object e : events) if (e instanceof TokenLogprob) seen++; else assertTrue(seen > 0);
            assertEquals(12, seen);

            Generator.Result scoreOnly = new Generator(tok).generate(d, prompt,
                    new Generator.Settings(0, SamplingSettings.greedy(), List.of(), true, 0, true), piece -> {}, () -> false);
            assertEquals(0, scoreOnly.tokens().length);
            assertEquals(0, scoreOnly.logprobs().size());
            for (int p = 1; p < prompt.length; p++)
                assertEquals(r.promptLogprobs().get(p - 1).logprob(), scoreOnly.promptLogprobs().get(p - 1).logprob(), 1e-6);
            // The logits after a scored prompt are the ones after a plain prefill: the same greedy tokens follow.
            Generator.Result scoredGreedy = new Generator(tok).generate(d, prompt,
                    new Generator.Settings(8, SamplingSettings.greedy(), List.of(), true, 0, true), piece -> {}, () -> false);
            Generator.Result plainGreedy = new Generator(tok).generate(d, prompt, greedy(8, List.of(), true), piece -> {}, () -> false);
            assertArrayEquals(plainGreedy.tokens(), scoredGreedy.tokens());
            assertNull(plainGreedy.logprobs());
            assertNull(plainGreedy.promptLogprobs());
        }
        assertThrows(dev.ropeway.RopewayException.class, () -> new Generator.Settings(0, SamplingSettings.greedy(), List.of(), true));
        assertThrows(dev.ropeway.RopewayException.class, () -> new Generator.Settings(1, SamplingSettings.greedy(), List.of(), true, -1, true));
    }

    /** A stop string taken from what greedy decoding produces cuts the text just before it. */
    @Test
    void stopStringsAndCancellation() {
        int[] prompt = tok.encodeWithBos("the other");
        try (Decoder d = new Decoder(model, model.config().rope(), 64)) {
            Generator g = new Generator(tok);
            String full = g.generate(d, prompt, greedy(30, List.of(), true), p -> { }, () -> false).text();
            assertTrue(full.length() > 6, full);
            String stop = full.substring(3, 6);
            Generator.Result cut = g.generate(d, prompt, greedy(30, List.of(stop), true), p -> { }, () -> false);
            assertEquals(Generator.Finish.STOP, cut.finish());
            assertEquals(full.substring(0, full.indexOf(stop)), cut.text());
            AtomicInteger polls = new AtomicInteger();
            Generator.Result cancelled = g.generate(d, prompt, greedy(30, List.of(), true), p -> { }, () -> polls.incrementAndGet() > 5);
            assertEquals(Generator.Finish.CANCELLED, cancelled.finish());
            assertEquals(5, cancelled.tokens().length);
        }
    }

    /** Declaring the first greedy token the end-of-sequence token stops generation at once, unless it is ignored. */
    @Test
    void endOfSequenceStops() {
        int[] prompt = tok.encodeWithBos("the");
        try (Decoder d = new Decoder(model, model.config().rope(), 64)) {
            int first = new Generator(tok).generate(d, prompt, greedy(1, List.of(), true), p -> { }, () -> false).tokens()[0];
            Tokenizer endsThere = new Tokenizer() {
                public int[] encode(String text, boolean special) { return tok.encode(text, special); }
                public String decode(int[] ids, boolean skip) { return tok.decode(ids, skip); }
                public int vocabSize() { return tok.vocabSize(); }
                public java.util.OptionalInt bosId() { return tok.bosId(); }
                public java.util.OptionalInt eosId() { return java.util.OptionalInt.of(first); }
                public void close() { }
            };
            Generator g = new Generator(endsThere);
            Generator.Result r = g.generate(d, prompt, greedy(10, List.of(), false), p -> { }, () -> false);
            assertEquals(Generator.Finish.STOP, r.finish());
            assertEquals(0, r.tokens().length);
            assertEquals("", r.text());
            assertEquals(10, g.generate(d, prompt, greedy(10, List.of(), true), p -> { }, () -> false).tokens().length);
        }
    }

    /**
     * A chat's next turn on the same decoder: the prompt repeats the last one and its answer, then goes on; only what
     * the decoder does not hold is prefilled, and the answer is a fresh decoder's.
     */
    @Test
    void theNextTurnPrefillsOnlyWhatIsNew() {
        int[] first = tok.encodeWithBos("the other");
        Generator g = new Generator(tok);
        try (Decoder d = new Decoder(model, model.config().rope(), 96); Decoder fresh = new Decoder(model, model.config().rope(), 96)) {
            Generator.Result one = g.generate(d, first, greedy(12, List.of(), true), p -> { }, () -> false);
            assertEquals(0, one.cachedTokens());
            int[] turn = tok.encode(" and then", false);
            int[] next = Arrays.copyOf(first, first.length + one.tokens().length + turn.length);
            System.arraycopy(one.tokens(), 0, next, first.length, one.tokens().length);
            System.arraycopy(turn, 0, next, first.length + one.tokens().length, turn.length);
            Generator.Result two = g.generate(d, next, greedy(12, List.of(), true), p -> { }, () -> false);
            // The last generated token was sampled, never appended: everything before it is kept.
            assertEquals(first.length + one.tokens().length - 1, two.cachedTokens());
            assertEquals(next.length, two.promptTokens());
            Generator.Result alone = g.generate(fresh, next, greedy(12, List.of(), true), p -> { }, () -> false);
            assertEquals(0, alone.cachedTokens());
            assertArrayEquals(alone.tokens(), two.tokens());
            assertEquals(alone.text(), two.text());
            // A prompt that shares nothing starts over.
            assertEquals(0, g.generate(d, tok.encode("x", false), greedy(2, List.of(), true), p -> { }, () -> false).cachedTokens());
        }
    }

    @Test
    void theContextBoundsTheOutput() {
        int[] prompt = tok.encodeWithBos("the other");
        List<String> none = new ArrayList<>();
        try (Decoder d = new Decoder(model, model.config().rope(), prompt.length + 3)) {
            Generator.Result r = new Generator(tok).generate(d, prompt, greedy(50, none, true), p -> { }, () -> false);
            assertEquals(4, r.tokens().length, "3 tokens fit in the cache and a last one is sampled from the full cache");
            assertEquals(Generator.Finish.LENGTH, r.finish());
        }
    }
}
