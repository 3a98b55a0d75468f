package dev.ropeway.rope;

import java.util.Arrays;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * The CLEX frequency ODE: the log inverse frequencies {@code z} (length d/2) move with the length factor t as
 * <pre>
 *   dz/dt = act((z + log ntk(t)) W_up) W_down + (d ntk/dt) / ntk,     z(1) = log inv_freq,     theta(t) = exp(z(t))
 * </pre>
 * where {@code ntk(t)} are the NTK-aware inverse frequencies for the scale {@code alpha = 2t - 1} with base 10000,
 * whatever rope_theta is (only the initial condition uses rope_theta). {@code W_up} is [d/2, lambda d] and
 * {@code W_down} [lambda d, d/2], applied to row vectors ({@code x W}), the layout the released checkpoints store.
 *
 * <p>The solver is the fixed-grid RK4 "3/8 rule" on a float32 time grid {@code 1 + k dt}, its last point forced to
 * the end time. Every elementwise operation is rounded to float32 in the reference's order and the two products sum
 * in index order, so that the frequencies agree with the reference layer to about one float32 ulp of z and a model
 * trained here sees the frequencies it would see there. {@link Precision#FLOAT64} solves on the same grid in double,
 * for checks. Transcendentals go through {@link StrictMath}, whose results do not depend on JIT compilation, so
 * that training repeats itself bit for bit.
 *
 * <p>Inference uses one solve over [1, T] with the integer factors read off the grid (linear interpolation between
 * grid points if an integer falls between them); training solves [1, t] and back-propagates through every RK4
 * stage. With the usual step 0.01 every integer is a grid point, so both are the same computation and the
 * backward reuses the inference solve's stored stages; otherwise it solves [1, t] on its own grid.
 *
 * <p>Solves are cached until {@link #setWeights} or {@link #setPrecision} changes their inputs. The methods are
 * synchronized: an instance may be shared between threads, its calls run one at a time.
 */
public final class ClexOde {
    public static final String TYPE = "clex";
    /** The time embedding's base: the reference layer never passes rope_theta to it. */
    static final float TIME_BASE = 10000f;
    /** torch multiplies float32 tensors by a Python float after rounding the scalar to float32. */
    private static final float THIRD = (float) (1.0 / 3.0);
    private static final float TWO_THIRDS = (float) (2.0 / 3.0);
    private static final int STAGES = 4;

    /** The nonlinearity between the two projections ({@code rope_scaling.act}). */
    public enum Activation {
        TANH, SILU;

        /** {@code "tanh"} or {@code "silu"}, any case. */
        public static Activation of(String name) {
            return switch (name.toLowerCase(Locale.ROOT)) {
                case "tanh" -> TANH;
                case "silu" -> SILU;
                default -> throw RopeChecks.needs(TYPE, "act", "'tanh' or 'silu'", name);
            };
        }
    }

    /** Arithmetic of the solve: FLOAT32 reproduces the reference; FLOAT64 is the same scheme in double. */
    public enum Precision { FLOAT32, FLOAT64 }

    private final int dim;
    private final int half;
    private final int width;
    private final int maxFactor;
    private final int paramFactor;
    private final Activation activation;
    private final float timeDt;
    private final float[] invFreq;

    private float[] up;
    private float[] down;
    private double[] upDouble;
    private double[] downDouble;
    /** W_up^T [lambda d, d/2] and W_down^T [d/2, lambda d]: the backward's products then run along rows. */
    private double[] upTransposed;
    private double[] downTransposed;
    private Precision precision = Precision.FLOAT32;
    /** Backward scratch, per stage evaluation: d loss / d k and d loss / d (pre-activation); reused across calls. */
    private double[] kBarTape;
    private double[] hBarTape;

    /** Grids depend only on the end time and the step, never on the weights: kept for the object's lifetime. */
    private Grid fullGrid;
    private final Map<Integer, Grid> trainingGrids = new HashMap<>();
    private Solve fullSolve;
    private final Map<Integer, Solve> trainingSolves = new HashMap<>();

    /**
     * @param dim         rotary dimensions d (even, at least 4)
     * @param maxFactor   T, the largest length factor
     * @param paramFactor lambda, the width factor of the up projection
     * @param invFreq     the initial inverse frequencies (d/2 values, the checkpoint's {@code inv_freq} buffer)
     * @param up          W_up, [d/2, lambda d] row-major (copied)
     * @param down        W_down, [lambda d, d/2] row-major (copied)
     */
    public ClexOde(int dim, int maxFactor, int paramFactor, Activation activation, float timeDt, float[] invFreq,
                   float[] up, float[] down) {
        this.dim = RopeChecks.rotaryDim(TYPE, dim, 4);
        this.half = dim / 2;
        this.maxFactor = (int) RopeChecks.positiveWhole(TYPE, "max_factor", maxFactor);
        this.paramFactor = (int) RopeChecks.positiveWhole(TYPE, "param_factor", paramFactor);
        this.width = Math.multiplyExact(paramFactor, dim);
        if (activation == null) throw new IllegalArgumentException("activation is null");
        this.activation = activation;
        this.timeDt = (float) RopeChecks.positive(TYPE, "time_dt", timeDt);
        if (invFreq.length != half)
            throw new IllegalArgumentException("inv_freq has " + invFreq.length + " values, expected " + half);
        for (float f : invFreq)
            if (!(f > 0) || Float.isInfinite(f))
                throw new IllegalArgumentException("inv_freq must be positive, got " + f);
        this.invFreq = invFreq.clone();
        setWeights(up, down);
    }

    /** The same with plain RoPE inverse frequencies {@code 1 / ropeTheta^(2j/d)} (float32) as initial condition. */
    public ClexOde(int dim, int maxFactor, int paramFactor, Activation activation, float timeDt, double ropeTheta,
                   float[] up, float[] down) {
        this(dim, maxFactor, paramFactor, activation, timeDt,
                RopeMath.standardInverseFrequencies(RopeChecks.theta(TYPE, ropeTheta),
                        RopeChecks.rotaryDim(TYPE, dim, 4)),
                up, down);
    }

    public int dim() { return dim; }

    public int maxFactor() { return maxFactor; }

    public int paramFactor() { return paramFactor; }

    public Activation activation() { return activation; }

    public float timeDt() { return timeDt; }

    /** The initial inverse frequencies (a copy). */
    public float[] invFreq() { return invFreq.clone(); }

    /** W_up, [d/2, lambda d] (a copy). */
    public synchronized float[] up() { return up.clone(); }

    /** W_down, [lambda d, d/2] (a copy). */
    public synchronized float[] down() { return down.clone(); }

    public synchronized Precision precision() { return precision; }

    /** Switches the solve's arithmetic; cached solves are dropped. */
    public synchronized void setPrecision(Precision precision) {
        if (precision == null) throw new IllegalArgumentException("precision is null");
        this.precision = precision;
        invalidate();
    }

    /** New projection weights (copied); cached solves are dropped. */
    public synchronized void setWeights(float[] up, float[] down) {
        if (up.length != half * width)
            throw new IllegalArgumentException("W_up has " + up.length + " values, expected " + half + " x " + width);
        if (down.length != width * half)
            throw new IllegalArgumentException(
                    "W_down has " + down.length + " values, expected " + width + " x " + half);
        this.up = up.clone();
        this.down = down.clone();
        upDouble = new double[up.length];
        downDouble = new double[down.length];
        upTransposed = new double[up.length];
        downTransposed = new double[down.length];
        for (int i = 0; i < half; i++)
            for (int k = 0; k < width; k++) {
                upDouble[i * width + k] = up[i * width + k];
                upTransposed[k * half + i] = up[i * width + k];
            }
        for (int k = 0; k < width; k++)
            for (int j = 0; j < half; j++) {
                downDouble[k * half + j] = down[k * half + j];
                downTransposed[j * width + k] = down[k * half + j];
            }
        invalidate();
    }

    /** Drops every cached solve, so the next request solves again. */
    public synchronized void invalidate() {
        if (fullSolve != null) fullSolve.started = false;
        trainingSolves.clear();
    }

    /** theta(t) = exp(z(t)) for t = 1..T (row t - 1); row 0 is inv_freq itself. Fresh arrays. */
    public synchronized float[][] thetas() {
        Solve s = full();
        advance(s, s.grid.steps);
        float[][] out = new float[maxFactor][];
        out[0] = invFreq.clone();
        for (int t = 2; t <= maxFactor; t++) out[t - 1] = toFloat(s.outputTheta[t - 1]);
        return out;
    }

    /** theta(t) for one integer factor t in 1..T, as inference reads it off the solve over [1, T]. */
    public synchronized float[] theta(int t) {
        checkFactor(t);
        return t == 1 ? invFreq.clone() : toFloat(fullTheta(t));
    }

    /**
     * theta(t) as a training step computes it: the solve over [1, t]. Equal to {@link #theta(int)} whenever t is a
     * point of the grid over [1, T] (always so for the step 0.01).
     */
    public synchronized float[] trainingTheta(int t) {
        checkFactor(t);
        return t == 1 ? invFreq.clone() : toFloat(trainingPath(t).theta);
    }

    /**
     * Adds d loss / d W_up and d loss / d W_down to {@code dUp} ([d/2, lambda d]) and {@code dDown}
     * ([lambda d, d/2]), given {@code dTheta} = d loss / d theta(t) for the training solve over [1, t]. At t = 1 the
     * frequencies are the fixed inv_freq and nothing is added.
     */
    public synchronized void backward(int t, double[] dTheta, double[] dUp, double[] dDown) {
        checkFactor(t);
        checkLength("dTheta", dTheta.length, half);
        checkLength("dUp", dUp.length, half * width);
        checkLength("dDown", dDown.length, width * half);
        if (t == 1) return;
        TrainingPath path = trainingPath(t);
        Solve s = path.solve;
        double[] yBar = new double[half];
        for (int j = 0; j < half; j++) yBar[j] = dTheta[j] * path.theta[j];   // d exp(z) / dz = exp(z)
        double[] k1 = new double[half], k2 = new double[half], k3 = new double[half], k4 = new double[half];
        double[] uBar = new double[half];
        int records = path.steps * STAGES;
        if (kBarTape == null || kBarTape.length < records * half) {
            kBarTape = new double[records * half];
            hBarTape = new double[records * width];
        }
        boolean f32 = s.precision == Precision.FLOAT32;
        double third = f32 ? THIRD : 1.0 / 3.0;
        float[] times = s.grid.times;
        for (int n = path.steps - 1; n >= 0; n--) {
            double dt = f32 ? (double) (times[n + 1] - times[n]) : (double) times[n + 1] - (double) times[n];
            double c = dt * 0.125;
            for (int j = 0; j < half; j++) {
                k1[j] = c * yBar[j];
                k4[j] = k1[j];
                k2[j] = 3 * c * yBar[j];
                k3[j] = k2[j];
            }
            int rec = n * STAGES;
            // stage 4 read y0 + dt (k1 - k2 + k3)
            stageBackward(s, rec + 3, k4, uBar);
            for (int j = 0; j < half; j++) {
                double u = uBar[j];
                yBar[j] += u;
                k1[j] += dt * u;
                k2[j] -= dt * u;
                k3[j] += dt * u;
            }
            // stage 3 read y0 + dt (k2 - k1 / 3)
            stageBackward(s, rec + 2, k3, uBar);
            for (int j = 0; j < half; j++) {
                double u = uBar[j];
                yBar[j] += u;
                k2[j] += dt * u;
                k1[j] -= dt * third * u;
            }
            // stage 2 read y0 + dt k1 / 3
            stageBackward(s, rec + 1, k2, uBar);
            for (int j = 0; j < half; j++) {
                double u = uBar[j];
                yBar[j] += u;
                k1[j] += dt * third * u;
            }
            stageBackward(s, rec, k1, uBar);
            for (int j = 0; j < half; j++) yBar[j] += uBar[j];
        }
        // dW_down = sum over stage evaluations of act^T v, dW_up = sum of x^T (d loss / d pre-activation)
        OdeKernels.addTransposedProduct(s.act, width, kBarTape, half, records, dDown);
        OdeKernels.addTransposedProduct(s.x, half, hBarTape, width, records, dUp);
    }

    /**
     * The untrained layer's solution (W_down = 0) in closed form, in double: NTK-aware scaling with alpha = 2t - 1,
     * {@code z_j(t) = log inv_freq_j - (2j / (d - 2)) log(2t - 1)}.
     */
    public static double[] closedFormLogFrequencies(float[] invFreq, double t) {
        if (!(t >= 1)) throw new IllegalArgumentException("t must be >= 1, got " + t);
        int d = 2 * invFreq.length;
        double logAlpha = Math.log(2 * t - 1);
        double[] z = new double[invFreq.length];
        for (int j = 0; j < z.length; j++) z[j] = Math.log(invFreq[j]) - (2.0 * j / (d - 2)) * logAlpha;
        return z;
    }

    /** exp of {@link #closedFormLogFrequencies}, in double. */
    public static double[] closedFormTheta(float[] invFreq, double t) {
        double[] z = closedFormLogFrequencies(invFreq, t);
        for (int j = 0; j < z.length; j++) z[j] = Math.exp(z[j]);
        return z;
    }

    /**
     * W_up as the reference initialises it (kaiming-uniform with a = sqrt(5) on a [d/2, lambda d] tensor, whose
     * fan-in is lambda d): U(-1/sqrt(lambda d), 1/sqrt(lambda d)). W_down starts at zero, so the untrained layer
     * is exactly NTK scaling.
     */
    public static float[] initialUp(int dim, int paramFactor, long seed) {
        RopeChecks.rotaryDim(TYPE, dim, 4);
        RopeChecks.positiveWhole(TYPE, "param_factor", paramFactor);
        int w = paramFactor * dim;
        double bound = 1 / Math.sqrt(w);
        SplittableRandom random = new SplittableRandom(seed);
        float[] up = new float[dim / 2 * w];
        for (int i = 0; i < up.length; i++) up[i] = (float) ((2 * random.nextDouble() - 1) * bound);
        return up;
    }

    // ---------------------------------------------------------------------------------------------------------

    private static void checkLength(String what, int length, int expected) {
        if (length != expected)
            throw new IllegalArgumentException(what + " has " + length + " values, expected " + expected);
    }

    private void checkFactor(int t) {
        if (t < 1 || t > maxFactor) throw new IllegalArgumentException("t must be in 1.." + maxFactor + ", got " + t);
    }

    private static float[] toFloat(double[] v) {
        float[] f = new float[v.length];
        for (int i = 0; i < v.length; i++) f[i] = (float) v[i];
        return f;
    }

    /** The solve over [1, T], its stored arrays reused from one set of weights to the next. */
    private Solve full() {
        if (fullSolve == null) {
            if (fullGrid == null) fullGrid = new Grid(times((float) maxFactor, timeDt), dim);
            float[] requested = new float[maxFactor];
            for (int t = 1; t <= maxFactor; t++) requested[t - 1] = t;
            fullSolve = new Solve(fullGrid, requested, half, width);
        }
        if (!fullSolve.started) start(fullSolve);
        return fullSolve;
    }

    /** The full solve advanced far enough to have produced theta(t): a training step at t solves no further. */
    private double[] fullTheta(int t) {
        Solve s = full();
        float[] times = s.grid.times;
        int steps = 0;
        while (times[steps] < t) steps++;
        advance(s, steps);
        return s.outputTheta[t - 1];
    }

    /** A training solve: which stored stages to walk back through and the theta(t) they produced. */
    private record TrainingPath(Solve solve, int steps, double[] theta) {
    }

    private TrainingPath trainingPath(int t) {
        float[] own = times(t, timeDt);
        Solve s = full();
        float[] fullTimes = s.grid.times;
        if (own.length <= fullTimes.length && fullTimes[own.length - 1] == (float) t) {
            advance(s, own.length - 1);
            return new TrainingPath(s, own.length - 1, s.outputTheta[t - 1]);
        }
        Solve separate = trainingSolves.get(t);
        if (separate == null) {
            Grid g = trainingGrids.computeIfAbsent(t, k -> new Grid(own, dim));
            separate = new Solve(g, new float[] {t}, half, width);
            start(separate);
            advance(separate, g.steps);
            trainingSolves.put(t, separate);
        }
        return new TrainingPath(separate, separate.grid.steps, separate.outputTheta[0]);
    }

    /**
     * The reference grid: {@code ceil((end - 1) / dt + 1)} points {@code k dt + 1}, all float32, the last replaced by
     * the end time itself.
     */
    static float[] times(float end, float dt) {
        int n = (int) Math.ceil((end - 1f) / dt + 1f);
        float[] t = new float[Math.max(n, 1)];
        for (int k = 0; k < t.length; k++) t[k] = (float) k * dt + 1f;
        t[t.length - 1] = end;
        return t;
    }

    /**
     * One solve, advanced step by step on demand: the stored stages, the outputs produced so far and the state where
     * it stopped. Invalidation only marks it unstarted, so that the next weights reuse its arrays.
     */
    private static final class Solve {
        final Grid grid;
        final float[] requested;
        /** Per stage evaluation (step * 4 + stage): the network input x = z + log ntk, the activation, its slope. */
        final double[] x;
        final double[] act;
        final double[] slope;
        /** theta at each requested time once reached, in the solve's precision (float32 values for FLOAT32). */
        final double[][] outputTheta;
        boolean started;
        Precision precision;
        int done;
        int nextOutput;
        float[] stateFloat;
        double[] stateDouble;

        Solve(Grid grid, float[] requested, int half, int width) {
            this.grid = grid;
            this.requested = requested;
            int records = grid.steps * STAGES;
            x = new double[records * half];
            act = new double[records * width];
            slope = new double[records * width];
            outputTheta = new double[requested.length][];
        }
    }

    /** z(1) = log inv_freq, and the outputs requested at the start time. */
    private void start(Solve s) {
        s.precision = precision;
        s.done = 0;
        s.nextOutput = 0;
        Arrays.fill(s.outputTheta, null);
        float start = s.grid.times[0];
        if (precision == Precision.FLOAT32) {
            s.stateFloat = new float[half];
            for (int j = 0; j < half; j++) s.stateFloat[j] = (float) StrictMath.log(invFreq[j]);
            while (s.nextOutput < s.requested.length && s.requested[s.nextOutput] == start)
                s.outputTheta[s.nextOutput++] = expFloat(s.stateFloat);
        } else {
            s.stateDouble = new double[half];
            for (int j = 0; j < half; j++) s.stateDouble[j] = StrictMath.log(invFreq[j]);
            while (s.nextOutput < s.requested.length && s.requested[s.nextOutput] == start)
                s.outputTheta[s.nextOutput++] = expDouble(s.stateDouble);
        }
        s.started = true;
    }

    /** Solves on until {@code steps} steps are done. */
    private void advance(Solve s, int steps) {
        if (s.done >= steps) return;
        if (s.precision == Precision.FLOAT32) advanceFloat(s, steps);
        else advanceDouble(s, steps);
        s.done = steps;
    }

    private void advanceFloat(Solve s, int until) {
        Grid g = s.grid;
        float[] logNtk = g.logNtkFloat, embed = g.embedFloat, times = g.times, requested = s.requested;
        float[] y = s.stateFloat, u = new float[half], y1 = new float[half];
        float[] k1 = new float[half], k2 = new float[half], k3 = new float[half], k4 = new float[half];
        float[] x = new float[half], h = new float[width], a = new float[width];
        int next = s.nextOutput;
        for (int n = s.done; n < until; n++) {
            float t0 = times[n], t1 = times[n + 1], dt = t1 - t0;
            int rec = n * STAGES;
            stageFloat(s, rec, logNtk, embed, y, k1, x, h, a);
            for (int j = 0; j < half; j++) u[j] = y[j] + dt * k1[j] * THIRD;
            stageFloat(s, rec + 1, logNtk, embed, u, k2, x, h, a);
            for (int j = 0; j < half; j++) u[j] = y[j] + dt * (k2[j] - k1[j] * THIRD);
            stageFloat(s, rec + 2, logNtk, embed, u, k3, x, h, a);
            for (int j = 0; j < half; j++) u[j] = y[j] + dt * (k1[j] - k2[j] + k3[j]);
            stageFloat(s, rec + 3, logNtk, embed, u, k4, x, h, a);
            for (int j = 0; j < half; j++) y1[j] = y[j] + (k1[j] + 3f * (k2[j] + k3[j]) + k4[j]) * dt * 0.125f;
            while (next < requested.length && t1 >= requested[next]) {
                float rt = requested[next];
                float[] z;
                if (rt == t0) z = y;
                else if (rt == t1) z = y1;
                else {
                    float slopeT = (rt - t0) / (t1 - t0);
                    z = new float[half];
                    for (int j = 0; j < half; j++) z[j] = y[j] + slopeT * (y1[j] - y[j]);
                }
                s.outputTheta[next++] = expFloat(z);
            }
            float[] swap = y;
            y = y1;
            y1 = swap;
        }
        s.stateFloat = y;
        s.nextOutput = next;
    }

    private static double[] expFloat(float[] z) {
        double[] out = new double[z.length];
        for (int j = 0; j < z.length; j++) out[j] = (float) StrictMath.exp(z[j]);
        return out;
    }

    /** One right-hand side evaluation in float32, recording what the backward needs. */
    private void stageFloat(Solve s, int rec, float[] logNtk, float[] embed, float[] u, float[] out,
                            float[] x, float[] h, float[] a) {
        int eo = rec * half, wo = rec * width;
        double[] tx = s.x, ta = s.act, ts = s.slope;
        for (int i = 0; i < half; i++) {
            x[i] = u[i] + logNtk[eo + i];
            tx[eo + i] = x[i];
        }
        OdeKernels.rowTimesMatrix(x, 0, half, up, width, h, 0);
        // slopes from the float32 activations, so that nothing depends on the last bits of a double library call
        if (activation == Activation.TANH) {
            for (int k = 0; k < width; k++) {
                float ak = (float) StrictMath.tanh(h[k]);
                a[k] = ak;
                ta[wo + k] = ak;
                ts[wo + k] = 1 - (double) ak * ak;
            }
        } else {
            for (int k = 0; k < width; k++) {
                float hk = h[k];
                float e = (float) StrictMath.exp(-(double) hk);
                float ak = hk / (1f + e);
                double sig = 1 / (1 + (double) e);
                a[k] = ak;
                ta[wo + k] = ak;
                ts[wo + k] = sig * (1 + hk * (1 - sig));
            }
        }
        OdeKernels.rowTimesMatrix(a, 0, width, down, half, out, 0);
        for (int j = 0; j < half; j++) out[j] += embed[eo + j];
    }

    private void advanceDouble(Solve s, int until) {
        Grid g = s.grid;
        g.ensureDouble();
        double[] logNtk = g.logNtkDouble, embed = g.embedDouble;
        float[] times = g.times, requested = s.requested;
        double[] y = s.stateDouble, u = new double[half], y1 = new double[half];
        double[] k1 = new double[half], k2 = new double[half], k3 = new double[half], k4 = new double[half];
        double[] x = new double[half], h = new double[width], a = new double[width];
        double third = 1.0 / 3.0;
        int next = s.nextOutput;
        for (int n = s.done; n < until; n++) {
            double t0 = times[n], t1 = times[n + 1], dt = t1 - t0;
            int rec = n * STAGES;
            stageDouble(s, rec, logNtk, embed, y, k1, x, h, a);
            for (int j = 0; j < half; j++) u[j] = y[j] + dt * k1[j] * third;
            stageDouble(s, rec + 1, logNtk, embed, u, k2, x, h, a);
            for (int j = 0; j < half; j++) u[j] = y[j] + dt * (k2[j] - k1[j] * third);
            stageDouble(s, rec + 2, logNtk, embed, u, k3, x, h, a);
            for (int j = 0; j < half; j++) u[j] = y[j] + dt * (k1[j] - k2[j] + k3[j]);
            stageDouble(s, rec + 3, logNtk, embed, u, k4, x, h, a);
            for (int j = 0; j < half; j++) y1[j] = y[j] + (k1[j] + 3 * (k2[j] + k3[j]) + k4[j]) * dt * 0.125;
            while (next < requested.length && t1 >= requested[next]) {
                double rt = requested[next];
                double[] z;
                if (rt == t0) z = y;
                else if (rt == t1) z = y1;
                else {
                    double slopeT = (rt - t0) / (t1 - t0);
                    z = new double[half];
                    for (int j = 0; j < half; j++) z[j] = y[j] + slopeT * (y1[j] - y[j]);
                }
                s.outputTheta[next++] = expDouble(z);
            }
            double[] swap = y;
            y = y1;
            y1 = swap;
        }
        s.stateDouble = y;
        s.nextOutput = next;
    }

    private static double[] expDouble(double[] z) {
        double[] out = new double[z.length];
        for (int j = 0; j < z.length; j++) out[j] = StrictMath.exp(z[j]);
        return out;
    }

    private void stageDouble(Solve s, int rec, double[] logNtk, double[] embed, double[] u, double[] out,
                             double[] x, double[] h, double[] a) {
        int eo = rec * half, wo = rec * width;
        double[] tx = s.x, ta = s.act, ts = s.slope;
        for (int i = 0; i < half; i++) {
            x[i] = u[i] + logNtk[eo + i];
            tx[eo + i] = x[i];
        }
        OdeKernels.rowTimesMatrix(x, 0, half, upDouble, width, h, 0);
        for (int k = 0; k < width; k++) {
            double hk = h[k];
            if (activation == Activation.TANH) {
                a[k] = StrictMath.tanh(hk);
                ts[wo + k] = 1 - a[k] * a[k];
            } else {
                double sig = 1 / (1 + StrictMath.exp(-hk));
                a[k] = hk * sig;
                ts[wo + k] = sig * (1 + hk * (1 - sig));
            }
            ta[wo + k] = a[k];
        }
        OdeKernels.rowTimesMatrix(a, 0, width, downDouble, half, out, 0);
        for (int j = 0; j < half; j++) out[j] += embed[eo + j];
    }

    /**
     * Reverse of one right-hand side evaluation: given v = d loss / d k, leaves d loss / d (stage input) in
     * {@code uBar} and records v and d loss / d (pre-activation) for the weight gradients. W^T is kept transposed so
     * that both products run along rows (see {@link OdeKernels}).
     */
    private void stageBackward(Solve s, int rec, double[] v, double[] uBar) {
        int wo = rec * width;
        System.arraycopy(v, 0, kBarTape, rec * half, half);
        double[] hBar = hBarTape, ts = s.slope;
        OdeKernels.rowTimesMatrix(v, 0, half, downTransposed, width, hBar, wo);
        for (int k = 0; k < width; k++) hBar[wo + k] *= ts[wo + k];
        OdeKernels.rowTimesMatrix(hBar, wo, width, upTransposed, half, uBar, 0);
    }

    /**
     * A time grid with the time embedding at every stage time: log ntk(t) (added to the state before the up
     * projection) and (d ntk/dt) / ntk (added to the output). Both depend on time alone, so they are computed
     * once per grid instead of once per stage evaluation.
     */
    private static final class Grid {
        final float[] times;
        final int steps;
        final int dim;
        final float[] logNtkFloat;
        final float[] embedFloat;
        double[] logNtkDouble;
        double[] embedDouble;

        Grid(float[] times, int dim) {
            this.times = times;
            this.steps = times.length - 1;
            this.dim = dim;
            int half = dim / 2;
            logNtkFloat = new float[steps * STAGES * half];
            embedFloat = new float[steps * STAGES * half];
            float[] pointLog = new float[half], pointEmbed = new float[half];
            float[] midLog = new float[half], midEmbed = new float[half];
            if (steps > 0) timeEmbeddingFloat(times[0], dim, pointLog, pointEmbed);
            for (int n = 0; n < steps; n++) {
                float t0 = times[n], t1 = times[n + 1], dt = t1 - t0;
                int base = n * STAGES * half;
                System.arraycopy(pointLog, 0, logNtkFloat, base, half);
                System.arraycopy(pointEmbed, 0, embedFloat, base, half);
                timeEmbeddingFloat(t0 + dt * THIRD, dim, midLog, midEmbed);
                System.arraycopy(midLog, 0, logNtkFloat, base + half, half);
                System.arraycopy(midEmbed, 0, embedFloat, base + half, half);
                timeEmbeddingFloat(t0 + dt * TWO_THIRDS, dim, midLog, midEmbed);
                System.arraycopy(midLog, 0, logNtkFloat, base + 2 * half, half);
                System.arraycopy(midEmbed, 0, embedFloat, base + 2 * half, half);
                timeEmbeddingFloat(t1, dim, pointLog, pointEmbed);
                System.arraycopy(pointLog, 0, logNtkFloat, base + 3 * half, half);
                System.arraycopy(pointEmbed, 0, embedFloat, base + 3 * half, half);
            }
        }

        void ensureDouble() {
            if (logNtkDouble != null) return;
            int half = dim / 2;
            double[] log = new double[steps * STAGES * half], embed = new double[steps * STAGES * half];
            double[] l = new double[half], e = new double[half];
            for (int n = 0; n < steps; n++) {
                double t0 = times[n], t1 = times[n + 1], dt = t1 - t0;
                double[] stageTimes = {t0, t0 + dt / 3, t0 + dt * 2 / 3, t1};
                for (int st = 0; st < STAGES; st++) {
                    timeEmbeddingDouble(stageTimes[st], dim, l, e);
                    System.arraycopy(l, 0, log, (n * STAGES + st) * half, half);
                    System.arraycopy(e, 0, embed, (n * STAGES + st) * half, half);
                }
            }
            logNtkDouble = log;
            embedDouble = embed;
        }
    }

    /**
     * The time embedding in float32, operation by operation as the reference computes it: ntk_base =
     * 10000 * alpha^(d/(d-2)) (a float32 tensor to a double scalar power), ntk_j = 1 / ntk_base^(2j/d), the
     * derivative -2k/(d-2) / (10000^(k/d) * alpha^(k/(d-2)+1)) with k = 2j, then log ntk and derivative / ntk.
     * A float32 power or log is the double one rounded to float32 (the correctly rounded result; the reference's
     * library may differ in the last bit).
     */
    static void timeEmbeddingFloat(float t, int d, float[] logNtk, float[] embed) {
        float alpha = t < 1f ? 1f : 2f * t - 1f;
        float ntkBase = TIME_BASE * (float) StrictMath.pow(alpha, d / (double) (d - 2));
        float dimF = d, dimM2 = d - 2;
        for (int j = 0; j < logNtk.length; j++) {
            float index = 2 * j;
            float exponent = index / dimF;
            float ntk = 1f / (float) StrictMath.pow(ntkBase, exponent);
            float numerator = -2f * index / dimM2;
            float denominator = (float) StrictMath.pow(TIME_BASE, exponent)
                    * (float) StrictMath.pow(alpha, index / dimM2 + 1f);
            float delta = numerator / denominator;
            logNtk[j] = (float) StrictMath.log(ntk);
            embed[j] = delta / ntk;
        }
    }

    /** The same quantities in double: log ntk_j and d/dt log ntk_j = -2k / ((d-2) alpha). */
    static void timeEmbeddingDouble(double t, int d, double[] logNtk, double[] embed) {
        double alpha = t < 1 ? 1 : 2 * t - 1;
        double logAlpha = StrictMath.log(alpha), logBase = StrictMath.log(TIME_BASE);
        for (int j = 0; j < logNtk.length; j++) {
            double k = 2 * j;
            logNtk[j] = -(k / d) * logBase - (k / (d - 2)) * logAlpha;
            embed[j] = -2 * k / ((d - 2) * alpha);
        }
    }
}
