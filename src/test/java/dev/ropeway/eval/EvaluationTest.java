package dev.ropeway.eval;

import dev.ropeway.RopewayException;
import dev.ropeway.tensor.CpuBackend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class EvaluationTest {

    @Test
    void targetsParseNameFolderAndRope() {
        Evaluation.Target t = Evaluation.Target.parse("pi-zero-shot=runs/base@linear:factor=4");
        assertEquals(new Evaluation.Target("pi-zero-shot", Path.of("runs/base"), "linear:factor=4"), t);
        assertEquals(new Evaluation.Target("base", Path.of("/data/base"), null), Evaluation.Target.parse("/data/base"));
        Evaluation.Target yarn = Evaluation.Target.parse("/data/base@yarn:factor=16,original_max_position_embeddings=256");
        assertEquals("yarn:factor=16,original_max_position_embeddings=256", yarn.rope());
        assertEquals("base_yarn-factor-16-original_max_position_embeddings-256", yarn.name());
        // An '@' followed by a path is part of the folder's name.
        assertEquals(new Evaluation.Target("m", Path.of("/a@b/model"), null), Evaluation.Target.parse("m=/a@b/model"));
        assertThrows(RopewayException.class, () -> Evaluation.Target.parse("x=/data/base@"));
        assertThrows(RopewayException.class, () -> Evaluation.Target.parse("x="));
        assertThrows(RopewayException.class, () -> Evaluation.Target.parse(" "));
        assertThrows(RopewayException.class, () -> new Evaluation.Target("a b", Path.of("x"), null));
    }

    @Test
    void aClexCheckpointIsReadWithItsTrainedLayer() {
        Path clex = dev.ropeway.testutil.FixtureFiles.ROOT.resolve("clex-llama");
        Evaluation.Resolved r = Evaluation.resolve(new Evaluation.Target("clex", clex, null));
        assertTrue(r.rope() instanceof dev.ropeway.rope.ClexRope c && c.ode() != null, r.ropeDescription());
        assertFalse(r.ropeDescription().contains("untrained"), r.ropeDescription());
        try (CpuBackend backend = new CpuBackend(); var model = dev.ropeway.model.Transformer.load(backend, clex)) {
            // The very frequencies the loaded model uses at 4x its trained length (32 tokens).
            assertTrue(java.util.Arrays.equals(model.config().rope().inverseFrequencies(128),
                    r.rope().inverseFrequencies(128)));
        }
    }

    @Test
    void cellNamesAndGrid() {
        List<Evaluation.CellSpec> grid = Evaluation.CellSpec.grid(List.of(Evaluation.Task.PPL, Evaluation.Task.PASSKEY,
                Evaluation.Task.VT), List.of(64, 128), List.of(300), List.of(0.0, 0.5));
        assertEquals(List.of("ppl-64", "ppl-128", "passkey-300-d0.00", "passkey-300-d0.50", "vt-300"),
                grid.stream().map(Evaluation.CellSpec::fileName).toList());
        assertThrows(IllegalArgumentException.class, () -> new Evaluation.CellSpec(Evaluation.Task.PPL, 64, 0.5));
        assertThrows(RopewayException.class, () -> Evaluation.Task.parse("qa_1"));
        assertEquals(Evaluation.Task.NIAH, Evaluation.Task.parse("niah_single_1"));
        assertEquals(Evaluation.Task.LINES, Evaluation.Task.parse("lines"));
        assertEquals(Evaluation.Task.LINES, Evaluation.Task.parse("longeval_lines"));
        assertTrue(Evaluation.Task.LINES.hasDepth());
        assertEquals(15, Evaluation.Task.LINES.defaultNewTokens());
        assertEquals("lines-4096-d0.50", new Evaluation.CellSpec(Evaluation.Task.LINES, 4096, 0.5).fileName());
        assertEquals(Evaluation.Task.PASSAGE_RETRIEVAL, Evaluation.Task.parse("passage_retrieval_en"));
        assertEquals("lcc-4096", new Evaluation.CellSpec(Evaluation.Task.LCC, 4096, Double.NaN).fileName());
    }

    @Test
    void suitesLeaveOutTheTasksWhoseInputIsMissing() {
        Evaluation.Task.Selection all = Evaluation.Task.select(List.of("ruler", "longbench"), true, true);
        assertEquals(14, all.tasks().size());
        assertEquals(List.of(), all.leftOut());
        Evaluation.Task.Selection noCode = Evaluation.Task.select(List.of("longbench", "vt"), true, false);
        assertEquals(List.of(Evaluation.Task.PASSAGE_COUNT, Evaluation.Task.PASSAGE_RETRIEVAL, Evaluation.Task.VT), noCode.tasks());
        assertEquals(List.of("lcc left out (it needs --code)"), noCode.notes());
        Evaluation.Task.Selection nothing = Evaluation.Task.select(List.of("longbench", "niah_single_2", "ruler"), false, false);
        assertTrue(nothing.tasks().contains(Evaluation.Task.NIAH_SINGLE_2), "a task named on its own stays");
        assertFalse(nothing.tasks().contains(Evaluation.Task.NIAH_SINGLE_3));
        assertEquals(List.of("passage_count, passage_retrieval, niah_single_3, niah_multikey_1, niah_multivalue, "
                + "niah_multiquery left out (they need --data)", "lcc left out (it needs --code)"), nothing.notes());
    }

    private static long files(Path dir) throws Exception {
        if (!Files.isDirectory(dir)) return 0;
        try (Stream<Path> s = Files.walk(dir)) {
            return s.filter(f -> f.toString().endsWith(".json")).count();
        }
    }

    @Test
    void anInterruptedRunResumesAndGivesTheSameResults(@TempDir Path tmp) throws Exception {
        Path model = TinyModels.model(tmp.resolve("model"), 64, 9);
        Path data = TinyModels.corpus(tmp.resolve("corpus"));
        List<Evaluation.Target> targets = List.of(new Evaluation.Target("own", model, null),
                new Evaluation.Target("pi", model, "linear:factor=2"));
        List<Evaluation.CellSpec> cells = Evaluation.CellSpec.grid(List.of(Evaluation.Task.PPL, Evaluation.Task.PASSKEY),
                List.of(32, 64), List.of(320), List.of(0.0, 1.0));
        Evaluation.Settings settings = new Evaluation.Settings(data, PerplexityProtocol.CHUNKS, 0, 256, 1, 4, 0);
        try (CpuBackend backend = new CpuBackend()) {
            // The reference: one uninterrupted run without a store.
            Evaluation.Outcome whole = new Evaluation(backend, settings, null, new Evaluation.Listener() {}).run(targets, cells);
            assertEquals(8, whole.computed());

            CellStore store = new CellStore(tmp.resolve("out/cells"));
            int[] seen = {0};
            Evaluation.Listener dies = new Evaluation.Listener() {
                @Override
                public void finished(Evaluation.Target t, Evaluation.CellSpec c, Map<String, Object> r, boolean reused, double w) {
                    if (++seen[0] == 5) throw new IllegalStateException("killed");
                }
            };
            assertThrows(IllegalStateException.class, () -> new Evaluation(backend, settings, store, dies).run(targets, cells));
            assertEquals(5, files(store.dir()), "each finished cell is on disk");

            Evaluation.Outcome resumed = new Evaluation(backend, settings, store, new Evaluation.Listener() {}).run(targets, cells);
            assertEquals(5, resumed.reused());
            assertEquals(3, resumed.computed());
            assertEquals(whole.results(), resumed.results(), "resumed results equal the uninterrupted run's");

            Evaluation.Outcome again = new Evaluation(backend, settings, store, new Evaluation.Listener() {}).run(targets, cells);
            assertEquals(0, again.computed());
            assertEquals(8, again.reused());

            // Another seed changes only the passkey cells' key: perplexity is reused, passkey recomputed.
            Evaluation.Settings reseeded = new Evaluation.Settings(data, PerplexityProtocol.CHUNKS, 0, 256, 1, 5, 0);
            Evaluation.Outcome partly = new Evaluation(backend, reseeded, store, new Evaluation.Listener() {}).run(targets, cells);
            assertEquals(4, partly.reused());
            assertEquals(4, partly.computed());
        }
    }

    @Test
    void aCellThatCannotBeComputedIsReportedNotSaved(@TempDir Path tmp) throws Exception {
        Path model = TinyModels.model(tmp.resolve("model"), 64, 9);
        Path data = TinyModels.corpus(tmp.resolve("corpus"));
        CellStore store = new CellStore(tmp.resolve("cells"));
        // The documents are about 2,700 tokens: none holds 100,000.
        List<Evaluation.CellSpec> cells = List.of(new Evaluation.CellSpec(Evaluation.Task.PPL, 100_000, Double.NaN),
                new Evaluation.CellSpec(Evaluation.Task.PPL, 32, Double.NaN));
        try (CpuBackend backend = new CpuBackend()) {
            Evaluation.Outcome o = new Evaluation(backend, new Evaluation.Settings(data, PerplexityProtocol.CHUNKS, 0, 64, 1, 0, 0),
                    store, new Evaluation.Listener() {}).run(List.of(new Evaluation.Target("m", model, null)), cells);
            Map<String, Object> bad = o.results().get("m").get(cells.get(0));
            assertTrue(((String) bad.get("error")).contains("no document has 100000 tokens"), bad.toString());
            assertNull(o.results().get("m").get(cells.get(1)).get("error"));
            assertFalse(Files.exists(store.file("m", "ppl-100000")));
            assertTrue(Files.exists(store.file("m", "ppl-32")));
        }
    }

    @Test
    void recordsNameTheBuildAndQuoteTheCommand() {
        assertEquals("ropeway compare --model 'a b=/x y' --lengths 1k --rope 'it'\\''s'",
                RunRecord.commandLine(List.of("compare", "--model", "a b=/x y", "--lengths", "1k", "--rope", "it's")));
        RunRecord r = RunRecord.now(List.of("eval", "ppl"));
        assertEquals(Runtime.getRuntime().availableProcessors(), r.machine().get("cores"));
        assertTrue(r.date().matches("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ"), r.date());
        // Built by Maven from a git clone, the classes know their revision (or say plainly that they do not).
        assertTrue(r.revision().matches("[0-9a-f]{40}(\\+modified)?") || r.revision().equals("unknown"), r.revision());
    }
}
