// Causal grouped-query attention, forward and backward, in tiles with an online softmax (FlashAttention-2 style):
// no seq x seq buffer is ever made. float32 storage and arithmetic.
//
// Compiled once per head size with -DHEAD_DIM=<d> -DBR=<query rows per tile> -DBC=<keys per tile>. A block is 256
// threads seen as 16 x 16 (ty, tx); a thread owns rows ty + 16 a of a tile and columns tx + 16 b, so the 16 threads
// of a row sit in one half-warp and row reductions are four shuffles.
//
// Layouts (see AttentionShape): q / out / dq [batch * seqQ, heads * D]; k / v / dk / dv rows b * kvRowsPerBatch + j,
// [kvHeads * D]; lse / delta [(b * seqQ + i) * heads + h]. Query i sits at key position qStart + i and sees keys
// j <= p (and j > p - window when window > 0).

#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef BR
#define BR 64
#endif
#ifndef BC
#define BC 64
#endif

#define DP (((HEAD_DIM) + 15) / 16 * 16)   // head size padded to the 16 threads of a row
#define LD (DP + 1)                        // shared-memory row stride (odd: no bank conflicts down a column)
#define TM (BR / 16)                       // query rows per thread
#define TN (BC / 16)                       // key columns per thread (and key rows per thread in dK / dV)
#define TD (DP / 16)                       // head features per thread

__device__ __forceinline__ float row_max16(float v) {
    for (int o = 8; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float row_sum16(float v) {
    for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Loads `count` rows of one head (rows beyond `valid` and features beyond HEAD_DIM as zeros) into dst[count][LD].
template <typename T>
__device__ __forceinline__ void load_rows(float* dst, const T* src, i64 firstRow, i64 valid, i64 rowStride,
                                          int count) {
    for (int e = threadIdx.x; e < count * DP; e += 256) {
        int r = e / DP, d = e % DP;
        dst[r * LD + d] = (r < valid && d < HEAD_DIM) ? to_float(src[(firstRow + r) * rowStride + d]) : 0.f;
    }
}

extern "C" __global__ void __launch_bounds__(256)
attention_forward(float* out, float* lse, const float* q, const kv_t* k, const kv_t* v, Shape s) {
    extern __shared__ float smem[];
    float* sQ = smem;              // [BR][LD]
    float* sKV = sQ + BR * LD;     // [BC][LD], keys then values
    float* sP = sKV + BC * LD;     // [BR][BC + 1]
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const GridPlace at = ranked_place();   // the last queries (the most keys under a causal mask) first
    const i64 i0 = ((i64) gridDim.x - 1 - at.rank) * BR;
    const int h = at.y, b = at.z;
    const int kh = h / (s.heads / s.kvHeads);
    const i64 qStride = (i64) s.heads * HEAD_DIM, kvStride = (i64) s.kvHeads * HEAD_DIM;
    const float* qBase = q + ((i64) b * s.seqQ) * qStride + (i64) h * HEAD_DIM;
    const kv_t* kBase = k + ((i64) b * s.kvRowsPerBatch) * kvStride + (i64) kh * HEAD_DIM;
    const kv_t* vBase = v + ((i64) b * s.kvRowsPerBatch) * kvStride + (i64) kh * HEAD_DIM;
    const i64 rowsHere = min((i64) BR, s.seqQ - i0);

    load_rows(sQ, qBase, i0, rowsHere, qStride, BR);

    float m[TM], l[TM], acc[TM][TD];
    for (int a = 0; a < TM; a++) {
        m[a] = -INFINITY;
        l[a] = 0.f;
        for (int c = 0; c < TD; c++) acc[a][c] = 0.f;
    }
    const i64 pFirst = s.qStart + i0, pLast = s.qStart + i0 + rowsHere - 1;
    const i64 lo = s.window == 0 ? 0 : max((i64) 0, pFirst - s.window + 1);
    for (i64 k0 = lo; k0 <= pLast; k0 += BC) {
        const i64 keysHere = min((i64) BC, s.seqKv - k0);
        __syncthreads();
        load_rows(sKV, kBase, k0, keysHere, kvStride, BC);
        __syncthreads();
        float sc[TM][TN];
        for (int a = 0; a < TM; a++)
            for (int bb = 0; bb < TN; bb++) sc[a][bb] = 0.f;
        for (int d = 0; d < DP; d++) {
            float qa[TM], kb[TN];
            for (int a = 0; a < TM; a++) qa[a] = sQ[(ty + 16 * a) * LD + d];
            for (int bb = 0; bb < TN; bb++) kb[bb] = sKV[(tx + 16 * bb) * LD + d];
            for (int a = 0; a < TM; a++)
                for (int bb = 0; bb < TN; bb++) sc[a][bb] += qa[a] * kb[bb];
        }
        for (int a = 0; a < TM; a++) {
            const int row = ty + 16 * a;
            const i64 p = s.qStart + i0 + row;
            float mt = -INFINITY;
            for (int bb = 0; bb < TN; bb++) {
                const i64 j = k0 + tx + 16 * bb;
                const bool ok = row < rowsHere && j < s.seqKv && visible(p, j, s.window);
                sc[a][bb] = ok ? sc[a][bb] * s.scale : -INFINITY;
                mt = fmaxf(mt, sc[a][bb]);
            }
            mt = row_max16(mt);
            const float mNew = fmaxf(m[a], mt);
            float corr = 1.f, rs = 0.f;
            if (mNew != -INFINITY) {
                corr = m[a] == -INFINITY ? 0.f : expf(m[a] - mNew);
                for (int bb = 0; bb < TN; bb++) {
                    const float pr = sc[a][bb] == -INFINITY ? 0.f : expf(sc[a][bb] - mNew);
                    sc[a][bb] = pr;
                    rs += pr;
                }
            } else {
                for (int bb = 0; bb < TN; bb++) sc[a][bb] = 0.f;
            }
            rs = row_sum16(rs);
            l[a] = l[a] * corr + rs;
            m[a] = mNew;
            for (int c = 0; c < TD; c++) acc[a][c] *= corr;
            for (int bb = 0; bb < TN; bb++) sP[row * (BC + 1) + tx + 16 * bb] = sc[a][bb];
        }
        __syncthreads();
        load_rows(sKV, vBase, k0, keysHere, kvStride, BC);
        __syncthreads();
        for (int j = 0; j < BC; j++) {
            float vj[TD];
            for (int c = 0; c < TD; c++) vj[c] = sKV[j * LD + tx + 16 * c];
            for (int a = 0; a < TM; a++) {
                const float pr = sP[(ty + 16 * a) * (BC + 1) + j];
                for (int c = 0; c < TD; c++) acc[a][c] += pr * vj[c];
            }
        }
    }
    for (int a = 0; a < TM; a++) {
        const int row = ty + 16 * a;
        if (row >= rowsHere) continue;
        const i64 r = (i64) b * s.seqQ + i0 + row;
        const float inv = 1.f / l[a];
        for (int c = 0; c < TD; c++) {
            const int d = tx + 16 * c;
            if (d < HEAD_DIM) out[r * qStride + (i64) h * HEAD_DIM + d] = acc[a][c] * inv;
        }
        if (lse != 0 && tx == 0) lse[r * s.heads + h] = m[a] + logf(l[a]);
    }
}

// delta[(row) * heads + h] = sum over d of dOut * out (the softmax backward's row term).
extern "C" __global__ void attention_delta(float* delta, const float* dOut, const float* out, i64 rowsTimesHeads) {
    for (i64 e = (i64) blockIdx.x * blockDim.x + threadIdx.x; e < rowsTimesHeads; e += (i64) gridDim.x * blockDim.x) {
        const float* a = dOut + e * HEAD_DIM;
        const float* o = out + e * HEAD_DIM;
        float sum = 0.f;
        for (int d = 0; d < HEAD_DIM; d++) sum += a[d] * o[d];
        delta[e] = sum;
    }
}

// Scores, probabilities and d(scores) of one query tile against one key tile, for the two backward kernels:
// p = exp(scale * q.k - lse), ds = p * (dO.v - delta); zero where a key is not visible.
__device__ __forceinline__ void backward_tile(float (&pr)[TM][TN], float (&ds)[TM][TN], const float* sQ,
                                              const float* sdO, const float* sK, const float* sV, const float* sL,
                                              const float* sDelta, i64 i0, i64 rowsHere, i64 k0, const Shape& s,
                                              int tx, int ty) {
    float sc[TM][TN], dp[TM][TN];
    for (int a = 0; a < TM; a++)
        for (int bb = 0; bb < TN; bb++) { sc[a][bb] = 0.f; dp[a][bb] = 0.f; }
    for (int d = 0; d < DP; d++) {
        float qa[TM], oa[TM], kb[TN], vb[TN];
        for (int a = 0; a < TM; a++) { qa[a] = sQ[(ty + 16 * a) * LD + d]; oa[a] = sdO[(ty + 16 * a) * LD + d]; }
        for (int bb = 0; bb < TN; bb++) { kb[bb] = sK[(tx + 16 * bb) * LD + d]; vb[bb] = sV[(tx + 16 * bb) * LD + d]; }
        for (int a = 0; a < TM; a++)
            for (int bb = 0; bb < TN; bb++) { sc[a][bb] += qa[a] * kb[bb]; dp[a][bb] += oa[a] * vb[bb]; }
    }
    for (int a = 0; a < TM; a++) {
        const int row = ty + 16 * a;
        const i64 p = s.qStart + i0 + row;
        for (int bb = 0; bb < TN; bb++) {
            const i64 j = k0 + tx + 16 * bb;
            const bool ok = row < rowsHere && j < s.seqKv && visible(p, j, s.window);
            const float prob = ok ? expf(sc[a][bb] * s.scale - sL[row]) : 0.f;
            pr[a][bb] = prob;
            ds[a][bb] = ok ? prob * (dp[a][bb] - sDelta[row]) : 0.f;
        }
    }
}

// dK and dV for one key tile of one key/value head, summed over the query heads that read it. Overwrites.
extern "C" __global__ void __launch_bounds__(256)
attention_backward_kv(float* dk, float* dv, const float* dOut, const float* q, const float* k, const float* v,
                      const float* lse, const float* delta, Shape s) {
    extern __shared__ float smem[];
    float* sK = smem;               // [BC][LD]
    float* sV = sK + BC * LD;       // [BC][LD]
    float* sQ = sV + BC * LD;       // [BR][LD]
    float* sdO = sQ + BR * LD;      // [BR][LD]
    float* sP = sdO + BR * LD;      // [BR][BC + 1]
    float* sdS = sP + BR * (BC + 1); // [BR][BC + 1]
    float* sL = sdS + BR * (BC + 1); // [BR]
    float* sDelta = sL + BR;         // [BR]
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const GridPlace at = ranked_place();   // the first keys (seen by the most queries) first
    const i64 k0 = (i64) at.rank * BC;
    const int kh = at.y, b = at.z;
    const int group = s.heads / s.kvHeads;
    const i64 qStride = (i64) s.heads * HEAD_DIM, kvStride = (i64) s.kvHeads * HEAD_DIM;
    const i64 kvOff = ((i64) b * s.kvRowsPerBatch) * kvStride + (i64) kh * HEAD_DIM;
    const i64 keysHere = min((i64) BC, s.seqKv - k0);
    load_rows(sK, k + kvOff, k0, keysHere, kvStride, BC);
    load_rows(sV, v + kvOff, k0, keysHere, kvStride, BC);

    float dK[TN][TD], dV[TN][TD];
    for (int a = 0; a < TN; a++)
        for (int c = 0; c < TD; c++) { dK[a][c] = 0.f; dV[a][c] = 0.f; }

    const i64 kLast = k0 + keysHere - 1;
    i64 iLo = max((i64) 0, k0 - s.qStart);
    i64 iHi = s.seqQ - 1;
    if (s.window > 0) iHi = min(iHi, kLast + s.window - 1 - s.qStart);
    for (int gi = 0; gi < group; gi++) {
        const int h = kh * group + gi;
        const float* qBase = q + ((i64) b * s.seqQ) * qStride + (i64) h * HEAD_DIM;
        const float* oBase = dOut + ((i64) b * s.seqQ) * qStride + (i64) h * HEAD_DIM;
        for (i64 i0 = iLo; i0 <= iHi; i0 += BR) {
            const i64 rowsHere = min((i64) BR, s.seqQ - i0);
            __syncthreads();
            load_rows(sQ, qBase, i0, rowsHere, qStride, BR);
            load_rows(sdO, oBase, i0, rowsHere, qStride, BR);
            load_row_stats(sL, sDelta, lse, delta, b, i0, rowsHere, h, s, BR, 256);
            __syncthreads();
            float pr[TM][TN], ds[TM][TN];
            backward_tile(pr, ds, sQ, sdO, sK, sV, sL, sDelta, i0, rowsHere, k0, s, tx, ty);
            for (int a = 0; a < TM; a++)
                for (int bb = 0; bb < TN; bb++) {
                    sP[(ty + 16 * a) * (BC + 1) + tx + 16 * bb] = pr[a][bb];
                    sdS[(ty + 16 * a) * (BC + 1) + tx + 16 * bb] = ds[a][bb];
                }
            __syncthreads();
            // dV[key][d] += sum_r P[r][key] dO[r][d];  dK[key][d] += sum_r dS[r][key] Q[r][d]. Key rows ty + 16 a.
            for (int r = 0; r < BR; r++) {
                float o[TD], qq[TD];
                for (int c = 0; c < TD; c++) { o[c] = sdO[r * LD + tx + 16 * c]; qq[c] = sQ[r * LD + tx + 16 * c]; }
                for (int a = 0; a < TN; a++) {
                    const float pv = sP[r * (BC + 1) + ty + 16 * a], dsv = sdS[r * (BC + 1) + ty + 16 * a];
                    for (int c = 0; c < TD; c++) { dV[a][c] += pv * o[c]; dK[a][c] += dsv * qq[c]; }
                }
            }
        }
    }
    for (int a = 0; a < TN; a++) {
        const i64 j = k0 + ty + 16 * a;
        if (j >= s.seqKv) continue;
        for (int c = 0; c < TD; c++) {
            const int d = tx + 16 * c;
            if (d >= HEAD_DIM) continue;
            dk[kvOff + j * kvStride + d] = dK[a][c] * s.scale;
            dv[kvOff + j * kvStride + d] = dV[a][c];
        }
    }
}

// dQ for one query tile of one head. Overwrites.
extern "C" __global__ void __launch_bounds__(256)
attention_backward_q(float* dq, const float* dOut, const float* q, const float* k, const float* v, const float* lse,
                     const float* delta, Shape s) {
    extern __shared__ float smem[];
    float* sQ = smem;                // [BR][LD]
    float* sdO = sQ + BR * LD;       // [BR][LD]
    float* sK = sdO + BR * LD;       // [BC][LD]
    float* sV = sK + BC * LD;        // [BC][LD]
    float* sdS = sV + BC * LD;       // [BR][BC + 1]
    float* sL = sdS + BR * (BC + 1); // [BR]
    float* sDelta = sL + BR;         // [BR]
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const GridPlace at = ranked_place();   // the last queries (the most keys under a causal mask) first
    const i64 i0 = ((i64) gridDim.x - 1 - at.rank) * BR;
    const int h = at.y, b = at.z;
    const int kh = h / (s.heads / s.kvHeads);
    const i64 qStride = (i64) s.heads * HEAD_DIM, kvStride = (i64) s.kvHeads * HEAD_DIM;
    const i64 qOff = ((i64) b * s.seqQ) * qStride + (i64) h * HEAD_DIM;
    const i64 kvOff = ((i64) b * s.kvRowsPerBatch) * kvStride + (i64) kh * HEAD_DIM;
    const i64 rowsHere = min((i64) BR, s.seqQ - i0);
    load_rows(sQ, q + qOff, i0, rowsHere, qStride, BR);
    load_rows(sdO, dOut + qOff, i0, rowsHere, qStride, BR);
    load_row_stats(sL, sDelta, lse, delta, b, i0, rowsHere, h, s, BR, 256);

    float dQ[TM][TD];
    for (int a = 0; a < TM; a++)
        for (int c = 0; c < TD; c++) dQ[a][c] = 0.f;
    const i64 pFirst = s.qStart + i0, pLast = s.qStart + i0 + rowsHere - 1;
    const i64 lo = s.window == 0 ? 0 : max((i64) 0, pFirst - s.window + 1);
    for (i64 k0 = lo; k0 <= pLast; k0 += BC) {
        const i64 keysHere = min((i64) BC, s.seqKv - k0);
        __syncthreads();
        load_rows(sK, k + kvOff, k0, keysHere, kvStride, BC);
        load_rows(sV, v + kvOff, k0, keysHere, kvStride, BC);
        __syncthreads();
        float pr[TM][TN], ds[TM][TN];
        backward_tile(pr, ds, sQ, sdO, sK, sV, sL, sDelta, i0, rowsHere, k0, s, tx, ty);
        for (int a = 0; a < TM; a++)
            for (int bb = 0; bb < TN; bb++) sdS[(ty + 16 * a) * (BC + 1) + tx + 16 * bb] = ds[a][bb];
        __syncthreads();
        for (int j = 0; j < BC; j++) {
            float kj[TD];
            for (int c = 0; c < TD; c++) kj[c] = sK[j * LD + tx + 16 * c];
            for (int a = 0; a < TM; a++) {
                const float dsv = sdS[(ty + 16 * a) * (BC + 1) + j];
                for (int c = 0; c < TD; c++) dQ[a][c] += dsv * kj[c];
            }
        }
    }
    for (int a = 0; a < TM; a++) {
        const int row = ty + 16 * a;
        if (row >= rowsHere) continue;
        for (int c = 0; c < TD; c++) {
            const int d = tx + 16 * c;
            if (d < HEAD_DIM) dq[qOff + (i0 + row) * qStride + d] = dQ[a][c] * s.scale;
        }
    }
}

// ---- one query per sequence (a decode step): the keys split across blocks (flash-decoding) ----

#define DECODE_WARPS 8
#define DT ((HEAD_DIM + 31) / 32)   // features per lane
#define DECODE_KEYS 4                // keys per warp and loop step

// Folds U scores (-inf for keys not visible) whose maximum with m is mNew (finite) into a running maximum m and sum
// l: their weights go to pr, and the factor the accumulated values must be scaled by is returned.
template <int U>
__device__ __forceinline__ float fold_scores(const float (&sc)[U], float mNew, float& m, float& l, float (&pr)[U]) {
    const float corr = m == -INFINITY ? 0.f : expf(m - mNew);
    l *= corr;
#pragma unroll
    for (int u = 0; u < U; u++) {
        pr[u] = sc[u] == -INFINITY ? 0.f : expf(sc[u] - mNew);
        l += pr[u];
    }
    m = mNew;
    return corr;
}

// A block's partial for its split: its `states` online softmaxes (maxima sM, sums sL, weighted values in rows of sAcc
// `stride` floats apart) folded into one and written to `slot` of the partials. Every thread of the block calls it
// once the states are in shared memory and synchronised; sW is scratch for `states` weights.
__device__ __forceinline__ void write_decode_partial(const float* sM, const float* sL, const float* sAcc, int stride,
                                                     float* sW, int states, i64 slot, float* partM, float* partL,
                                                     float* partAcc) {
    float mAll = -INFINITY;
    for (int i = 0; i < states; i++) mAll = fmaxf(mAll, sM[i]);
    for (int i = threadIdx.x; i < states; i += blockDim.x) sW[i] = sM[i] == -INFINITY ? 0.f : expf(sM[i] - mAll);
    __syncthreads();
    if (threadIdx.x == 0) {
        float lAll = 0.f;
        for (int i = 0; i < states; i++) lAll += sL[i] * sW[i];
        partM[slot] = mAll;
        partL[slot] = lAll;
    }
    for (int d = threadIdx.x; d < HEAD_DIM; d += blockDim.x) {
        float o = 0.f;
        for (int i = 0; i < states; i++) o += sAcc[i * stride + d] * sW[i];
        partAcc[slot * HEAD_DIM + d] = o;
    }
}

// Block (split, h, b) runs an online softmax over keys [from + split * chunk, ...) of query (b, h), DECODE_KEYS keys
// per warp at a time (lanes across the features), and writes its partial maximum, sum and weighted values. The query
// sits at s.qStart, or at *position when that is not null (a recorded step; chunk is then derived from it).
extern "C" __global__ void __launch_bounds__(DECODE_WARPS * 32)
attention_decode_partial(float* partM, float* partL, float* partAcc, const float* q, const kv_t* k, const kv_t* v,
                         Shape s, i64 chunk, int splits, const i64* position) {
    __shared__ float sM[DECODE_WARPS], sL[DECODE_WARPS], sW[DECODE_WARPS], sAcc[DECODE_WARPS][DT * 32];
    const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int kh = h / (s.heads / s.kvHeads);
    const i64 qStride = (i64) s.heads * HEAD_DIM, kvStride = (i64) s.kvHeads * HEAD_DIM;
    const float* qRow = q + ((i64) b * s.seqQ) * qStride + (i64) h * HEAD_DIM;
    const kv_t* kBase = k + ((i64) b * s.kvRowsPerBatch) * kvStride + (i64) kh * HEAD_DIM;
    const kv_t* vBase = v + ((i64) b * s.kvRowsPerBatch) * kvStride + (i64) kh * HEAD_DIM;
    // A recorded decode step reads its position when it runs, and splits the visible keys evenly itself.
    const i64 p = position != nullptr ? *position : s.qStart;
    const i64 first = s.window == 0 ? 0 : max((i64) 0, p - s.window + 1);
    if (position != nullptr) chunk = (p + 1 - first + splits - 1) / splits;
    const i64 from = first + (i64) split * chunk, to = min(p + 1, from + chunk);
    float qv[DT], acc[DT];
    for (int t = 0; t < DT; t++) {
        const int d = lane + 32 * t;
        qv[t] = d < HEAD_DIM ? qRow[d] : 0.f;
        acc[t] = 0.f;
    }
    float m = -INFINITY, l = 0.f;
    // DECODE_KEYS keys per warp and step: their loads are independent, so that many rows are in flight at once.
    for (i64 j = from + warp; j < to; j += DECODE_KEYS * DECODE_WARPS) {
        float sc[DECODE_KEYS];
        i64 row[DECODE_KEYS];
#pragma unroll
        for (int u = 0; u < DECODE_KEYS; u++) {
            const i64 ju = j + (i64) u * DECODE_WARPS;
            row[u] = ju < to ? ju : j;
            const kv_t* kr = kBase + row[u] * kvStride;
            float dot = 0.f;
#pragma unroll
            for (int t = 0; t < DT; t++) {
                const int d = lane + 32 * t;
                if (d < HEAD_DIM) dot += qv[t] * to_float(kr[d]);
            }
            sc[u] = dot;
        }
        float mNew = m;
#pragma unroll
        for (int u = 0; u < DECODE_KEYS; u++) {
            sc[u] = j + (i64) u * DECODE_WARPS < to ? warp_sum(sc[u]) * s.scale : -INFINITY;
            mNew = fmaxf(mNew, sc[u]);
        }
        float pr[DECODE_KEYS];
        const float corr = fold_scores(sc, mNew, m, l, pr);
#pragma unroll
        for (int t = 0; t < DT; t++) {
            const int d = lane + 32 * t;
            float a = acc[t] * corr;
            if (d < HEAD_DIM)
#pragma unroll
                for (int u = 0; u < DECODE_KEYS; u++) a += pr[u] * to_float(vBase[row[u] * kvStride + d]);
            acc[t] = a;
        }
    }
    if (lane == 0) { sM[warp] = m; sL[warp] = l; }
    for (int t = 0; t < DT; t++) sAcc[warp][lane + 32 * t] = acc[t];
    __syncthreads();
    write_decode_partial(sM, sL, &sAcc[0][0], DT * 32, sW, DECODE_WARPS, ((i64) b * s.heads + h) * splits + split,
                         partM, partL, partAcc);
}

// The same with 16-byte loads: a group of DG lanes reads one key row (DV elements per lane and load), so one warp
// instruction reads DKPI rows, and DU such instructions for keys and as many for values are issued before any of
// them is used. Each group keeps its own online softmax; the block combines its groups at the end. Needs HEAD_DIM a
// multiple of DV and 16-byte-aligned k and v (the backend checks, and uses the kernel above otherwise).
#ifdef KV_HALF
#define DV 8
typedef uint4 vraw_t;
__device__ __forceinline__ void widen(const vraw_t& r, float (&f)[DV]) {
    const unsigned w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        f[2 * i] = to_float((unsigned short) (w[i] & 0xffffu));
        f[2 * i + 1] = to_float((unsigned short) (w[i] >> 16));
    }
}
#else
#define DV 4
typedef float4 vraw_t;
__device__ __forceinline__ void widen(const vraw_t& r, float (&f)[DV]) {
    f[0] = r.x; f[1] = r.y; f[2] = r.z; f[3] = r.w;
}
#endif

#if HEAD_DIM % DV == 0
#define DVECS (HEAD_DIM / DV)        // 16-byte vectors per row
#define DG (DVECS > 16 ? 32 : DVECS > 8 ? 16 : DVECS > 4 ? 8 : DVECS > 2 ? 4 : DVECS > 1 ? 2 : 1)  // lanes per row
#define DNV ((DVECS + DG - 1) / DG)  // vectors per lane
#define DKPI (32 / DG)               // rows per warp instruction
#define DU 4                         // instructions in flight per operand
#define DSTATES (DECODE_WARPS * DKPI)

extern "C" __global__ void __launch_bounds__(DECODE_WARPS * 32)
attention_decode_partial_vec(float* partM, float* partL, float* partAcc, const float* q, const kv_t* k, const kv_t* v,
                             Shape s, i64 chunk, int splits, const i64* position) {
    __shared__ float sM[DSTATES], sL[DSTATES], sW[DSTATES];
    __shared__ float sAcc[DSTATES][HEAD_DIM];
    const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int grp = lane / DG, gl = lane % DG;
    const int kh = h / (s.heads / s.kvHeads);
    const i64 qStride = (i64) s.heads * HEAD_DIM, kvStride = (i64) s.kvHeads * HEAD_DIM;
    const float* qRow = q + ((i64) b * s.seqQ) * qStride + (i64) h * HEAD_DIM;
    const kv_t* kBase = k + ((i64) b * s.kvRowsPerBatch) * kvStride + (i64) kh * HEAD_DIM;
    const kv_t* vBase = v + ((i64) b * s.kvRowsPerBatch) * kvStride + (i64) kh * HEAD_DIM;
    // A recorded decode step reads its position when it runs, and splits the visible keys evenly itself.
    const i64 p = position != nullptr ? *position : s.qStart;
    const i64 first = s.window == 0 ? 0 : max((i64) 0, p - s.window + 1);
    if (position != nullptr) chunk = (p + 1 - first + splits - 1) / splits;
    const i64 from = first + (i64) split * chunk, to = min(p + 1, from + chunk);
    float qv[DNV][DV], acc[DNV][DV];
#pragma unroll
    for (int t = 0; t < DNV; t++) {
        const int vi = gl + DG * t;
#pragma unroll
        for (int e = 0; e < DV; e++) {
            qv[t][e] = vi < DVECS ? qRow[vi * DV + e] : 0.f;
            acc[t][e] = 0.f;
        }
    }
    float m = -INFINITY, l = 0.f;
    for (i64 j0 = from + (i64) warp * (DKPI * DU); j0 < to; j0 += (i64) DECODE_WARPS * DKPI * DU) {
        vraw_t kr[DU][DNV], vr[DU][DNV];
#pragma unroll
        for (int u = 0; u < DU; u++) {
            const i64 j = j0 + u * DKPI + grp;
            const i64 row = j < to ? j : j0;
#pragma unroll
            for (int t = 0; t < DNV; t++) {
                const int vi = gl + DG * t;
                if (vi < DVECS) {
                    kr[u][t] = *reinterpret_cast<const vraw_t*>(kBase + row * kvStride + vi * DV);
                    vr[u][t] = *reinterpret_cast<const vraw_t*>(vBase + row * kvStride + vi * DV);
                }
            }
        }
        float sc[DU];
        float mNew = m;
#pragma unroll
        for (int u = 0; u < DU; u++) {
            float dot = 0.f;
#pragma unroll
            for (int t = 0; t < DNV; t++) {
                if (gl + DG * t < DVECS) {
                    float kf[DV];
                    widen(kr[u][t], kf);
#pragma unroll
                    for (int e = 0; e < DV; e++) dot += qv[t][e] * kf[e];
                }
            }
#pragma unroll
            for (int o = DG / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
            sc[u] = j0 + u * DKPI + grp < to ? dot * s.scale : -INFINITY;
            mNew = fmaxf(mNew, sc[u]);
        }
        if (mNew == -INFINITY) continue;   // none of this group's rows is visible in this step
        float pr[DU];
        const float corr = fold_scores(sc, mNew, m, l, pr);
#pragma unroll
        for (int t = 0; t < DNV; t++) {
#pragma unroll
            for (int e = 0; e < DV; e++) acc[t][e] *= corr;
            if (gl + DG * t < DVECS) {
#pragma unroll
                for (int u = 0; u < DU; u++) {
                    float vf[DV];
                    widen(vr[u][t], vf);
#pragma unroll
                    for (int e = 0; e < DV; e++) acc[t][e] += pr[u] * vf[e];
                }
            }
        }
    }
    const int state = warp * DKPI + grp;
    if (gl == 0) { sM[state] = m; sL[state] = l; }
#pragma unroll
    for (int t = 0; t < DNV; t++) {
        const int vi = gl + DG * t;
        if (vi < DVECS)
#pragma unroll
            for (int e = 0; e < DV; e++) sAcc[state][vi * DV + e] = acc[t][e];
    }
    __syncthreads();
    write_decode_partial(sM, sL, &sAcc[0][0], HEAD_DIM, sW, DSTATES, ((i64) b * s.heads + h) * splits + split,
                         partM, partL, partAcc);
}
#endif

// Block (h, b): the splits' partials combined in order into the output row (and its log-sum-exp).
extern "C" __global__ void attention_decode_combine(float* out, float* lse, const float* partM, const float* partL,
                                                    const float* partAcc, Shape s, int splits) {
    const int h = blockIdx.x, b = blockIdx.y;
    const i64 base = ((i64) b * s.heads + h) * splits;
    float mAll = -INFINITY;
    for (int i = 0; i < splits; i++) mAll = fmaxf(mAll, partM[base + i]);
    float lAll = 0.f;
    for (int i = 0; i < splits; i++) lAll += partM[base + i] == -INFINITY ? 0.f : partL[base + i] * expf(partM[base + i] - mAll);
    const i64 row = (i64) b * s.seqQ;
    for (int d = threadIdx.x; d < HEAD_DIM; d += blockDim.x) {
        float acc = 0.f;
        for (int i = 0; i < splits; i++)
            if (partM[base + i] != -INFINITY) acc += partAcc[(base + i) * HEAD_DIM + d] * expf(partM[base + i] - mAll);
        out[row * s.heads * HEAD_DIM + (i64) h * HEAD_DIM + d] = acc / lAll;
    }
    if (lse != 0 && threadIdx.x == 0) lse[row * s.heads + h] = mAll + logf(lAll);
}
