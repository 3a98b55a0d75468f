package dev.ropeway.cli;

import dev.ropeway.RopewayException;
import dev.ropeway.model.GgufImport;
import dev.ropeway.tensor.DType;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code ropeway import}: a GGUF file (llama.cpp's format, any of its common quantisations) as a Hugging Face
 * checkpoint folder, which every other command then reads: score, eval, extend, generate, serve, export.
 */
@Command(name = "import", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Convert a GGUF file (llama.cpp's format) into a checkpoint folder: config.json, model.safetensors "
                + "and the tokenizer files, which every other command reads.",
                "Architectures: llama (Llama, Mistral and kin), qwen2, qwen3, phi3. Tensors: F32, F16, BF16, Q4_0, Q4_1, "
                        + "Q5_0, Q5_1, Q8_0, Q2_K to Q6_K, IQ4_NL, IQ4_XS, MXFP4, IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, "
                        + "IQ3_S, TQ1_0, TQ2_0, converted bit for bit as llama.cpp "
                        + "dequantises them. Tokenizers: gpt2 (byte-level BPE) and llama (SentencePiece)."})
final class ImportCommand implements Callable<Integer> {
    @Option(names = "--gguf", required = true, paramLabel = "<file.gguf>", description = "The GGUF file to read.")
    Path gguf;
    @Option(names = "--out", required = true, paramLabel = "<dir>", description = "The checkpoint folder to write.")
    Path out;
    @Option(names = "--dtype", paramLabel = "<type>",
            description = "f32, bf16 or f16: how matrices are stored (default: as the file stores them; quantised "
                    + "types become f16, within 2^-12 of their values). Norms and biases are f32.")
    String dtype;
    @Option(names = "--keep-quantised", negatable = false,
            description = "Keep quantised matrices (every type but MXFP4) as their blocks (about the "
                    + "file's own size; the CPU computes with them as they are, a GPU widens them to bf16). "
                    + "Ropeway reads such a folder; other Hugging Face "
                    + "readers do not. Runs given the GGUF file itself do this by themselves.")
    boolean keepQuantised;
    @Option(names = "--no-tokenizer", negatable = false,
            description = "Write no tokenizer files (for a tokenizer GGUF has no form for; put the model's own beside it).")
    boolean noTokenizer;
    @Option(names = "--json", description = "Print one JSON object instead of text.")
    boolean json;

    @Override
    public Integer call() {
        if (!Files.isRegularFile(gguf)) throw new RopewayException("--gguf " + gguf + " is not a file");
        DType type = dtype == null ? null : switch (dtype.toLowerCase(Locale.ROOT)) {
            case "f32", "float32" -> DType.F32;
            case "bf16", "bfloat16" -> DType.BF16;
            case "f16", "float16" -> DType.F16;
            default -> throw new RopewayException("unknown --dtype '" + dtype + "' (f32, bf16 or f16)");
        };
        GgufImport.Result r = GgufImport.write(gguf, out, new GgufImport.Options(type, !noTokenizer, keepQuantised));
        if (json) {
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("dir", r.dir().toString());
            o.put("architecture", r.architecture());
            o.put("hf_architecture", r.hfArchitecture());
            o.put("rope", r.rope());
            o.put("parameters", r.parameters());
            o.put("dtype", r.dtype().name().toLowerCase(Locale.ROOT));
            o.put("keep_quantised", keepQuantised);
            o.put("weight_bytes", r.bytes());
            o.put("source_types", r.sourceTypes());
            if (r.tokenizer() != null) {
                o.put("tokenizer", Map.of("model", r.tokenizer().model(), "tokens", r.tokenizer().tokens(),
                        "merges", r.tokenizer().merges(), "chat_template", r.tokenizer().chatTemplate()));
            }
            o.put("notes", r.notes());
            System.out.println(Output.json(o));
            return 0;
        }
        System.out.printf("wrote %s: %s (%s), %,d parameters, weights %s %.1f MB from %s; RoPE %s%n", r.dir(),
                r.hfArchitecture(), r.architecture(), r.parameters(), r.dtype().name().toLowerCase(Locale.ROOT),
                r.bytes() / 1e6, r.sourceTypes(), r.rope());
        if (r.tokenizer() != null)
            System.out.printf("  tokenizer: %s, %,d tokens, %,d merges%s%n", r.tokenizer().model(), r.tokenizer().tokens(),
                    r.tokenizer().merges(), r.tokenizer().chatTemplate() ? ", chat template" : "");
        for (String note : r.notes()) System.out.println("  note: " + note);
        return 0;
    }
}
