package dev.ropeway.cli;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Json;
import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.model.ModelConfig;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.ClexRope;
import dev.ropeway.rope.E2Rope;
import dev.ropeway.rope.LinearRope;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.rope.RopeSpec;
import dev.ropeway.train.Checkpoints;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code ropeway export --format hf}: a checkpoint whose RoPE method stock transformers and vLLM know. An E²-LLM model
 * becomes position interpolation at one fixed g (its weights serve every g; the export picks the one for the target
 * length); other methods can be replaced by any {@code --rope} spec.
 */
@Command(name = "export", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Write a copy of a checkpoint with a RoPE config that stock transformers loads.",
                "An e2 model becomes linear (position interpolation) with --factor g, for inputs up to g x L0."})
final class ExportCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, paramLabel = "<dir>")
    Path model;
    @Option(names = "--out", required = true, paramLabel = "<dir>")
    Path out;
    @Option(names = "--format", defaultValue = "hf", description = "hf (default; gguf is not in this version).")
    String format;
    @Option(names = "--factor", description = "e2: the fixed scale g to write (default: its trained maximum G).")
    Double factor;
    @Option(names = "--rope", paramLabel = "<spec>", description = "Write this RoPE method instead (see score --rope).")
    String rope;

    @Override
    public Integer call() throws IOException {
        if (!format.equals("hf")) throw new RopewayException("unknown --format '" + format + "' (this version writes hf)");
        if (model.toAbsolutePath().normalize().equals(out.toAbsolutePath().normalize()))
            throw new RopewayException("--out must differ from --model");
        Map<String, Object> json = Json.readObject(model.resolve("config.json"));
        ModelConfig c = Transformer.loadConfig(model);
        RopeScaling target;
        long maxPositions;
        if (rope != null) {
            target = c.ropeOrSpec(rope);
            maxPositions = c.maxPositionEmbeddings();
        } else if (c.rope() instanceof E2Rope e2) {
            double g = factor != null ? factor : e2.maxScale();
            target = new LinearRope(e2.theta(), e2.rotaryDim(), g);
            maxPositions = Math.round(e2.originalMax() * g);
        } else if (c.rope() instanceof ClexRope) {
            throw new RopewayException("CLEX has no stock transformers equivalent (its frequencies come from a trained ODE "
                    + "layer); serve it with Ropeway, or export with --rope to approximate it");
        } else {
            target = c.rope();
            maxPositions = c.maxPositionEmbeddings();
        }
        Map<String, Object> written = CheckpointWriter.withRope(json, target, maxPositions);
        Files.createDirectories(out);
        // The weights are unchanged: copy them (atomically, so a kill leaves no half file).
        for (Path f : Files.list(model).filter(p -> p.getFileName().toString().endsWith(".safetensors")
                || p.getFileName().toString().equals("model.safetensors.index.json")).toList()) {
            if (f.getFileName().toString().equals(Checkpoints.OPTIMIZER)) continue;
            Path tmp = out.resolve("." + f.getFileName() + ".tmp");
            Files.copy(f, tmp, StandardCopyOption.REPLACE_EXISTING);
            Files.move(tmp, out.resolve(f.getFileName()), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        }
        Checkpoints.copyTokenizer(model, out);
        Json.writeAtomic(out.resolve("config.json"), written);
        System.out.printf("wrote %s: RoPE %s, max_position_embeddings %d%n", out, RopeSpec.describe(target), maxPositions);
        return 0;
    }
}
