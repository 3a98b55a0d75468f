package dev.ropeway.tensor;

import java.util.function.ToDoubleFunction;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** Helpers for the backward tests: central finite differences in double, and tolerant array comparisons. */
final class GradCheck {
    /** The step of the central differences; with double arithmetic both truncation and rounding stay near 1e-10. */
    static final double H = 1e-6;

    private GradCheck() {}

    /** (L(p + h) - L(p - h)) / 2h for parameter {@code i}, restoring {@code params[i]} afterwards. */
    static double derivative(double[] params, int i, ToDoubleFunction<double[]> loss) {
        double saved = params[i];
        params[i] = saved + H;
        double plus = loss.applyAsDouble(params);
        params[i] = saved - H;
        double minus = loss.applyAsDouble(params);
        params[i] = saved;
        return (plus - minus) / (2 * H);
    }

    /** Checks the analytic gradient of every listed parameter against its finite difference. */
    static void check(double[] params, double[] analytic, int[] indices, ToDoubleFunction<double[]> loss, String what) {
        for (int i : indices) {
            double numeric = derivative(params, i, loss);
            assertEquals(analytic[i], numeric, 1e-6 * (1 + Math.abs(analytic[i])), what + "[" + i + "]");
        }
    }

    /** Every index of an array of {@code n}, or an even sample of about 40 of them when n is large. */
    static int[] sample(int n) {
        int step = Math.max(1, n / 40);
        int[] out = new int[(n + step - 1) / step];
        for (int k = 0; k < out.length; k++) out[k] = k * step;
        return out;
    }

    static double[] toDouble(float[] x) {
        double[] d = new double[x.length];
        for (int i = 0; i < x.length; i++) d[i] = x[i];
        return d;
    }

    /**
     * {@code got} equals {@code expect} to {@code rel} of the element's own size plus the array's root mean square,
     * so that elements near zero after cancellation are held to the scale of the whole result.
     */
    static void assertClose(double[] expect, float[] got, double rel, String what) {
        assertEquals(expect.length, got.length, what + " length");
        double sq = 0;
        for (double e : expect) sq += e * e;
        double rms = Math.sqrt(sq / Math.max(1, expect.length));
        for (int i = 0; i < expect.length; i++)
            assertEquals(expect[i], got[i], rel * (Math.abs(expect[i]) + rms) + 1e-30, what + "[" + i + "]");
    }

    static void assertClose(double[] expect, double[] got, double rel, String what) {
        float[] f = new float[got.length];
        for (int i = 0; i < got.length; i++) f[i] = (float) got[i];
        assertClose(expect, f, rel, what);
    }
}
