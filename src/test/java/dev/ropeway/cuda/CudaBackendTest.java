package dev.ropeway.cuda;

import dev.ropeway.tensor.AttentionShape;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.Bf16WeightsTest.Weights;
import dev.ropeway.tensor.CpuBackend;
import dev.ropeway.tensor.DType;
import dev.ropeway.tensor.DecodeStep;
import dev.ropeway.tensor.Recording;
import dev.ropeway.tensor.RotaryTable;
import dev.ropeway.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;

import static java.lang.foreign.ValueLayout.JAVA_DOUBLE;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;
import static dev.ropeway.tensor.Bf16OperandsTest.bf16;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Every op of the CUDA backend against the CPU backend (itself checked against float64 references and finite
 * differences) on random inputs, with exact float32 products. Skipped where no NVIDIA GPU is present.
 */
class CudaBackendTest {
    static CudaBackend gpu, tf32;
    static CpuBackend cpu;

    @BeforeAll
    static void open() {
        assumeTrue(CudaBackend.isAvailable(), "no NVIDIA GPU here");
        gpu = new CudaBackend(0, MatmulPrecision.FP32);
        tf32 = new CudaBackend(0, MatmulPrecision.TF32);
        cpu = new CpuBackend();
        System.out.println("CUDA backend: " + gpu.description());
    }

    @AfterAll
    static void close() {
        if (gpu != null) gpu.close();
        if (tf32 != null) tf32.close();
        if (cpu != null) cpu.close();
    }

    static float[] random(Random r, long n, double scale) {
        float[] x = new float[(int) n];
        for (int i = 0; i < x.length; i++) x[i] = (float) (r.nextGaussian() * scale);
        return x;
    }

    static float[] read(Backend b, Tensor t) {
        float[] out = new float[(int) t.size()];
        b.download(t, 0, out, 0, out.length);
        return out;
    }

    /** ||got - want|| / ||want|| below tol. */
    static void close(float[] want, float[] got, double tol, String what) {
        assertEquals(want.length, got.length, what + " length");
        double diff = 0, norm = 0;
        for (int i = 0; i < want.length; i++) {
            assertTrue(Float.isFinite(got[i]) || !Float.isFinite(want[i]), what + ": not finite at " + i + ": " + got[i]);
            double d = (double) got[i] - want[i];
            diff += d * d;
            norm += (double) want[i] * want[i];
        }
        double rel = Math.sqrt(diff) / Math.max(Math.sqrt(norm), 1e-30);
        assertTrue(rel <= tol, what + ": relative error " + rel);
    }

    /** The same host data on both backends. */
    record Pair(Tensor c, Tensor g) {
        static Pair of(float[] x) {
            return new Pair(cpu.upload(x), gpu.upload(x));
        }

        static Pair zeros(long n) {
            return new Pair(cpu.allocate(n), gpu.allocate(n));
        }

        void check(double tol, String what) {
            close(read(cpu, c), read(gpu, g), tol, what);
        }
    }

    /**
     * Bfloat16 operands (mixed-precision training): the GPU rounds exactly as the CPU does, its products on bfloat16
     * operands equal the CPU's on the widened values up to float32 summation order, and rmsNorm and swiglu write
     * their float32 results rounded (a result within an ulp of a rounding boundary may round the other way).
     */
    @Test
    void bf16OperandsMatchTheCpu() {
        Random r = new Random(12);
        float[] x = random(r, 4099, 3);
        x[0] = Float.NaN;
        x[1] = Float.MAX_VALUE;
        x[2] = Float.intBitsToFloat(0x3f808000);
        x[3] = Float.intBitsToFloat(0x3f818000);
        float[] cpuRound = read(cpu, bf16(cpu, x)), gpuRound = read(gpu, bf16(gpu, x));
        for (int i = 0; i < x.length; i++)
            assertEquals(Float.floatToIntBits(cpuRound[i]), Float.floatToIntBits(gpuRound[i]), "rounding of " + x[i]);
        try (CudaBackend bf16Products = new CudaBackend(0, MatmulPrecision.BF16)) {
            assertEquals(DType.BF16, bf16Products.trainingOperandType());
        }
        assertEquals(DType.F32, tf32.trainingOperandType());

        int m = 70, n = 50, k = 96;
        for (boolean transA : new boolean[] {false, true})
            for (boolean transB : new boolean[] {false, true}) {
                float[] a = random(r, m * k, 1), b = random(r, n * k, 1), c = random(r, m * n, 1);
                int lda = transA ? m : k, ldb = transB ? k : n;
                Tensor ca = bf16(cpu, a), cb = bf16(cpu, b), cc = cpu.upload(c);
                Tensor ga = bf16(gpu, a), gb = bf16(gpu, b), gc = gpu.upload(c);
                cpu.gemm(transA, transB, m, n, k, 0.5f, ca, 0, lda, cb, 0, ldb, 0.25f, cc, 0, n);
                gpu.gemm(transA, transB, m, n, k, 0.5f, ga, 0, lda, gb, 0, ldb, 0.25f, gc, 0, n);
                close(read(cpu, cc), read(gpu, gc), 1e-5, "bf16 gemm " + transA + " " + transB);
            }
        int rows = 33, in = 64, out = 48;
        float[] xs = random(r, rows * in, 1), w = random(r, out * in, 0.3f), bias = random(r, out, 1);
        Tensor cy = cpu.allocate(rows * out), gy = gpu.allocate(rows * out);
        cpu.linear(cy, bf16(cpu, xs), bf16(cpu, w), cpu.upload(bias), rows, in, out);
        gpu.linear(gy, bf16(gpu, xs), bf16(gpu, w), gpu.upload(bias), rows, in, out);
        close(read(cpu, cy), read(gpu, gy), 1e-5, "bf16 linear");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> gpu.linear(gy, bf16(gpu, xs), gpu.upload(w), null, rows, in, out));
        assertTrue(e.getMessage().contains("both float32 or both bfloat16"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> gpu.addInPlace(bf16(gpu, xs), gpu.upload(xs), 10));
        assertTrue(e.getMessage().contains("bfloat16"), e.getMessage());

        float[] nw = random(r, in, 1), g = random(r, rows * in, 2), u = random(r, rows * in, 2);
        Tensor cn = cpu.allocate(rows * in, DType.BF16), gn = gpu.allocate(rows * in, DType.BF16);
        cpu.rmsNorm(cn, cpu.upload(xs), cpu.upload(nw), rows, in, 1e-5f);
        gpu.rmsNorm(gn, gpu.upload(xs), gpu.upload(nw), rows, in, 1e-5f);
        close(read(cpu, cn), read(gpu, gn), 4e-3, "rmsNorm into bfloat16");
        cpu.swiglu(cn, cpu.upload(g), cpu.upload(u), rows * in);
        gpu.swiglu(gn, gpu.upload(g), gpu.upload(u), rows * in);
        close(read(cpu, cn), read(gpu, gn), 4e-3, "swiglu into bfloat16");

        // Mixed precision's gate and up: products into bfloat16 (with and without a bias), SwiGLU and its backward
        // reading them, into each output type.
        for (boolean withBias : new boolean[] {false, true}) {
            Tensor ch = cpu.allocate(rows * out, DType.BF16), gh = gpu.allocate(rows * out, DType.BF16);
            cpu.linear(ch, bf16(cpu, xs), bf16(cpu, w), withBias ? cpu.upload(bias) : null, rows, in, out);
            gpu.linear(gh, bf16(gpu, xs), bf16(gpu, w), withBias ? gpu.upload(bias) : null, rows, in, out);
            close(read(cpu, ch), read(gpu, gh), 4e-3, "bf16 linear into bfloat16, bias " + withBias);
        }
        e = assertThrows(IllegalArgumentException.class,
                () -> gpu.linear(gpu.allocate(rows * out, DType.BF16), gpu.upload(xs), gpu.upload(w), null, rows, in, out));
        assertTrue(e.getMessage().contains("needs bfloat16 x and w"), e.getMessage());
        int ne = rows * in;
        float[] dy = random(r, ne, 1);
        Tensor cg = bf16(cpu, g), cu = bf16(cpu, u), gg = bf16(gpu, g), gu = bf16(gpu, u);
        for (DType type : new DType[] {DType.F32, DType.BF16}) {
            Tensor co = cpu.allocate(ne, type), go = gpu.allocate(ne, type);
            cpu.swiglu(co, cg, cu, ne);
            gpu.swiglu(go, gg, gu, ne);
            close(read(cpu, co), read(gpu, go), type == DType.F32 ? 1e-6 : 4e-3, "swiglu from bfloat16 into " + type);
            Tensor cdg = cpu.allocate(ne, type), cdu = cpu.allocate(ne, type), gdg = gpu.allocate(ne, type), gdu = gpu.allocate(ne, type);
            cpu.swigluBackward(cdg, cdu, cpu.upload(dy), cg, cu, ne);
            gpu.swigluBackward(gdg, gdu, gpu.upload(dy), gg, gu, ne);
            close(read(cpu, cdg), read(gpu, gdg), type == DType.F32 ? 1e-6 : 4e-3, "swigluBackward from bfloat16: dGate, " + type);
            close(read(cpu, cdu), read(gpu, gdu), type == DType.F32 ? 1e-6 : 4e-3, "swigluBackward from bfloat16: dUp, " + type);
        }
        e = assertThrows(IllegalArgumentException.class, () -> gpu.swiglu(gn, gg, gpu.upload(u), ne));
        assertTrue(e.getMessage().contains("both float32 or both bfloat16"), e.getMessage());
    }

    /**
     * The fused ops (residual add + norm, norm backward into the residual gradient with a rounded copy, cross-entropy
     * into a separate gradient, SwiGLU backward into bfloat16) against the CPU's unfused ones, with the aliasing the
     * training and decoding passes use, and a row too wide for the fused norm backward's shared memory.
     */
    /**
     * A bfloat16 or float16 checkpoint's matrices kept so ({@code uploadWeights}): linear, gemm and embedding compute on
     * them what the CPU computes on their float32 widening. A few rows (a decode step; up to 32 in passes of 8 unless
     * products are bfloat16 on bfloat16 weights) run the narrow-weight kernel, exact in every precision; more rows run
     * cuBLAS on the weights widened a block of rows at a time (float32, TF32, float16 weights) or on the activations
     * rounded (bfloat16 products on bfloat16 weights), to each precision's tolerance.
     */
    @ParameterizedTest
    @org.junit.jupiter.params.provider.EnumSource(value = DType.class, names = {"BF16", "F16"})
    void narrowWeightsComputeWhatTheirWideningDoes(DType type) {
        Random r = new Random(31);
        long savedWiden = CudaBackend.widenFloats;
        String typeName = type.name().toLowerCase(java.util.Locale.ROOT);
        try (Arena arena = Arena.ofConfined(); CudaBackend bf16Products = new CudaBackend(0, MatmulPrecision.BF16)) {
            CudaBackend.widenFloats = 2000;   // blocks of a few weight rows, so that the loop over blocks runs
            for (CudaBackend g : new CudaBackend[] {gpu, tf32, bf16Products}) {
                double many = g == gpu ? 1e-5 : g == tf32 ? 3e-3 : 1.5e-2;
                boolean roundsActivations = g == bf16Products && type == DType.BF16;
                for (int in : new int[] {776, 77}) {   // 16-byte loads (two chunks of 256 and a tail), and the scalar loop
                    int out = 53;
                    Weights w = Weights.random(r, in * out, arena, type, 0.5);
                    Tensor wb = g.uploadWeights(w.bits(), type, (long) in * out);
                    assertEquals("CudaTensor[" + in * out + " " + typeName + "]", wb.toString());
                    assertArrayEquals(w.wide(), read(g, wb));
                    float[] bias = random(r, out, 1);
                    Tensor cw = cpu.upload(w.wide()), cb = cpu.upload(bias), gbias = g.upload(bias);
                    for (int rows : new int[] {1, 3, 8, 9, 27, 40}) {
                        float[] x = random(r, rows * in, 1);
                        for (boolean withBias : new boolean[] {false, true}) {
                            Tensor cy = cpu.allocate((long) rows * out), gy = g.allocate((long) rows * out);
                            cpu.linear(cy, cpu.upload(x), cw, withBias ? cb : null, rows, in, out);
                            g.linear(gy, g.upload(x), wb, withBias ? gbias : null, rows, in, out);
                            boolean kernel = rows <= 8 || rows <= 32 && !roundsActivations;
                            close(read(cpu, cy), read(g, gy), kernel ? 1e-5 : many,
                                    g + " linear on " + typeName + " weights, " + rows + " x " + in + ", bias " + withBias);
                        }
                    }
                }
                // The logits head's product: offsets, strides, alpha and beta.
                int n = 37, k = 40, lda = 48, ldb = 44, ldc = 41;
                Weights w = Weights.random(r, 3 + (n - 1) * ldb + k, arena, type, 0.5);
                Tensor wb = g.uploadWeights(w.bits(), type, w.wide().length), cw = cpu.upload(w.wide());
                for (int m : new int[] {1, 6, 20, 33}) {
                    float[] a = random(r, 2 + (m - 1) * lda + k, 1), c = random(r, 5 + (m - 1) * ldc + n, 1);
                    Tensor cc = cpu.upload(c), gc = g.upload(c);
                    cpu.gemm(false, true, m, n, k, 0.5f, cpu.upload(a), 2, lda, cw, 3, ldb, 0.25f, cc, 5, ldc);
                    g.gemm(false, true, m, n, k, 0.5f, g.upload(a), 2, lda, wb, 3, ldb, 0.25f, gc, 5, ldc);
                    close(read(cpu, cc), read(g, gc), m <= 8 || m <= 32 && !roundsActivations ? 1e-5 : many,
                            g + " gemm on " + typeName + " weights, m " + m);
                }
                // Other layouts widen the narrow operand, A or B, and run the float32 product.
                int m = 12;
                float[] f = random(r, m * k, 1), c0 = random(r, m * n, 1);
                Weights kn = Weights.random(r, k * n, arena, type, 0.5), km = Weights.random(r, k * m, arena, type, 0.5);
                Tensor cc = cpu.upload(c0), gc = g.upload(c0);
                cpu.gemm(false, false, m, n, k, 1f, cpu.upload(f), 0, k, cpu.upload(kn.wide()), 0, n, 1f, cc, 0, n);
                g.gemm(false, false, m, n, k, 1f, g.upload(f), 0, k, g.uploadWeights(kn.bits(), type, k * n), 0, n, 1f,
                        gc, 0, n);
                close(read(cpu, cc), read(g, gc), g == gpu ? 1e-5 : many, g + " gemm A x " + typeName + " B");
                float[] b = random(r, k * n, 1);
                cpu.gemm(true, false, m, n, k, 1f, cpu.upload(km.wide()), 0, m, cpu.upload(b), 0, n, 0f, cc, 0, n);
                g.gemm(true, false, m, n, k, 1f, g.uploadWeights(km.bits(), type, k * m), 0, m, g.upload(b), 0, n, 0f,
                        gc, 0, n);
                close(read(cpu, cc), read(g, gc), g == gpu ? 1e-5 : many, g + " gemm " + typeName + " A^T x B");
            }
            // Embedding rows from a narrow table, batch and decode step alike: exactly the widened rows.
            int vocab = 30, dim = 24;
            Weights t = Weights.random(r, vocab * dim, arena, type, 0.5);
            Tensor table = gpu.uploadWeights(t.bits(), type, (long) vocab * dim);
            int[] ids = {3, 29, 0, 3};
            Tensor rows = gpu.allocate((long) ids.length * dim);
            gpu.embedding(rows, table, ids, dim);
            float[] got = read(gpu, rows);
            for (int i = 0; i < ids.length; i++)
                for (int j = 0; j < dim; j++)
                    assertEquals(t.wide()[ids[i] * dim + j], got[i * dim + j], "row " + i + ", feature " + j);
            try (DecodeStep step = gpu.decodeStep(2)) {
                step.set(17, 5, new float[] {1f, 0.5f});
                Tensor one = gpu.allocate(dim);
                gpu.embedding(one, table, step, dim);
                assertArrayEquals(java.util.Arrays.copyOfRange(t.wide(), 17 * dim, 18 * dim), read(gpu, one));
            }
            Tensor narrow8 = gpu.uploadWeights(t.bits(), type, 8);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> gpu.linear(
                    gpu.allocate(8, DType.BF16), gpu.upload(new float[8]), narrow8, null, 1, 8, 1));
            assertTrue(e.getMessage().contains("needs bfloat16 x and w"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> gpu.embeddingBackward(table, gpu.allocate(dim), new int[] {1}, dim));
            assertTrue(e.getMessage().contains(type == DType.F16 ? "float16" : "bfloat16"), e.getMessage());
            if (type == DType.F16) {
                e = assertThrows(IllegalArgumentException.class, () -> gpu.linear(gpu.allocate(1), narrow8, narrow8, null, 1, 8, 1));
                assertTrue(e.getMessage().contains("only as weights beside float32 activations"), e.getMessage());
            }
        } finally {
            CudaBackend.widenFloats = savedWiden;
        }
    }

    /**
     * A GGUF import's ggml blocks (Q8_0, Q4_K, Q6_K): uploaded as float32 they are ggml's dequantised values exactly;
     * as weights they are those values rounded to bfloat16, and linear computes what the CPU computes on that rounding.
     */
    @Test
    void quantisedWeightsAreTheirValuesInBfloat16() {
        Random r = new Random(41);
        try (Arena arena = Arena.ofConfined()) {
            for (DType type : new DType[] {DType.Q8_0, DType.Q4_K, DType.Q6_K}) {
                int rows = 5, cols = 512;
                long count = (long) rows * cols;
                byte[] bytes = new byte[(int) type.byteSize(count)];
                r.nextBytes(bytes);
                MemorySegment src = arena.allocate(bytes.length);
                MemorySegment.copy(bytes, 0, src, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, bytes.length);
                int scale = type == DType.Q6_K ? 208 : 0;
                for (long b = 0; b < count / type.blockSize(); b++) {
                    long p = b * type.blockBytes();
                    src.set(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, p + scale, Float.floatToFloat16((float) (0.001 + 0.05 * r.nextDouble())));
                    if (type == DType.Q4_K) src.set(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, p + 2, Float.floatToFloat16((float) (0.01 * r.nextDouble())));
                }
                float[] values = new float[(int) count];
                dev.ropeway.io.GgmlDequant.toFloats(dev.ropeway.io.GgmlType.valueOf(type.name()), src, count, values, 0);
                assertArrayEquals(values, read(gpu, gpu.upload(src, type, count)), type + " as float32");
                Tensor w = gpu.uploadWeights(src, type, rows, cols);
                assertEquals("CudaTensor[" + count + " bf16]", w.toString());
                float[] rounded = new float[values.length];
                for (int i = 0; i < values.length; i++) rounded[i] = Float.intBitsToFloat(dev.ropeway.tensor.Bfloat16.round(values[i]) << 16);
                assertArrayEquals(rounded, read(gpu, w), type + " as bfloat16 weights");
                float[] x = random(r, 3L * cols, 1);
                Tensor cy = cpu.allocate(3L * rows), gy = gpu.allocate(3L * rows);
                cpu.linear(cy, cpu.upload(x), cpu.upload(rounded), null, 3, cols, rows);
                gpu.linear(gy, gpu.upload(x), w, null, 3, cols, rows);
                close(read(cpu, cy), read(gpu, gy), 1e-5, type + " linear");
            }
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> gpu.uploadWeights(arena.allocate(144), DType.Q4_K, 100));
            assertTrue(e.getMessage().contains("uploadWeights: Q4_K stores values in blocks of 256"), e.getMessage());
        }
    }

    @Test
    void fusedOpsMatchTheCpu() {
        Random r = new Random(13);
        float eps = 1e-5f;
        for (int dim : new int[] {257, 768, 11 * 1024 + 3}) {
            long rows = dim > 4096 ? 5 : 1000;
            long n = rows * dim;
            float[] a = random(r, n, 2), b = random(r, n, 1), w = random(r, dim, 1);
            // x += hs; hs = norm(x)   (sum = a, out = b)
            Pair x = Pair.of(a), hs = Pair.of(b), wt = Pair.of(w);
            cpu.addRmsNorm(hs.c, x.c, x.c, hs.c, wt.c, rows, dim, eps);
            gpu.addRmsNorm(hs.g, x.g, x.g, hs.g, wt.g, rows, dim, eps);
            x.check(0, "addRmsNorm sum, dim " + dim);
            hs.check(1e-6, "addRmsNorm out over b, dim " + dim);
            // a separate sum, out in bfloat16 (from the same inputs on both: the two backends' hs differ in the last bit)
            Pair s = Pair.zeros(n), hs2 = Pair.of(read(cpu, hs.c));
            Tensor oc = cpu.allocate(n, DType.BF16), og = gpu.allocate(n, DType.BF16);
            cpu.addRmsNorm(oc, s.c, x.c, hs2.c, wt.c, rows, dim, eps);
            gpu.addRmsNorm(og, s.g, x.g, hs2.g, wt.g, rows, dim, eps);
            s.check(0, "addRmsNorm separate sum, dim " + dim);
            close(read(cpu, oc), read(gpu, og), 4e-3, "addRmsNorm into bfloat16, dim " + dim);

            float[] dy = random(r, n, 1), res = random(r, n, 0.5), dw0 = random(r, dim, 0.1);
            for (String copy : new String[] {"none", "f32", "bf16"}) {
                Pair d = Pair.of(dy), dres = Pair.of(res), dw = Pair.of(dw0);
                Tensor cc = copy.equals("none") ? null : cpu.allocate(n, copy.equals("f32") ? DType.F32 : DType.BF16);
                Tensor cg = copy.equals("none") ? null : gpu.allocate(n, copy.equals("f32") ? DType.F32 : DType.BF16);
                cpu.rmsNormBackwardAdd(dres.c, cc, dw.c, d.c, x.c, wt.c, rows, dim, eps);
                gpu.rmsNormBackwardAdd(dres.g, cg, dw.g, d.g, x.g, wt.g, rows, dim, eps);
                dres.check(1e-5, "rmsNormBackwardAdd dResidual, dim " + dim + ", copy " + copy);
                dw.check(1e-5, "rmsNormBackwardAdd dWeight, dim " + dim + ", copy " + copy);
                if (cc != null)
                    close(read(cpu, cc), read(gpu, cg), copy.equals("f32") ? 1e-5 : 4e-3, "rounded copy, dim " + dim);
                if (cg != null) {
                    float[] resG = read(gpu, dres.g);
                    assertArrayEquals(copy.equals("f32") ? resG : read(gpu, bf16(gpu, resG)), read(gpu, cg),
                            "the copy is the GPU's own new dResidual (rounded), dim " + dim);
                }
            }
        }

        int rows = 70, vocab = 5001;
        int[] targets = new int[rows];
        for (int i = 0; i < rows; i++) targets[i] = i % 9 == 0 ? -1 : r.nextInt(vocab);
        float[] lg = random(r, (long) rows * vocab, 4);
        for (int j = 0; j < 600; j++) lg[vocab + j] = Float.NEGATIVE_INFINITY;   // leading -inf in row 1's stripes
        targets[1] = 600 + r.nextInt(vocab - 600);                                // (its target outside them)
        for (DType type : new DType[] {DType.F32, DType.BF16}) {
            Pair logits = Pair.of(lg);
            Tensor gc = cpu.allocate((long) rows * vocab, type), gg = gpu.allocate((long) rows * vocab, type);
            double[] lc = cpu.crossEntropyBackward(logits.c, gc, targets, rows, vocab, 0.25f);
            double[] lgg = gpu.crossEntropyBackward(logits.g, gg, targets, rows, vocab, 0.25f);
            for (int i = 0; i < rows; i++) {
                assertTrue(Double.isFinite(lgg[i]), "loss " + i + " finite");
                assertEquals(lc[i], lgg[i], 1e-5 * (1 + Math.abs(lc[i])), "loss " + i + " (" + type + ")");
            }
            close(read(cpu, gc), read(gpu, gg), type == DType.F32 ? 1e-5 : 4e-3, "d logits into " + type);
        }

        long m = 100_003;
        Pair g = Pair.of(random(r, m, 3)), u = Pair.of(random(r, m, 1)), dyy = Pair.of(random(r, m, 1));
        Tensor dgc = cpu.allocate(m, DType.BF16), duc = cpu.allocate(m, DType.BF16);
        Tensor dgg = gpu.allocate(m, DType.BF16), dug = gpu.allocate(m, DType.BF16);
        cpu.swigluBackward(dgc, duc, dyy.c, g.c, u.c, m);
        gpu.swigluBackward(dgg, dug, dyy.g, g.g, u.g, m);
        close(read(cpu, dgc), read(gpu, dgg), 4e-3, "swigluBackward dGate into bfloat16");
        close(read(cpu, duc), read(gpu, dug), 4e-3, "swigluBackward dUp into bfloat16");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> gpu.swigluBackward(dgg, gpu.allocate(m), dyy.g, g.g, u.g, m));
        assertTrue(e.getMessage().contains("both float32 or both bfloat16"), e.getMessage());
    }

    @Test
    void uploadsAndConvertsEveryWeightType() {
        Random r = new Random(1);
        float[] x = random(r, 1000, 3);
        assertArrayEquals(x, read(gpu, gpu.upload(x)));
        try (Arena a = Arena.ofConfined()) {
            MemorySegment bf = a.allocate(2000), f16 = a.allocate(2000), f64 = a.allocate(8000);
            for (int i = 0; i < 1000; i++) {
                bf.setAtIndex(JAVA_SHORT, i, (short) (Float.floatToRawIntBits(x[i]) >>> 16));
                f16.setAtIndex(JAVA_SHORT, i, Float.floatToFloat16(x[i]));
                f64.setAtIndex(JAVA_DOUBLE, i, x[i] * 1.0000001);
            }
            f16.setAtIndex(JAVA_SHORT, 0, (short) 0x0001);   // the smallest subnormal
            f16.setAtIndex(JAVA_SHORT, 1, (short) 0xfc00);   // -infinity
            for (DType t : new DType[] {DType.BF16, DType.F16, DType.F64}) {
                MemorySegment src = t == DType.BF16 ? bf : t == DType.F16 ? f16 : f64;
                assertArrayEquals(read(cpu, cpu.upload(src, t, 1000)), read(gpu, gpu.upload(src, t, 1000)), t.toString());
            }
        }
    }

    @Test
    void viewsCopiesAndOverlappingCopies() {
        float[] x = new float[100];
        for (int i = 0; i < x.length; i++) x[i] = i;
        Pair p = Pair.of(x);
        for (Backend b : new Backend[] {cpu, gpu}) {
            Tensor t = b == cpu ? p.c : p.g;
            b.copy(t, 10, t, 5, 50);      // overlapping, forwards
            b.copy(t, 60, t, 70, 20);     // overlapping, backwards
            Tensor view = b.view(t, 90, 10);
            b.scale(view, 2f, 10);
        }
        assertArrayEquals(read(cpu, p.c), read(gpu, p.g));
        Tensor base = gpu.allocate(4);
        Tensor v = gpu.view(base, 1, 2);
        base.close();
        assertThrows(IllegalStateException.class, () -> gpu.scale(v, 1f, 2));
    }

    @Test
    void gemmEveryTransposeWithOffsetsAndStrides() {
        Random r = new Random(2);
        int m = 37, n = 53, k = 29;
        for (boolean ta : new boolean[] {false, true})
            for (boolean tb : new boolean[] {false, true}) {
                int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2;
                Pair a = Pair.of(random(r, 7 + (long) (ta ? k : m) * lda, 1));
                Pair b = Pair.of(random(r, 11 + (long) (tb ? n : k) * ldb, 1));
                Pair c = Pair.of(random(r, 13 + (long) m * ldc, 1));
                cpu.gemm(ta, tb, m, n, k, 0.7f, a.c, 7, lda, b.c, 11, ldb, 0.3f, c.c, 13, ldc);
                gpu.gemm(ta, tb, m, n, k, 0.7f, a.g, 7, lda, b.g, 11, ldb, 0.3f, c.g, 13, ldc);
                c.check(1e-6, "gemm ta=" + ta + " tb=" + tb);
            }
    }

    @Test
    void linearWithBiasAndTf32Products() {
        Random r = new Random(3);
        long rows = 300;
        int in = 96, out = 80;
        Pair x = Pair.of(random(r, rows * in, 1)), w = Pair.of(random(r, (long) out * in, 0.1)), b = Pair.of(random(r, out, 1));
        Pair y = Pair.zeros(rows * out);
        cpu.linear(y.c, x.c, w.c, b.c, rows, in, out);
        gpu.linear(y.g, x.g, w.g, b.g, rows, in, out);
        y.check(1e-6, "linear");
        try (CudaBackend fast = new CudaBackend(0, MatmulPrecision.TF32)) {
            Tensor fx = fast.upload(read(cpu, x.c)), fw = fast.upload(read(cpu, w.c)), fb = fast.upload(read(cpu, b.c));
            Tensor fy = fast.allocate(rows * out);
            fast.linear(fy, fx, fw, fb, rows, in, out);
            close(read(cpu, y.c), read(fast, fy), 5e-3, "linear (TF32)");
        }
    }

    @Test
    void embeddingForwardAndBackwardWithRepeatedIds() {
        Random r = new Random(4);
        int vocab = 50, dim = 300;
        int[] ids = new int[400];
        for (int i = 0; i < ids.length; i++) ids[i] = r.nextInt(10) * 3;   // many repeats
        Pair table = Pair.of(random(r, (long) vocab * dim, 1)), out = Pair.zeros((long) ids.length * dim);
        cpu.embedding(out.c, table.c, ids, dim);
        gpu.embedding(out.g, table.g, ids, dim);
        out.check(0, "embedding");
        Pair dTable = Pair.of(random(r, (long) vocab * dim, 1)), dOut = Pair.of(random(r, (long) ids.length * dim, 1));
        cpu.embeddingBackward(dTable.c, dOut.c, ids, dim);
        gpu.embeddingBackward(dTable.g, dOut.g, ids, dim);
        dTable.check(1e-6, "embeddingBackward");
        assertThrows(IllegalArgumentException.class, () -> gpu.embedding(out.g, table.g, new int[] {vocab}, dim));
    }

    @Test
    void rmsNormForwardAndBackwardInPlace() {
        Random r = new Random(5);
        long rows = 333;
        int dim = 257;
        float eps = 1e-5f;
        Pair x = Pair.of(random(r, rows * dim, 2)), w = Pair.of(random(r, dim, 1)), out = Pair.zeros(rows * dim);
        cpu.rmsNorm(out.c, x.c, w.c, rows, dim, eps);
        gpu.rmsNorm(out.g, x.g, w.g, rows, dim, eps);
        out.check(1e-6, "rmsNorm");
        Pair d = Pair.of(random(r, rows * dim, 1)), dw = Pair.of(random(r, dim, 1));
        // dx written over dOut, as the training pass does.
        cpu.rmsNormBackward(d.c, dw.c, d.c, x.c, w.c, rows, dim, eps);
        gpu.rmsNormBackward(d.g, dw.g, d.g, x.g, w.g, rows, dim, eps);
        d.check(1e-5, "rmsNormBackward dx");
        dw.check(1e-5, "rmsNormBackward dWeight");
    }

    @Test
    void rotaryTableForwardBackwardAndFrequencyGradient() {
        Random r = new Random(6);
        int rows = 200, heads = 3, headDim = 20, half = 8;   // partial rotary: 16 of 20 features
        float[] positions = new float[rows], invFreq = new float[half];
        for (int i = 0; i < rows; i++) positions[i] = i * 1.5f + 3;
        for (int j = 0; j < half; j++) invFreq[j] = (float) Math.pow(10000, -2.0 * j / 16);
        try (RotaryTable tc = cpu.rotaryTable(positions, invFreq, 1.1f); RotaryTable tg = gpu.rotaryTable(positions, invFreq, 1.1f)) {
            close(read(cpu, tc.cos()), read(gpu, tg.cos()), 1e-7, "cos");
            close(read(cpu, tc.sin()), read(gpu, tg.sin()), 1e-7, "sin");
            Pair x = Pair.of(random(r, (long) rows * heads * headDim, 1));
            cpu.rotary(x.c, tc, rows, heads, headDim);
            gpu.rotary(x.g, tg, rows, heads, headDim);
            x.check(1e-6, "rotary");
            Pair d = Pair.of(random(r, (long) rows * heads * headDim, 1));
            double[] fc = new double[half], fg = new double[half];
            fc[0] = fg[0] = 0.5;   // accumulates
            cpu.rotaryBackward(d.c, x.c, tc, positions, fc, rows, heads, headDim);
            gpu.rotaryBackward(d.g, x.g, tg, positions, fg, rows, heads, headDim);
            d.check(1e-6, "rotaryBackward");
            for (int j = 0; j < half; j++) assertEquals(fc[j], fg[j], 1e-6 * (1 + Math.abs(fc[j])), "dInvFreq[" + j + "]");
        }
    }

    /**
     * Rotary out of place (into float32, or rounded once into float16 or bfloat16: a training pass's kept operands)
     * gives the in-place rotation's bits; the backward that also writes a rounded copy gives rotaryBackward's bits and
     * that result rounded, every feature (the ones the partial rotation leaves alone included); the frequencies'
     * gradient read from float16 rotated values is the one read from the same values widened.
     */
    @Test
    void rotaryIntoNarrowOperandsAndRoundedBackward() {
        Random r = new Random(16);
        int rows = 150, heads = 3, headDim = 20, half = 8;   // partial rotary: 16 of 20 features
        long n = (long) rows * heads * headDim;
        float[] positions = new float[rows], invFreq = new float[half];
        for (int i = 0; i < rows; i++) positions[i] = i * 0.75f + 1;
        for (int j = 0; j < half; j++) invFreq[j] = (float) Math.pow(10000, -2.0 * j / 16);
        float[] x = random(r, n, 1), d = random(r, n, 1e-3);
        try (RotaryTable t = tf32.rotaryTable(positions, invFreq, 0.9f)) {
            Tensor inPlace = tf32.upload(x);
            tf32.rotary(inPlace, t, rows, heads, headDim);
            float[] want = read(tf32, inPlace);
            Tensor gx = tf32.upload(x);
            for (DType type : new DType[] {DType.F32, DType.F16, DType.BF16}) {
                Tensor out = tf32.allocate(n, type);
                tf32.rotary(out, gx, t, rows, heads, headDim);
                Tensor expected = tf32.allocate(n, type);
                tf32.copy(expected, 0, inPlace, 0, n);
                assertArrayEquals(read(tf32, expected), read(tf32, out), "rotary into " + type);
            }
            assertArrayEquals(x, read(tf32, gx), "x is left as it was");

            Tensor rotatedHalf = tf32.allocate(n, DType.F16);
            tf32.rotary(rotatedHalf, gx, t, rows, heads, headDim);
            Tensor rotatedWide = tf32.upload(read(tf32, rotatedHalf));
            for (DType type : new DType[] {DType.BF16, DType.F16, DType.F32}) {
                Tensor d1 = tf32.upload(d), d2 = tf32.upload(d), rounded = tf32.allocate(n, type), copied = tf32.allocate(n, type);
                double[] f1 = new double[half], f2 = new double[half];
                tf32.rotaryBackward(d1, rounded, rotatedHalf, t, positions, f1, rows, heads, headDim);
                tf32.rotaryBackward(d2, rotatedWide, t, positions, f2, rows, heads, headDim);
                tf32.copy(copied, 0, d2, 0, n);
                assertArrayEquals(read(tf32, d2), read(tf32, d1), "rotaryBackward with a copy into " + type);
                assertArrayEquals(read(tf32, copied), read(tf32, rounded), "the copy into " + type);
                assertArrayEquals(f2, f1, "the frequencies' gradient from float16 rotated values");
            }
            assertThrows(IllegalArgumentException.class,
                    () -> tf32.rotaryBackward(inPlace, inPlace, null, t, positions, null, rows, heads, headDim));
            // The CPU's rotation agrees with both.
            try (RotaryTable tc = cpu.rotaryTable(positions, invFreq, 0.9f)) {
                Tensor cx = cpu.upload(x), cout = cpu.allocate(n);
                cpu.rotary(cout, cx, tc, rows, heads, headDim);
                close(read(cpu, cout), want, 1e-6, "the CPU's rotary out of place");
                assertArrayEquals(x, read(cpu, cx), "the CPU's x is left as it was");
            }
        }
    }

    /**
     * A training pass keeps attention's rotated operands in the type this backend's attention rounds them to anyway
     * (float16 for the tensor-core kernels; float32 for the exact ones): given them so, the forward and the
     * deterministic backward give exactly the bits they give from float32 operands holding the same values; bfloat16
     * operands (cuDNN's type) are converted and give those bits too; the exact kernels take narrow operands, converted.
     */
    @ParameterizedTest
    @org.junit.jupiter.params.provider.CsvSource({"2, 200, 4, 2, 64, 0", "1, 150, 2, 1, 128, 40", "1, 90, 2, 2, 80, 0"})
    void keptNarrowAttentionOperandsGiveTheSameBits(int batch, int seq, int heads, int kvHeads, int headDim, long window) {
        assertEquals(DType.F16, tf32.attentionOperandType(headDim));
        assertEquals(DType.F32, gpu.attentionOperandType(headDim), "the exact kernels read float32");
        assertEquals(DType.F32, tf32.attentionOperandType(72), "a head size the tensor-core kernels do not take");
        Case c = Case.of(batch, seq, seq, seq, 0, heads, kvHeads, headDim, window, 37);
        AttentionShape s = c.shape();
        long qn = c.qn(), kvn = c.kvn(), stats = (long) batch * seq * heads;
        float[] dOut = random(c.rng(), qn, 1e-3);
        try (CudaBackend det = new CudaBackend(0, MatmulPrecision.TF32)) {
            det.deterministic(true);
            for (CudaBackend b : new CudaBackend[] {det, gpu})
                for (DType type : new DType[] {DType.F16, DType.BF16}) {
                    String what = type + " operands, " + (b == gpu ? "exact kernels " : "tensor cores ") + s;
                    Tensor[] narrow = new Tensor[3], wide = new Tensor[3];
                    float[][] values = {c.q(), c.k(), c.v()};
                    for (int i = 0; i < 3; i++) {
                        narrow[i] = b.allocate(values[i].length, type);
                        b.copy(narrow[i], 0, b.upload(values[i]), 0, values[i].length);
                        wide[i] = b.upload(read(b, narrow[i]));   // the same values in float32
                    }
                    float[][] got = new float[2][], gotLse = new float[2][];
                    float[][][] grads = new float[2][][];
                    for (int run = 0; run < 2; run++) {
                        Tensor[] in = run == 0 ? wide : narrow;
                        Tensor out = b.allocate(qn), lse = b.allocate(stats);
                        b.attention(out, in[0], in[1], in[2], lse, s);
                        got[run] = read(b, out);
                        gotLse[run] = read(b, lse);
                        Tensor dq = b.allocate(qn), dk = b.allocate(kvn), dv = b.allocate(kvn);
                        b.attentionBackward(dq, dk, dv, b.upload(dOut), in[0], in[1], in[2], out, lse, s);
                        grads[run] = new float[][] {read(b, dq), read(b, dk), read(b, dv)};
                    }
                    assertArrayEquals(got[0], got[1], "out, " + what);
                    assertArrayEquals(gotLse[0], gotLse[1], "lse, " + what);
                    // Mixed precision's output, rounded to bfloat16 once by the forward, and read so by the backward.
                    Tensor rounded = b.allocate(qn, DType.BF16), lse = b.allocate(stats);
                    b.attention(rounded, narrow[0], narrow[1], narrow[2], lse, s);
                    Tensor expected = b.allocate(qn, DType.BF16);
                    b.copy(expected, 0, b.upload(got[1]), 0, qn);
                    assertArrayEquals(read(b, expected), read(b, rounded), "a bfloat16 out, " + what);
                    float[][] fromRounded = new float[2][];
                    for (int run = 0; run < 2; run++) {
                        Tensor dq = b.allocate(qn), dk = b.allocate(kvn), dv = b.allocate(kvn);
                        b.attentionBackward(dq, dk, dv, b.upload(dOut), narrow[0], narrow[1], narrow[2],
                                run == 0 ? rounded : b.upload(read(b, rounded)), lse, s);
                        fromRounded[run] = read(b, dq);
                    }
                    assertArrayEquals(fromRounded[1], fromRounded[0], "dq from a bfloat16 out, " + what);
                    String[] names = {"dq", "dk", "dv"};
                    for (int i = 0; i < 3; i++) assertArrayEquals(grads[0][i], grads[1][i], names[i] + ", " + what);
                    // And the CPU's attention on those values.
                    Tensor cout = cpu.allocate(qn);
                    cpu.attention(cout, cpu.upload(read(b, wide[0])), cpu.upload(read(b, wide[1])), cpu.upload(read(b, wide[2])),
                            null, s);
                    close(read(cpu, cout), got[1], b == gpu ? 1e-5 : 2e-3, "out against the CPU, " + what);
                }
        }
        // A decode step reads float32 queries: it says so rather than misread narrow ones.
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> {
            try (DecodeStep step = tf32.decodeStep(headDim / 2)) {
                step.set(1, 0, new float[headDim / 2]);
                AttentionShape one = new AttentionShape(1, 1, seq, seq, 0, heads, kvHeads, headDim, s.scale());
                tf32.attention(tf32.allocate((long) heads * headDim), tf32.allocate((long) heads * headDim, DType.F16),
                        tf32.allocate(kvn, DType.F16), tf32.allocate(kvn, DType.F16), one, step);
            }
        });
        assertTrue(e.getMessage().contains("float32 queries"), e.getMessage());
    }

    @Test
    void swigluAddScaleAndReductions() {
        Random r = new Random(7);
        long n = 100_003;
        Pair g = Pair.of(random(r, n, 3)), u = Pair.of(random(r, n, 1)), o = Pair.zeros(n);
        cpu.swiglu(o.c, g.c, u.c, n);
        gpu.swiglu(o.g, g.g, u.g, n);
        o.check(1e-6, "swiglu");
        Pair dy = Pair.of(random(r, n, 1)), dg = Pair.zeros(n), du = Pair.zeros(n);
        cpu.swigluBackward(dg.c, du.c, dy.c, g.c, u.c, n);
        gpu.swigluBackward(dg.g, du.g, dy.g, g.g, u.g, n);
        dg.check(1e-6, "swigluBackward dGate");
        du.check(1e-6, "swigluBackward dUp");
        cpu.addInPlace(o.c, u.c, n);
        gpu.addInPlace(o.g, u.g, n);
        o.check(1e-7, "addInPlace");
        assertEquals(cpu.sumOfSquares(o.c, n), gpu.sumOfSquares(o.g, n), 1e-7 * cpu.sumOfSquares(o.c, n), "sumOfSquares");
        float[] withNan = random(r, 10, 1);
        withNan[3] = Float.NaN;
        withNan[4] = Float.POSITIVE_INFINITY;
        Tensor t = gpu.upload(withNan);
        gpu.scale(t, 0f, 10);
        assertArrayEquals(new float[10], read(gpu, t), "scale by 0 writes zeros");
        long rows = 777;
        int cols = 129;
        Pair x = Pair.of(random(r, rows * cols, 1)), s = Pair.of(random(r, cols, 1));
        cpu.sumRows(s.c, x.c, rows, cols);
        gpu.sumRows(s.g, x.g, rows, cols);
        s.check(1e-6, "sumRows");
    }

    @Test
    void crossEntropyForwardAndFusedBackward() {
        Random r = new Random(8);
        int rows = 70, vocab = 5001;
        int[] targets = new int[rows];
        for (int i = 0; i < rows; i++) targets[i] = i % 9 == 0 ? -1 : r.nextInt(vocab);
        Pair logits = Pair.of(random(r, (long) rows * vocab, 4));
        double[] lc = cpu.crossEntropy(logits.c, targets, rows, vocab), lg = gpu.crossEntropy(logits.g, targets, rows, vocab);
        for (int i = 0; i < rows; i++) assertEquals(lc[i], lg[i], 1e-5 * (1 + Math.abs(lc[i])), "loss " + i);
        logits.check(0, "forward leaves the logits alone");
        lc = cpu.crossEntropyBackward(logits.c, targets, rows, vocab, 0.25f);
        lg = gpu.crossEntropyBackward(logits.g, targets, rows, vocab, 0.25f);
        for (int i = 0; i < rows; i++) assertEquals(lc[i], lg[i], 1e-5 * (1 + Math.abs(lc[i])), "loss " + i);
        logits.check(1e-5, "d logits");
    }

    @Test
    void adamWStep() {
        Random r = new Random(9);
        long n = 10_001;
        Pair p = Pair.of(random(r, n, 1)), g = Pair.of(random(r, n, 1)), m = Pair.of(random(r, n, 0.1)), v = Pair.zeros(n);
        for (int step = 1; step <= 3; step++) {
            cpu.adamW(p.c, g.c, m.c, v.c, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, step);
            gpu.adamW(p.g, g.g, m.g, v.g, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, step);
        }
        p.check(1e-6, "param");
        m.check(1e-6, "m");
        v.check(1e-6, "v");
    }

    static Stream<Arguments> attentionShapes() {
        return Stream.of(
                // batch, seqQ, seqKv, kvRowsPerBatch, qStart, heads, kvHeads, headDim, window
                Arguments.of(1, 70, 70, 70, 0, 2, 2, 8, 0),
                Arguments.of(2, 130, 130, 130, 0, 4, 2, 64, 0),
                Arguments.of(1, 200, 200, 200, 0, 6, 2, 128, 0),
                Arguments.of(2, 97, 97, 97, 0, 3, 1, 80, 0),
                Arguments.of(1, 150, 150, 150, 0, 2, 1, 64, 37),
                Arguments.of(1, 1100, 1100, 1100, 0, 4, 2, 64, 0),  // many tiles per block: staged copies, whole tiles
                Arguments.of(2, 40, 180, 200, 140, 4, 4, 32, 0),     // a prefill chunk appended to a cache
                Arguments.of(1, 1, 300, 512, 299, 4, 2, 64, 0),      // one decode step
                Arguments.of(2, 1, 5000, 6000, 4999, 8, 2, 128, 0),  // decode steps split across blocks
                Arguments.of(1, 1, 3000, 3000, 2999, 2, 1, 80, 1000), // decode in a sliding window
                Arguments.of(1, 66, 66, 66, 0, 2, 2, 256, 0));
    }

    /** One attention shape's inputs: q, k and v drawn from a generator seeded by the shape and the test. */
    record Case(AttentionShape shape, long qn, long kvn, float[] q, float[] k, float[] v, Random rng) {
        static Case of(int batch, long seqQ, long seqKv, long kvRows, long qStart, int heads, int kvHeads, int headDim,
                       long window, int seed) {
            AttentionShape s = new AttentionShape(batch, seqQ, seqKv, kvRows, qStart, heads, kvHeads, headDim,
                    (float) (1 / Math.sqrt(headDim)), window);
            Random r = new Random(seqQ * seed + headDim);
            long qn = batch * seqQ * heads * headDim, kvn = ((batch - 1) * kvRows + seqKv) * kvHeads * headDim;
            float[] q = CudaBackendTest.random(r, qn, 1), k = CudaBackendTest.random(r, kvn, 1),
                    v = CudaBackendTest.random(r, kvn, 1);
            return new Case(s, qn, kvn, q, k, v, r);
        }
    }

    @ParameterizedTest
    @MethodSource("attentionShapes")
    void attentionForwardAndBackward(int batch, long seqQ, long seqKv, long kvRows, long qStart, int heads, int kvHeads,
                                     int headDim, long window) {
        Case c = Case.of(batch, seqQ, seqKv, kvRows, qStart, heads, kvHeads, headDim, window, 31);
        AttentionShape s = c.shape();
        long qn = c.qn(), kvn = c.kvn();
        Random r = c.rng();
        Pair q = Pair.of(c.q()), k = Pair.of(c.k()), v = Pair.of(c.v());
        Pair out = Pair.zeros(qn), lse = Pair.zeros(batch * seqQ * heads);
        cpu.attention(out.c, q.c, k.c, v.c, lse.c, s);
        gpu.attention(out.g, q.g, k.g, v.g, lse.g, s);
        out.check(1e-5, "attention out " + s);
        lse.check(1e-5, "attention lse " + s);
        Pair dOut = Pair.of(random(r, qn, 1)), dq = Pair.of(random(r, qn, 1)), dk = Pair.of(random(r, kvn, 1)), dv = Pair.of(random(r, kvn, 1));
        cpu.attentionBackward(dq.c, dk.c, dv.c, dOut.c, q.c, k.c, v.c, out.c, lse.c, s);
        gpu.attentionBackward(dq.g, dk.g, dv.g, dOut.g, q.g, k.g, v.g, out.g, lse.g, s);
        dq.check(1e-4, "dq " + s);
        // Rows past seqKv of each sequence are not written by either backend; compare only what both define.
        if (kvRows == seqKv) {
            dk.check(1e-4, "dk " + s);
            dv.check(1e-4, "dv " + s);
        } else {
            float[] ck = read(cpu, dk.c), gk = read(gpu, dk.g), cv = read(cpu, dv.c), gv = read(gpu, dv.g);
            int w = kvHeads * headDim;
            for (int b = 0; b < batch; b++) {
                int from = (int) (b * kvRows * w), to = (int) ((b * kvRows + seqKv) * w);
                close(java.util.Arrays.copyOfRange(ck, from, to), java.util.Arrays.copyOfRange(gk, from, to), 1e-4, "dk " + b);
                close(java.util.Arrays.copyOfRange(cv, from, to), java.util.Arrays.copyOfRange(gv, from, to), 1e-4, "dv " + b);
            }
        }
    }

    /**
     * The tensor-core kernels against the CPU: forward and backward round their inputs to float16 (10 mantissa bits,
     * as TF32); head sizes that are not a multiple of 16 take the exact kernels.
     */
    @ParameterizedTest
    @MethodSource("attentionShapes")
    void tensorCoreAttentionForward(int batch, long seqQ, long seqKv, long kvRows, long qStart, int heads, int kvHeads,
                                    int headDim, long window) {
        Case c = Case.of(batch, seqQ, seqKv, kvRows, qStart, heads, kvHeads, headDim, window, 17);
        AttentionShape s = c.shape();
        long qn = c.qn(), kvn = c.kvn();
        Random r = c.rng();
        float[] q = c.q(), k = c.k(), v = c.v();
        Tensor out = cpu.allocate(qn), lse = cpu.allocate(batch * seqQ * heads);
        cpu.attention(out, cpu.upload(q), cpu.upload(k), cpu.upload(v), lse, s);
        Tensor tout = tf32.allocate(qn), tlse = tf32.allocate(batch * seqQ * heads);
        tf32.attention(tout, tf32.upload(q), tf32.upload(k), tf32.upload(v), tlse, s);
        close(read(cpu, out), read(tf32, tout), 3e-3, "TF32 attention out " + s);
        close(read(cpu, lse), read(tf32, tlse), 1e-3, "TF32 attention lse " + s);
        float[] dOut = random(r, qn, 1);
        Tensor dq = cpu.allocate(qn), dk = cpu.allocate(kvn), dv = cpu.allocate(kvn);
        cpu.attentionBackward(dq, dk, dv, cpu.upload(dOut), cpu.upload(q), cpu.upload(k), cpu.upload(v), out, lse, s);
        Tensor tdq = tf32.allocate(qn), tdk = tf32.allocate(kvn), tdv = tf32.allocate(kvn);
        tf32.attentionBackward(tdq, tdk, tdv, tf32.upload(dOut), tf32.upload(q), tf32.upload(k), tf32.upload(v), tout, tlse, s);
        close(read(cpu, dq), read(tf32, tdq), 5e-3, "TF32 dq " + s);
        if (kvRows == seqKv) {
            close(read(cpu, dk), read(tf32, tdk), 5e-3, "TF32 dk " + s);
            close(read(cpu, dv), read(tf32, tdv), 5e-3, "TF32 dv " + s);
        }
    }

    static Stream<Arguments> cudnnShapes() {
        return Stream.of(
                Arguments.of(2, 128, 4, 4, 32),   // whole sequences, two of them
                Arguments.of(1, 128, 4, 2, 64),   // grouped-query heads
                Arguments.of(2, 33, 2, 1, 16));   // one key/value head, an odd length (the backward: see backwardServes)
    }

    /**
     * cuDNN's fused attention (switched on for one backend) against the CPU: the forward in float16 without a
     * statistic (inference) and in bfloat16 with one (training), the backward in bfloat16; grouped-query gradients
     * summed into their key/value heads, and a sliding window. A chunk of queries after cached keys runs on the
     * kernels, as does the backward of a length cuDNN up to 9.15 needs a padding mask for; the counts show which ran
     * where.
     */
    @ParameterizedTest
    @MethodSource("cudnnShapes")
    void cudnnAttentionMatchesTheCpu(int batch, int seq, int heads, int kvHeads, int headDim) {
        assumeTrue(CudaDevices.probe().cudnn() != null, "cuDNN is not installed here");
        try (CudaBackend b = new CudaBackend(0, MatmulPrecision.BF16)) {
            assertTrue(b.cudnnAttention(true), "cuDNN attention switched on");
            System.out.println("cuDNN " + b.cudnnDescription());
            Case c = Case.of(batch, seq, seq, seq, 0, heads, kvHeads, headDim, 0, 11);
            AttentionShape s = c.shape();
            long qn = c.qn(), kvn = c.kvn();
            float[] q = c.q(), k = c.k(), v = c.v(), dOut = random(c.rng(), qn, 1e-3);
            Tensor out = cpu.allocate(qn), lse = cpu.allocate((long) batch * seq * heads);
            cpu.attention(out, cpu.upload(q), cpu.upload(k), cpu.upload(v), lse, s);
            Tensor gq = b.upload(q), gk = b.upload(k), gv = b.upload(v);
            Tensor inference = b.allocate(qn);
            b.attention(inference, gq, gk, gv, null, s);
            close(read(cpu, out), read(b, inference), 2e-3, "cuDNN float16 attention out " + s);
            // One sequence without a statistic (a prompt) runs at a bucketed length: 256 rows, the tail zeros.
            String planned = b.cudnnPlanShapes().getLast();
            assertTrue(planned.contains(batch == 1 ? "1x256/256/" : batch + "x" + seq + "/" + seq + "/"), planned);
            if (batch == 1) {
                // A prompt's first chunk over a float16 cache with room for more rows: copied, padded, and the same.
                long capacity = seq + 10, cacheFloats = capacity * kvHeads * headDim;
                AttentionShape cached = new AttentionShape(1, seq, seq, capacity, 0, heads, kvHeads, headDim, s.scale());
                Tensor kh = b.allocateKv(cacheFloats), vh = b.allocateKv(cacheFloats);
                b.copy(kh, 0, gk, 0, kvn);
                b.copy(vh, 0, gv, 0, kvn);
                Tensor hout = cpu.allocate(qn), ghout = b.allocate(qn);
                cpu.attention(hout, cpu.upload(q), cpu.upload(roundedToHalf(k)), cpu.upload(roundedToHalf(v)), null, cached);
                b.attention(ghout, gq, kh, vh, null, cached);
                close(read(cpu, hout), read(b, ghout), 2e-3, "cuDNN over a float16 cache " + cached);
                assertArrayEquals(new long[] {2, 0}, b.cudnnAttentionCounts());
                assertEquals(planned, b.cudnnPlanShapes().getLast(), "the same bucket's plan");
            }
            Tensor gout = b.allocate(qn), glse = b.allocate((long) batch * seq * heads);
            b.attention(gout, gq, gk, gv, glse, s);
            close(read(cpu, out), read(b, gout), 1e-2, "cuDNN bfloat16 attention out " + s);
            close(read(cpu, lse), read(b, glse), 5e-3, "cuDNN attention lse " + s);
            long f = batch == 1 ? 1 : 0;   // the float16-cache forward above
            assertArrayEquals(new long[] {2 + f, 0}, b.cudnnAttentionCounts());

            Tensor dq = cpu.allocate(qn), dk = cpu.allocate(kvn), dv = cpu.allocate(kvn);
            cpu.attentionBackward(dq, dk, dv, cpu.upload(dOut), cpu.upload(q), cpu.upload(k), cpu.upload(v), out, lse, s);
            Tensor gdq = b.allocate(qn), gdk = b.allocate(kvn), gdv = b.allocate(kvn);
            b.attentionBackward(gdq, gdk, gdv, b.upload(dOut), gq, gk, gv, gout, glse, s);
            close(read(cpu, dq), read(b, gdq), 2e-2, "cuDNN dq " + s);
            close(read(cpu, dk), read(b, gdk), 2e-2, "cuDNN dk " + s);
            close(read(cpu, dv), read(b, gdv), 2e-2, "cuDNN dv " + s);
            long bw = CudnnAttention.backwardServes(s, b.cudnnVersion()) ? 1 : 0;
            if (seq % 128 == 0) assertEquals(1, bw, "whole 128-row tiles: cuDNN's backward");
            assertArrayEquals(new long[] {2 + f, bw}, b.cudnnAttentionCounts());

            // A training pass keeps the operands as bfloat16 for cuDNN: read in place, the same numbers as float32
            // operands holding those values (the gradients to cuDNN's own atomic summation order).
            assertEquals(DType.BF16, b.attentionOperandType(headDim));
            Tensor[] narrow = {b.allocate(qn, DType.BF16), b.allocate(kvn, DType.BF16), b.allocate(kvn, DType.BF16)};
            b.copy(narrow[0], 0, gq, 0, qn);
            b.copy(narrow[1], 0, gk, 0, kvn);
            b.copy(narrow[2], 0, gv, 0, kvn);
            Tensor nout = b.allocate(qn), nlse = b.allocate((long) batch * seq * heads);
            b.attention(nout, narrow[0], narrow[1], narrow[2], nlse, s);
            assertArrayEquals(read(b, gout), read(b, nout), "cuDNN out from bfloat16 operands");
            assertArrayEquals(read(b, glse), read(b, nlse), "cuDNN lse from bfloat16 operands");
            Tensor bout = b.allocate(qn, DType.BF16);
            b.attention(bout, narrow[0], narrow[1], narrow[2], nlse, s);
            assertArrayEquals(read(b, nout), read(b, bout), "cuDNN's bfloat16 out, written in place");
            Tensor ndq = b.allocate(qn), ndk = b.allocate(kvn), ndv = b.allocate(kvn);
            b.attentionBackward(ndq, ndk, ndv, b.upload(dOut), narrow[0], narrow[1], narrow[2], nout, nlse, s);
            // (A backward on the kernels rounds float32 operands to float16, not to bfloat16: then only close.)
            double same = bw == 1 ? 1e-5 : 2e-2;
            close(read(b, gdq), read(b, ndq), same, "cuDNN dq from bfloat16 operands");
            close(read(b, gdk), read(b, ndk), same, "cuDNN dk from bfloat16 operands");
            close(read(b, gdv), read(b, ndv), same, "cuDNN dv from bfloat16 operands");
            assertArrayEquals(new long[] {4 + f, 2 * bw}, b.cudnnAttentionCounts());
            assertTrue(b.deterministic(true));
            assertEquals(DType.F16, b.attentionOperandType(headDim), "a deterministic backward is the kernels'");
            b.deterministic(false);

            // A sliding window (Mistral's): masked in the graphs too, forward and backward.
            AttentionShape windowed = s.withWindow(7);
            Tensor wout = cpu.allocate(qn), wlse = cpu.allocate((long) batch * seq * heads);
            Tensor gwout = b.allocate(qn), gwlse = b.allocate((long) batch * seq * heads);
            cpu.attention(wout, cpu.upload(q), cpu.upload(k), cpu.upload(v), wlse, windowed);
            b.attention(gwout, gq, gk, gv, gwlse, windowed);
            close(read(cpu, wout), read(b, gwout), 1e-2, "cuDNN windowed attention " + windowed);
            cpu.attentionBackward(dq, dk, dv, cpu.upload(dOut), cpu.upload(q), cpu.upload(k), cpu.upload(v), wout, wlse, windowed);
            b.attentionBackward(gdq, gdk, gdv, b.upload(dOut), gq, gk, gv, gwout, gwlse, windowed);
            close(read(cpu, dq), read(b, gdq), 2e-2, "cuDNN windowed dq " + windowed);
            close(read(cpu, dk), read(b, gdk), 2e-2, "cuDNN windowed dk " + windowed);
            close(read(cpu, dv), read(b, gdv), 2e-2, "cuDNN windowed dv " + windowed);
            assertArrayEquals(new long[] {5 + f, 3 * bw}, b.cudnnAttentionCounts());

            // A chunk of queries after cached keys is not cuDNN's: the kernels run it, with the same answer.
            int cached = 8;
            AttentionShape chunk = new AttentionShape(batch, seq - cached, seq, seq, cached, heads, kvHeads, headDim, s.scale());
            float[] qc = java.util.Arrays.copyOf(q, (int) ((long) batch * (seq - cached) * heads * headDim));
            Tensor cout = cpu.allocate(qc.length), gcout = b.allocate(qc.length);
            cpu.attention(cout, cpu.upload(qc), cpu.upload(k), cpu.upload(v), null, chunk);
            b.attention(gcout, b.upload(qc), gk, gv, null, chunk);
            close(read(cpu, cout), read(b, gcout), 3e-3, "a chunk after cached keys beside cuDNN " + chunk);
            assertArrayEquals(new long[] {5 + f, 3 * bw}, b.cudnnAttentionCounts());
            assertFalse(b.cudnnAttention(false));
            b.attention(inference, gq, gk, gv, null, s);
            close(read(cpu, out), read(b, inference), 3e-3, "kernels again after cuDNN is switched off " + s);
            assertArrayEquals(new long[] {5 + f, 3 * bw}, b.cudnnAttentionCounts());
        }
    }

    /**
     * The tensor-core backward adds dQ up with atomics in the kernel that computes dK and dV (the default), or, on a
     * deterministic backend, computes it in a second kernel: both match the CPU, dK and dV come out bit for bit the
     * same either way, and the deterministic backend gives the same bits on every run. Grouped-query heads (several
     * query heads add into one key block's share), a window, and a chunk after cached keys.
     */
    @ParameterizedTest
    @org.junit.jupiter.params.provider.CsvSource({"2, 300, 300, 300, 0, 4, 2, 64, 0", "1, 200, 200, 200, 0, 2, 1, 128, 70",
            "1, 130, 400, 400, 270, 2, 2, 80, 0"})
    void tensorCoreAttentionBackwardWithAndWithoutAtomics(int batch, long seqQ, long seqKv, long kvRows, long qStart,
                                                          int heads, int kvHeads, int headDim, long window) {
        Case c = Case.of(batch, seqQ, seqKv, kvRows, qStart, heads, kvHeads, headDim, window, 23);
        AttentionShape s = c.shape();
        long qn = c.qn(), kvn = c.kvn();
        float[] q = c.q(), k = c.k(), v = c.v(), dOut = random(c.rng(), qn, 1e-3);
        Tensor out = cpu.allocate(qn), lse = cpu.allocate(batch * seqQ * heads);
        cpu.attention(out, cpu.upload(q), cpu.upload(k), cpu.upload(v), lse, s);
        Tensor dq = cpu.allocate(qn), dk = cpu.allocate(kvn), dv = cpu.allocate(kvn);
        cpu.attentionBackward(dq, dk, dv, cpu.upload(dOut), cpu.upload(q), cpu.upload(k), cpu.upload(v), out, lse, s);
        float[][][] got = new float[3][][];   // atomics, deterministic, deterministic again
        try (CudaBackend exact = new CudaBackend(0, MatmulPrecision.TF32)) {
            for (int run = 0; run < 3; run++) {
                CudaBackend b = run == 0 ? tf32 : exact;
                assertEquals(run > 0, b.deterministic(run > 0));
                Tensor gdq = b.upload(random(c.rng(), qn, 1)), gdk = b.allocate(kvn), gdv = b.allocate(kvn);   // dq overwritten
                b.attentionBackward(gdq, gdk, gdv, b.upload(dOut), b.upload(q), b.upload(k), b.upload(v),
                        b.upload(read(cpu, out)), b.upload(read(cpu, lse)), s);
                got[run] = new float[][] {read(b, gdq), read(b, gdk), read(b, gdv)};
            }
        }
        assertFalse(tf32.isDeterministic());
        for (int run = 0; run < 2; run++) {
            String how = (run == 0 ? "with atomics " : "deterministic ") + s;
            close(read(cpu, dq), got[run][0], 5e-3, "dq " + how);
            if (kvRows == seqKv) {
                close(read(cpu, dk), got[run][1], 5e-3, "dk " + how);
                close(read(cpu, dv), got[run][2], 5e-3, "dv " + how);
            }
        }
        close(got[1][0], got[0][0], 1e-5, "dq by atomics against its own kernel " + s);
        assertArrayEquals(got[1][1], got[0][1], "dk the same with dq added up or not");
        assertArrayEquals(got[1][2], got[0][2], "dv the same with dq added up or not");
        for (int i = 0; i < 3; i++) assertArrayEquals(got[1][i], got[2][i], "a deterministic backend repeats its bits");
    }

    /**
     * On a GPU that allows 99 KB of shared memory per block (sm_86, sm_89), heads of 128 features take the tensor-core
     * variants that fit (64 query rows per forward block, one buffer per streamed backward tile) and match the CPU, with
     * dQ added up by atomics and in its own pass; the exact kernels take smaller tiles and match it too.
     */
    @Test
    void tensorCoreAttentionFitsGpusWithLessSharedMemory() {
        Case c = Case.of(2, 200, 200, 200, 0, 4, 2, 128, 0, 29);
        AttentionShape s = c.shape();
        long qn = c.qn(), kvn = c.kvn();
        float[] q = c.q(), k = c.k(), v = c.v(), dOut = random(c.rng(), qn, 1e-2);
        Tensor out = cpu.allocate(qn), lse = cpu.allocate(2 * 200 * 4);
        cpu.attention(out, cpu.upload(q), cpu.upload(k), cpu.upload(v), lse, s);
        Tensor dq = cpu.allocate(qn), dk = cpu.allocate(kvn), dv = cpu.allocate(kvn);
        cpu.attentionBackward(dq, dk, dv, cpu.upload(dOut), cpu.upload(q), cpu.upload(k), cpu.upload(v), out, lse, s);
        try (CudaBackend small = new CudaBackend(0, MatmulPrecision.TF32)) {
            small.limitSharedMemory(99 * 1024);
            for (boolean deterministic : new boolean[] {false, true}) {
                small.deterministic(deterministic);
                Tensor gout = small.allocate(qn), glse = small.allocate(2 * 200 * 4);
                Tensor gq = small.upload(q), gk = small.upload(k), gv = small.upload(v);
                small.attention(gout, gq, gk, gv, glse, s);
                close(read(cpu, out), read(small, gout), 3e-3, "out at 99 KB");
                close(read(cpu, lse), read(small, glse), 1e-3, "lse at 99 KB");
                Tensor gdq = small.allocate(qn), gdk = small.allocate(kvn), gdv = small.allocate(kvn);
                small.attentionBackward(gdq, gdk, gdv, small.upload(dOut), gq, gk, gv, gout, glse, s);
                String how = deterministic ? " at 99 KB, deterministic" : " at 99 KB, atomics";
                close(read(cpu, dq), read(small, gdq), 5e-3, "dq" + how);
                close(read(cpu, dk), read(small, gdk), 5e-3, "dk" + how);
                close(read(cpu, dv), read(small, gdv), 5e-3, "dv" + how);
            }
        }
        // The exact kernels (float32 products) take 32 x 32 tiles there: their 64 x 64 backward needs 162 KB.
        try (CudaBackend small = new CudaBackend(0, MatmulPrecision.FP32)) {
            small.limitSharedMemory(99 * 1024);
            Tensor gout = small.allocate(qn), glse = small.allocate(2 * 200 * 4);
            Tensor gq = small.upload(q), gk = small.upload(k), gv = small.upload(v);
            small.attention(gout, gq, gk, gv, glse, s);
            close(read(cpu, out), read(small, gout), 1e-5, "exact out at 99 KB");
            Tensor gdq = small.allocate(qn), gdk = small.allocate(kvn), gdv = small.allocate(kvn);
            small.attentionBackward(gdq, gdk, gdv, small.upload(dOut), gq, gk, gv, gout, glse, s);
            close(read(cpu, dq), read(small, gdq), 1e-4, "exact dq at 99 KB");
            close(read(cpu, dk), read(small, gdk), 1e-4, "exact dk at 99 KB");
            close(read(cpu, dv), read(small, gdv), 1e-4, "exact dv at 99 KB");
        }
    }

    /**
     * The tensor-core backward rounds dOut to float16 after scaling it by a power of two: gradients far below float16's
     * normal range (1e-7, a loss averaged over many tokens) and far above it keep their precision, and a zero dOut
     * gives exact zeros.
     */
    @ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(doubles = {1e-7, 1e-3, 3e5, 0})
    void tensorCoreAttentionBackwardKeepsTheGradientsScale(double magnitude) {
        Case c = Case.of(2, 300, 300, 300, 0, 4, 2, 64, 0, 5);
        AttentionShape s = c.shape();
        long qn = c.qn(), kvn = c.kvn();
        float[] q = c.q(), k = c.k(), v = c.v(), dOut = random(c.rng(), qn, magnitude);
        Tensor out = cpu.allocate(qn), lse = cpu.allocate(2 * 300 * 4);
        cpu.attention(out, cpu.upload(q), cpu.upload(k), cpu.upload(v), lse, s);
        Tensor dq = cpu.allocate(qn), dk = cpu.allocate(kvn), dv = cpu.allocate(kvn);
        cpu.attentionBackward(dq, dk, dv, cpu.upload(dOut), cpu.upload(q), cpu.upload(k), cpu.upload(v), out, lse, s);
        Tensor tout = tf32.upload(read(cpu, out)), tlse = tf32.upload(read(cpu, lse));
        Tensor tdq = tf32.allocate(qn), tdk = tf32.allocate(kvn), tdv = tf32.allocate(kvn);
        tf32.attentionBackward(tdq, tdk, tdv, tf32.upload(dOut), tf32.upload(q), tf32.upload(k), tf32.upload(v), tout, tlse, s);
        if (magnitude == 0) {
            for (Tensor t : List.of(tdq, tdk, tdv))
                for (float x : read(tf32, t)) assertEquals(0f, x);
            return;
        }
        close(read(cpu, dq), read(tf32, tdq), 5e-3, "dq at " + magnitude);
        close(read(cpu, dk), read(tf32, tdk), 5e-3, "dk at " + magnitude);
        close(read(cpu, dv), read(tf32, tdv), 5e-3, "dv at " + magnitude);
    }

    /**
     * Attention over a float16 KV cache computes what float32 attention computes on the rounded keys and values, in
     * the exact kernels and on the tensor cores, for every shape (decode steps and prefill chunks read caches).
     */
    @ParameterizedTest
    @MethodSource("attentionShapes")
    void attentionOverAHalfCache(int batch, long seqQ, long seqKv, long kvRows, long qStart, int heads, int kvHeads,
                                 int headDim, long window) {
        Case c = Case.of(batch, seqQ, seqKv, kvRows, qStart, heads, kvHeads, headDim, window, 13);
        AttentionShape s = c.shape();
        long qn = c.qn(), kvn = c.kvn();
        float[] q = c.q(), k = c.k(), v = c.v();
        Tensor out = cpu.allocate(qn), lse = cpu.allocate(batch * seqQ * heads);
        cpu.attention(out, cpu.upload(q), cpu.upload(roundedToHalf(k)), cpu.upload(roundedToHalf(v)), lse, s);
        for (CudaBackend b : List.of(gpu, tf32)) {
            Tensor kh = b.allocateKv(kvn), vh = b.allocateKv(kvn);
            b.copy(kh, 0, b.upload(k), 0, kvn);
            b.copy(vh, 0, b.upload(v), 0, kvn);
            Tensor gout = b.allocate(qn), glse = b.allocate(batch * seqQ * heads);
            b.attention(gout, b.upload(q), kh, vh, glse, s);
            double tol = b == gpu ? 1e-5 : 3e-3;
            close(read(cpu, out), read(b, gout), tol, "attention over a float16 cache out " + s);
            close(read(cpu, lse), read(b, glse), tol, "attention over a float16 cache lse " + s);
        }
    }

    /**
     * Decode steps whose keys and values start off a 16-byte boundary (views one element in) take the one-element
     * kernel instead of the 16-byte one; both give the CPU's result, from float32 and from float16 caches.
     */
    @Test
    void decodeFromUnalignedViews() {
        AttentionShape s = new AttentionShape(2, 1, 700, 800, 699, 4, 2, 64, 0.125f, 0);
        Random r = new Random(11);
        long qn = 2 * 4 * 64, kvn = (800 + 700) * 2 * 64;
        float[] q = random(r, qn, 1), k = random(r, kvn, 1), v = random(r, kvn, 1);
        for (boolean half : new boolean[]{false, true}) {
            Tensor out = cpu.allocate(qn);
            float[] kk = half ? roundedToHalf(k) : k, vv = half ? roundedToHalf(v) : v;
            cpu.attention(out, cpu.upload(q), cpu.upload(kk), cpu.upload(vv), null, s);
            for (int offset : new int[]{0, 1}) {
                Tensor kb = half ? gpu.allocateKv(kvn + 1) : gpu.allocate(kvn + 1), vb = half ? gpu.allocateKv(kvn + 1) : gpu.allocate(kvn + 1);
                Tensor kt = gpu.view(kb, offset, kvn), vt = gpu.view(vb, offset, kvn);
                gpu.copy(kt, 0, gpu.upload(k), 0, kvn);
                gpu.copy(vt, 0, gpu.upload(v), 0, kvn);
                Tensor gout = gpu.allocate(qn);
                gpu.attention(gout, gpu.upload(q), kt, vt, null, s);
                close(read(cpu, out), read(gpu, gout), 1e-5, "decode, " + (half ? "float16" : "float32") + " cache at offset " + offset);
            }
        }
    }

    static float[] roundedToHalf(float[] x) {
        float[] y = new float[x.length];
        for (int i = 0; i < x.length; i++) y[i] = Float.float16ToFloat(Float.floatToFloat16(x[i]));
        return y;
    }

    /** float32 into a float16 cache rounds to nearest even (as Java does); views, half copies and widening copies. */
    @Test
    void halfCacheCopiesRoundToNearest() {
        assertEquals(2, gpu.kvBytesPerElement());
        Random r = new Random(5);
        float[] x = random(r, 1001, 3);
        float[] special = {65504f, 65520f, 70000f, -70000f, 1e-8f, 6e-5f, -0f, 0f, Float.NaN, 1 + 0x1p-11f, 1 + 0x1p-10f + 0x1p-11f};
        System.arraycopy(special, 0, x, 0, special.length);
        Tensor h = gpu.allocateKv(1001);
        gpu.copy(h, 0, gpu.upload(x), 0, 1001);
        float[] back = read(gpu, h), want = roundedToHalf(x);
        for (int i = 0; i < x.length; i++)
            assertEquals(Float.floatToIntBits(want[i]), Float.floatToIntBits(back[i]), "element " + i + " = " + x[i]);
        Tensor h2 = gpu.allocateKv(600);
        gpu.copy(gpu.view(h2, 10, 500), 0, h, 3, 500);
        float[] got2 = read(gpu, h2);
        for (int i = 0; i < 500; i++) assertEquals(want[3 + i], got2[10 + i], 0f, "half copy " + i);
        gpu.copy(h, 1, h, 0, 500);                                       // overlapping, as memmove
        float[] shifted = read(gpu, h);
        for (int i = 0; i < 500; i++) assertEquals(Float.floatToIntBits(want[i]), Float.floatToIntBits(shifted[1 + i]), "moved " + i);
        Tensor wide = gpu.allocate(100);
        gpu.copy(wide, 0, h2, 10, 100);
        float[] w = read(gpu, wide);
        for (int i = 0; i < 100; i++) assertEquals(want[3 + i], w[i], 0f, "widened " + i);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> gpu.rmsNorm(h, h, gpu.allocate(8), 1, 8, 1e-5f));
        assertTrue(e.getMessage().contains("float16"), e.getMessage());
        try (CudaBackend f32 = new CudaBackend(0, MatmulPrecision.FP32, false)) {
            assertEquals(4, f32.kvBytesPerElement());
            assertEquals(8, f32.allocateKv(8).size());
        }
    }

    @Test
    @Tag(EmulatedGpuMain.FULL_SIZE)
    void longSequenceAttentionStaysLinearInMemory() {
        // 32k tokens: a seq x seq matrix would be 4 GiB per head; the tiled kernel needs none.
        AttentionShape s = AttentionShape.selfAttention(1, 32768, 2, 1, 64);
        long qn = 32768L * 2 * 64, kvn = 32768L * 64;
        Random r = new Random(10);
        Tensor q = gpu.upload(random(r, qn, 1)), k = gpu.upload(random(r, kvn, 1)), v = gpu.upload(random(r, kvn, 1));
        Tensor out = gpu.allocate(qn), lse = gpu.allocate(32768L * 2);
        gpu.attention(out, q, k, v, lse, s);
        float[] o = read(gpu, out);
        for (float f : o) assertTrue(Float.isFinite(f));
        // The first query sees only key 0: its output is v[0].
        float[] v0 = new float[64];
        gpu.download(v, 0, v0, 0, 64);
        for (int d = 0; d < 64; d++) assertEquals(v0[d], o[d], 1e-6);
    }

    /** Ops from several threads (a server's slots) give each thread the single-threaded result. */
    @Test
    void opsFromSeveralThreads() throws Exception {
        AttentionShape s = AttentionShape.selfAttention(1, 300, 4, 2, 64);
        Random r = new Random(11);
        float[] q = random(r, 300L * 4 * 64, 1), k = random(r, 300L * 2 * 64, 1), v = random(r, 300L * 2 * 64, 1);
        float[] want;
        try (CudaBackend fresh = new CudaBackend(0, MatmulPrecision.TF32)) {
            Tensor out = fresh.allocate(q.length);
            fresh.attention(out, fresh.upload(q), fresh.upload(k), fresh.upload(v), null, s);
            want = read(fresh, out);
        }
        try (CudaBackend shared = new CudaBackend(0, MatmulPrecision.TF32);
             var pool = java.util.concurrent.Executors.newFixedThreadPool(4)) {
            var futures = new java.util.ArrayList<java.util.concurrent.Future<float[]>>();
            for (int t = 0; t < 8; t++)
                futures.add(pool.submit(() -> {
                    Tensor out = shared.allocate(q.length);
                    for (int i = 0; i < 5; i++)
                        shared.attention(out, shared.upload(q), shared.upload(k), shared.upload(v), null, s);
                    return read(shared, out);
                }));
            for (var f : futures) assertArrayEquals(want, f.get());
        }
    }

    @Test
    void peakTensorMemory() {
        gpu.resetPeakTensorBytes();
        long before = gpu.peakTensorBytes();
        try (Tensor t = gpu.allocate(1 << 20)) {
            assertTrue(gpu.peakTensorBytes() >= before + (4L << 20));
        }
        gpu.resetPeakTensorBytes();
        assertTrue(gpu.peakTensorBytes() <= before, "freed tensors leave the live count");
    }

    @Test
    void clearErrorsForWrongTensors() {
        Tensor small = gpu.allocate(3);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> gpu.addInPlace(small, small, 4));
        assertTrue(e.getMessage().contains("addInPlace"), e.getMessage());
        Tensor host = cpu.allocate(4);
        e = assertThrows(IllegalArgumentException.class, () -> gpu.addInPlace(host, host, 4));
        assertTrue(e.getMessage().contains("not a GPU tensor"), e.getMessage());
    }

    /**
     * A recording is captured into a CUDA graph at its first replay and launched whole after that: each replay sees the
     * inputs of the moment, temporaries made inside it stay valid (and zero-filled) from replay to replay, products
     * and element-wise kernels mix, and closing it gives its memory back.
     */
    @Test
    void recordedOpsReplayAsOneGraph() {
        int n = 96;
        Random r = new Random(41);
        float[] a = random(r, (long) n * n, 1), x0 = random(r, n, 1), x1 = random(r, n, 1);
        long freeBefore = gpu.memoryAvailable().orElseThrow();
        try (Tensor w = gpu.upload(a); Tensor x = gpu.upload(x0); Tensor y = gpu.allocate(n);
             Tensor src1 = gpu.upload(x1)) {
            Recording rec = gpu.record(() -> {
                try (Tensor t = gpu.allocate(n)) {
                    gpu.addInPlace(t, x, n);           // t starts at zero on every replay
                    gpu.linear(y, t, w, null, 1, n, n);
                    gpu.addInPlace(y, t, n);
                }
            });
            long[] before = gpu.graphCounts();
            rec.replay();
            assertTrue(rec.replayedAsGraph(), "captured and launched");
            float[] want = new float[n];
            linearPlusInput(want, x0, a, n);
            close(want, read(gpu, y), 1e-6, "first replay");
            gpu.copy(x, 0, src1, 0, n);
            rec.replay();
            linearPlusInput(want, x1, a, n);
            close(want, read(gpu, y), 1e-6, "second replay, new input");
            long[] after = gpu.graphCounts();
            assertEquals(2, after[0] - before[0], "two launches");
            assertEquals(1, after[1] - before[1], "one capture");
            rec.close();
        }
        assertEquals(freeBefore, gpu.memoryAvailable().orElseThrow(), "the recording and the tensors gave their memory back");
    }

    /**
     * The memory a training plan is measured against: what the device has free once the stream-ordered pool has given
     * back the blocks it keeps for reuse (freed tensors count as free again).
     */
    @Test
    void memoryAvailableCountsFreedTensorsAsFree() {
        long before = gpu.memoryAvailable().orElseThrow();
        long size = 64L << 20;   // 256 MiB of floats
        try (Tensor t = gpu.allocate(size)) {
            long during = gpu.memoryAvailable().orElseThrow();
            assertTrue(before - during >= size * 4, before + " -> " + during);
        }
        assertEquals(before, gpu.memoryAvailable().orElseThrow(), "freed, and trimmed from the pool");
    }

    /** y = W x + x in float64, W n x n. */
    private static void linearPlusInput(float[] y, float[] x, float[] w, int n) {
        for (int o = 0; o < n; o++) {
            double sum = x[o];
            for (int j = 0; j < n; j++) sum += (double) w[o * n + j] * x[j];
            y[o] = (float) sum;
        }
    }

    /** Ops that cannot be captured (an upload of token ids is a synchronous copy) make the recording run op by op. */
    @Test
    void recordingFallsBackToOpByOpWhenCaptureFails() {
        int dim = 16, rows = 5;
        float[] table = random(new Random(43), (long) rows * dim, 1);
        try (Tensor t = gpu.upload(table); Tensor out = gpu.allocate(dim)) {
            int[] id = {3};
            try (Recording rec = gpu.record(() -> gpu.embedding(out, t, id, dim))) {
                for (int token : new int[] {3, 1}) {
                    id[0] = token;   // host values are read again when the ops run one by one
                    rec.replay();
                    assertFalse(rec.replayedAsGraph());
                    assertArrayEquals(java.util.Arrays.copyOfRange(table, token * dim, token * dim + dim), read(gpu, out));
                }
            }
        }
    }

    /**
     * The step ops read the token and position when they run: embedding, rotary table, storing a row into a float16
     * and a float32 cache, and decode attention equal their host-argument forms at each position.
     */
    @Test
    void decodeStepOpsReadTheirInputsWhenTheyRun() {
        int heads = 4, kvHeads = 2, d = 16, cap = 700, kvd = kvHeads * d, half = d / 2, vocab = 11;
        Random r = new Random(47);
        float[] freq = new float[half];
        for (int j = 0; j < half; j++) freq[j] = (float) Math.pow(10000, -2.0 * j / d);
        AttentionShape shape = new AttentionShape(1, 1, cap, cap, cap - 1, heads, kvHeads, d, 0.25f);
        float[] tab = random(r, (long) vocab * d, 1);
        for (boolean narrow : new boolean[] {false, true})
            try (CudaBackend b = new CudaBackend(0, MatmulPrecision.FP32, narrow);
                 DecodeStep step = b.decodeStep(half);
                 Tensor table = b.upload(tab);
                 Tensor emb = b.allocate(d); Tensor row = b.allocate(kvd);
                 Tensor k = b.allocateKv((long) cap * kvd); Tensor v = b.allocateKv((long) cap * kvd);
                 Tensor q = b.upload(random(r, heads * d, 1)); Tensor out = b.allocate(heads * d);
                 RotaryTable rot = new RotaryTable(b.allocate(half), b.allocate(half), 1, half)) {
                float[] keys = random(r, (long) cap * kvd, 1);
                try (Tensor src = b.upload(keys)) {
                    b.copy(k, 0, src, 0, (long) cap * kvd);
                    b.copy(v, 0, src, 0, (long) cap * kvd);
                }
                float[] newRow = random(r, kvd, 1);
                try (Tensor src = b.upload(newRow)) {
                    b.copy(row, 0, src, 0, kvd);
                }
                try (Recording rec = b.record(() -> {
                    b.embedding(emb, table, step, d);
                    b.rotaryTable(rot, step, 0.5f);
                    b.storeRow(k, row, step, kvd);
                    b.attention(out, q, k, v, shape, step);
                })) {
                    for (long p : new long[] {3, 200, 255, 256, 600}) {
                        int token = (int) (p % vocab);
                        step.set(token, p, freq);
                        rec.replay();
                        assertTrue(rec.replayedAsGraph(), "position " + p);
                        assertArrayEquals(java.util.Arrays.copyOfRange(tab, token * d, token * d + d), read(b, emb), "token " + token);
                        try (RotaryTable want = b.rotaryTable(new float[] {p}, freq, 0.5f)) {
                            assertArrayEquals(read(b, want.cos()), read(b, rot.cos()), "cos at " + p);
                            assertArrayEquals(read(b, want.sin()), read(b, rot.sin()), "sin at " + p);
                        }
                        float[] stored = new float[kvd];
                        b.download(k, p * kvd, stored, 0, kvd);
                        float[] expectRow = new float[kvd];
                        try (Tensor one = b.allocateKv(kvd); Tensor src = b.upload(newRow)) {
                            b.copy(one, 0, src, 0, kvd);
                            b.download(one, 0, expectRow, 0, kvd);
                        }
                        assertArrayEquals(expectRow, stored, "row stored at " + p);
                        float[] got = read(b, out);
                        try (Tensor ref = b.allocate(heads * d)) {
                            b.attention(ref, q, k, v, null, shape.atPosition(p));
                            close(read(b, ref), got, p < 512 ? 0 : 1e-6, "attention at " + p);
                        }
                    }
                }
            }
    }
}
