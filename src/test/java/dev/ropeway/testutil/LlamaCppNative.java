package dev.ropeway.testutil;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SegmentAllocator;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/**
 * llama.cpp's own libraries (ggml and libllama, from the peer {@code bin/llama-cpp-peer install} puts in place)
 * called through FFM, as ground truth for GGUF data: ggml's type table, its quantisers and dequantisers, and
 * {@code llama_model_quantize}, which makes the quantised files users download. {@link #load} returns null where the
 * peer is not installed, and tests skip.
 */
public final class LlamaCppNative {
    private static final Path PEER = Path.of("bin/llama-cpp-peer").toAbsolutePath();
    private static final Linker LINKER = Linker.nativeLinker();
    private static LlamaCppNative instance;
    private static boolean looked;

    private final MethodHandle typeTraits, quantizeChunk, quantizeDefaults, quantizeModel;

    /** libllama's file, read by {@link #libraryString}. */
    private final Path llama;

    private LlamaCppNative(Path bins) {
        Arena arena = Arena.global();
        SymbolLookup base = SymbolLookup.libraryLookup(bins.resolve("libggml-base.so"), arena);
        typeTraits = LINKER.downcallHandle(base.find("ggml_get_type_traits").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
        quantizeChunk = LINKER.downcallHandle(base.find("ggml_quantize_chunk").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.ADDRESS,
                        ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.ADDRESS));
        try (var files = Files.list(bins)) {
            llama = files.filter(p -> p.getFileName().toString().startsWith("libllama.") && p.toString().endsWith(".so"))
                    .findFirst().orElseThrow();
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
        SymbolLookup lib = SymbolLookup.libraryLookup(llama, arena);
        quantizeDefaults = LINKER.downcallHandle(lib.find("llama_model_quantize_default_params").orElseThrow(),
                FunctionDescriptor.of(PARAMS));
        quantizeModel = LINKER.downcallHandle(lib.find("llama_model_quantize").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.ADDRESS));
        // Quiet: llama.cpp logs every key and tensor of every file it quantises.
        try {
            MemorySegment quiet = LINKER.upcallStub(java.lang.invoke.MethodHandles.lookup().findStatic(LlamaCppNative.class,
                    "ignoreLog", java.lang.invoke.MethodType.methodType(void.class, int.class, MemorySegment.class,
                            MemorySegment.class)), FunctionDescriptor.ofVoid(ValueLayout.JAVA_INT, ValueLayout.ADDRESS,
                    ValueLayout.ADDRESS), arena);
            FunctionDescriptor logSet = FunctionDescriptor.ofVoid(ValueLayout.ADDRESS, ValueLayout.ADDRESS);
            LINKER.downcallHandle(lib.find("llama_log_set").orElseThrow(), logSet).invokeExact(quiet, MemorySegment.NULL);
            LINKER.downcallHandle(base.find("ggml_log_set").orElseThrow(), logSet).invokeExact(quiet, MemorySegment.NULL);
        } catch (Throwable e) {
            throw new IllegalStateException("cannot set llama.cpp's log callback", e);
        }
    }

    private static void ignoreLog(int level, MemorySegment text, MemorySegment user) {}

    /**
     * llama_model_quantize_params is larger than 16 bytes, so it is returned through memory the caller provides;
     * a layout at least as large as the struct (whose first fields, nthread and ftype, have been stable for years)
     * is enough to receive the defaults and pass them back with those two changed.
     */
    private static final MemoryLayout PARAMS = MemoryLayout.structLayout(MemoryLayout.sequenceLayout(64, ValueLayout.JAVA_LONG));

    /** The libraries, or null when the peer is not installed. */
    public static synchronized LlamaCppNative load() {
        if (looked) return instance;
        looked = true;
        try {
            if (!Files.isExecutable(PEER)) return null;
            Process p = new ProcessBuilder(PEER.toString(), "where").redirectErrorStream(true).start();
            String dir = new String(p.getInputStream().readAllBytes()).trim();
            if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) return null;
            Path bins = Path.of(dir, "node_modules", "@node-llama-cpp", "linux-x64", "bins", "linux-x64");
            if (!Files.isRegularFile(bins.resolve("libggml-base.so"))) return null;
            instance = new LlamaCppNative(bins);
        } catch (Exception e) {
            instance = null;
        }
        return instance;
    }

    /**
     * {@code quantize <in.gguf> <out.gguf> <llama_ftype>}: what {@code llama-quantize} does, from the command line
     * ({@code java --enable-native-access=ALL-UNNAMED -cp target/test-classes:target/classes
     * dev.ropeway.testutil.LlamaCppNative quantize in.gguf out.gguf 15}, from the repository root).
     */
    public static void main(String[] args) {
        if (args.length != 4 || !args[0].equals("quantize")) {
            System.err.println("usage: LlamaCppNative quantize <in.gguf> <out.gguf> <llama_ftype, e.g. 15 for Q4_K_M>");
            System.exit(2);
        }
        LlamaCppNative llama = load();
        if (llama == null) {
            System.err.println("llama.cpp is not installed (bin/llama-cpp-peer install)");
            System.exit(1);
        }
        long start = System.nanoTime();
        llama.quantizeModel(Path.of(args[1]), Path.of(args[2]), Integer.parseInt(args[3]));
        System.out.printf("wrote %s in %.2f s%n", args[2], (System.nanoTime() - start) / 1e9);
    }

    /** ggml's row geometry of a type: name, block size, bytes per block. */
    public record Traits(String name, long blockSize, long typeSize, boolean quantized, MemorySegment toFloat) {}

    public Traits traits(int type) {
        try {
            MemorySegment t = ((MemorySegment) typeTraits.invokeExact(type)).reinterpret(56);
            MemorySegment name = t.get(ValueLayout.ADDRESS, 0);
            return new Traits(name.equals(MemorySegment.NULL) ? null : name.reinterpret(256).getString(0),
                    t.get(ValueLayout.JAVA_LONG, 8), t.get(ValueLayout.JAVA_LONG, 24), t.get(ValueLayout.JAVA_BYTE, 32) != 0,
                    t.get(ValueLayout.ADDRESS, 40));
        } catch (Throwable e) {
            throw new IllegalStateException(e);
        }
    }

    /**
     * The NUL-terminated UTF-8 string in libllama's data that starts with {@code prefix} (the first such), as llama.cpp
     * compiled it in: its pre-tokenizers' split patterns, for instance. Null when there is none.
     */
    public String libraryString(String prefix) {
        try {
            byte[] data = Files.readAllBytes(llama), want = prefix.getBytes(java.nio.charset.StandardCharsets.UTF_8);
            outer:
            for (int i = 0; i + want.length <= data.length; i++) {
                for (int j = 0; j < want.length; j++) if (data[i + j] != want[j]) continue outer;
                int end = i;
                while (end < data.length && data[end] != 0) end++;
                return new String(data, i, end - i, java.nio.charset.StandardCharsets.UTF_8);
            }
            return null;
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    /** {@code rows} rows of {@code perRow} values quantised to ggml type {@code type} by ggml (no importance matrix). */
    public byte[] quantize(int type, float[] values, int rows, int perRow) {
        return quantize(type, values, rows, perRow, null);
    }

    /**
     * As above with an importance matrix ({@code perRow} weights, one per column; null for none), which ggml requires for
     * IQ1_S, IQ1_M, IQ2_XXS and IQ2_XS (without one it aborts the process).
     */
    public byte[] quantize(int type, float[] values, int rows, int perRow, float[] importance) {
        Traits t = traits(type);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment src = arena.allocateFrom(ValueLayout.JAVA_FLOAT, values);
            MemorySegment weights = importance == null ? MemorySegment.NULL : arena.allocateFrom(ValueLayout.JAVA_FLOAT, importance);
            long bytes = (long) rows * perRow / t.blockSize() * t.typeSize();
            MemorySegment dst = arena.allocate(bytes, 64);
            long written = (long) quantizeChunk.invokeExact(type, src, dst, 0L, (long) rows, (long) perRow, weights);
            if (written != bytes) throw new IllegalStateException("ggml wrote " + written + " bytes, expected " + bytes);
            return dst.toArray(ValueLayout.JAVA_BYTE);
        } catch (Throwable e) {
            throw new IllegalStateException(e);
        }
    }

    /** ggml's {@code to_float} of {@code type} over {@code n} values (F32's bytes as they are). */
    public float[] dequantize(int type, byte[] data, int n) {
        if (type == 0) {
            float[] out = new float[n];
            java.nio.ByteBuffer.wrap(data).order(java.nio.ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out);
            return out;
        }
        MethodHandle toFloat = LINKER.downcallHandle(traits(type).toFloat(),
                FunctionDescriptor.ofVoid(ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG));
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment src = arena.allocateFrom(ValueLayout.JAVA_BYTE, data);
            MemorySegment dst = arena.allocate(4L * n, 64);
            toFloat.invokeExact(src, dst, (long) n);
            return dst.toArray(ValueLayout.JAVA_FLOAT);
        } catch (Throwable e) {
            throw new IllegalStateException(e);
        }
    }

    /**
     * What {@code llama-quantize in out FTYPE} does: the file quantised with llama.cpp's own per-tensor choices for
     * {@code ftype} (its {@code llama_ftype}: 2 Q4_0, 3 Q4_1, 7 Q8_0, 8 Q5_0, 9 Q5_1, 10 Q2_K, 12 Q3_K_M, 15 Q4_K_M,
     * 17 Q5_K_M, 18 Q6_K, 25 IQ4_NL, 26 IQ3_S, 30 IQ4_XS, 36 TQ1_0, 37 TQ2_0; the IQ1 and IQ2 types and IQ3_XXS need an
     * importance matrix, which this does not pass).
     */
    public void quantizeModel(Path in, Path out, int ftype) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment params = (MemorySegment) quantizeDefaults.invokeExact((SegmentAllocator) arena);
            params.set(ValueLayout.JAVA_INT, 0, 2);      // nthread
            params.set(ValueLayout.JAVA_INT, 4, ftype);  // ftype
            int status = (int) quantizeModel.invokeExact(arena.allocateFrom(in.toString()),
                    arena.allocateFrom(out.toString()), params);
            if (status != 0) throw new IllegalStateException("llama_model_quantize returned " + status + " for " + in);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable e) {
            throw new IllegalStateException(e);
        }
    }
}
