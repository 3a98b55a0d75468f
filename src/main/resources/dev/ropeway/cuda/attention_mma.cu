// Causal grouped-query attention on the tensor cores, FlashAttention-2 style (tiles of keys and values streamed
// through shared memory, each row's running maximum and sum in registers): the forward with float16 inputs
// (mma.sync m16n8k16), the backward with TF32 inputs (m16n8k8), float32 accumulators throughout. Used when products
// are allowed to round their inputs (TF32 or BF16 matmul precision); the exact float32 kernels are in attention.cu.
//
// Compiled once per head size with -DHEAD_DIM=<d> (a multiple of 8, at most 128; the forward needs a multiple of 16),
// and with -DKV_HALF for keys and values read from a float16 KV cache. Same layouts as attention.cu.

#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif

#define MR 64                     // query rows per block
#define MC 64                     // keys per tile
#define LQ (HEAD_DIM + 4)         // row stride of sQ and sK: fragment reads hit 32 distinct banks
#define LV (HEAD_DIM + 8)         // row stride of sV
#define LP (MC + 4)               // row stride of sP
#define NT (MC / 8)               // score tiles (8 keys each) per warp
#define OT (HEAD_DIM / 8)         // output tiles (8 features each) per warp

__device__ __forceinline__ unsigned tf32(float x) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

// d += a (16x8, row-major) * b (8x8, column-major), TF32 in, float32 accumulate.
__device__ __forceinline__ void mma(float (&d)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0,
                                    unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Loads `count` rows of one head into dst[count][ld], rounded to TF32 once here, not at every fragment read.
__device__ __forceinline__ void load_tile(float* dst, int ld, const float* src, i64 firstRow, i64 valid, i64 rowStride,
                                          int count) {
    for (int e = threadIdx.x; e < count * HEAD_DIM; e += 128) {
        int r = e / HEAD_DIM, d = e % HEAD_DIM;
        dst[r * ld + d] = r < valid ? __uint_as_float(tf32(src[(firstRow + r) * rowStride + d])) : 0.f;
    }
}

__device__ __forceinline__ unsigned bits(float x) {
    return __float_as_uint(x);
}

// TF32 fragment products of the backward kernels.

// acc (16 x 64) = rows ra.. of a (16 x HEAD_DIM) times the transpose of 64 rows of b: dot products of rows.
__device__ __forceinline__ void rows_dot_rows(float (&acc)[NT][4], const float* a, int ra, const float* b, int g, int t) {
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int c = 0; c < 4; c++) acc[n][c] = 0.f;
#pragma unroll
    for (int kk = 0; kk < HEAD_DIM; kk += 8) {
        const unsigned a0 = bits(a[(ra + g) * LQ + kk + t]), a1 = bits(a[(ra + g + 8) * LQ + kk + t]);
        const unsigned a2 = bits(a[(ra + g) * LQ + kk + t + 4]), a3 = bits(a[(ra + g + 8) * LQ + kk + t + 4]);
#pragma unroll
        for (int n = 0; n < NT; n++) {
            const unsigned b0 = bits(b[(n * 8 + g) * LQ + kk + t]), b1 = bits(b[(n * 8 + g) * LQ + kk + t + 4]);
            mma(acc[n], a0, a1, a2, a3, b0, b1);
        }
    }
}

// acc (16 x HEAD_DIM) += rows ra.. of p (16 x 64, stride LP) times 64 rows of b (64 x HEAD_DIM, stride ldb).
__device__ __forceinline__ void rows_times_rows(float (&acc)[OT][4], const float* p, int ra, const float* b, int ldb,
                                                int g, int t) {
#pragma unroll
    for (int kk = 0; kk < MC; kk += 8) {
        const unsigned a0 = bits(p[(ra + g) * LP + kk + t]), a1 = bits(p[(ra + g + 8) * LP + kk + t]);
        const unsigned a2 = bits(p[(ra + g) * LP + kk + t + 4]), a3 = bits(p[(ra + g + 8) * LP + kk + t + 4]);
#pragma unroll
        for (int n = 0; n < OT; n++) {
            const unsigned b0 = bits(b[(kk + t) * ldb + n * 8 + g]), b1 = bits(b[(kk + t + 4) * ldb + n * 8 + g]);
            mma(acc[n], a0, a1, a2, a3, b0, b1);
        }
    }
}

// ---- the forward with float16 inputs (mma.sync m16n8k16): the same 11-bit significands as TF32, twice the rate ----
//
// Queries, keys and values are rounded to float16 as they enter shared memory (a float16 KV cache is copied as it
// is); each warp keeps its 16 query rows as A fragments in registers for the whole key loop; the scores' accumulator
// fragments are exactly the A fragments of P for the P V product (two 8-key tiles make one 16-key step), so P never
// goes through shared memory; the mask is applied only on tiles that the diagonal, the window or the sequence end
// crosses; the softmax runs in base 2. Needs HEAD_DIM a multiple of 16 and q, k, v aligned for pair loads.

#define LH (HEAD_DIM + 8)         // row stride (halves) of sQh, sKh, sVh: fragment reads hit distinct banks
#define FR 128                    // query rows per block (8 warps of 16): each key tile serves twice the rows
#define FT 256                    // threads per block

__device__ __forceinline__ unsigned half_pair(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ unsigned pair_of(const float* src) {
    const float2 v = *reinterpret_cast<const float2*>(src);
    return half_pair(v.x, v.y);
}

__device__ __forceinline__ unsigned pair_of(const unsigned short* src) {
    return *reinterpret_cast<const unsigned*>(src);
}

// d += a (16x16, row-major) * b (16x8, column-major), float16 in, float32 accumulate.
__device__ __forceinline__ void mma16(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// `count` rows of one head into dst[count][LH] as float16 pairs (rows beyond `valid` as zeros), by FT threads.
template <typename T>
__device__ __forceinline__ void load_tile_half(unsigned short* dst, const T* src, i64 firstRow, i64 valid, i64 rowStride,
                                               int count) {
    for (int e = threadIdx.x; e < count * (HEAD_DIM / 2); e += FT) {
        const int r = e / (HEAD_DIM / 2), d = 2 * (e % (HEAD_DIM / 2));
        *reinterpret_cast<unsigned*>(dst + r * LH + d) = r < valid ? pair_of(src + (firstRow + r) * rowStride + d) : 0u;
    }
}

__device__ __forceinline__ unsigned smem_pair(const unsigned short* p) {
    return *reinterpret_cast<const unsigned*>(p);
}

__device__ __forceinline__ unsigned shared_address(const void* p) {
    unsigned long long a;
    asm("cvta.to.shared.u64 %0, %1;" : "=l"(a) : "l"(p));
    return (unsigned) a;
}

// Two 8x8 float16 matrices from shared memory: lane i (< 16) names row i % 8 of matrix i / 8; each lane gets the
// B-fragment pair of row g, columns 2t and 2t + 1, of each.
__device__ __forceinline__ void ldmatrix_x2(unsigned& r0, unsigned& r1, const unsigned short* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];" : "=r"(r0), "=r"(r1) : "r"(shared_address(row)));
}

// Four 8x8 float16 matrices, transposed: lane i names row i % 8 of matrix i / 8; each lane gets rows 2t and 2t + 1
// of column g of each (the B fragment of a row-major k x n tile).
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const unsigned short* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(shared_address(row)));
}

// Asynchronous 16-byte copies global -> shared (cp.async, sm_80+): src_size 0 writes zeros instead of reading.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(shared_address(dst)), "l"(src), "r"(valid ? 16 : 0));
}

__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;");
}

__device__ __forceinline__ void cp_async_wait_all() {
    asm volatile("cp.async.wait_group 0;" ::: "memory");
}

#if HEAD_DIM % 16 == 0
#define KS16 (HEAD_DIM / 16)
// Key and value tiles are staged: the next tile's raw rows are copied asynchronously into shared memory while the
// current one is multiplied, then rounded to float16 in place of the last. Where two raw tiles would take too much
// shared memory (float32 rows of more than 64 features) the tiles are loaded synchronously instead.
#define STAGED (HEAD_DIM * KV_BYTES <= 256)
#define CPR (HEAD_DIM * KV_BYTES / 16)      // 16-byte chunks per raw row

// Starts copying `count` rows (zeros beyond `valid`) of one head into raw[count][HEAD_DIM], by FT threads.
__device__ __forceinline__ void fetch_tile(kv_t* raw, const kv_t* src, i64 firstRow, i64 valid, i64 rowStride, int count) {
    for (int e = threadIdx.x; e < count * CPR; e += FT) {
        const int r = e / CPR, c = e % CPR;
        const int off = c * (16 / KV_BYTES);
        cp_async16(raw + r * HEAD_DIM + off, src + (firstRow + (r < valid ? r : 0)) * rowStride + off, r < valid);
    }
}

// raw[count][HEAD_DIM] (shared) as float16 pairs into dst[count][LH].
__device__ __forceinline__ void round_tile(unsigned short* dst, const kv_t* raw, int count) {
    for (int e = threadIdx.x; e < count * (HEAD_DIM / 2); e += FT) {
        const int r = e / (HEAD_DIM / 2), d = 2 * (e % (HEAD_DIM / 2));
        *reinterpret_cast<unsigned*>(dst + r * LH + d) = pair_of(raw + r * HEAD_DIM + d);
    }
}

extern "C" __global__ void __launch_bounds__(FT, HEAD_DIM > 64 ? 1 : 2)
attention_forward_f16(float* out, float* lse, const float* q, const kv_t* k, const kv_t* v, Shape s) {
    extern __shared__ float smem[];
    unsigned short* sQh = reinterpret_cast<unsigned short*>(smem);   // [FR][LH]
    unsigned short* sKh = sQh + FR * LH;                             // [MC][LH]
    unsigned short* sVh = sKh + MC * LH;                             // [MC][LH]
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    // The last query rows (the most keys under a causal mask) first, so that the longest blocks do not end the grid.
    const i64 i0 = (i64) (gridDim.x - 1 - blockIdx.x) * FR;
    const int h = blockIdx.y, b = blockIdx.z;
    const int kh = h / (s.heads / s.kvHeads);
    const i64 qStride = (i64) s.heads * HEAD_DIM, kvStride = (i64) s.kvHeads * HEAD_DIM;
    const float* qBase = q + ((i64) b * s.seqQ) * qStride + (i64) h * HEAD_DIM;
    const kv_t* kBase = k + ((i64) b * s.kvRowsPerBatch) * kvStride + (i64) kh * HEAD_DIM;
    const kv_t* vBase = v + ((i64) b * s.kvRowsPerBatch) * kvStride + (i64) kh * HEAD_DIM;
    const i64 rowsHere = min((i64) FR, s.seqQ - i0);
    const int r0 = warp * 16;
    const float scale2 = s.scale * 1.4426950408889634f;   // scores in base 2

    load_tile_half(sQh, qBase, i0, rowsHere, qStride, FR);
    __syncthreads();
    unsigned qa[KS16][4];
#pragma unroll
    for (int ks = 0; ks < KS16; ks++) {
        const unsigned short* row = sQh + (r0 + g) * LH + ks * 16 + 2 * t;
        qa[ks][0] = smem_pair(row);
        qa[ks][1] = smem_pair(row + 8 * LH);
        qa[ks][2] = smem_pair(row + 8);
        qa[ks][3] = smem_pair(row + 8 * LH + 8);
    }

    float o[OT][4];
#pragma unroll
    for (int n = 0; n < OT; n++)
#pragma unroll
        for (int c = 0; c < 4; c++) o[n][c] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    const i64 pFirst = s.qStart + i0, pLast = s.qStart + i0 + rowsHere - 1;
    const i64 lo = s.window == 0 ? 0 : max((i64) 0, pFirst - s.window + 1);
#if STAGED
    kv_t* rawK = reinterpret_cast<kv_t*>(sVh + MC * LH);             // [MC][HEAD_DIM]
    kv_t* rawV = rawK + MC * HEAD_DIM;                                // [MC][HEAD_DIM]
    if (lo <= pLast) {
        fetch_tile(rawK, kBase, lo, min((i64) MC, s.seqKv - lo), kvStride, MC);
        fetch_tile(rawV, vBase, lo, min((i64) MC, s.seqKv - lo), kvStride, MC);
        cp_async_commit();
    }
#endif
    for (i64 k0 = lo; k0 <= pLast; k0 += MC) {
#if STAGED
        cp_async_wait_all();
        __syncthreads();
        round_tile(sKh, rawK, MC);
        round_tile(sVh, rawV, MC);
        __syncthreads();
        if (k0 + MC <= pLast) {
            fetch_tile(rawK, kBase, k0 + MC, min((i64) MC, s.seqKv - k0 - MC), kvStride, MC);
            fetch_tile(rawV, vBase, k0 + MC, min((i64) MC, s.seqKv - k0 - MC), kvStride, MC);
            cp_async_commit();
        }
#else
        const i64 keysHere = min((i64) MC, s.seqKv - k0);
        __syncthreads();
        load_tile_half(sKh, kBase, k0, keysHere, kvStride, MC);
        load_tile_half(sVh, vBase, k0, keysHere, kvStride, MC);
        __syncthreads();
#endif
        float sc[NT][4];
#pragma unroll
        for (int n = 0; n < NT; n++) {
#pragma unroll
            for (int c = 0; c < 4; c++) sc[n][c] = 0.f;
            const unsigned short* key = sKh + (n * 8 + (lane & 7)) * LH + ((lane >> 3) & 1) * 8;
#pragma unroll
            for (int ks = 0; ks < KS16; ks++) {
                unsigned b0, b1;
                ldmatrix_x2(b0, b1, key + ks * 16);
                mma16(sc[n], qa[ks], b0, b1);
            }
        }
        // Every key of the tile visible from every row of the block: no mask to apply.
        const bool whole = k0 + MC - 1 <= pFirst && k0 + MC <= s.seqKv && (s.window == 0 || k0 > pLast - s.window);
        // Fragment element c of tile n is row g + 8 (c / 2), key n * 8 + 2 t + (c % 2).
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            const int row = r0 + g + 8 * hh;
            const i64 p = s.qStart + i0 + row;
            const bool rowOk = row < rowsHere;
            float mt = -INFINITY;
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int c = 0; c < 2; c++) {
                    float x = sc[n][2 * hh + c] * scale2;
                    if (!whole) {
                        const i64 j = k0 + n * 8 + 2 * t + c;
                        if (!(rowOk && j < s.seqKv && visible(p, j, s.window))) x = -INFINITY;
                    }
                    sc[n][2 * hh + c] = x;
                    mt = fmaxf(mt, x);
                }
            mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
            mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 2));
            const float mNew = fmaxf(m[hh], mt);
            float rs = 0.f;
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int c = 0; c < 2; c++) {
                    const float x = sc[n][2 * hh + c];
                    const float pr = mNew == -INFINITY ? 0.f : exp2f(x - mNew);
                    sc[n][2 * hh + c] = pr;
                    rs += pr;
                }
            const float corr = mNew == -INFINITY ? 1.f : (m[hh] == -INFINITY ? 0.f : exp2f(m[hh] - mNew));
            rs += __shfl_xor_sync(0xffffffffu, rs, 1);
            rs += __shfl_xor_sync(0xffffffffu, rs, 2);
            l[hh] = l[hh] * corr + rs;
            m[hh] = mNew;
#pragma unroll
            for (int n = 0; n < OT; n++) {
                o[n][2 * hh] *= corr;
                o[n][2 * hh + 1] *= corr;
            }
        }
        // P (16 x 64) times V (64 x HEAD_DIM), 16 keys per step: the score tiles 2j and 2j + 1 are P's A fragment.
#pragma unroll
        for (int j = 0; j < NT / 2; j++) {
            const unsigned pa[4] = {half_pair(sc[2 * j][0], sc[2 * j][1]), half_pair(sc[2 * j][2], sc[2 * j][3]),
                                    half_pair(sc[2 * j + 1][0], sc[2 * j + 1][1]), half_pair(sc[2 * j + 1][2], sc[2 * j + 1][3])};
            // Lane i names row i % 8 of matrix i / 8: matrices (keys 16j.., 16j+8..) x (features 8n.., 8(n+1)..).
            const unsigned short* v0 = sVh + (16 * j + ((lane >> 3) & 1) * 8 + (lane & 7)) * LH + (lane >> 4) * 8;
#pragma unroll
            for (int n = 0; n < OT; n += 2) {
                unsigned bv[4];
                ldmatrix_x4_trans(bv, v0 + n * 8);
                mma16(o[n], pa, bv[0], bv[1]);
                mma16(o[n + 1], pa, bv[2], bv[3]);
            }
        }
    }
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        const int row = r0 + g + 8 * hh;
        if (row >= rowsHere) continue;
        const i64 r = (i64) b * s.seqQ + i0 + row;
        const float inv = 1.f / l[hh];
        float* dst = out + r * qStride + (i64) h * HEAD_DIM;
#pragma unroll
        for (int n = 0; n < OT; n++)
            *reinterpret_cast<float2*>(dst + n * 8 + 2 * t) = make_float2(o[n][2 * hh] * inv, o[n][2 * hh + 1] * inv);
        if (lse != 0 && t == 0) lse[r * s.heads + h] = m[hh] * 0.6931471805599453f + logf(l[hh]);
    }
}
#endif

// ---- backward on the tensor cores (the forward's tiles; the softmax recomputed from the saved log-sum-exp) ----

// dK and dV of 64 keys of one key/value head (16 per warp), summed over the query heads that read them. Overwrites.
extern "C" __global__ void __launch_bounds__(128)
attention_backward_kv_mma(float* dk, float* dv, const float* dOut, const float* q, const float* k, const float* v,
                          const float* lse, const float* delta, Shape s) {
    extern __shared__ float smem[];
    float* sK = smem;             // [MC][LQ]
    float* sV = sK + MC * LQ;     // [MC][LQ]
    float* sQ = sV + MC * LQ;     // [MR][LQ]
    float* sdO = sQ + MR * LQ;    // [MR][LQ]
    float* sT = sdO + MR * LQ;    // [MC][LP]: P^T, then dS^T, of the warp's keys
    float* sL = sT + MC * LP;     // [MR]
    float* sD = sL + MR;          // [MR]
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    const i64 k0 = (i64) blockIdx.x * MC;
    const int kh = blockIdx.y, b = blockIdx.z;
    const int group = s.heads / s.kvHeads;
    const i64 qStride = (i64) s.heads * HEAD_DIM, kvStride = (i64) s.kvHeads * HEAD_DIM;
    const i64 kvOff = ((i64) b * s.kvRowsPerBatch) * kvStride + (i64) kh * HEAD_DIM;
    const i64 keysHere = min((i64) MC, s.seqKv - k0);
    const int kw = warp * 16;
    load_tile(sK, LQ, k + kvOff, k0, keysHere, kvStride, MC);
    load_tile(sV, LQ, v + kvOff, k0, keysHere, kvStride, MC);

    float dK[OT][4], dV[OT][4];
#pragma unroll
    for (int n = 0; n < OT; n++)
#pragma unroll
        for (int c = 0; c < 4; c++) { dK[n][c] = 0.f; dV[n][c] = 0.f; }
    const i64 kLast = k0 + keysHere - 1;
    const i64 iLo = max((i64) 0, k0 - s.qStart);
    i64 iHi = s.seqQ - 1;
    if (s.window > 0) iHi = min(iHi, kLast + s.window - 1 - s.qStart);
    for (int gi = 0; gi < group; gi++) {
        const int h = kh * group + gi;
        const i64 qOff = ((i64) b * s.seqQ) * qStride + (i64) h * HEAD_DIM;
        for (i64 i0 = iLo; i0 <= iHi; i0 += MR) {
            const i64 rowsHere = min((i64) MR, s.seqQ - i0);
            __syncthreads();
            load_tile(sQ, LQ, q + qOff, i0, rowsHere, qStride, MR);
            load_tile(sdO, LQ, dOut + qOff, i0, rowsHere, qStride, MR);
            load_row_stats(sL, sD, lse, delta, b, i0, rowsHere, h, s, MR, 128);
            __syncthreads();
            float st[NT][4], dpt[NT][4];
            rows_dot_rows(st, sK, kw, sQ, g, t);     // S^T: this warp's keys x the tile's queries
            rows_dot_rows(dpt, sV, kw, sdO, g, t);   // dP^T
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                const i64 key = k0 + kw + g + 8 * hh;
#pragma unroll
                for (int n = 0; n < NT; n++)
#pragma unroll
                    for (int c = 0; c < 2; c++) {
                        const int qi = n * 8 + 2 * t + c;
                        const i64 p = s.qStart + i0 + qi;
                        const bool ok = qi < rowsHere && key < s.seqKv && visible(p, key, s.window);
                        const float pr = ok ? expf(st[n][2 * hh + c] * s.scale - sL[qi]) : 0.f;
                        dpt[n][2 * hh + c] = ok ? pr * (dpt[n][2 * hh + c] - sD[qi]) : 0.f;
                        sT[(kw + g + 8 * hh) * LP + qi] = __uint_as_float(tf32(pr));
                    }
            }
            __syncwarp();
            rows_times_rows(dV, sT, kw, sdO, LQ, g, t);  // dV += P^T dO
            __syncwarp();
#pragma unroll
            for (int hh = 0; hh < 2; hh++)
#pragma unroll
                for (int n = 0; n < NT; n++)
#pragma unroll
                    for (int c = 0; c < 2; c++)
                        sT[(kw + g + 8 * hh) * LP + n * 8 + 2 * t + c] = __uint_as_float(tf32(dpt[n][2 * hh + c]));
            __syncwarp();
            rows_times_rows(dK, sT, kw, sQ, LQ, g, t);   // dK += dS^T Q
        }
    }
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        const i64 j = k0 + kw + g + 8 * hh;
        if (j >= s.seqKv) continue;
        float* dkRow = dk + kvOff + j * kvStride;
        float* dvRow = dv + kvOff + j * kvStride;
#pragma unroll
        for (int n = 0; n < OT; n++)
#pragma unroll
            for (int c = 0; c < 2; c++) {
                dkRow[n * 8 + 2 * t + c] = dK[n][2 * hh + c] * s.scale;
                dvRow[n * 8 + 2 * t + c] = dV[n][2 * hh + c];
            }
    }
}

// dQ of 64 queries of one head (16 per warp). Overwrites.
extern "C" __global__ void __launch_bounds__(128)
attention_backward_q_mma(float* dq, const float* dOut, const float* q, const float* k, const float* v, const float* lse,
                         const float* delta, Shape s) {
    extern __shared__ float smem[];
    float* sQ = smem;             // [MR][LQ]
    float* sdO = sQ + MR * LQ;    // [MR][LQ]
    float* sK = sdO + MR * LQ;    // [MC][LQ]
    float* sV = sK + MC * LQ;     // [MC][LQ]
    float* sT = sV + MC * LQ;     // [MR][LP]: dS of the warp's queries
    float* sL = sT + MR * LP;     // [MR]
    float* sD = sL + MR;          // [MR]
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    const i64 i0 = (i64) blockIdx.x * MR;
    const int h = blockIdx.y, b = blockIdx.z;
    const int kh = h / (s.heads / s.kvHeads);
    const i64 qStride = (i64) s.heads * HEAD_DIM, kvStride = (i64) s.kvHeads * HEAD_DIM;
    const i64 qOff = ((i64) b * s.seqQ) * qStride + (i64) h * HEAD_DIM;
    const i64 kvOff = ((i64) b * s.kvRowsPerBatch) * kvStride + (i64) kh * HEAD_DIM;
    const i64 rowsHere = min((i64) MR, s.seqQ - i0);
    const int qw = warp * 16;
    load_tile(sQ, LQ, q + qOff, i0, rowsHere, qStride, MR);
    load_tile(sdO, LQ, dOut + qOff, i0, rowsHere, qStride, MR);
    load_row_stats(sL, sD, lse, delta, b, i0, rowsHere, h, s, MR, 128);

    float dQ[OT][4];
#pragma unroll
    for (int n = 0; n < OT; n++)
#pragma unroll
        for (int c = 0; c < 4; c++) dQ[n][c] = 0.f;
    const i64 pFirst = s.qStart + i0, pLast = s.qStart + i0 + rowsHere - 1;
    const i64 lo = s.window == 0 ? 0 : max((i64) 0, pFirst - s.window + 1);
    for (i64 k0 = lo; k0 <= pLast; k0 += MC) {
        const i64 keysHere = min((i64) MC, s.seqKv - k0);
        __syncthreads();
        load_tile(sK, LQ, k + kvOff, k0, keysHere, kvStride, MC);
        load_tile(sV, LQ, v + kvOff, k0, keysHere, kvStride, MC);
        __syncthreads();
        float sc[NT][4], dp[NT][4];
        rows_dot_rows(sc, sQ, qw, sK, g, t);
        rows_dot_rows(dp, sdO, qw, sV, g, t);
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            const int qi = qw + g + 8 * hh;
            const i64 p = s.qStart + i0 + qi;
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int c = 0; c < 2; c++) {
                    const i64 key = k0 + n * 8 + 2 * t + c;
                    const bool ok = qi < rowsHere && key < s.seqKv && visible(p, key, s.window);
                    const float pr = ok ? expf(sc[n][2 * hh + c] * s.scale - sL[qi]) : 0.f;
                    const float ds = ok ? pr * (dp[n][2 * hh + c] - sD[qi]) : 0.f;
                    sT[qi * LP + n * 8 + 2 * t + c] = __uint_as_float(tf32(ds));
                }
        }
        __syncwarp();
        rows_times_rows(dQ, sT, qw, sK, LQ, g, t);       // dQ += dS K
        __syncwarp();
    }
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        const int qi = qw + g + 8 * hh;
        if (qi >= rowsHere) continue;
        float* row = dq + qOff + (i0 + qi) * qStride;
#pragma unroll
        for (int n = 0; n < OT; n++)
#pragma unroll
            for (int c = 0; c < 2; c++) row[n * 8 + 2 * t + c] = dQ[n][2 * hh + c] * s.scale;
    }
}
