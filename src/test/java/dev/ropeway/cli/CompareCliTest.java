package dev.ropeway.cli;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ropeway.eval.TinyModels;
import dev.ropeway.io.Json;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** compare end to end on a tiny random model: report, JSON, charts, then a rerun that reuses every cell. */
class CompareCliTest {

    private static Map<Path, FileTime> cells(Path out) throws Exception {
        Map<Path, FileTime> m = new TreeMap<>();
        try (Stream<Path> s = Files.walk(out.resolve("cells"))) {
            for (Path f : s.filter(p -> p.toString().endsWith(".json")).toList()) m.put(f, Files.getLastModifiedTime(f));
        }
        return m;
    }

    private static void assertPng(Path file) throws Exception {
        byte[] bytes = Files.readAllBytes(file);
        assertTrue(bytes.length > 5_000, file + " is a real chart, not an empty image: " + bytes.length + " bytes");
        assertEquals((byte) 0x89, bytes[0]);
        assertEquals("PNG", new String(bytes, 1, 3, java.nio.charset.StandardCharsets.US_ASCII));
    }

    @Test
    void writesTheReportAndReusesEveryCellOnARerun(@TempDir Path tmp) throws Exception {
        Path model = TinyModels.model(tmp.resolve("tiny"), 64, 3);
        Path corpus = TinyModels.corpus(tmp.resolve("corpus"));
        Path out = tmp.resolve("cmp");
        String[] args = {"compare", "--models", model.toString(), "--model", "pi=" + model + "@linear:factor=2",
                "--tasks", "ppl,passkey,niah,vt,lines", "--lengths", "32,64", "--retrieval-lengths", "1200", "--depths", "0,1",
                "--trials", "1", "--new-tokens", "4", "--max-tokens", "256", "--data", corpus.toString(), "--out", out.toString()};
        CliRunner.Result first = CliRunner.run(args);
        assertEquals(0, first.exitCode(), first.err());
        assertTrue(first.err().contains("computed 18 cells, reused 0"), first.err());

        String md = Files.readString(out.resolve("report.md"));
        for (String section : List.of("## Perplexity", "## Passkey retrieval", "## LongEval lines", "## RULER niah_single_1", "## RULER vt"))
            assertTrue(md.contains(section), section + " in\n" + md);
        assertTrue(md.contains("ropeway compare --models " + model), md);
        // Trained at 64 tokens: the 64 column is the 1x of the ratios.
        assertTrue(md.contains("| method | 32 (0.50×) | 64 (1×) |"), md);
        assertTrue(md.lines().anyMatch(l -> l.startsWith("| tiny | ") && l.endsWith("(1.00×) |")), md);
        assertTrue(md.lines().anyMatch(l -> l.startsWith("| pi | ") && l.contains("linear factor=2")), md);
        assertTrue(!md.contains("could not be computed"), md);

        JsonNode report = Json.mapper().readTree(out.resolve("report.json").toFile());
        assertTrue(report.at("/run/command").asText().startsWith("ropeway compare --models "));
        assertTrue(report.at("/run/git_revision").asText().matches("[0-9a-f]{40}(\\+modified)?|unknown"));
        assertTrue(report.at("/run/machine/cores").asInt() >= 1);
        assertEquals(18, report.at("/cells/computed").asInt());
        assertTrue(report.at("/cells/seconds").asDouble() > 0);
        String sha = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(model.resolve("config.json"))));
        assertEquals(sha, report.at("/methods/0/model/config_sha256").asText());
        assertEquals("linear", report.at("/methods/1/rope/rope_type").asText());
        for (String m : List.of("tiny", "pi")) {
            assertEquals(2, report.at("/results/" + m + "/ppl").size());
            assertEquals(2, report.at("/results/" + m + "/passkey").size());
            assertEquals(2, report.at("/results/" + m + "/niah").size());
            assertEquals(1, report.at("/results/" + m + "/vt").size());
            assertEquals(2, report.at("/results/" + m + "/lines").size());
            assertTrue(report.at("/results/" + m + "/ppl/1/perplexity").asDouble() > 1);
        }
        for (String png : List.of("perplexity", "passkey-accuracy", "passkey-loglik", "niah-accuracy", "niah-loglik", "vt-loglik",
                "lines-accuracy", "lines-loglik"))
            assertPng(out.resolve(png + ".png"));

        Map<Path, FileTime> saved = cells(out);
        assertEquals(18, saved.size());
        assertTrue(Files.isRegularFile(out.resolve("cells/pi/passkey-1200-d1.00.json")));

        // A rerun computes nothing: every cell file is untouched, the results are the same.
        CliRunner.Result second = CliRunner.run(args);
        assertEquals(0, second.exitCode(), second.err());
        assertTrue(second.err().contains("computed 0 cells, reused 18"), second.err());
        assertEquals(saved, cells(out));
        JsonNode rerun = Json.mapper().readTree(out.resolve("report.json").toFile());
        assertEquals(report.get("results"), rerun.get("results"));
        assertEquals(0, rerun.at("/cells/computed").asInt());
        assertEquals(report.at("/cells/seconds").asDouble(), rerun.at("/cells/seconds").asDouble(), 1e-9,
                "the compute time comes from the saved cells");

        // Cells lost to an interruption are computed again, and only they.
        Files.delete(out.resolve("cells/pi/vt-1200.json"));
        Files.delete(out.resolve("cells/tiny/ppl-64.json"));
        CliRunner.Result third = CliRunner.run(args);
        assertEquals(0, third.exitCode(), third.err());
        assertTrue(third.err().contains("computed 2 cells, reused 16"), third.err());
        Map<Path, FileTime> after = cells(out);
        for (var e : saved.entrySet())
            if (!e.getKey().endsWith("vt-1200.json") && !e.getKey().endsWith("ppl-64.json"))
                assertEquals(e.getValue(), after.get(e.getKey()), e.getKey().toString());
        assertEquals(report.get("results"), Json.mapper().readTree(out.resolve("report.json").toFile()).get("results"));
    }

    @Test
    void evalCommandsRecordTheirProvenanceAndResumeFromTheirCells(@TempDir Path tmp) throws Exception {
        Path model = TinyModels.model(tmp.resolve("tiny"), 64, 3);
        Path corpus = TinyModels.corpus(tmp.resolve("corpus"));
        Path out = tmp.resolve("ppl");
        String[] args = {"eval", "ppl", "--model", model.toString(), "--data", corpus.toString(), "--lengths", "32,64",
                "--max-tokens", "128", "--out", out.toString(), "--json"};
        CliRunner.Result first = CliRunner.run(args);
        assertEquals(0, first.exitCode(), first.err());
        JsonNode doc = Json.mapper().readTree(first.out());
        assertTrue(doc.at("/run/command").asText().startsWith("ropeway eval ppl --model "), doc.toString());
        assertTrue(doc.at("/model/config_sha256").asText().matches("[0-9a-f]{64}"));
        assertEquals(2, doc.get("results").size());
        assertEquals(doc.get("results"), Json.mapper().readTree(out.resolve("ppl.json").toFile()).get("results"));
        Map<Path, FileTime> saved = cells(out);
        assertEquals(2, saved.size());
        CliRunner.Result second = CliRunner.run(args);
        assertEquals(0, second.exitCode(), second.err());
        assertTrue(second.err().contains("reusing 2 of 2 cells"), second.err());
        assertEquals(saved, cells(out));
        assertEquals(doc.get("results"), Json.mapper().readTree(second.out()).get("results"));

        CliRunner.Result vt = CliRunner.run("eval", "vt", "--model", model.toString(), "--lengths", "1200", "--trials", "1",
                "--new-tokens", "3");
        assertEquals(0, vt.exitCode(), vt.err());
        assertTrue(vt.out().contains("string_match_all"), vt.out());
        CliRunner.Result niah = CliRunner.run("eval", "niah_single_1", "--model", model.toString(), "--lengths", "600",
                "--depths", "0.5", "--trials", "1", "--new-tokens", "3", "--json");
        assertEquals(0, niah.exitCode(), niah.err());
        assertEquals(0.5, Json.mapper().readTree(niah.out()).at("/results/0/depth").asDouble());
        CliRunner.Result lines = CliRunner.run("eval", "lines", "--model", model.toString(), "--lengths", "1200",
                "--depths", "0,1", "--trials", "1", "--new-tokens", "4");
        assertEquals(0, lines.exitCode(), lines.err());
        assertTrue(lines.out().lines().anyMatch(l -> l.matches("  L =  1,200  depth 1\\.00 +\\d+ lines  accuracy [01]\\.\\d\\d  "
                + "number log-likelihood +-\\d+\\.\\d{3}")), lines.out());
        CliRunner.Result noTemplate = CliRunner.run("eval", "lines", "--model", model.toString(), "--lengths", "1200",
                "--chat");
        assertEquals(1, noTemplate.exitCode());
        assertTrue(noTemplate.err().contains("has no chat template") && noTemplate.err().contains("without --chat"),
                noTemplate.err());
        Path chatModel = TinyModels.chatModel(tmp.resolve("chat"));
        CliRunner.Result chat = CliRunner.run("eval", "lines", "--model", chatModel.toString(), "--lengths", "1200",
                "--depths", "0.5", "--trials", "1", "--chat", "--json");
        assertEquals(0, chat.exitCode(), chat.err());
        JsonNode chatDoc = Json.mapper().readTree(chat.out());
        assertTrue(chatDoc.at("/settings/chat").asBoolean(), chatDoc.toString());
        assertEquals(100, chatDoc.at("/settings/new_tokens").asInt(), "LongEval's tokens for a chat model");
        assertEquals(100, chatDoc.at("/results/0/new_tokens").asInt());
        CliRunner.Result passkey = CliRunner.run("eval", "passkey", "--model", model.toString(), "--lengths", "300",
                "--depths", "0,1", "--trials", "1");
        assertEquals(0, passkey.exitCode(), passkey.err());
        assertTrue(passkey.out().contains("1 trials per cell"), passkey.out());
        assertTrue(passkey.out().contains("depth 0.00") && passkey.out().contains("depth 1.00"), passkey.out());
        // A cell too short for its prompt is reported and the others shown; with no cell left, the command fails.
        CliRunner.Result partial = CliRunner.run("eval", "vt", "--model", model.toString(), "--lengths", "100,1200", "--trials",
                "1", "--new-tokens", "3");
        assertEquals(0, partial.exitCode(), partial.err());
        assertTrue(partial.err().contains("no result for vt-100: a vt prompt needs"), partial.err());
        assertTrue(partial.out().contains("  L =    100  —  (no result)"), partial.out());
        assertTrue(partial.out().lines().anyMatch(l -> l.startsWith("  L =  1,200  string_match_all")), partial.out());
        CliRunner.Result tooShort = CliRunner.run("eval", "vt", "--model", model.toString(), "--lengths", "100,200",
                "--trials", "1");
        assertEquals(1, tooShort.exitCode());
        assertTrue(tooShort.err().contains("vt-100: a vt prompt needs"), tooShort.err());
        CliRunner.Result badDepth = CliRunner.run("eval", "niah", "--model", model.toString(), "--lengths", "600", "--depths", "1.5");
        assertEquals(1, badDepth.exitCode());
        assertTrue(badDepth.err().contains("depths must be in [0, 1]"), badDepth.err());
    }

    @Test
    void rulerRunsEveryOfflineTaskAndAveragesThem(@TempDir Path tmp) throws Exception {
        Path model = TinyModels.model(tmp.resolve("tiny"), 64, 3);
        Path corpus = TinyModels.corpus(tmp.resolve("corpus"));
        CliRunner.Result all = CliRunner.run("eval", "ruler", "--model", model.toString(), "--lengths", "2400", "--depths", "0.5",
                "--trials", "1", "--new-tokens", "3", "--data", corpus.toString(), "--json");
        assertEquals(0, all.exitCode(), all.err());
        JsonNode doc = Json.mapper().readTree(all.out());
        assertEquals("ruler", doc.get("task").asText());
        List<String> tasks = new java.util.ArrayList<>();
        for (JsonNode r : doc.get("results")) {
            tasks.add(r.get("task").asText());
            assertEquals(2400, r.get("length").asInt());
            assertTrue(r.get("prompt_tokens").asInt() <= 2397 && r.get("prompt_tokens").asInt() > 2000, r.toString());
            assertEquals(r.get("task").asText().matches("niah_single_.|niah_multikey_[23]"), !r.get("depth").isNull(), r.toString());
        }
        assertEquals(List.of("niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2",
                "niah_multikey_3", "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe"), tasks);
        assertTrue(doc.at("/settings/data/path").asText().endsWith("corpus"), doc.get("settings").toString());

        // Without a text the essay tasks are left out, with a note; the table ends with RULER's average.
        CliRunner.Result some = CliRunner.run("eval", "ruler", "--model", model.toString(), "--lengths", "2400", "--depths", "0.5",
                "--trials", "1", "--new-tokens", "3");
        assertEquals(0, some.exitCode(), some.err());
        assertTrue(some.err().contains("eval ruler: niah_single_2, niah_single_3, niah_multikey_1, niah_multivalue, "
                + "niah_multiquery left out (they need --data)"), some.err());
        for (String task : List.of("niah_single_1", "niah_multikey_2", "niah_multikey_3", "vt", "cwe", "fwe", "average"))
            assertTrue(some.out().contains("  " + task + " "), task + " in\n" + some.out());
        assertTrue(!some.out().contains("niah_single_2"), some.out());
        // A cell that cannot be computed (cwe's worked example alone is ~1,600 byte tokens) is reported, the rest shown.
        CliRunner.Result partial = CliRunner.run("eval", "ruler", "--tasks", "cwe,fwe", "--model", model.toString(),
                "--lengths", "1200,2400", "--trials", "1", "--new-tokens", "3");
        assertEquals(0, partial.exitCode(), partial.err());
        assertTrue(partial.err().contains("no result for cwe-1200: a cwe prompt needs"), partial.err());
        assertTrue(partial.out().lines().anyMatch(l -> l.matches("  cwe +— +\\d+\\.\\d\\d .*")), partial.out());
        assertTrue(partial.out().lines().anyMatch(l -> l.matches("  average +— +\\d+\\.\\d\\d")), partial.out());
        CliRunner.Result essay = CliRunner.run("eval", "ruler", "--tasks", "niah_multivalue", "--model", model.toString(),
                "--lengths", "2400");
        assertEquals(1, essay.exitCode());
        assertTrue(essay.err().contains("niah_multivalue hides its needles in prose: it needs a text (--data"), essay.err());

        Path out = tmp.resolve("cmp");
        CliRunner.Result cmp = CliRunner.run("compare", "--models", model.toString(), "--tasks", "cwe,niah_multikey_1,niah_single_3",
                "--lengths", "2400", "--depths", "1", "--trials", "1", "--new-tokens", "3", "--data", corpus.toString(),
                "--out", out.toString());
        assertEquals(0, cmp.exitCode(), cmp.err());
        String md = Files.readString(out.resolve("report.md"));
        for (String section : List.of("## RULER average", "## RULER cwe", "## RULER niah_multikey_1", "## RULER niah_single_3"))
            assertTrue(md.contains(section), section + " in\n" + md);
        assertTrue(!md.contains("could not be computed"), md);
        assertTrue(md.lines().anyMatch(l -> l.matches("\\| tiny \\| \\d+\\.\\d \\|")), "an average cell: " + md);
        assertTrue(md.contains("Prose from `" + corpus.toAbsolutePath().normalize() + "` (heldout part)."), md);
        assertTrue(md.contains("Words beyond the built-in list from `"), md);
        for (String png : List.of("ruler-average", "cwe-loglik", "niah_multikey_1-loglik", "niah_single_3-accuracy"))
            assertPng(out.resolve(png + ".png"));
        JsonNode report = Json.mapper().readTree(out.resolve("report.json").toFile());
        assertEquals(3, report.at("/settings/cwe_new_tokens").asInt());
        assertTrue(report.at("/settings/data/path").asText().endsWith("corpus"), report.get("settings").toString());
        assertEquals(1, report.at("/results/tiny/niah_multikey_1").size());
    }

    @Test
    void longBenchStyleTasksRunAloneAndInTheReport(@TempDir Path tmp) throws Exception {
        Path model = TinyModels.model(tmp.resolve("tiny"), 64, 3);
        Path corpus = TinyModels.prose(tmp.resolve("corpus"), 300);
        Path code = TinyModels.code(tmp.resolve("code"));
        CliRunner.Result noCode = CliRunner.run("eval", "longbench", "--model", model.toString(), "--lengths", "1500,3000",
                "--trials", "1", "--new-tokens", "3", "--data", corpus.toString());
        assertEquals(0, noCode.exitCode(), noCode.err());
        assertTrue(noCode.err().contains("eval longbench: lcc left out (it needs --code)"), noCode.err());
        // Byte-level tokens: two passages of 100+ words do not fit in 1,500 of them.
        assertTrue(noCode.err().contains("no result for passage_count-1500: 1500 tokens, 3 of them to generate, cannot hold"),
                noCode.err());
        assertTrue(noCode.out().lines().anyMatch(l -> l.matches("  passage_count +— +\\d+\\.\\d\\d .*")), noCode.out());
        assertTrue(noCode.out().lines().anyMatch(l -> l.matches("  average +— +\\d+\\.\\d\\d")), noCode.out());
        CliRunner.Result none = CliRunner.run("eval", "longbench", "--model", model.toString(), "--lengths", "1500");
        assertEquals(1, none.exitCode());
        assertTrue(none.err().contains("no task left to run: give --code or --data"), none.err());
        CliRunner.Result lcc = CliRunner.run("eval", "longbench", "--tasks", "lcc", "--model", model.toString(), "--lengths", "1500",
                "--trials", "1", "--new-tokens", "3", "--json");
        assertEquals(1, lcc.exitCode());
        assertTrue(lcc.err().contains("lcc completes lines of code: it needs a folder of source files (--code <dir>"), lcc.err());

        Path out = tmp.resolve("cmp");
        CliRunner.Result cmp = CliRunner.run("compare", "--models", model.toString(), "--tasks", "longbench", "--lengths", "3000",
                "--trials", "1", "--new-tokens", "3", "--data", corpus.toString(), "--code", code.toString(), "--out", out.toString());
        assertEquals(0, cmp.exitCode(), cmp.err());
        String md = Files.readString(out.resolve("report.md"));
        for (String section : List.of("## LongBench-style average (synthetic, offline)",
                "## LongBench-style passage_count (synthetic, offline)", "## LongBench-style passage_retrieval (synthetic, "
                        + "offline)", "## LongBench-style lcc (synthetic, offline)"))
            assertTrue(md.contains(section), section + " in\n" + md);
        assertTrue(!md.contains("could not be computed"), md);
        assertTrue(md.contains("Paragraphs from `" + corpus.toAbsolutePath().normalize() + "` (heldout part)."), md);
        assertTrue(md.contains("Code from `" + code.toAbsolutePath().normalize() + "`."), md);
        assertTrue(md.lines().anyMatch(l -> l.matches("\\| tiny \\| \\d+\\.\\d \\|")), "an average cell: " + md);
        for (String png : List.of("longbench-average", "passage_count-loglik", "passage_retrieval-loglik", "lcc-loglik"))
            assertPng(out.resolve(png + ".png"));
        JsonNode report = Json.mapper().readTree(out.resolve("report.json").toFile());
        assertEquals(3, report.at("/settings/lcc_new_tokens").asInt());
        assertEquals(code.toAbsolutePath().normalize().toString(), report.at("/settings/code").asText());
        assertEquals("code_sim_score", report.at("/results/tiny/lcc/0/metric").asText());
        // The code folder is part of an lcc cell's key: a file added means the cell is computed again.
        Files.writeString(code.resolve("pkg/more.py"), "def added_function_here(value):\n    return value\n".repeat(5));
        CliRunner.Result again = CliRunner.run("compare", "--models", model.toString(), "--tasks", "longbench", "--lengths",
                "3000", "--trials", "1", "--new-tokens", "3", "--data", corpus.toString(), "--code", code.toString(), "--out",
                out.toString());
        assertEquals(0, again.exitCode(), again.err());
        assertTrue(again.err().contains("computed 1 cells, reused 2"), again.err());
    }

    @Test
    void badInputIsAOneLineError(@TempDir Path tmp) {
        Path model = TinyModels.model(tmp.resolve("tiny"), 64, 3);
        CliRunner.Result noData = CliRunner.run("compare", "--models", model.toString(), "--lengths", "32", "--out", tmp.resolve("o").toString());
        assertEquals(1, noData.exitCode());
        assertTrue(noData.err().contains("the ppl task needs --data"), noData.err());
        CliRunner.Result twice = CliRunner.run("compare", "--models", model + "," + model, "--tasks", "passkey", "--lengths", "400",
                "--out", tmp.resolve("o").toString());
        assertEquals(1, twice.exitCode());
        assertTrue(twice.err().contains("two methods are named 'tiny'"), twice.err());
        CliRunner.Result badRope = CliRunner.run("compare", "--model", "x=" + model + "@warp:factor=2", "--tasks", "passkey",
                "--lengths", "400", "--out", tmp.resolve("o").toString());
        assertEquals(1, badRope.exitCode());
        assertTrue(badRope.err().startsWith("error: x: "), badRope.err());
        CliRunner.Result badTask = CliRunner.run("compare", "--models", model.toString(), "--tasks", "qa_1", "--lengths", "400",
                "--out", tmp.resolve("o").toString());
        assertEquals(1, badTask.exitCode());
        assertTrue(badTask.err().contains("unknown task 'qa_1'"), badTask.err());
        CliRunner.Result noFolder = CliRunner.run("compare", "--models", tmp.resolve("nope").toString(), "--tasks", "passkey",
                "--lengths", "400", "--out", tmp.resolve("o").toString());
        assertEquals(1, noFolder.exitCode());
        assertTrue(noFolder.err().contains("no config.json"), noFolder.err());
    }
}
