// Runs ops.cu's kernels on the CPU (shim.h) against float64 references written from the ops' definitions, and
// prints one line per check; exits non-zero when any check fails. Built and run by KernelsOnCpuTest.
#include "shim.h"
#include "mma_shim.h"   // float4, uint4
#include "ops_for_cpu.h"   // common.cuh + ops.cu, as NVRTC gets them, with inline PTX replaced

#include "checks.h"

static float widenBf16(unsigned short b) { return __uint_as_float(((unsigned) b) << 16); }

// Round to nearest even, the long way: the nearer of the two neighbouring bfloat16 values.
static float roundBf16(float x) {
    if (std::isnan(x) || std::isinf(x)) return x;
    unsigned bits = __float_as_uint(x);
    float down = __uint_as_float(bits & 0xffff0000u), up = __uint_as_float((bits & 0xffff0000u) + 0x10000u);
    double upValue = std::isinf(up) ? std::copysign(std::ldexp(1.0, 128), x) : up;
    double dd = std::fabs((double) x - down), du = std::fabs(upValue - x);
    if (dd != du) return dd < du ? down : up;
    return ((bits >> 16) & 1) == 0 ? down : up;
}

static F widened(const std::vector<unsigned short>& b) {
    F f(b.size());
    for (size_t i = 0; i < b.size(); i++) f[i] = widenBf16(b[i]);
    return f;
}

static D asDouble(const F& f) { return D(f.begin(), f.end()); }

static void conversions() {
    F x = normal(4099, 3);
    x[0] = NAN; x[1] = 3.4028235e38f; x[2] = __uint_as_float(0x3f808000u); x[3] = __uint_as_float(0x3f818000u);
    x[4] = -0.f; x[5] = 1e-40f; x[6] = INFINITY;
    std::vector<unsigned short> b(x.size());
    launch(4, 1, 256, [&] { to_bf16(b.data(), x.data(), (i64) x.size()); });
    int wrong = 0;
    for (size_t i = 0; i < x.size(); i++) {
        float got = widenBf16(b[i]), want = roundBf16(x[i]);
        if (std::isnan(want) ? !std::isnan(got) : __float_as_uint(got) != __float_as_uint(want)) wrong++;
    }
    check("to_bf16: round to nearest even (ties, overflow, NaN, -0, subnormal)", wrong, 0);
    F back(x.size());
    launch(4, 1, 256, [&] { convert_bf16(back.data(), b.data(), (i64) b.size()); });
    wrong = 0;
    for (size_t i = 1; i < x.size(); i++) wrong += __float_as_uint(back[i]) != __float_as_uint(widenBf16(b[i]));
    check("convert_bf16: exact widening", wrong, 0);
    F small = normal(3000, 100);
    small[0] = 70000.f; small[1] = 1e-6f; small[2] = -3e-8f;
    std::vector<unsigned short> h(small.size());
    F h2(small.size()), h3(small.size());
    launch(4, 1, 256, [&] { to_half(h.data(), small.data(), (i64) small.size()); });
    launch(4, 1, 256, [&] { from_half(h2.data(), h.data(), (i64) h.size()); });
    launch(4, 1, 256, [&] { convert_f16(h3.data(), h.data(), (i64) h.size()); });
    wrong = 0;
    for (size_t i = 0; i < small.size(); i++) {
        float want = (float) (_Float16) small[i];
        wrong += __float_as_uint(h2[i]) != __float_as_uint(want) || __float_as_uint(h3[i]) != __float_as_uint(want);
    }
    check("to_half / from_half / convert_f16: float16 round trip", wrong, 0);
    std::vector<unsigned short> hb(h.size()), bh(h.size());
    launch(4, 1, 256, [&] { half_to_bf16(hb.data(), h.data(), (i64) h.size()); });
    launch(4, 1, 256, [&] { bf16_to_half(bh.data(), hb.data(), (i64) hb.size()); });
    wrong = 0;
    for (size_t i = 0; i < h.size(); i++) {
        float wantB = roundBf16(h2[i]);
        wrong += widenBf16(hb[i]) != wantB || bh[i] != shimHalfBits(wantB);
    }
    check("half_to_bf16 / bf16_to_half: through float32, rounded once", wrong, 0);
}

static void elementwise() {
    const i64 n = 5003;
    F g = normal(n, 3), u = normal(n, 1), dy = normal(n, 1);
    D out(n), dg(n), du(n);
    for (i64 i = 0; i < n; i++) {
        double s = 1 / (1 + std::exp(-(double) g[i]));
        out[i] = g[i] * s * u[i];
        du[i] = dy[i] * g[i] * s;
        dg[i] = dy[i] * u[i] * s * (1 + g[i] * (1 - s));
    }
    F o(n), a(n), b(n);
    std::vector<unsigned short> o16(n), a16(n), b16(n);
    launch(8, 1, 256, [&] { swiglu_forward(o.data(), g.data(), u.data(), n); });
    launch(8, 1, 256, [&] { swiglu_forward_bf16(o16.data(), g.data(), u.data(), n); });
    check("swiglu_forward", rel(out, o), 1e-6);
    check("swiglu_forward_bf16", rel(out, widened(o16)), 4e-3);
    launch(8, 1, 256, [&] { swiglu_backward(a.data(), b.data(), dy.data(), g.data(), u.data(), n); });
    launch(8, 1, 256, [&] { swiglu_backward_bf16(a16.data(), b16.data(), dy.data(), g.data(), u.data(), n); });
    check("swiglu_backward dGate", rel(dg, a), 1e-6);
    check("swiglu_backward dUp", rel(du, b), 1e-6);
    check("swiglu_backward_bf16 dGate", rel(dg, widened(a16)), 4e-3);
    check("swiglu_backward_bf16 dUp", rel(du, widened(b16)), 4e-3);
    int wrong = 0;
    for (i64 i = 0; i < n; i++) wrong += __float_as_uint(widenBf16(a16[i])) != __float_as_uint(roundBf16(a[i]));
    check("swiglu_backward_bf16 = float32 gradient rounded (ulps off)", wrong, n / 200);

    {
        // gate and up stored as bfloat16: exactly the float32 kernels on the widened values, for each output type.
        std::vector<unsigned short> gh(n), uh(n);
        F gw(n), uw(n);
        for (i64 i = 0; i < n; i++) {
            gh[i] = (unsigned short) (__float_as_uint(roundBf16(g[i])) >> 16);
            uh[i] = (unsigned short) (__float_as_uint(roundBf16(u[i])) >> 16);
            gw[i] = widenBf16(gh[i]);
            uw[i] = widenBf16(uh[i]);
        }
        F o2(n), o3(n), a2(n), b2(n), a3(n), b3(n);
        std::vector<unsigned short> o2h(n), o3h(n), a2h(n), b2h(n), a3h(n), b3h(n);
        launch(8, 1, 256, [&] { swiglu_forward(o2.data(), gw.data(), uw.data(), n); });
        launch(8, 1, 256, [&] { swiglu_forward_from_bf16(o3.data(), gh.data(), uh.data(), n); });
        launch(8, 1, 256, [&] { swiglu_forward_bf16(o2h.data(), gw.data(), uw.data(), n); });
        launch(8, 1, 256, [&] { swiglu_forward_bf16_from_bf16(o3h.data(), gh.data(), uh.data(), n); });
        launch(8, 1, 256, [&] { swiglu_backward(a2.data(), b2.data(), dy.data(), gw.data(), uw.data(), n); });
        launch(8, 1, 256, [&] { swiglu_backward_from_bf16(a3.data(), b3.data(), dy.data(), gh.data(), uh.data(), n); });
        launch(8, 1, 256, [&] { swiglu_backward_bf16(a2h.data(), b2h.data(), dy.data(), gw.data(), uw.data(), n); });
        launch(8, 1, 256, [&] { swiglu_backward_bf16_from_bf16(a3h.data(), b3h.data(), dy.data(), gh.data(), uh.data(), n); });
        int differ = 0;
        for (i64 i = 0; i < n; i++)
            differ += __float_as_uint(o2[i]) != __float_as_uint(o3[i]) || o2h[i] != o3h[i]
                    || __float_as_uint(a2[i]) != __float_as_uint(a3[i]) || __float_as_uint(b2[i]) != __float_as_uint(b3[i])
                    || a2h[i] != a3h[i] || b2h[i] != b3h[i];
        check("swiglu from bfloat16 gate and up = float32 kernels on the widened values (differing)", differ, 0);
        check("swiglu from bfloat16: still swiglu", rel(out, o3), 2e-2);
    }

    F p = normal(n, 1), grad = normal(n, 1), m = normal(n, 0.1), v(n);
    for (auto& x : v) x = (float) std::fabs(normal(1, 0.01)[0]);
    float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f;
    long step = 7;
    double c1 = 1 / (1 - std::pow(b1, step)), c2 = 1 / (1 - std::pow(b2, step));
    D pw(n), mw(n), vw(n);
    for (i64 i = 0; i < n; i++) {
        double gi = (double) grad[i] * gs;
        mw[i] = m[i] * (double) b1 + gi * (1 - (double) b1);
        vw[i] = v[i] * (double) b2 + gi * gi * (1 - (double) b2);
        pw[i] = p[i] - lr * (mw[i] * c1 / (std::sqrt(vw[i] * c2) + eps) + p[i] * (double) wd);
    }
    launch(8, 1, 256, [&] { adamw_step(p.data(), grad.data(), m.data(), v.data(), n, lr, b1, b2, eps, wd, gs, (float) c1, (float) c2); });
    check("adamw_step param", rel(pw, p), 1e-6);
    check("adamw_step m", rel(mw, m), 1e-6);
    check("adamw_step v", rel(vw, v), 1e-6);

    std::vector<double> partial(8);
    F x = normal(n, 2);
    launch(8, 1, 256, [&] { sum_squares_partial(partial.data(), x.data(), n); });
    double s = 0, want = 0;
    for (double q : partial) s += q;
    for (float xi : x) want += (double) xi * xi;
    check("sum_squares_partial", std::fabs(s - want) / want, 1e-12);

    const i64 rows = 301;
    const int cols = 129;
    F xs = normal(rows * cols, 1), outC = normal(cols, 1);
    D wantC(outC.begin(), outC.end());
    for (i64 r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) wantC[c] += xs[r * cols + c];
    const i64 per = 64;
    const int chunks = (int) ((rows + per - 1) / per);
    F part(chunks * cols);
    launch(1, chunks, 256, [&] { column_sum_partial(part.data(), xs.data(), rows, cols, per); });
    launch(1, 1, 256, [&] { column_sum_finish(outC.data(), part.data(), chunks, cols); });
    check("column_sum_partial + column_sum_finish (added to out)", rel(wantC, outC), 1e-6);
}

static void norms() {
    for (int dim : {257, 768}) {
        const i64 rows = 23;
        const float eps = 1e-5f;
        const std::string at = " (dim " + std::to_string(dim) + ")";
        F a = normal(rows * dim, 2), b = normal(rows * dim, 1), w = normal(dim, 1);
        D sumW(rows * dim), normW(rows * dim), normA(rows * dim);
        for (i64 r = 0; r < rows; r++) {
            double ss = 0, sa = 0;
            for (int j = 0; j < dim; j++) {
                float s = a[r * dim + j] + b[r * dim + j];
                sumW[r * dim + j] = s;
                ss += (double) s * s;
                sa += (double) a[r * dim + j] * a[r * dim + j];
            }
            for (int j = 0; j < dim; j++) {
                normW[r * dim + j] = w[j] * sumW[r * dim + j] / std::sqrt(ss / dim + eps);
                normA[r * dim + j] = w[j] * a[r * dim + j] / std::sqrt(sa / dim + eps);
            }
        }
        F n1(rows * dim);
        std::vector<unsigned short> n16(rows * dim);
        launch(rows, 1, 256, [&] { rmsnorm_forward(n1.data(), a.data(), w.data(), rows, dim, eps); });
        launch(rows, 1, 256, [&] { rmsnorm_forward_bf16(n16.data(), a.data(), w.data(), rows, dim, eps); });
        check("rmsnorm_forward" + at, rel(normA, n1), 1e-6);
        check("rmsnorm_forward_bf16" + at, rel(normA, widened(n16)), 4e-3);
        // The decoder's use: x += hs; hs = norm(x) (sum over a, out over b).
        F x = a, hs = b, s2(rows * dim);
        launch(rows, 1, 256, [&] { add_rmsnorm(hs.data(), x.data(), x.data(), hs.data(), w.data(), rows, dim, eps); });
        check("add_rmsnorm: sum (exact)" + at, rel(sumW, x), 0);
        check("add_rmsnorm: norm of the sum, written over b" + at, rel(normW, hs), 1e-6);
        launch(rows, 1, 256, [&] { add_rmsnorm_bf16(n16.data(), s2.data(), a.data(), b.data(), w.data(), rows, dim, eps); });
        check("add_rmsnorm_bf16: sum (exact)" + at, rel(sumW, s2), 0);
        check("add_rmsnorm_bf16: norm" + at, rel(normW, widened(n16)), 4e-3);

        // Backward: dx = rstd * dy * w - x * rstd^3 / dim * sum(dy * w * x); dw += sum over rows of dy * x * rstd.
        F dy = normal(rows * dim, 1), res = normal(rows * dim, 0.5), dw0 = normal(dim, 0.1);
        D dxW(rows * dim), resW(rows * dim), dwW(dw0.begin(), dw0.end());
        for (i64 r = 0; r < rows; r++) {
            double ss = 0, dot = 0;
            for (int j = 0; j < dim; j++) {
                double xv = a[r * dim + j];
                ss += xv * xv;
                dot += (double) dy[r * dim + j] * w[j] * xv;
            }
            double rs = 1 / std::sqrt(ss / dim + eps);
            for (int j = 0; j < dim; j++) {
                double xv = a[r * dim + j];
                dxW[r * dim + j] = rs * dy[r * dim + j] * w[j] - xv * rs * rs * rs * dot / dim;
                resW[r * dim + j] = res[r * dim + j] + dxW[r * dim + j];
                dwW[j] += dy[r * dim + j] * xv * rs;
            }
        }
        // The three-kernel backward, dx over dOut as the training pass calls it.
        F rstd(rows), d = dy, dw = dw0;
        const i64 per = 8;
        const int chunks = (int) ((rows + per - 1) / per);
        F part(chunks * dim);
        launch(rows, 1, 256, [&] { rmsnorm_rstd(rstd.data(), a.data(), rows, dim, eps); });
        launch((dim + 255) / 256, chunks, 256, [&] { rmsnorm_weight_partial(part.data(), d.data(), a.data(), rstd.data(), rows, dim, per); });
        launch(rows, 1, 256, [&] { rmsnorm_backward_x(d.data(), d.data(), a.data(), w.data(), rstd.data(), rows, dim); });
        launch((dim + 255) / 256, 1, 256, [&] { column_sum_finish(dw.data(), part.data(), chunks, dim); });
        check("rmsnorm backward (rstd, weight partials, dx in place)" + at, rel(dxW, d), 1e-5);
        check("rmsnorm backward dWeight" + at, rel(dwW, dw), 1e-5);
        // The fused backward into the residual gradient, with no copy, a float32 copy and a bfloat16 copy.
        for (int copy = 0; copy < 3; copy++) {
            F dres = res, dwf = dw0, c32(rows * dim), partF(chunks * dim);
            std::vector<unsigned short> c16(rows * dim);
            if (copy == 2)
                launch(chunks, 1, 256, [&] { rmsnorm_backward_add_bf16(dres.data(), c16.data(), partF.data(), dy.data(), a.data(), w.data(), rows, dim, eps, per); });
            else
                launch(chunks, 1, 256, [&] { rmsnorm_backward_add(dres.data(), copy == 1 ? c32.data() : nullptr, partF.data(), dy.data(), a.data(), w.data(), rows, dim, eps, per); });
            launch((dim + 255) / 256, 1, 256, [&] { column_sum_finish(dwf.data(), partF.data(), chunks, dim); });
            const std::string c = " copy " + std::string(copy == 0 ? "none" : copy == 1 ? "f32" : "bf16") + at;
            check("rmsnorm_backward_add: dResidual +=" + c, rel(resW, dres), 1e-5);
            check("rmsnorm_backward_add: dWeight" + c, rel(dwW, dwf), 1e-5);
            if (copy == 1) check("rmsnorm_backward_add: the copy is dResidual (exact)" + c, rel(asDouble(dres), c32), 0);
            if (copy == 2) {
                F r16(rows * dim);
                for (size_t i = 0; i < r16.size(); i++) r16[i] = roundBf16(dres[i]);
                check("rmsnorm_backward_add: the copy is dResidual rounded (exact)" + c, rel(asDouble(r16), widened(c16)), 0);
            }
        }
    }
}

static void crossEntropy() {
    const i64 rows = 20;
    const int vocab = 3001;
    const float gs = 0.25f;
    F lg = normal(rows * vocab, 4);
    for (int j = 0; j < 600; j++) lg[vocab + j] = -INFINITY;   // a thread's first logits all -inf
    std::vector<int> tg(rows);
    for (i64 r = 0; r < rows; r++) tg[r] = r % 9 == 0 ? -1 : (int) ((r * 977 + 5) % vocab);
    tg[1] = 700;
    D lossW(rows), gradW(rows * vocab);
    for (i64 r = 0; r < rows; r++) {
        if (tg[r] < 0) continue;
        double m = -INFINITY, s = 0;
        for (int j = 0; j < vocab; j++) m = std::max(m, (double) lg[r * vocab + j]);
        for (int j = 0; j < vocab; j++) s += std::exp(lg[r * vocab + j] - m);
        lossW[r] = std::log(s) + m - lg[r * vocab + tg[r]];
        for (int j = 0; j < vocab; j++) {
            double p = std::exp(lg[r * vocab + j] - m) / s;
            gradW[r * vocab + j] = gs * (j == tg[r] ? p - 1 : p);
        }
    }
    auto lossErr = [&](const D& loss) {
        double e = 0;
        for (i64 r = 0; r < rows; r++) {
            if (!std::isfinite(loss[r])) return (double) INFINITY;
            e = std::max(e, std::fabs(loss[r] - lossW[r]) / (1 + std::fabs(lossW[r])));
        }
        return e;
    };
    D loss(rows);
    F g32(rows * vocab);
    launch(rows, 1, 256, [&] { cross_entropy((float*) nullptr, lg.data(), tg.data(), loss.data(), rows, vocab, gs); });
    check("cross_entropy: losses, no gradient", lossErr(loss), 1e-6);
    launch(rows, 1, 256, [&] { cross_entropy(g32.data(), lg.data(), tg.data(), loss.data(), rows, vocab, gs); });
    check("cross_entropy: losses", lossErr(loss), 1e-6);
    check("cross_entropy: gradient into its own tensor", rel(gradW, g32), 1e-5);
    std::vector<unsigned short> g16(rows * vocab);
    launch(rows, 1, 256, [&] { cross_entropy_bf16(g16.data(), lg.data(), tg.data(), loss.data(), rows, vocab, gs); });
    check("cross_entropy_bf16: gradient", rel(gradW, widened(g16)), 4e-3);
    F inPlace = lg;
    launch(rows, 1, 256, [&] { cross_entropy(inPlace.data(), inPlace.data(), tg.data(), loss.data(), rows, vocab, gs); });
    check("cross_entropy: gradient over the logits", rel(gradW, inPlace), 1e-5);
    check("cross_entropy: losses, in place", lossErr(loss), 1e-6);
}

static void rotary() {
    const i64 rows = 40;
    const int heads = 3, headDim = 20, half = 8;   // partial rotary: 16 of 20 features
    const float scale = 1.1f;
    F pos(rows), inv(half);
    for (i64 r = 0; r < rows; r++) pos[r] = r * 1.5f + 3;
    for (int j = 0; j < half; j++) inv[j] = (float) std::pow(10000.0, -2.0 * j / 16);
    F c(rows * half), s(rows * half);
    launch(2, 1, 256, [&] { rotary_table(c.data(), s.data(), pos.data(), inv.data(), rows, half, scale); });
    D cw(rows * half), sw(rows * half);
    for (i64 r = 0; r < rows; r++)
        for (int j = 0; j < half; j++) {
            float angle = pos[r] * inv[j];
            cw[r * half + j] = (float) std::cos((double) angle) * scale;
            sw[r * half + j] = (float) std::sin((double) angle) * scale;
        }
    check("rotary_table cos", rel(cw, c), 1e-7);
    check("rotary_table sin", rel(sw, s), 1e-7);
    F x = normal(rows * heads * headDim, 1), y = x;
    D yw(x.begin(), x.end());
    for (i64 r = 0; r < rows; r++)
        for (int h = 0; h < heads; h++)
            for (int j = 0; j < half; j++) {
                i64 o = (r * heads + h) * headDim;
                double x1 = x[o + j], x2 = x[o + j + half], cc = c[r * half + j], ss = s[r * half + j];
                yw[o + j] = x1 * cc - x2 * ss;
                yw[o + j + half] = x2 * cc + x1 * ss;
            }
    launch(2, 1, 256, [&] { rotary_forward(y.data(), c.data(), s.data(), rows, heads, headDim, half); });
    check("rotary_forward (features past 2*half untouched)", rel(yw, y), 1e-6);
    // Out of place: float32 as in place, bit for bit; float16 and bfloat16 that result rounded once.
    const i64 n = rows * heads * headDim;
    F into(n);
    std::vector<unsigned short> intoH(n), intoB(n);
    launch(3, 1, 256, [&] { rotary_into(into.data(), T_F32, x.data(), c.data(), s.data(), rows, heads, headDim, half); });
    launch(3, 1, 256, [&] { rotary_into(intoH.data(), T_F16, x.data(), c.data(), s.data(), rows, heads, headDim, half); });
    launch(3, 1, 256, [&] { rotary_into(intoB.data(), T_BF16, x.data(), c.data(), s.data(), rows, heads, headDim, half); });
    int wrong = 0;
    for (i64 i = 0; i < n; i++)
        wrong += __float_as_uint(into[i]) != __float_as_uint(y[i]) || intoH[i] != shimHalfBits(y[i])
                 || widenBf16(intoB[i]) != roundBf16(y[i]);
    check("rotary_into: float32 = rotary_forward's, float16 / bfloat16 = it rounded", wrong, 0);
    F d = normal(rows * heads * headDim, 1);
    D dw(d.begin(), d.end()), angleW(rows * half);
    for (i64 r = 0; r < rows; r++)
        for (int j = 0; j < half; j++) {
            double g = 0;
            for (int h = 0; h < heads; h++) {
                i64 o = (r * heads + h) * headDim;
                double d1 = d[o + j], d2 = d[o + j + half], cc = c[r * half + j], ss = s[r * half + j];
                g += -d1 * y[o + j + half] + d2 * y[o + j];
                dw[o + j] = d1 * cc + d2 * ss;
                dw[o + j + half] = d2 * cc - d1 * ss;
            }
            angleW[r * half + j] = pos[r] * g;
        }
    std::vector<double> angle(rows * half);
    F d2 = d, d3 = d;
    launch(2, 1, 256, [&] {
        rotary_backward(d.data(), y.data(), T_F32, nullptr, T_F32, c.data(), s.data(), pos.data(), angle.data(), rows,
                        heads, headDim, half);
    });
    check("rotary_backward", rel(dw, d), 1e-6);
    F angleF(angle.begin(), angle.end());
    check("rotary_backward: d loss / d angle", rel(angleW, angleF), 1e-6);
    // The rotated values read as float16 (bfloat16), the result also copied rounded to bfloat16 (float16), features
    // past 2 * half by copy_unrotated.
    std::vector<unsigned short> yH(n), yB(n), copyB(n), copyH(n);
    for (i64 i = 0; i < n; i++) {
        yH[i] = shimHalfBits(y[i]);
        yB[i] = (unsigned short) (__float_as_uint(roundBf16(y[i])) >> 16);
    }
    std::vector<double> angleH(rows * half), angleB(rows * half);
    launch(2, 1, 256, [&] {
        rotary_backward(d2.data(), yH.data(), T_F16, copyB.data(), T_BF16, c.data(), s.data(), pos.data(), angleH.data(),
                        rows, heads, headDim, half);
        copy_unrotated(copyB.data(), T_BF16, d2.data(), rows, heads, headDim, half);
    });
    launch(2, 1, 256, [&] {
        rotary_backward(d3.data(), yB.data(), T_BF16, copyH.data(), T_F16, c.data(), s.data(), pos.data(), angleB.data(),
                        rows, heads, headDim, half);
        copy_unrotated(copyH.data(), T_F16, d3.data(), rows, heads, headDim, half);
    });
    wrong = 0;
    for (i64 i = 0; i < n; i++)
        wrong += __float_as_uint(d2[i]) != __float_as_uint(d[i]) || __float_as_uint(d3[i]) != __float_as_uint(d[i])
                 || widenBf16(copyB[i]) != roundBf16(d[i]) || copyH[i] != shimHalfBits(d[i]);
    check("rotary_backward: dx the same, copies rounded (every feature)", wrong, 0);
    F angleHF(angleH.begin(), angleH.end()), angleBF(angleB.begin(), angleB.end());
    check("rotary_backward: d loss / d angle from float16 rotated values", rel(angleW, angleHF), 2e-3);
    check("rotary_backward: d loss / d angle from bfloat16 rotated values", rel(angleW, angleBF), 1e-2);
}

static unsigned short narrowBits(float v, bool half) {
    if (!half) return (unsigned short) (__float_as_uint(v) >> 16);
    _Float16 h = (_Float16) v;
    unsigned short b;
    std::memcpy(&b, &h, 2);
    return b;
}

static float widenBits(unsigned short b, bool half) {
    if (!half) return widenBf16(b);
    _Float16 h;
    std::memcpy(&h, &b, 2);
    return (float) h;
}

static void embedding() {
    const int vocab = 50, dim = 33, rows = 200;
    F table = normal(vocab * dim, 1), dOut = normal(rows * dim, 1), out(rows * dim);
    std::vector<int> ids(rows);
    for (int r = 0; r < rows; r++) ids[r] = (r * 7) % 13;   // repeated ids
    launch(rows, 1, 256, [&] { embedding_forward(out.data(), table.data(), ids.data(), rows, dim); });
    D want(rows * dim);
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < dim; j++) want[r * dim + j] = table[ids[r] * dim + j];
    check("embedding_forward", rel(want, out), 0);
    std::vector<unsigned short> table16(table.size());
    for (size_t i = 0; i < table.size(); i++) table16[i] = (unsigned short) (__float_as_uint(table[i]) >> 16);
    launch(rows, 1, 256, [&] { embedding_forward_bf16(out.data(), table16.data(), ids.data(), rows, dim); });
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < dim; j++) want[r * dim + j] = widenBf16(table16[ids[r] * dim + j]);
    check("embedding_forward_bf16: exact widening", rel(want, out), 0);
    std::vector<unsigned short> table16h(table.size());
    for (size_t i = 0; i < table.size(); i++) table16h[i] = narrowBits(table[i], true);
    launch(rows, 1, 256, [&] { embedding_forward_f16(out.data(), table16h.data(), ids.data(), rows, dim); });
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < dim; j++) want[r * dim + j] = widenBits(table16h[ids[r] * dim + j], true);
    check("embedding_forward_f16: exact widening", rel(want, out), 0);
    // The host sorts rows by id: unique ids, where each one's rows start, the rows in order.
    std::vector<int> order(rows), unique, starts;
    for (int r = 0; r < rows; r++) order[r] = r;
    std::stable_sort(order.begin(), order.end(), [&](int p, int q) { return ids[p] < ids[q]; });
    for (int k = 0; k < rows; k++)
        if (k == 0 || ids[order[k]] != ids[order[k - 1]]) {
            unique.push_back(ids[order[k]]);
            starts.push_back(k);
        }
    starts.push_back(rows);
    F dTable = normal(vocab * dim, 0.1);
    D dWant(dTable.begin(), dTable.end());
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < dim; j++) dWant[ids[r] * dim + j] += dOut[r * dim + j];
    launch((int) unique.size(), 1, 256, [&] { embedding_backward(dTable.data(), dOut.data(), unique.data(), starts.data(), order.data(), dim); });
    check("embedding_backward (repeated ids accumulate)", rel(dWant, dTable), 1e-6);
}

// Products with few rows on bfloat16 and float16 weights, against float64 sums of the widened weights: the vector path
// (in a multiple of 8, a second 256-wide chunk present or not) and the scalar one, strides wider than the rows, a bias,
// alpha and beta, output counts that leave a warp's second row or a block's last warps idle.
static void bf16WeightProducts() {
    struct Case { int rows, in, out; i64 ldx, ldw, ldy; float alpha, beta; bool bias; };
    const Case cases[] = {{1, 768, 37, 768, 768, 37, 1.f, 0.f, false}, {3, 520, 9, 528, 536, 12, 1.f, 0.f, true},
                          {8, 1032, 70, 1032, 1040, 70, 0.5f, 0.25f, false}, {5, 77, 13, 80, 79, 13, 1.f, 0.f, true},
                          {2, 24, 3, 24, 24, 5, 2.f, -1.f, true}};
    for (bool half : {false, true})
        for (const Case& c : cases) {
            F x = normal((size_t) c.rows * c.ldx, 1), wide = normal((size_t) c.out * c.ldw, 0.5), bias = normal(c.out, 1);
            std::vector<unsigned short> w(wide.size());
            for (size_t i = 0; i < w.size(); i++) w[i] = narrowBits(wide[i], half);
            F y = normal((size_t) c.rows * c.ldy, 1);
            D want(y.begin(), y.end());
            for (int r = 0; r < c.rows; r++)
                for (int o = 0; o < c.out; o++) {
                    double s = 0;
                    for (int i = 0; i < c.in; i++) s += (double) x[r * c.ldx + i] * widenBits(w[o * c.ldw + i], half);
                    double v = c.alpha * s + (c.beta != 0 ? c.beta * (double) y[r * c.ldy + o] : 0) + (c.bias ? bias[o] : 0);
                    want[r * c.ldy + o] = v;
                }
            const bool vec = c.in % 8 == 0 && c.ldw % 8 == 0 && c.ldx % 4 == 0;
            const int perBlock = LINEAR_WARPS * LINEAR_OUTS, blocks = (c.out + perBlock - 1) / perBlock;
            launch(blocks, 1, LINEAR_WARPS * 32, [&] {
                (half ? linear_f16_weights : linear_bf16_weights)(y.data(), x.data(), w.data(), c.bias ? bias.data() : nullptr,
                        c.rows, c.in, c.out, c.ldx, c.ldw, c.ldy, c.alpha, c.beta, vec ? 1 : 0);
            });
            check(std::string(half ? "linear_f16_weights: " : "linear_bf16_weights: ") + std::to_string(c.rows) + " x "
                  + std::to_string(c.in) + " -> " + std::to_string(c.out) + (vec ? ", 16-byte loads" : ", scalar"),
                  rel(want, y), 1e-6);
        }
    // A block of rows widened into float32 and rounded back, strides on both sides.
    const int rows = 7, cols = 45;
    F src = normal(rows * 50, 2), wideRows(rows * 48, -1.f);
    std::vector<unsigned short> b(rows * 50), back(rows * 46, 0xffff);
    for (size_t i = 0; i < b.size(); i++) b[i] = (unsigned short) (__float_as_uint(src[i]) >> 16);
    launch(2, 1, 256, [&] { widen_bf16_rows(wideRows.data(), b.data(), rows, cols, 48, 50); });
    int wrong = 0;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < 48; c++) {
            float want = c < cols ? widenBf16(b[r * 50 + c]) : -1.f;
            wrong += __float_as_uint(wideRows[r * 48 + c]) != __float_as_uint(want);
        }
    check("widen_bf16_rows: exact, the strides' gaps untouched", wrong, 0);
    std::vector<unsigned short> h(rows * 50);
    for (size_t i = 0; i < h.size(); i++) h[i] = narrowBits(src[i], true);
    F wideHalves(rows * 48, -1.f);
    launch(2, 1, 256, [&] { widen_f16_rows(wideHalves.data(), h.data(), rows, cols, 48, 50); });
    wrong = 0;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < 48; c++) {
            float want = c < cols ? widenBits(h[r * 50 + c], true) : -1.f;
            wrong += __float_as_uint(wideHalves[r * 48 + c]) != __float_as_uint(want);
        }
    check("widen_f16_rows: exact, the strides' gaps untouched", wrong, 0);
    launch(2, 1, 256, [&] { round_bf16_rows(back.data(), src.data(), rows, cols, 46, 50); });
    wrong = 0;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < 46; c++) {
            unsigned short want = c < cols ? (unsigned short) (__float_as_uint(roundBf16(src[r * 50 + c])) >> 16) : 0xffff;
            wrong += back[r * 46 + c] != want;
        }
    check("round_bf16_rows: nearest even, the strides' gaps untouched", wrong, 0);
}

int main() {
    conversions();
    elementwise();
    norms();
    crossEntropy();
    rotary();
    embedding();
    bf16WeightProducts();
    std::printf("%d check(s) failed\n", failures);
    return failures == 0 ? 0 : 1;
}
