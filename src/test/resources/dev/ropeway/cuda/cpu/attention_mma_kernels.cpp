// Runs attention_mma.cu's tensor-core kernels on the CPU (shim.h + mma_shim.h) against a float64 reference of causal
// grouped-query attention (forward: out and lse; backward: dq, dk, dv); built once per head size, with -DKV_HALF for
// keys and values stored as float16 (the backward always reads float16 copies). Exits non-zero when a check fails.
#include "shim.h"
#include "mma_shim.h"
#include "mma_for_cpu.h"

#include "checks.h"

static float roundHalf(float x) { return shimHalfToFloat(shimHalfBits(x)); }

struct Case {
    int batch;
    i64 seqQ, seqKv, kvRows, qStart, window;
    int heads, kvHeads;
};

static bool visibleKey(i64 p, i64 j, i64 window) { return j <= p && (window == 0 || j > p - window); }

// The reference on the float16-rounded inputs the kernels multiply (the rounding of P, dS and dOut inside the
// kernels is what the tolerance allows for).
static void reference(const Case& c, float scale, const F& q, const F& k, const F& v, const F& dOut, D& out, D& lse,
                      D& dq, D& dk, D& dv) {
    const int d = HEAD_DIM, group = c.heads / c.kvHeads;
    out.assign(q.size(), 0); lse.assign((size_t) c.batch * c.seqQ * c.heads, 0);
    dq.assign(q.size(), 0); dk.assign(k.size(), 0); dv.assign(v.size(), 0);
    for (int b = 0; b < c.batch; b++)
        for (int h = 0; h < c.heads; h++) {
            const int kh = h / group;
            for (i64 i = 0; i < c.seqQ; i++) {
                const i64 p = c.qStart + i;
                const float* qi = &q[((b * c.seqQ + i) * c.heads + h) * d];
                std::vector<double> s(c.seqKv, -INFINITY);
                double m = -INFINITY;
                for (i64 j = 0; j < c.seqKv; j++) {
                    if (!visibleKey(p, j, c.window)) continue;
                    const float* kj = &k[((b * c.kvRows + j) * c.kvHeads + kh) * d];
                    double dot = 0;
                    for (int e = 0; e < d; e++) dot += (double) roundHalf(qi[e]) * roundHalf(kj[e]);
                    s[j] = dot * scale;
                    m = std::max(m, s[j]);
                }
                double sum = 0;
                for (i64 j = 0; j < c.seqKv; j++) if (s[j] > -INFINITY) sum += std::exp(s[j] - m);
                const i64 row = (b * c.seqQ + i) * c.heads + h;
                lse[row] = m + std::log(sum);
                double* oi = &out[row * d];
                const float* doi = &dOut[row * d];
                std::vector<double> pr(c.seqKv, 0), dp(c.seqKv, 0);
                for (i64 j = 0; j < c.seqKv; j++) {
                    if (s[j] == -INFINITY) continue;
                    pr[j] = std::exp(s[j] - m) / sum;
                    const float* vj = &v[((b * c.kvRows + j) * c.kvHeads + kh) * d];
                    for (int e = 0; e < d; e++) oi[e] += pr[j] * roundHalf(vj[e]);
                }
                double delta = 0;
                for (int e = 0; e < d; e++) delta += (double) doi[e] * oi[e];
                for (i64 j = 0; j < c.seqKv; j++) {
                    if (pr[j] == 0) continue;
                    const i64 kr = ((b * c.kvRows + j) * c.kvHeads + kh) * d;
                    double dpj = 0;
                    for (int e = 0; e < d; e++) dpj += (double) doi[e] * roundHalf(v[kr + e]);
                    const double ds = pr[j] * (dpj - delta);
                    for (int e = 0; e < d; e++) {
                        dv[kr + e] += pr[j] * doi[e];
                        dq[row * d + e] += scale * ds * roundHalf(k[kr + e]);
                        dk[kr + e] += scale * ds * roundHalf(qi[e]);
                    }
                }
            }
        }
}

static std::vector<unsigned short> halves(const F& x) {
    std::vector<unsigned short> h(x.size());
    for (size_t i = 0; i < x.size(); i++) h[i] = shimHalfBits(x[i]);
    return h;
}

static int blocksOf(i64 n, int per) { return (int) ((n + per - 1) / per); }

static void run(const Case& c, double dOutScale) {
    const int d = HEAD_DIM;
    const float scale = 1.f / std::sqrt((float) d);
    const i64 qFloats = (i64) c.batch * c.seqQ * c.heads * d;
    const i64 kvFloats = ((i64) (c.batch - 1) * c.kvRows + c.seqKv) * c.kvHeads * d;
    F q = normal(qFloats, 1), k = normal(kvFloats, 1), v = normal(kvFloats, 1), dOut = normal(qFloats, dOutScale);
    D out, lse, dq, dk, dv;
    reference(c, scale, q, k, v, dOut, out, lse, dq, dk, dv);
    Shape s{c.seqQ, c.seqKv, c.kvRows, c.qStart, c.window, c.heads, c.kvHeads, scale};
    char name[200];
    std::snprintf(name, sizeof name, "d %d%s batch %d seqQ %lld seqKv %lld qStart %lld window %lld heads %d/%d dOut~%g",
                  d, KV_BYTES == 2 ? (sizeof(q_t) == 2 ? " q, kv f16" : " kv f16") : " kv f32", c.batch, c.seqQ, c.seqKv, c.qStart, c.window, c.heads,
                  c.kvHeads, dOutScale);
    const std::string at = name;

#ifdef OUT_BF16
    std::vector<unsigned short> o(qFloats);   // rounded to bfloat16 (mixed precision's output)
    const double outTol = 5e-3;
#else
    F o(qFloats);
    const double outTol = 2e-3;
#endif
    F l((size_t) c.batch * c.seqQ * c.heads);
#ifdef KV_HALF
    std::vector<unsigned short> kk = halves(k), vv = halves(v);
#else
    F kk = k, vv = v;
#endif
#ifdef Q_HALF
    std::vector<unsigned short> qIn = halves(q);   // queries kept as float16 (a training pass's)
#else
    const F& qIn = q;
#endif
    launch(blocksOf(c.seqQ, FR), c.heads, c.batch, FT, [&] {
        attention_forward_f16(o.data(), l.data(), qIn.data(), kk.data(), vv.data(), s);
    });
#ifdef OUT_BF16
    F oWide(qFloats);
    for (i64 i = 0; i < qFloats; i++) oWide[i] = __uint_as_float(((unsigned) o[i]) << 16);
    check("forward out (bfloat16): " + at, rel(out, oWide), outTol);
    const int outBf16 = 1;
#else
    check("forward out: " + at, rel(out, o), outTol);
    const int outBf16 = 0;
#endif
    check("forward lse: " + at, rel(lse, l), 1e-4);

#ifdef KV_HALF
    // The backward, as the backend runs it: halves of q, k, v; dOut scaled into float16's range; delta.
    std::vector<unsigned short> qh = halves(q), dOh(qFloats);
    const i64 rowStats = (i64) c.batch * c.seqQ * c.heads;
    F delta(rowStats), dqG(qFloats), dkG(kvFloats), dvG(kvFloats);
    unsigned maxBits = 0;
    launch(4, 1, 256, [&] { attention_grad_absmax(&maxBits, dOut.data(), qFloats); });
    launch(blocksOf(rowStats, 8), 1, 256, [&] { attention_backward_prep(dOh.data(), delta.data(), dOut.data(), o.data(), outBf16, &maxBits, rowStats); });
    // dK, dV and (added to zeros by the key blocks) dQ in one kernel; then dK and dV alone, and dQ by its own kernel.
    F dqSum(qFloats, 0.f), dkOnly(kvFloats), dvOnly(kvFloats);
    launch(blocksOf(c.seqKv, 64), c.kvHeads, c.batch, 128, [&] {
        attention_backward_f16(dqSum.data(), dkG.data(), dvG.data(), dOh.data(), qh.data(), kk.data(), vv.data(), l.data(), delta.data(), &maxBits, s);
    });
    check("backward dq (key blocks' sums): " + at, rel(dq, dqSum), 5e-3);
    launch(blocksOf(c.seqKv, 64), c.kvHeads, c.batch, 128, [&] {
        attention_backward_f16(nullptr, dkOnly.data(), dvOnly.data(), dOh.data(), qh.data(), kk.data(), vv.data(), l.data(), delta.data(), &maxBits, s);
    });
    launch(blocksOf(c.seqQ, 64), c.heads, c.batch, 128, [&] {
        attention_backward_q_f16(dqG.data(), dOh.data(), qh.data(), kk.data(), vv.data(), l.data(), delta.data(), &maxBits, s);
    });
    check("backward dq: " + at, rel(dq, dqG), 5e-3);
    check("backward dk, dv the same with and without dq: " + at, dkOnly == dkG && dvOnly == dvG ? 0.0 : 1.0, 0.0);
    // Rows of k and v past seqKv in a sequence's stretch of the cache are not written.
    D dkW, dvW;
    F dkGot, dvGot;
    for (int b = 0; b < c.batch; b++)
        for (i64 j = 0; j < c.seqKv; j++)
            for (int e = 0; e < c.kvHeads * d; e++) {
                i64 idx = (b * c.kvRows + j) * c.kvHeads * d + e;
                dkW.push_back(dk[idx]); dvW.push_back(dv[idx]); dkGot.push_back(dkG[idx]); dvGot.push_back(dvG[idx]);
            }
    check("backward dk: " + at, rel(dkW, dkGot), 5e-3);
    check("backward dv: " + at, rel(dvW, dvGot), 5e-3);
#endif
}

int main() {
    run({2, 150, 150, 150, 0, 0, 4, 2}, 1e-3);                 // self-attention, GQA, a partial last tile
    run({1, 70, 210, 256, 140, 50, 2, 1}, 1.0);                // a chunk appended to a cache, a window
    run({1, 200, 200, 200, 0, 0, 2, 2}, 1e-7);                 // dOut below float16's normal range
    run({1, 300, 300, 300, 0, 100, 2, 1}, 1.0);                // a window: warps skip the tiles before theirs
    run({1, 260, 600, 640, 340, 0, 2, 2}, 1e-3);               // several blocks of a chunk after cached keys
    std::printf("%d check(s) failed\n", failures);
    return failures == 0 ? 0 : 1;
}
