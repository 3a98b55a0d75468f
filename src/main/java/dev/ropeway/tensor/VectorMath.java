package dev.ropeway.tensor;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

/**
 * The preferred float species and a fast vector exp, in array-level routines.
 *
 * <p>exp(x): x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so that n ln2 is exact), e^r by its Taylor series to
 * degree 7 (truncation below 1e-8 relative), 2^n built directly in the exponent bits. Measured worst error against
 * Math.exp: 0.93 ulp.
 *
 * <p>Why array-level: a vector passed to or returned from a method that C2 does not inline is boxed on the heap,
 * and whether C2 inlines a helper depends on the order things were compiled in (a helper first compiled on its own
 * is later refused as "already compiled into a big method"). Measured: an exp helper taking a FloatVector made the
 * attention softmax allocate 24 KB per tile and run several times slower in some runs. So every routine here loops
 * over arrays with the vectors confined to one method, and each writes the polynomial out in full.
 *
 * <p>The JDK's own {@code lanewise(EXP)} is as accurate (0.6 ulp) and never boxes, but it is an out-of-line call
 * that spills every vector register; inside the attention softmax it was about twice as slow as this.
 */
final class VectorMath {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final int LANES = F.length();

    /**
     * The sum of a vector's lanes in a fixed order. {@code reduceLanes(ADD)} leaves the order unspecified, and it does
     * change when C2 compiles the caller (measured: a 16-lane sum differed in its last bit after warm-up), which
     * would make a resumed training run drift from the uninterrupted one.
     */
    static float sumLanes(FloatVector v) {
        return sumLanes(v.toArray(), 0);
    }

    /**
     * {@link #sumLanes} of the LANES floats of {@code a} from {@code offset} (the vector confined to this method): lane
     * i plus lane i + w for w = LANES/2 .. 1 (the other lanes' sums are never read): the pairwise sum {@code for (w =
     * n/2; w > 0; w /= 2) for (i < w) x[i] += x[i + w]}, one shuffle and one add per step.
     */
    static float sumLanes(float[] a, int offset) {
        FloatVector v = FloatVector.fromArray(F, a, offset);
        if (LANES >= 16) v = v.add(v.rearrange(DOWN_8));
        if (LANES >= 8) v = v.add(v.rearrange(DOWN_4));
        if (LANES >= 4) v = v.add(v.rearrange(DOWN_2));
        if (LANES >= 2) v = v.add(v.rearrange(DOWN_1));
        return v.lane(0);
    }

    /** Lane i takes lane i + w (wrapping). */
    private static final VectorShuffle<Float> DOWN_8 = down(8), DOWN_4 = down(4), DOWN_2 = down(2), DOWN_1 = down(1);

    private static VectorShuffle<Float> down(int w) {
        return VectorShuffle.fromOp(F, i -> (i + w) % LANES);
    }

    /** {@link #sumLanes(FloatVector)} for doubles. */
    static double sumLanes(jdk.incubator.vector.DoubleVector v) {
        return sumInPlace(v.toArray());
    }

    /** {@code lanes} (a power-of-two length) summed pairwise in place. */
    private static double sumInPlace(double[] lanes) {
        for (int width = lanes.length / 2; width > 0; width /= 2)
            for (int i = 0; i < width; i++) lanes[i] += lanes[i + width];
        return lanes[0];
    }

    private static final float LOG2E = 1.44269504088896341f;
    /** ln 2 split so that {@code n * LN2_HI} is exact for |n| < 2^9 (LN2_HI has 9 trailing zero bits). */
    private static final float LN2_HI = 0.693145751953125f;
    private static final float LN2_LO = 1.42860682030941723212e-6f;
    /** Adding 1.5 * 2^23 rounds a float of magnitude below 2^22 to an integer, left in the low mantissa bits. */
    private static final float ROUNDER = 12582912f;
    private static final int ROUNDER_BITS = Float.floatToRawIntBits(ROUNDER);
    /** Below this e^x is under half the smallest subnormal float: the result is 0. */
    private static final float EXP_MIN = -103.972084f;
    /** Above this e^x overflows float. */
    private static final float EXP_MAX = 88.72283f;
    /** ln of the smallest normal float: a single factor 2^n stays normal down to here. */
    private static final float NORMAL_MIN = -87.33654f;
    /** Taylor coefficients 1/k! of e^r. */
    private static final float C2 = 1f / 2, C3 = 1f / 6, C4 = 1f / 24, C5 = 1f / 120, C6 = 1f / 720, C7 = 1f / 5040;

    private VectorMath() {}

    /** {@code a[i] = e^a[i]} for i in [from, to): 0 below -103.97 (and for -inf), +inf above 88.72, NaN stays NaN. */
    static void expInPlace(float[] a, int from, int to) {
        FloatVector ln2Hi = FloatVector.broadcast(F, -LN2_HI), ln2Lo = FloatVector.broadcast(F, -LN2_LO);
        FloatVector c2 = FloatVector.broadcast(F, C2), c3 = FloatVector.broadcast(F, C3), c4 = FloatVector.broadcast(F, C4);
        FloatVector c5 = FloatVector.broadcast(F, C5), c6 = FloatVector.broadcast(F, C6), one = FloatVector.broadcast(F, 1f);
        int i = from;
        for (int bound = from + F.loopBound(to - from); i < bound; i += LANES) {
            FloatVector x = FloatVector.fromArray(F, a, i);
            FloatVector clamped = x.max(EXP_MIN).min(EXP_MAX);
            FloatVector shifted = clamped.fma(LOG2E, ROUNDER);
            FloatVector n = shifted.sub(ROUNDER);
            FloatVector r = n.fma(ln2Hi, clamped);
            r = n.fma(ln2Lo, r);
            FloatVector p = r.fma(C7, C6).fma(r, c5).fma(r, c4).fma(r, c3).fma(r, c2).fma(r, one).fma(r, one);
            // 2^n as two factors 2^(n/2), so that both stay normal over the whole range, subnormal results included.
            IntVector ni = shifted.reinterpretAsInts().sub(ROUNDER_BITS);
            IntVector half = ni.lanewise(VectorOperators.ASHR, 1);
            FloatVector s1 = half.add(127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
            FloatVector s2 = ni.sub(half).add(127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
            p.mul(s1).mul(s2)
                    .blend(0f, x.compare(VectorOperators.LT, EXP_MIN))
                    .blend(Float.POSITIVE_INFINITY, x.compare(VectorOperators.GT, EXP_MAX))
                    .intoArray(a, i);
        }
        for (; i < to; i++) a[i] = (float) Math.exp(a[i]);
    }

    /**
     * For a [rows, width] block {@code s} and one shift per column: {@code s[j, t] = e^(s[j, t] - shift[t])}, which
     * must be <= 0 (scores minus their maximum); results below the smallest normal float, and -inf, give 0. When
     * {@code sums} is not null it receives each column's sum. {@code width} is a multiple of {@link #LANES}.
     */
    static void expShiftedColumns(float[] s, int rows, int width, float[] shift, float[] sums) {
        FloatVector ln2Hi = FloatVector.broadcast(F, -LN2_HI), ln2Lo = FloatVector.broadcast(F, -LN2_LO);
        FloatVector c2 = FloatVector.broadcast(F, C2), c3 = FloatVector.broadcast(F, C3), c4 = FloatVector.broadcast(F, C4);
        FloatVector c5 = FloatVector.broadcast(F, C5), c6 = FloatVector.broadcast(F, C6), one = FloatVector.broadcast(F, 1f);
        for (int t = 0; t < width; t += LANES) {
            FloatVector h = FloatVector.fromArray(F, shift, t);
            FloatVector sum = FloatVector.zero(F);
            for (int j = 0, o = t; j < rows; j++, o += width) {
                FloatVector x = FloatVector.fromArray(F, s, o).sub(h);
                FloatVector clamped = x.max(NORMAL_MIN);
                FloatVector shifted = clamped.fma(LOG2E, ROUNDER);
                FloatVector n = shifted.sub(ROUNDER);
                FloatVector r = n.fma(ln2Hi, clamped);
                r = n.fma(ln2Lo, r);
                FloatVector p = r.fma(C7, C6).fma(r, c5).fma(r, c4).fma(r, c3).fma(r, c2).fma(r, one).fma(r, one);
                // bits(shifted) = bits(ROUNDER) + n; shifting left by 23 drops the ROUNDER bits, leaving (n + 127) << 23.
                FloatVector scale = shifted.reinterpretAsInts().add(127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
                FloatVector e = p.mul(scale).blend(0f, x.compare(VectorOperators.LT, NORMAL_MIN));
                e.intoArray(s, o);
                sum = sum.add(e);
            }
            if (sums != null) sum.intoArray(sums, t);
        }
    }
}
