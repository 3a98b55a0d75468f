package dev.ropeway.cli;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ropeway.cuda.CudaBackend;
import dev.ropeway.io.Json;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The command line on the GPU, end to end: {@code pretrain --device cuda} tracks the same run on the CPU step by step,
 * an interrupted GPU run resumed from its checkpoint ends where the uninterrupted one does, mixed precision trains,
 * and {@code score} and {@code generate} on the GPU agree with the CPU. Skipped where no NVIDIA GPU is present.
 */
class CudaCliTest {

    @BeforeAll
    static void gpu() {
        assumeTrue(CudaBackend.isAvailable(), "no NVIDIA GPU here");
    }

    private static String[] pretrain(Path corpus, Path tok, Path out, String device, String matmul, int steps, String... more) {
        List<String> a = new ArrayList<>(List.of("pretrain", "--corpus", corpus.toString(), "--tokenizer", tok.toString(),
                "--out", out.toString(), "--preset", "tiny", "--hidden", "32", "--ffn", "64", "--layers", "2", "--heads", "2",
                "--seq", "32", "--batch", "4", "--checkpoint-every", "3", "--eval-every", "3", "--eval-sequences", "2",
                "--warmup", "2", "--schedule", "constant", "--lr", "3e-3", "--json", "--device", device, "--gpu-matmul", matmul,
                "--steps", String.valueOf(steps)));
        a.addAll(List.of(more));
        return a.toArray(String[]::new);
    }

    /** The training losses a run wrote, in step order. */
    private static List<Double> losses(Path run) throws Exception {
        List<Double> out = new ArrayList<>();
        for (String line : Files.readAllLines(run.resolve("metrics.jsonl"))) {
            JsonNode j = Json.mapper().readTree(line);
            if (j.has("loss")) out.add(j.path("loss").asDouble());
        }
        return out;
    }

    private static double scoreLoss(Path model, String device) throws Exception {
        CliRunner.Result r = CliRunner.run("score", "--model", model.toString(), "--text", "the cat sat on the mat number 3.",
                "--json", "--device", device, "--gpu-matmul", "fp32");
        assertEquals(0, r.exitCode(), r.err());
        return Json.mapper().readTree(r.out()).path("loss").asDouble();
    }

    @Test
    void pretrainResumeScoreAndGenerateOnTheGpu(@TempDir Path tmp) throws Exception {
        Path corpus = PretrainCliTest.corpus(tmp), tok = PretrainCliTest.tokenizer(tmp);

        Path cpu = tmp.resolve("cpu"), gpu = tmp.resolve("gpu"), resumed = tmp.resolve("resumed");
        CliRunner.Result c = CliRunner.run(pretrain(corpus, tok, cpu, "cpu", "fp32", 6));
        assertEquals(0, c.exitCode(), c.err());
        CliRunner.Result g = CliRunner.run(pretrain(corpus, tok, gpu, "cuda", "fp32", 6));
        assertEquals(0, g.exitCode(), g.err());
        List<Double> lc = losses(cpu), lg = losses(gpu);
        assertEquals(6, lg.size());
        for (int i = 0; i < 6; i++)
            assertEquals(lc.get(i), lg.get(i), 1e-4 * lc.get(i), "training loss at step " + (i + 1) + ": " + lc + " vs " + lg);
        double heldCpu = Json.mapper().readTree(c.out()).path("heldout_loss").asDouble();
        double heldGpu = Json.mapper().readTree(g.out()).path("heldout_loss").asDouble();
        assertEquals(heldCpu, heldGpu, 1e-4 * heldCpu, "held-out loss");

        // Interrupted after the checkpoint at step 3, resumed: the same losses as the uninterrupted GPU run (the
        // constant schedule makes a 3-step run the first half of a 6-step one).
        assertEquals(0, CliRunner.run(pretrain(corpus, tok, resumed, "cuda", "fp32", 3)).exitCode());
        CliRunner.Result r = CliRunner.run(pretrain(corpus, tok, resumed, "cuda", "fp32", 6, "--resume"));
        assertEquals(0, r.exitCode(), r.err());
        List<Double> lr = losses(resumed);
        for (int i = 0; i < 6; i++) assertEquals(lg.get(i), lr.get(i), 1e-6 * lg.get(i), "resumed run at step " + (i + 1));

        // Mixed precision (bfloat16 operands, float32 master weights) trains and stays near the float32 run.
        Path mixed = tmp.resolve("mixed");
        CliRunner.Result m = CliRunner.run(pretrain(corpus, tok, mixed, "cuda", "bf16", 6));
        assertEquals(0, m.exitCode(), m.err());
        List<Double> lm = losses(mixed);
        for (int i = 0; i < 6; i++) assertEquals(lg.get(i), lm.get(i), 3e-2 * lg.get(i), "mixed precision at step " + (i + 1));

        // Scoring and greedy generation of the GPU-trained model, on both devices.
        double sc = scoreLoss(gpu, "cpu"), sg = scoreLoss(gpu, "cuda");
        assertTrue(Double.isFinite(sg));
        assertEquals(sc, sg, 1e-4 * sc, "score on the GPU");
        String[] gen = {"generate", "--model", gpu.toString(), "--prompt", "the cat", "--max-tokens", "12", "--greedy",
                "--ignore-eos", "--json", "--gpu-matmul", "fp32", "--kv-cache", "f32", "--device"};
        CliRunner.Result onCpu = CliRunner.run(concat(gen, "cpu")), onGpu = CliRunner.run(concat(gen, "cuda"));
        assertEquals(0, onGpu.exitCode(), onGpu.err());
        JsonNode tc = Json.mapper().readTree(onCpu.out()).path("tokens"), tg = Json.mapper().readTree(onGpu.out()).path("tokens");
        assertEquals(12, tg.size());
        assertEquals(tc, tg, "greedy tokens on the GPU and the CPU");
    }

    private static String[] concat(String[] a, String... b) {
        String[] r = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, r, a.length, b.length);
        return r;
    }
}
