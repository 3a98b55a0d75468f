package dev.ropeway.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The demo end to end with the smoke-test preset on a small corpus, then again: every stage is reused. */
class DemoCliTest {

    @Test
    void runsEveryStageAndReusesThemOnASecondRun(@TempDir Path tmp) throws Exception {
        Path corpus = tmp.resolve("corpus");
        SplittableRandom r = new SplittableRandom(1);
        String[] words = {"the", "whale", "sea", "ship", "captain", "said", "and", "was", "of", "a", "to", "in", "his"};
        for (String split : new String[]{"train", "heldout"}) {
            Files.createDirectories(corpus.resolve(split));
            for (int d = 0; d < (split.equals("train") ? 12 : 2); d++) {
                StringBuilder sb = new StringBuilder();
                for (int i = 0; i < 3000; i++) sb.append(words[r.nextInt(words.length)]).append(i % 11 == 10 ? ".\n" : " ");
                Files.writeString(corpus.resolve(split).resolve("d" + d + ".txt"), sb);
            }
        }
        Path work = tmp.resolve("work");
        String[] args = {"demo", "--preset", "quick", "--corpus", corpus.toString(), "--work", work.toString()};
        CliRunner.Result first = CliRunner.run(args);
        assertEquals(0, first.exitCode(), first.err());
        String report = Files.readString(work.resolve("report.md"));
        // Eight perplexity rows and four passkey rows (base, PI, E2, CLEX).
        assertEquals(12, report.lines().filter(l -> l.startsWith("| ") && !l.startsWith("| method")).count(), report);
        assertTrue(report.contains("## Passkey retrieval"), report);
        Path png = work.resolve("perplexity.png");
        assertTrue(Files.size(png) > 10_000, "a real chart, not an empty file");
        byte[] head = java.util.Arrays.copyOf(Files.readAllBytes(png), 8);
        assertEquals((byte) 0x89, head[0]);
        assertEquals('P', head[1]);
        assertTrue(report.contains("CLEX fine-tuned") && report.contains("E²-LLM fine-tuned"), report);
        for (String map : new String[]{"passkey-accuracy.png", "passkey-loglik.png"}) {
            assertTrue(Files.size(work.resolve(map)) > 10_000, map + " is a real chart");
            assertTrue(report.contains("](" + map + ")"), report);
        }
        FileTime trained = Files.getLastModifiedTime(work.resolve("base/model.safetensors"));

        CliRunner.Result second = CliRunner.run(args);
        assertEquals(0, second.exitCode(), second.err());
        assertEquals(trained, Files.getLastModifiedTime(work.resolve("base/model.safetensors")), "pretraining is reused");
        assertTrue(second.out().contains("| no scaling |"), second.out());

        // Another preset in the same folder would reuse or trip over these stages: refused, naming both.
        CliRunner.Result other = CliRunner.run("demo", "--preset", "small", "--corpus", corpus.toString(), "--work", work.toString());
        assertEquals(1, other.exitCode());
        assertTrue(other.err().contains("holds a run of the demo's quick preset; run the small preset in its own folder "
                + "(--work ropeway-data/demo, its default)"), other.err());
        // A folder from before the preset was recorded is known by its pretrained model's shape.
        Files.delete(work.resolve("preset.json"));
        CliRunner.Result old = CliRunner.run("demo", "--preset", "small", "--corpus", corpus.toString(), "--work", work.toString());
        assertEquals(1, old.exitCode());
        assertTrue(old.err().contains("another preset of the demo"), old.err());
        assertEquals(Path.of("ropeway-data/demo-quick"), dev.ropeway.demo.Demo.defaultWork(dev.ropeway.demo.Demo.Preset.named("quick")));

        // The report alone, from the evaluations, with every model gone (as after copying eval/ off a GPU server).
        for (String model : new String[]{"base", "extend-pi", "extend-yarn", "extend-e2", "extend-clex"})
            dev.ropeway.io.FileTrees.delete(work.resolve(model));
        Files.delete(work.resolve("report.md"));
        Files.delete(work.resolve("perplexity.png"));
        CliRunner.Result only = CliRunner.run("demo", "--preset", "quick", "--report-only", "--work", work.toString());
        assertEquals(0, only.exitCode(), only.err());
        assertEquals(report, Files.readString(work.resolve("report.md")));
        assertTrue(Files.size(work.resolve("perplexity.png")) > 10_000);
        Files.delete(work.resolve("eval/clex-passkey.json"));
        CliRunner.Result missing = CliRunner.run("demo", "--preset", "quick", "--report-only", "--work", work.toString());
        assertEquals(1, missing.exitCode());
        assertTrue(missing.err().contains("clex-passkey.json is missing"), missing.err());
    }

    /** The GPU preset's report can be written on a machine without a GPU; training it cannot. */
    @Test
    void gpuPresetReportNeedsNoGpu(@TempDir Path tmp) {
        CliRunner.Result r = CliRunner.run("demo", "--preset", "gpu", "--report-only", "--device", "cpu", "--work", tmp.toString());
        assertEquals(1, r.exitCode(), r.err());
        assertTrue(r.err().contains("base.json is missing"), r.err());
    }

    /** The GPU preset trains with pass-key windows, and says so rather than running for hours on a CPU. */
    @Test
    void gpuPresetRefusesTheCpu(@TempDir Path tmp) {
        dev.ropeway.demo.Demo.Preset gpu = dev.ropeway.demo.Demo.Preset.named("gpu");
        assertEquals(0.5, gpu.retrievalMix());
        assertTrue(gpu.needsGpu());
        assertEquals(0.0, dev.ropeway.demo.Demo.Preset.named("small").retrievalMix());
        CliRunner.Result r = CliRunner.run("demo", "--preset", "gpu", "--device", "cpu", "--work", tmp.toString());
        assertEquals(1, r.exitCode(), r.err());
        assertTrue(r.err().contains("needs an NVIDIA GPU"), r.err());
    }
}
