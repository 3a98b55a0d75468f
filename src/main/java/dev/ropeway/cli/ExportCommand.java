package dev.ropeway.cli;

import dev.ropeway.RopewayException;
import dev.ropeway.io.Json;
import dev.ropeway.model.CheckpointWriter;
import dev.ropeway.model.GgufExport;
import dev.ropeway.model.ModelConfig;
import dev.ropeway.model.Transformer;
import dev.ropeway.rope.ClexRope;
import dev.ropeway.rope.E2Rope;
import dev.ropeway.rope.LinearRope;
import dev.ropeway.rope.Llama3Rope;
import dev.ropeway.rope.LongRope;
import dev.ropeway.rope.RopeScaling;
import dev.ropeway.rope.RopeSpec;
import dev.ropeway.rope.StaticNtkRope;
import dev.ropeway.rope.YarnRope;
import dev.ropeway.tensor.DType;
import dev.ropeway.train.Checkpoints;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code ropeway export}: a checkpoint in a form other engines run. {@code --format hf} writes a Hugging Face folder
 * whose RoPE method stock transformers and vLLM know; {@code --format gguf} writes one GGUF file for llama.cpp and
 * other GGUF engines (weights reordered to their interleaved rotary layout). An E²-LLM model becomes position
 * interpolation at one fixed g (its weights serve every g; the export picks the one for the target length); other
 * methods can be replaced by any {@code --rope} spec.
 */
@Command(name = "export", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Write a copy of a checkpoint that other engines load: --format hf (a Hugging Face folder with a "
                + "RoPE config stock transformers knows) or --format gguf (one file for llama.cpp and other GGUF engines).",
                "An e2 model becomes linear (position interpolation) with --factor g, for inputs up to g x L0. "
                        + "A CLEX model has no equivalent in either format and is refused; for gguf, dynamic NTK is "
                        + "refused too (name a fixed method with --rope), LongRoPE keeps the factor set its "
                        + "--context-length uses, and the checkpoint needs a BPE tokenizer.json: byte-level (GPT-2 style) or SentencePiece-style (Llama 2, Mistral)."})
final class ExportCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, paramLabel = "<dir>")
    Path model;
    @Option(names = "--out", required = true, paramLabel = "<dir|file.gguf>",
            description = "hf: the folder to write; gguf: the file to write.")
    Path out;
    @Option(names = "--format", defaultValue = "hf", description = "hf (default) or gguf.")
    String format;
    @Option(names = "--factor", description = "e2: the fixed scale g to write (default: its trained maximum G).")
    Double factor;
    @Option(names = "--rope", paramLabel = "<spec>", description = "Write this RoPE method instead (see score --rope).")
    String rope;
    @Option(names = "--dtype", paramLabel = "<type>",
            description = "hf: f32, bf16 or f16, every weight converted (default: as stored; bf16 halves a float32 "
                    + "checkpoint, as most published ones are). gguf: f32, f16 or q8_0, how matrices are stored "
                    + "(default f16; norms and biases stay f32).")
    String dtype;
    @Option(names = "--context-length", paramLabel = "<n>",
            description = "gguf: the context the file declares (default: max_position_embeddings, or the length the "
                    + "RoPE method reaches: e2 L0 x g; --rope linear/ntk max_position_embeddings x factor; yarn and "
                    + "llama3 original x factor).")
    Long contextLength;

    @Override
    public Integer call() throws IOException {
        model = ModelFolders.resolve(model);
        boolean gguf = switch (format) {
            case "hf" -> false;
            case "gguf" -> true;
            default -> throw new RopewayException("unknown --format '" + format + "' (this version writes hf or gguf)");
        };
        if (!gguf && contextLength != null) throw new RopewayException("--context-length applies to --format gguf only");
        DType hfType = gguf || dtype == null ? null : switch (dtype.toLowerCase(Locale.ROOT)) {
            case "f32", "float32" -> DType.F32;
            case "bf16", "bfloat16" -> DType.BF16;
            case "f16", "float16" -> DType.F16;
            default -> throw new RopewayException("unknown --dtype '" + dtype + "' for --format hf (f32, bf16 or f16)");
        };
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
        if (gguf) return writeGguf(target, contextLength != null ? contextLength : impliedContext(target, maxPositions));
        Map<String, Object> written = CheckpointWriter.withRope(json, target, maxPositions);
        Files.createDirectories(out);
        String weights;
        if (hfType != null) {
            long bytes = CheckpointWriter.convertWeights(model, out, hfType);
            String torch = CheckpointWriter.torchDtype(hfType);
            written.put("torch_dtype", torch);
            if (written.containsKey("dtype")) written.put("dtype", torch);
            weights = String.format(Locale.ROOT, "weights %s, %.1f MB", hfType.name().toLowerCase(Locale.ROOT), bytes / 1e6);
        } else {
            // The weights are unchanged: copy them (atomically, so a kill leaves no half file).
            for (Path f : Files.list(model).filter(p -> p.getFileName().toString().endsWith(".safetensors")
                    || p.getFileName().toString().equals("model.safetensors.index.json")).toList()) {
                if (f.getFileName().toString().equals(Checkpoints.OPTIMIZER)) continue;
                Path tmp = out.resolve("." + f.getFileName() + ".tmp");
                Files.copy(f, tmp, StandardCopyOption.REPLACE_EXISTING);
                Files.move(tmp, out.resolve(f.getFileName()), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            }
            weights = "weights as stored";
        }
        Checkpoints.copyTokenizer(model, out);
        Json.writeAtomic(out.resolve("config.json"), written);
        System.out.printf("wrote %s: RoPE %s, max_position_embeddings %d, %s%n", out, RopeSpec.describe(target), maxPositions,
                weights);
        return 0;
    }

    private int writeGguf(RopeScaling target, long context) throws IOException {
        GgufExport.Dtype type = GgufExport.Dtype.parse(dtype == null ? "f16" : dtype);
        if (Files.isDirectory(out))
            throw new RopewayException("--out " + out + " is a folder; --format gguf writes one file (e.g. model.gguf)");
        Path parent = out.toAbsolutePath().getParent();
        if (parent != null) Files.createDirectories(parent);
        String name = model.toAbsolutePath().normalize().getFileName().toString();
        GgufExport.Result r = GgufExport.write(model, out, new GgufExport.Options(target, context, type, name));
        System.out.printf("wrote %s: GGUF %s, %d tensors (%s), %.1f MB; RoPE %s, context_length %d%n", out,
                r.architecture(), r.tensors(), type.name().toLowerCase(Locale.ROOT), r.bytes() / 1e6, r.rope(), context);
        for (String note : r.notes()) System.out.println("  note: " + note);
        return 0;
    }

    /**
     * The context a GGUF file declares by default: what the method reaches. A --rope linear or ntk spec stretches the
     * checkpoint's own context by its factor; YaRN and Llama 3 name their original length.
     */
    private long impliedContext(RopeScaling target, long maxPositions) {
        return switch (target) {
            case YarnRope y -> Math.max(maxPositions, Math.round(y.originalMaxPositionEmbeddings() * y.factor()));
            case Llama3Rope l -> Math.max(maxPositions, Math.round(l.originalMaxPositionEmbeddings() * l.factor()));
            case LongRope l -> Math.max(maxPositions, Math.round(l.originalMaxPositionEmbeddings() * l.factor()));
            case LinearRope l when rope != null -> Math.max(maxPositions, Math.round(maxPositions * l.factor()));
            case StaticNtkRope n when rope != null -> Math.max(maxPositions, Math.round(maxPositions * n.factor()));
            default -> maxPositions;
        };
    }
}
