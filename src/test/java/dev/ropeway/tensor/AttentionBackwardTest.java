package dev.ropeway.tensor;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.Arrays;
import java.util.Random;
import java.util.stream.Stream;

import static dev.ropeway.tensor.GradCheck.assertClose;
import static dev.ropeway.tensor.GradCheck.toDouble;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class AttentionBackwardTest {
    private static CpuBackend cpu;

    @BeforeAll
    static void start() {
        cpu = new CpuBackend(3);
    }

    @AfterAll
    static void stop() {
        cpu.close();
    }

    static long qSize(AttentionShape s) {
        return s.batch() * s.seqQ() * s.heads() * s.headDim();
    }

    static long kvSize(AttentionShape s) {
        return ((s.batch() - 1) * s.kvRowsPerBatch() + s.seqKv()) * s.kvHeads() * s.headDim();
    }

    /** The forward output and the three input gradients, in double. */
    record Grads(double[] out, double[] dq, double[] dk, double[] dv) {}

    /**
     * The whole forward and backward in double, one query row at a time with its full softmax: P = softmax(scale q.k_j)
     * over the visible keys, o = sum P_j v_j; dv_j += P_j dO, dP_j = dO.v_j, dS_j = P_j (dP_j - sum_i P_i dP_i),
     * dq = scale sum dS_j k_j, dk_j += scale dS_j q.
     */
    static Grads reference(AttentionShape s, double[] q, double[] k, double[] v, double[] dOut) {
        int d = s.headDim(), group = s.heads() / s.kvHeads();
        double[] out = new double[q.length], dq = new double[q.length], dk = new double[k.length], dv = new double[v.length];
        double[] p = new double[(int) s.seqKv()], dp = new double[p.length];
        for (int b = 0; b < s.batch(); b++)
            for (long i = 0; i < s.seqQ(); i++)
                for (int h = 0; h < s.heads(); h++) {
                    int qb = (int) (((b * s.seqQ() + i) * s.heads() + h) * d);
                    long pos = s.qStart() + i, first = s.firstVisibleKey(pos);
                    double max = Double.NEGATIVE_INFINITY;
                    for (long j = first; j <= pos; j++) {
                        int kb = kvBase(s, b, j, h / group);
                        double dot = 0;
                        for (int x = 0; x < d; x++) dot += q[qb + x] * k[kb + x];
                        p[(int) j] = dot * s.scale();
                        max = Math.max(max, p[(int) j]);
                    }
                    double sum = 0;
                    for (long j = first; j <= pos; j++) sum += p[(int) j] = Math.exp(p[(int) j] - max);
                    double dpDotP = 0;
                    for (long j = first; j <= pos; j++) {
                        int vb = kvBase(s, b, j, h / group);
                        p[(int) j] /= sum;
                        double dot = 0;
                        for (int x = 0; x < d; x++) {
                            out[qb + x] += p[(int) j] * v[vb + x];
                            dv[vb + x] += p[(int) j] * dOut[qb + x];
                            dot += dOut[qb + x] * v[vb + x];
                        }
                        dp[(int) j] = dot;
                        dpDotP += p[(int) j] * dot;
                    }
                    for (long j = first; j <= pos; j++) {
                        int kb = kvBase(s, b, j, h / group);
                        double ds = p[(int) j] * (dp[(int) j] - dpDotP) * s.scale();
                        for (int x = 0; x < d; x++) {
                            dq[qb + x] += ds * k[kb + x];
                            dk[kb + x] += ds * q[qb + x];
                        }
                    }
                }
        return new Grads(out, dq, dk, dv);
    }

    static int kvBase(AttentionShape s, int b, long j, int kvh) {
        return (int) (((b * s.kvRowsPerBatch() + j) * s.kvHeads() + kvh) * s.headDim());
    }

    static double dot(double[] a, double[] b) {
        double sum = 0;
        for (int i = 0; i < a.length; i++) sum += a[i] * b[i];
        return sum;
    }

    static float[] download(Tensor t) {
        float[] out = new float[(int) t.size()];
        cpu.download(t, 0, out, 0, out.length);
        return out;
    }

    static float[] filled(long n, float value) {
        float[] x = new float[(int) n];
        Arrays.fill(x, value);
        return x;
    }

    /** Random inputs for a shape, and the backend's forward and backward on them. */
    static final class Run {
        final AttentionShape s;
        final float[] q, k, v, dOut, out, dq, dk, dv;

        Run(CpuBackend backend, AttentionShape s, long seed) {
            this(backend, s, seed, Float.NaN);
        }

        /** {@code garbage} fills dq, dk and dv before the call. */
        Run(CpuBackend backend, AttentionShape s, long seed, float garbage) {
            this.s = s;
            Random rnd = new Random(seed);
            q = AttentionTest.random(rnd, qSize(s), 1f);
            k = AttentionTest.random(rnd, kvSize(s), 1f);
            v = AttentionTest.random(rnd, kvSize(s), 1f);
            dOut = AttentionTest.random(rnd, qSize(s), 1f);
            try (Tensor tq = backend.upload(q); Tensor tk = backend.upload(k); Tensor tv = backend.upload(v);
                 Tensor tdo = backend.upload(dOut); Tensor to = backend.allocate(qSize(s));
                 Tensor tl = backend.allocate(s.batch() * s.seqQ() * s.heads());
                 // With NaN garbage, a gradient entry that is missed, or added to instead of overwritten, stays NaN.
                 Tensor tdq = backend.upload(filled(qSize(s), garbage));
                 Tensor tdk = backend.upload(filled(kvSize(s), garbage));
                 Tensor tdv = backend.upload(filled(kvSize(s), garbage))) {
                backend.attention(to, tq, tk, tv, tl, s);
                backend.attentionBackward(tdq, tdk, tdv, tdo, tq, tk, tv, to, tl, s);
                out = download(to);
                dq = download(tdq);
                dk = download(tdk);
                dv = download(tdv);
            }
        }

        /** Compares with the double reference; key rows past seqKv (cache padding) are not written. */
        void matchesReference(double rel) {
            Grads g = reference(s, toDouble(q), toDouble(k), toDouble(v), toDouble(dOut));
            close(g.dq(), dq, rel, "dq in " + s);
            close(validRows(g.dk()), validRows(dk), rel, "dk in " + s);
            close(validRows(g.dv()), validRows(dv), rel, "dv in " + s);
            int rowFloats = s.kvHeads() * s.headDim();
            for (int b = 0; b < s.batch() - 1; b++)
                for (long j = s.seqKv(); j < s.kvRowsPerBatch(); j++)
                    for (int x = 0; x < rowFloats; x++) {
                        int at = (int) ((b * s.kvRowsPerBatch() + j) * rowFloats + x);
                        assertTrue(Float.isNaN(dk[at]) && Float.isNaN(dv[at]), "padding row " + j + " of sequence " + b + " was written");
                    }
        }

        double[] validRows(double[] kv) {
            int rowFloats = s.kvHeads() * s.headDim();
            double[] valid = new double[(int) (s.batch() * s.seqKv() * rowFloats)];
            for (int b = 0; b < s.batch(); b++)
                System.arraycopy(kv, (int) (b * s.kvRowsPerBatch() * rowFloats), valid, (int) (b * s.seqKv() * rowFloats),
                        (int) (s.seqKv() * rowFloats));
            return valid;
        }

        float[] validRows(float[] kv) {
            double[] valid = validRows(toDouble(kv));
            float[] f = new float[valid.length];
            for (int i = 0; i < f.length; i++) f[i] = (float) valid[i];
            return f;
        }
    }

    /**
     * {@link GradCheck#assertClose} with an absolute floor of 1e-5: where a query sees a single key its dq is exactly
     * 0, computed in float from dO.v - dO.o, a difference of two numbers of about 4 (16 products of unit normals),
     * which leaves about 1e-6.
     */
    static void close(double[] expect, float[] got, double rel, String what) {
        assertEquals(expect.length, got.length, what + " length");
        double sq = 0;
        for (double e : expect) sq += e * e;
        double rms = Math.sqrt(sq / Math.max(1, expect.length));
        for (int i = 0; i < expect.length; i++)
            assertEquals(expect[i], got[i], rel * (Math.abs(expect[i]) + rms) + 1e-5, what + "[" + i + "]");
    }

    static Stream<Arguments> shapes() {
        return Stream.of(
                // batch, seqQ, seqKv, kvRowsPerBatch, qStart, heads, kvHeads, headDim, window
                Arguments.of(1, 1, 1, 1, 0, 4, 4, 16, 0),
                Arguments.of(3, 63, 63, 63, 0, 4, 2, 64, 0),
                Arguments.of(1, 130, 130, 130, 0, 4, 1, 24, 0),
                Arguments.of(1, 300, 300, 300, 0, 2, 1, 64, 0),
                Arguments.of(3, 300, 300, 300, 0, 2, 1, 16, 0),
                Arguments.of(2, 129, 129, 129, 0, 2, 2, 64, 0),
                Arguments.of(2, 300, 300, 300, 0, 4, 2, 32, 50),
                Arguments.of(1, 200, 200, 200, 0, 4, 4, 16, 1),
                Arguments.of(1, 260, 260, 260, 0, 4, 1, 24, 64),
                Arguments.of(2, 70, 200, 256, 130, 4, 2, 64, 0),
                Arguments.of(2, 70, 400, 420, 330, 4, 1, 16, 100),
                Arguments.of(3, 40, 130, 160, 90, 4, 4, 24, 0),
                Arguments.of(2, 1, 300, 320, 299, 4, 2, 64, 0));
    }

    @ParameterizedTest(name = "batch={0} seqQ={1} seqKv={2} kvRows={3} qStart={4} heads={5} kvHeads={6} dim={7} window={8}")
    @MethodSource("shapes")
    void matchesDoubleReference(int batch, int seqQ, int seqKv, int kvRows, int qStart, int heads, int kvHeads, int dim,
                                int window) {
        AttentionShape s = new AttentionShape(batch, seqQ, seqKv, kvRows, qStart, heads, kvHeads, dim,
                (float) (0.9 / Math.sqrt(dim)), window);
        new Run(cpu, s, s.hashCode()).matchesReference(1e-4);
    }

    @Test
    void referenceMatchesFiniteDifferences() {
        AttentionShape s = new AttentionShape(2, 5, 9, 11, 4, 4, 2, 6, 0.4f, 4);
        Random rnd = new Random(5);
        double[] q = toDouble(AttentionTest.random(rnd, qSize(s), 1f)), k = toDouble(AttentionTest.random(rnd, kvSize(s), 1f));
        double[] v = toDouble(AttentionTest.random(rnd, kvSize(s), 1f)), dOut = toDouble(AttentionTest.random(rnd, qSize(s), 1f));
        Grads g = reference(s, q, k, v, dOut);
        GradCheck.check(q, g.dq(), GradCheck.sample(q.length), p -> dot(dOut, reference(s, p, k, v, dOut).out()), "dq");
        GradCheck.check(k, g.dk(), GradCheck.sample(k.length), p -> dot(dOut, reference(s, q, p, v, dOut).out()), "dk");
        GradCheck.check(v, g.dv(), GradCheck.sample(v.length), p -> dot(dOut, reference(s, q, k, p, dOut).out()), "dv");
        // The padding rows of the cache and the keys no query can see (key 0 lies outside every window) get none.
        assertEquals(0, g.dk()[kvBase(s, 0, 9, 0)]);
        assertEquals(0, g.dv()[kvBase(s, 1, 0, 1)]);
    }

    /**
     * The backend's gradients against central differences of the backend's own float forward: L = sum dOut o out,
     * summed in double; entries that a perturbation does not touch come out bit-identical and cancel.
     */
    @Test
    void gradientsMatchFiniteDifferencesOfTheForward() {
        AttentionShape s = new AttentionShape(2, 40, 100, 110, 60, 4, 2, 16, 0.3f, 70);
        Run run = new Run(cpu, s, 11);
        double h = 1e-2;
        try (Tensor out = cpu.allocate(qSize(s))) {
            float[][] inputs = {run.q.clone(), run.k.clone(), run.v.clone()};
            float[][] grads = {run.dq, run.dk, run.dv};
            String[] names = {"dq", "dk", "dv"};
            for (int which = 0; which < 3; which++) {
                float[] x = inputs[which];
                Random pick = new Random(which);
                for (int n = 0; n < 8; n++) {
                    int i = which == 0 ? pick.nextInt(x.length) : kvIndex(s, pick);
                    float saved = x[i];
                    x[i] = (float) (saved + h);
                    double plus = loss(s, inputs, run.dOut, out);
                    x[i] = (float) (saved - h);
                    double minus = loss(s, inputs, run.dOut, out);
                    x[i] = saved;
                    double numeric = (plus - minus) / (2 * h);
                    assertEquals(numeric, grads[which][i], 2e-3 * (1 + Math.abs(numeric)), names[which] + "[" + i + "]");
                }
            }
        }
    }

    /** A random element of a valid key row (some of them seen by no query, whose gradient must be 0). */
    static int kvIndex(AttentionShape s, Random rnd) {
        int b = rnd.nextInt(s.batch());
        long j = rnd.nextLong(s.seqKv());
        return kvBase(s, b, j, 0) + rnd.nextInt(s.kvHeads() * s.headDim());
    }

    static double loss(AttentionShape s, float[][] qkv, float[] dOut, Tensor out) {
        try (Tensor q = cpu.upload(qkv[0]); Tensor k = cpu.upload(qkv[1]); Tensor v = cpu.upload(qkv[2])) {
            cpu.attention(out, q, k, v, null, s);
        }
        float[] o = download(out);
        double sum = 0;
        for (int i = 0; i < o.length; i++) sum += (double) dOut[i] * o[i];
        return sum;
    }

    /** One sequence and one key/value head: keys are split into chunks whose dQ scratches are summed. */
    @Test
    void longSequenceSplitsKeysIntoChunks() {
        assertTrue(AttentionBackward.chunks(3, 1, 16) > 1, "one pair on three threads is split");
        assertEquals(1, AttentionBackward.chunks(3, 6, 16), "enough pairs to share out");
        assertEquals(1, AttentionBackward.chunks(1, 1, 16), "one thread never splits");
        assertEquals(1, AttentionBackward.chunks(3, 1, 1), "one key tile cannot be split");
        AttentionShape s = AttentionShape.selfAttention(1, 1000, 2, 1, 16);
        Run split = new Run(cpu, s, 3);
        split.matchesReference(1e-4);
        // The same inputs on one thread take the unsplit path: the same gradients up to summation order.
        try (CpuBackend serial = new CpuBackend(1)) {
            Run whole = new Run(serial, s, 3);
            assertClose(toDouble(whole.dq), split.dq, 1e-5, "dq");
            assertClose(toDouble(whole.dk), split.dk, 1e-5, "dk");
            assertClose(toDouble(whole.dv), split.dv, 1e-5, "dv");
        }
        new Run(cpu, AttentionShape.selfAttention(1, 700, 2, 1, 16).withWindow(90), 4).matchesReference(1e-4);
        new Run(cpu, new AttentionShape(1, 300, 900, 950, 600, 2, 1, 16, 0.2f, 400), 5).matchesReference(1e-4);
    }

    /** Whatever dq, dk and dv held before, the valid entries come out the same, bit for bit, on both schedules. */
    @Test
    void garbageInTheOutputsIsOverwritten() {
        AttentionShape whole = new AttentionShape(3, 100, 150, 160, 50, 4, 2, 16, 0.25f, 0);
        AttentionShape split = AttentionShape.selfAttention(1, 400, 2, 1, 16).withWindow(150);
        assertEquals(1, AttentionBackward.chunks(cpu.threads(), 6, 3));
        assertTrue(AttentionBackward.chunks(cpu.threads(), 1, 7) > 1);
        for (AttentionShape s : new AttentionShape[]{whole, split}) {
            Run zeros = new Run(cpu, s, 8, 0f), junk = new Run(cpu, s, 8, -3e38f);
            assertEquals(0, Arrays.compare(zeros.dq, junk.dq), "dq in " + s);
            assertEquals(0, Arrays.compare(zeros.validRows(zeros.dk), junk.validRows(junk.dk)), "dk in " + s);
            assertEquals(0, Arrays.compare(zeros.validRows(zeros.dv), junk.validRows(junk.dv)), "dv in " + s);
        }
    }

    /** Keys that no query sees get exactly zero gradient, over whatever the buffers held. */
    @Test
    void unseenKeysGetZeroGradients() {
        // Queries at positions 400..449 with a window of 50 see keys 351..449 only.
        AttentionShape s = new AttentionShape(2, 50, 450, 470, 400, 2, 1, 16, 0.25f, 50);
        Run run = new Run(cpu, s, 9);
        run.matchesReference(1e-4);
        int rowFloats = s.kvHeads() * s.headDim();
        for (int b = 0; b < 2; b++)
            for (long j = 0; j < 351; j++)
                for (int x = 0; x < rowFloats; x++) {
                    int at = (int) ((b * s.kvRowsPerBatch() + j) * rowFloats + x);
                    assertEquals(0f, run.dk[at], "dk of unseen key " + j);
                    assertEquals(0f, run.dv[at], "dv of unseen key " + j);
                }
    }

    @Test
    void checksArguments() {
        AttentionShape s = AttentionShape.selfAttention(1, 8, 2, 1, 4);
        try (Tensor q = cpu.allocate(64); Tensor kv = cpu.allocate(32); Tensor kv2 = cpu.allocate(32);
             Tensor dq = cpu.allocate(64); Tensor dk = cpu.allocate(32); Tensor dv = cpu.allocate(32);
             Tensor out = cpu.allocate(64); Tensor dOut = cpu.allocate(64); Tensor lse = cpu.allocate(16);
             Tensor small = cpu.allocate(15)) {
            var e = assertThrows(IllegalArgumentException.class,
                    () -> cpu.attentionBackward(dq, dk, dv, dOut, q, kv, kv2, out, small, s));
            assertEquals("attentionBackward: lse has 15 floats, needs batch*seqQ*heads = 16", e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> cpu.attentionBackward(dq, dk, small, dOut, q, kv, kv2, out, lse, s));
            assertEquals("attentionBackward: dv has 15 floats, needs ((batch-1)*kvRowsPerBatch + seqKv)*kvHeads*headDim = 32",
                    e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> cpu.attentionBackward(dq, dk, dk, dOut, q, kv, kv2, out, lse, s));
            assertEquals("attentionBackward: dk and dv are the same tensor", e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> cpu.attentionBackward(dq, dk, dv, dOut, q, kv, kv2, dq, lse, s));
            assertEquals("attentionBackward: dq and out are the same tensor", e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> cpu.attentionBackward(dq, dk, dv, dOut, q, kv, kv2, out, null, s));
            assertEquals("attentionBackward: lse is null", e.getMessage());
        }
    }
}
