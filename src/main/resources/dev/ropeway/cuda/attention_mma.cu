// Causal grouped-query attention on the tensor cores, FlashAttention-2 style (tiles of keys and values streamed
// through shared memory, each row's running maximum and sum in registers), forward and backward, with float16 inputs
// (mma.sync m16n8k16: TF32's 11-bit significands at twice TF32's rate) and float32 accumulators. Used when products
// are allowed to round their inputs (TF32 or BF16 matmul precision); the exact float32 kernels are in attention.cu.
//
// Compiled once per head size with -DHEAD_DIM=<d> (a multiple of 16, at most 128), with -DKV_HALF for keys and
// values read as float16 (a KV cache, or copies rounded once per call), and with -DQ_HALF as well for queries read as
// float16 (training keeps its rotated queries, keys and values that way for the backward), and with -DOUT_BF16 for an
// output rounded to bfloat16 (mixed-precision training: the output projection's operand). Same layouts as attention.cu.

#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifdef Q_HALF
#ifndef KV_HALF
#error "Q_HALF needs KV_HALF"
#endif
typedef unsigned short q_t;
#else
typedef float q_t;
#endif
#ifdef OUT_BF16
typedef unsigned short out_t;
#else
typedef float out_t;
#endif

#define MC 64                     // keys per tile
#define NT (MC / 8)               // score tiles (8 keys each) per warp
#define OT (HEAD_DIM / 8)         // output tiles (8 features each) per warp

// ---- the forward with float16 inputs (mma.sync m16n8k16): the same 11-bit significands as TF32, twice the rate ----
//
// Queries, keys and values are rounded to float16 as they enter shared memory (float16 keys and values are copied as
// they are, by cp.async straight into a double buffer); each warp keeps its query rows as A fragments in registers for
// the whole key loop, two 16-row tiles of them where registers allow (see RT), so that every key or value fragment
// read from shared memory by ldmatrix feeds two products: at one tile per warp the kernel waits on shared memory
// rather than on the tensor cores. The scores' accumulator fragments are exactly the A fragments of P for the
// P V product (two 8-key tiles make one 16-key step), so P never goes through shared memory; the mask is applied only
// on tiles that the diagonal, the window or the sequence end crosses for the warp's rows, and a warp skips the tiles
// none of its rows sees; the softmax runs in base 2. Needs HEAD_DIM a multiple of 16 and q, k, v aligned for pair
// loads (16-byte loads for float16 keys and values).

#define LH (HEAD_DIM + 8)         // row stride (halves) of sQh, sKh, sVh: fragment reads hit distinct banks
// Query rows per block: each key tile serves 128 rows; 64 (-DFR=64) where the GPU allows less shared memory per block
// (99 KB on sm_86 and sm_89: heads of 128 features then do not fit at 128 rows).
#ifndef FR
#define FR 128
#endif
// 16-row tiles per warp: two with float16 keys and values and heads of up to 64 features. Float32 keys and values are
// read directly only when one block of queries reads them (the backend rounds them to float16 first otherwise): a
// small grid, better served by more warps of one tile each.
#if defined(KV_HALF) && HEAD_DIM <= 64
#define RT 2
#else
#define RT 1
#endif
#define WR (16 * RT)              // query rows per warp
#define FT (FR / WR * 32)         // threads per block: 4 warps of 32 rows, or 8 warps of 16 (the backend mirrors this)
#ifdef KV_HALF
#define KV_STAGES 2               // key/value tiles in shared memory: the current one and the next
#else
#define KV_STAGES 1
#endif

__device__ __forceinline__ unsigned half_pair(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ unsigned pair_of(const float* src) {
    const float2 v = *reinterpret_cast<const float2*>(src);
    return half_pair(v.x, v.y);
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

// Four 8x8 float16 matrices from shared memory, not transposed: with `row` at row lane % 16, column 8 (lane / 16) of a
// 16 x 16 row-major tile, they are that tile's A fragment; with `row` at row (lane % 8) + 8 (lane / 16), column
// 8 ((lane / 8) % 2) of a 16 x 16 tile of rows n (n x k, row-major), the B fragments of its two 8-row halves.
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const unsigned short* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(shared_address(row)));
}

// Starts copying `count` float16 rows (zeros beyond `valid`) of one head into dst[count][LH], by THREADS threads.
template <int THREADS>
__device__ __forceinline__ void fetch_half(unsigned short* dst, const unsigned short* src, i64 firstRow, i64 valid,
                                           i64 rowStride, int count) {
    for (int e = threadIdx.x; e < count * (HEAD_DIM / 8); e += THREADS) {
        const int r = e / (HEAD_DIM / 8), c = 8 * (e % (HEAD_DIM / 8));
        cp_async16(dst + r * LH + c, src + (firstRow + (r < valid ? r : 0)) * rowStride + c, r < valid);
    }
}

#if HEAD_DIM % 16 == 0
#define KS16 (HEAD_DIM / 16)
#ifndef KV_HALF
// Float32 key and value tiles are staged: the next tile's raw rows are copied asynchronously into shared memory while
// the current one is multiplied, then rounded to float16 in place of the last. Where two raw tiles would take too much
// shared memory (rows of more than 64 features) the tiles are loaded synchronously instead. (Float16 tiles go straight
// into a double buffer by fetch_half.)
#define STAGED (HEAD_DIM * 4 <= 256)
#define CPR (HEAD_DIM / 4)        // 16-byte chunks per raw row

// Starts copying `count` rows (zeros beyond `valid`) of one head into raw[count][HEAD_DIM], by FT threads.
__device__ __forceinline__ void fetch_tile(float* raw, const float* src, i64 firstRow, i64 valid, i64 rowStride, int count) {
    for (int e = threadIdx.x; e < count * CPR; e += FT) {
        const int r = e / CPR, off = 4 * (e % CPR);
        cp_async16(raw + r * HEAD_DIM + off, src + (firstRow + (r < valid ? r : 0)) * rowStride + off, r < valid);
    }
}

// raw[count][HEAD_DIM] (shared) as float16 pairs into dst[count][LH].
__device__ __forceinline__ void round_tile(unsigned short* dst, const float* raw, int count) {
    for (int e = threadIdx.x; e < count * (HEAD_DIM / 2); e += FT) {
        const int r = e / (HEAD_DIM / 2), d = 2 * (e % (HEAD_DIM / 2));
        *reinterpret_cast<unsigned*>(dst + r * LH + d) = pair_of(raw + r * HEAD_DIM + d);
    }
}
#endif

extern "C" __global__ void __launch_bounds__(FT, RT == 2 ? 2 : 1)
attention_forward_f16(out_t* out, float* lse, const q_t* q, const kv_t* k, const kv_t* v, Shape s) {
    extern __shared__ float smem[];
    unsigned short* sQh = reinterpret_cast<unsigned short*>(smem);   // [FR][LH]
    unsigned short* sKh = sQh + FR * LH;                             // [KV_STAGES][MC][LH]
    unsigned short* sVh = sKh + KV_STAGES * MC * LH;                 // [KV_STAGES][MC][LH]
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    // The last query rows (the most keys under a causal mask) first, so that the longest blocks do not end the grid.
    const GridPlace at = ranked_place();
    const i64 i0 = ((i64) gridDim.x - 1 - at.rank) * FR;
    const int h = at.y, b = at.z;
    const int kh = h / (s.heads / s.kvHeads);
    const i64 qStride = (i64) s.heads * HEAD_DIM, kvStride = (i64) s.kvHeads * HEAD_DIM;
    const q_t* qBase = q + ((i64) b * s.seqQ) * qStride + (i64) h * HEAD_DIM;
    const kv_t* kBase = k + ((i64) b * s.kvRowsPerBatch) * kvStride + (i64) kh * HEAD_DIM;
    const kv_t* vBase = v + ((i64) b * s.kvRowsPerBatch) * kvStride + (i64) kh * HEAD_DIM;
    const i64 rowsHere = min((i64) FR, s.seqQ - i0);
    const int r0 = warp * WR;
    const float scale2 = s.scale * 1.4426950408889634f;   // scores in base 2
    const i64 pFirst = s.qStart + i0, pLast = s.qStart + i0 + rowsHere - 1;
    // This warp's rows that exist, and the positions of the first and last of them.
    const int warpRows = (int) max((i64) 0, min((i64) WR, rowsHere - r0));
    const i64 wFirst = pFirst + r0, wLast = wFirst + warpRows - 1;
    const i64 lo = s.window == 0 ? 0 : max((i64) 0, pFirst - s.window + 1);

    // The first key/value tile is on its way while the queries are loaded.
#ifdef KV_HALF
    if (lo <= pLast) {
        fetch_half<FT>(sKh, kBase, lo, min((i64) MC, s.seqKv - lo), kvStride, MC);
        fetch_half<FT>(sVh, vBase, lo, min((i64) MC, s.seqKv - lo), kvStride, MC);
    }
    cp_async_commit();
#elif STAGED
    kv_t* rawK = reinterpret_cast<kv_t*>(sVh + MC * LH);             // [MC][HEAD_DIM]
    kv_t* rawV = rawK + MC * HEAD_DIM;                                // [MC][HEAD_DIM]
    if (lo <= pLast) {
        fetch_tile(rawK, kBase, lo, min((i64) MC, s.seqKv - lo), kvStride, MC);
        fetch_tile(rawV, vBase, lo, min((i64) MC, s.seqKv - lo), kvStride, MC);
    }
    cp_async_commit();
#endif
#ifdef Q_HALF
    // (The wait takes the first key/value tile too: it is needed next anyway.)
    fetch_half<FT>(sQh, qBase, i0, rowsHere, qStride, FR);
    cp_async_commit();
    cp_async_wait_all();
#else
    load_tile_half(sQh, qBase, i0, rowsHere, qStride, FR);
#endif
    __syncthreads();
    unsigned qa[RT][KS16][4];
#pragma unroll
    for (int rt = 0; rt < RT; rt++)
#pragma unroll
        for (int ks = 0; ks < KS16; ks++) {
            const unsigned short* row = sQh + (r0 + 16 * rt + g) * LH + ks * 16 + 2 * t;
            qa[rt][ks][0] = smem_pair(row);
            qa[rt][ks][1] = smem_pair(row + 8 * LH);
            qa[rt][ks][2] = smem_pair(row + 8);
            qa[rt][ks][3] = smem_pair(row + 8 * LH + 8);
        }

    float o[RT][OT][4];
    float m[RT][2], l[RT][2];
#pragma unroll
    for (int rt = 0; rt < RT; rt++) {
#pragma unroll
        for (int n = 0; n < OT; n++)
#pragma unroll
            for (int c = 0; c < 4; c++) o[rt][n][c] = 0.f;
        m[rt][0] = m[rt][1] = -INFINITY;
        l[rt][0] = l[rt][1] = 0.f;
    }
#ifdef KV_HALF
    int buf = 0;
#endif
    for (i64 k0 = lo; k0 <= pLast; k0 += MC) {
#ifdef KV_HALF
        cp_async_wait_all();
        __syncthreads();   // this tile is in place, and every warp is done with the other buffer
        if (k0 + MC <= pLast) {
            fetch_half<FT>(sKh + (buf ^ 1) * MC * LH, kBase, k0 + MC, min((i64) MC, s.seqKv - k0 - MC), kvStride, MC);
            fetch_half<FT>(sVh + (buf ^ 1) * MC * LH, vBase, k0 + MC, min((i64) MC, s.seqKv - k0 - MC), kvStride, MC);
        }
        cp_async_commit();
        const unsigned short* cK = sKh + buf * MC * LH;
        const unsigned short* cV = sVh + buf * MC * LH;
        buf ^= 1;
#elif STAGED
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
        const unsigned short* cK = sKh;
        const unsigned short* cV = sVh;
#else
        const i64 keysHere = min((i64) MC, s.seqKv - k0);
        __syncthreads();
        load_tile_half(sKh, kBase, k0, keysHere, kvStride, MC);
        load_tile_half(sVh, vBase, k0, keysHere, kvStride, MC);
        __syncthreads();
        const unsigned short* cK = sKh;
        const unsigned short* cV = sVh;
#endif
        // A tile that none of this warp's rows sees (past the diagonal, or before the window) is only loaded.
        if (warpRows == 0 || k0 > wLast || (s.window != 0 && k0 + MC - 1 <= wFirst - s.window)) continue;
        float sc[RT][NT][4];
#pragma unroll
        for (int rt = 0; rt < RT; rt++)
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int c = 0; c < 4; c++) sc[rt][n][c] = 0.f;
        // Each B fragment read from shared memory feeds RT products.
#pragma unroll
        for (int n = 0; n < NT; n++) {
            const unsigned short* key = cK + (n * 8 + (lane & 7)) * LH;
#pragma unroll
            for (int ks = 0; ks + 1 < KS16; ks += 2) {
                unsigned bk[4];   // features 16 ks .. 16 ks + 31 of 8 keys: two k-steps' B fragments
                ldmatrix_x4(bk, key + (lane >> 3) * 8 + ks * 16);
#pragma unroll
                for (int rt = 0; rt < RT; rt++) {
                    mma16(sc[rt][n], qa[rt][ks], bk[0], bk[1]);
                    mma16(sc[rt][n], qa[rt][ks + 1], bk[2], bk[3]);
                }
            }
            if (KS16 % 2 != 0) {
                unsigned b0, b1;
                ldmatrix_x2(b0, b1, key + ((lane >> 3) & 1) * 8 + (KS16 - 1) * 16);
#pragma unroll
                for (int rt = 0; rt < RT; rt++) mma16(sc[rt][n], qa[rt][KS16 - 1], b0, b1);
            }
        }
        // Every key of the tile visible from every row of the warp: no mask to apply.
        const bool whole = k0 + MC - 1 <= wFirst && k0 + MC <= s.seqKv && (s.window == 0 || k0 > wLast - s.window);
        // Fragment element c of tile n is row g + 8 (c / 2), key n * 8 + 2 t + (c % 2).
#pragma unroll
        for (int rt = 0; rt < RT; rt++)
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                // The row sees the tile's keys k0 + jj for first < jj <= last (int offsets: fewer registers).
                int first = -1, last = MC - 1;
                if (!whole) {
                    const int row = r0 + 16 * rt + g + 8 * hh;
                    const i64 p = s.qStart + i0 + row;
                    last = row < rowsHere ? (int) max((i64) -1, min(min(p, s.seqKv - 1) - k0, (i64) MC - 1)) : -1;
                    if (s.window != 0) first = (int) max((i64) -1, min(p - s.window - k0, (i64) MC - 1));
                }
                float mt = -INFINITY;
#pragma unroll
                for (int n = 0; n < NT; n++)
#pragma unroll
                    for (int c = 0; c < 2; c++) {
                        float x = sc[rt][n][2 * hh + c] * scale2;
                        const int jj = n * 8 + 2 * t + c;
                        if (jj <= first || jj > last) x = -INFINITY;
                        sc[rt][n][2 * hh + c] = x;
                        mt = fmaxf(mt, x);
                    }
                mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
                mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 2));
                const float mNew = fmaxf(m[rt][hh], mt);
                float rs = 0.f;
#pragma unroll
                for (int n = 0; n < NT; n++)
#pragma unroll
                    for (int c = 0; c < 2; c++) {
                        const float x = sc[rt][n][2 * hh + c];
                        const float pr = mNew == -INFINITY ? 0.f : exp2f(x - mNew);
                        sc[rt][n][2 * hh + c] = pr;
                        rs += pr;
                    }
                const float corr = mNew == -INFINITY ? 1.f : (m[rt][hh] == -INFINITY ? 0.f : exp2f(m[rt][hh] - mNew));
                rs += __shfl_xor_sync(0xffffffffu, rs, 1);
                rs += __shfl_xor_sync(0xffffffffu, rs, 2);
                l[rt][hh] = l[rt][hh] * corr + rs;
                m[rt][hh] = mNew;
#pragma unroll
                for (int n = 0; n < OT; n++) {
                    o[rt][n][2 * hh] *= corr;
                    o[rt][n][2 * hh + 1] *= corr;
                }
            }
        // P (16 RT x 64) times V (64 x HEAD_DIM), 16 keys per step: the score tiles 2j and 2j + 1 are P's A fragment.
#pragma unroll
        for (int j = 0; j < NT / 2; j++) {
            unsigned pa[RT][4];
#pragma unroll
            for (int rt = 0; rt < RT; rt++) {
                pa[rt][0] = half_pair(sc[rt][2 * j][0], sc[rt][2 * j][1]);
                pa[rt][1] = half_pair(sc[rt][2 * j][2], sc[rt][2 * j][3]);
                pa[rt][2] = half_pair(sc[rt][2 * j + 1][0], sc[rt][2 * j + 1][1]);
                pa[rt][3] = half_pair(sc[rt][2 * j + 1][2], sc[rt][2 * j + 1][3]);
            }
            // Lane i names row i % 8 of matrix i / 8: matrices (keys 16j.., 16j+8..) x (features 8n.., 8(n+1)..).
            const unsigned short* v0 = cV + (16 * j + ((lane >> 3) & 1) * 8 + (lane & 7)) * LH + (lane >> 4) * 8;
#pragma unroll
            for (int n = 0; n < OT; n += 2) {
                unsigned bv[4];
                ldmatrix_x4_trans(bv, v0 + n * 8);
#pragma unroll
                for (int rt = 0; rt < RT; rt++) {
                    mma16(o[rt][n], pa[rt], bv[0], bv[1]);
                    mma16(o[rt][n + 1], pa[rt], bv[2], bv[3]);
                }
            }
        }
    }
#ifdef KV_HALF
    cp_async_wait_all();
#endif
#pragma unroll
    for (int rt = 0; rt < RT; rt++)
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            const int row = r0 + 16 * rt + g + 8 * hh;
            if (row >= rowsHere) continue;
            const i64 r = (i64) b * s.seqQ + i0 + row;
            const float inv = 1.f / l[rt][hh];
            out_t* dst = out + r * qStride + (i64) h * HEAD_DIM;
#pragma unroll
            for (int n = 0; n < OT; n++) {
                const float x = o[rt][n][2 * hh] * inv, y = o[rt][n][2 * hh + 1] * inv;
#ifdef OUT_BF16
                *reinterpret_cast<unsigned*>(dst + n * 8 + 2 * t) = bf16_bits(x) | (unsigned) bf16_bits(y) << 16;
#else
                *reinterpret_cast<float2*>(dst + n * 8 + 2 * t) = make_float2(x, y);
#endif
            }
            if (lse != 0 && t == 0) lse[r * s.heads + h] = m[rt][hh] * 0.6931471805599453f + logf(l[rt][hh]);
        }
}

// ---- the backward with float16 inputs (the forward's tiles; the softmax recomputed from the saved log-sum-exp) ----
//
// Queries, keys and values come as float16 copies rounded once per call, and so does dOut, multiplied first by the
// power of two that brings its largest magnitude into [1, 2): gradients (a loss averaged over thousands of tokens)
// lie mostly below float16's normal range, and a power of two is exact both ways, so the results are multiplied back
// by its inverse. delta (the rows' dOut . out) carries the same factor. Every product takes its A operand either from
// shared memory (ldmatrix) or straight from the accumulators of the product before it (P and dS stay in registers for
// dV and dK; dS goes through shared memory once, transposed, for dQ when the key blocks add dQ up), its B operand by
// ldmatrix, transposed where the tile is row-major k x n; tiles of the next step are copied by cp.async while the
// current one is multiplied.

#define BQ 64                     // queries per tile (and per block of the dQ kernel)
#define BK 64                     // keys per block of the dK / dV kernel (and per tile of the dQ kernel)
#define BT 128                    // threads per block: 4 warps of 16 rows
#define NQ (BQ / 8)               // score tiles (8 queries each) per warp in the dK / dV kernel
// Streamed tiles in shared memory: the current one and the next (2), or only the current one (-DSTAGES=1, where the
// GPU allows less shared memory per block: the next tile is then fetched once every warp is done with this one).
#ifndef STAGES
#define STAGES 2
#endif
#define LS (BQ + 8)               // row stride (halves) of dS^T in shared memory

// The factor dOut was multiplied by, from the bits of its largest magnitude: 2^-e for e = floor(log2(max)) (clamped so
// that both it and its inverse are normal floats), or 1 where the maximum is zero, infinite or NaN.
__device__ __forceinline__ float grad_scale(unsigned maxBits, bool inverse) {
    const float m = __uint_as_float(maxBits);
    if (!(m > 0.f) || m == INFINITY) return 1.f;
    const int e = max(-126, min(126, ilogbf(m)));
    return __int_as_float((inverse ? 127 + e : 127 - e) << 23);
}

// maxBits = max over x[0, n) of |x|'s bits (unsigned order is float order for non-negative floats, NaN above all).
// maxBits must be zero on entry.
extern "C" __global__ void attention_grad_absmax(unsigned* maxBits, const float* x, i64 n) {
    unsigned m = 0;
    for (i64 i = (i64) blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64) gridDim.x * blockDim.x)
        m = max(m, __float_as_uint(fabsf(x[i])));
    m = __reduce_max_sync(0xffffffffu, m);
    if ((threadIdx.x & 31) == 0) atomicMax(maxBits, m);
}

// One warp per (row, head), blocks of 8 warps: dOh = float16(scale * dOut), delta = scale * (dOut . out), out being
// float32, or bfloat16 where outBf16 is set (the forward's output as mixed precision keeps it).
extern "C" __global__ void __launch_bounds__(256)
attention_backward_prep(unsigned short* dOh, float* delta, const float* dOut, const void* out, int outBf16,
                        const unsigned* maxBits, i64 rowsTimesHeads) {
    const i64 e = (i64) blockIdx.x * 8 + threadIdx.x / 32;
    if (e >= rowsTimesHeads) return;
    const int lane = threadIdx.x % 32;
    const float scale = grad_scale(*maxBits, false);
    const float* a = dOut + e * HEAD_DIM;
    float sum = 0.f;
    for (int d = 2 * lane; d < HEAD_DIM; d += 64) {
        const float2 x = *reinterpret_cast<const float2*>(a + d);
        float2 y;
        if (outBf16) {
            const unsigned pair = *reinterpret_cast<const unsigned*>(static_cast<const unsigned short*>(out) + e * HEAD_DIM + d);
            y = make_float2(bf16_to_float((unsigned short) (pair & 0xffffu)), bf16_to_float((unsigned short) (pair >> 16)));
        } else {
            y = *reinterpret_cast<const float2*>(static_cast<const float*>(out) + e * HEAD_DIM + d);
        }
        sum += x.x * y.x + x.y * y.y;
        *reinterpret_cast<unsigned*>(dOh + e * HEAD_DIM + d) = half_pair(x.x * scale, x.y * scale);
    }
    sum = warp_sum(sum);
    if (lane == 0) delta[e] = sum * scale;
}

// acc[n] (n < N) += the 16 x 16 A fragment `af` (k-step ks) times the transpose of B's rows at bRow (a lane's row of
// an 8 N x HEAD_DIM row-major tile, stride LH, as rows_dot_rows sets it).
template <int N>
__device__ __forceinline__ void dot_step(float (&acc)[N][4], const unsigned (&af)[4], const unsigned short* bRow, int ks) {
#pragma unroll
    for (int n = 0; n < N; n += 2) {
        unsigned bf[4];
        ldmatrix_x4(bf, bRow + n * 8 * LH + ks * 16);
        mma16(acc[n], af, bf[0], bf[1]);
        mma16(acc[n + 1], af, bf[2], bf[3]);
    }
}

// acc[n] (16 x 8 each, n < N) = the 16 rows from `a` of A (16 x HEAD_DIM, stride LH) times the transpose of 8 N rows
// of B (8 N x HEAD_DIM, stride LH) from `b`: dot products of rows.
template <int N>
__device__ __forceinline__ void rows_dot_rows(float (&acc)[N][4], const unsigned short* a, const unsigned short* b,
                                              int lane) {
#pragma unroll
    for (int n = 0; n < N; n++)
#pragma unroll
        for (int c = 0; c < 4; c++) acc[n][c] = 0.f;
    const unsigned short* aRow = a + (lane & 15) * LH + (lane >> 4) * 8;
    const unsigned short* bRow = b + ((lane & 7) + (lane >> 4) * 8) * LH + ((lane >> 3) & 1) * 8;
#pragma unroll
    for (int ks = 0; ks < KS16; ks++) {
        unsigned af[4];
        ldmatrix_x4(af, aRow + ks * 16);
        dot_step<N>(acc, af, bRow, ks);
    }
}

// The same with A's fragments already in registers (a_fragments).
template <int N>
__device__ __forceinline__ void rows_dot_rows(float (&acc)[N][4], const unsigned (&af)[KS16][4], const unsigned short* b,
                                              int lane) {
#pragma unroll
    for (int n = 0; n < N; n++)
#pragma unroll
        for (int c = 0; c < 4; c++) acc[n][c] = 0.f;
    const unsigned short* bRow = b + ((lane & 7) + (lane >> 4) * 8) * LH + ((lane >> 3) & 1) * 8;
#pragma unroll
    for (int ks = 0; ks < KS16; ks++) dot_step<N>(acc, af[ks], bRow, ks);
}

// The A fragments of the 16 rows from `a` (16 x HEAD_DIM, stride LH), every k-step.
__device__ __forceinline__ void a_fragments(unsigned (&af)[KS16][4], const unsigned short* a, int lane) {
    const unsigned short* aRow = a + (lane & 15) * LH + (lane >> 4) * 8;
#pragma unroll
    for (int ks = 0; ks < KS16; ks++) ldmatrix_x4(af[ks], aRow + ks * 16);
}

// acc (16 x HEAD_DIM) += the A fragment xa (16 x 16) times 16 rows of B (row-major, stride LH), from the lane's row
// bRow as times_rows sets it.
__device__ __forceinline__ void times_rows_step(float (&acc)[OT][4], const unsigned (&xa)[4], const unsigned short* bRow) {
#pragma unroll
    for (int n = 0; n < OT; n += 2) {
        unsigned bf[4];
        ldmatrix_x4_trans(bf, bRow + n * 8);
        mma16(acc[n], xa, bf[0], bf[1]);
        mma16(acc[n + 1], xa, bf[2], bf[3]);
    }
}

// acc (16 x HEAD_DIM) += X (16 x 8 N, as the accumulators of a rows_dot_rows) times the 8 N rows of B (8 N x HEAD_DIM,
// row-major, stride LH) from `b`; X is rounded to float16 as it becomes the A fragment.
template <int N>
__device__ __forceinline__ void times_rows(float (&acc)[OT][4], const float (&x)[N][4], const unsigned short* b, int lane) {
    const unsigned short* bRow = b + (((lane >> 3) & 1) * 8 + (lane & 7)) * LH + (lane >> 4) * 8;
#pragma unroll
    for (int j = 0; j < N / 2; j++) {
        const unsigned xa[4] = {half_pair(x[2 * j][0], x[2 * j][1]), half_pair(x[2 * j][2], x[2 * j][3]),
                                half_pair(x[2 * j + 1][0], x[2 * j + 1][1]), half_pair(x[2 * j + 1][2], x[2 * j + 1][3])};
        times_rows_step(acc, xa, bRow + 16 * j * LH);
    }
}

// acc (16 x HEAD_DIM) += X (16 x 8 N) times the 8 N rows of B (8 N x HEAD_DIM, row-major, stride LH) from `b`, with X
// stored transposed in shared memory: xt[j][r] (stride LS) is X's row r, column j, and `xt` points at X's first row.
template <int N>
__device__ __forceinline__ void transposed_times_rows(float (&acc)[OT][4], const unsigned short* xt, const unsigned short* b,
                                                      int lane) {
    // Lane i names row i % 8 of matrix i / 8: matrices (columns 0.., rows 0..), (columns 0.., rows 8..), (columns 8..,
    // rows 0..), (columns 8.., rows 8..) of a 16 x 16 step, transposed by ldmatrix into X's A fragment.
    const unsigned short* xRow = xt + (((lane >> 4) & 1) * 8 + (lane & 7)) * LS + ((lane >> 3) & 1) * 8;
    const unsigned short* bRow = b + (((lane >> 3) & 1) * 8 + (lane & 7)) * LH + (lane >> 4) * 8;
#pragma unroll
    for (int j = 0; j < N / 2; j++) {
        unsigned xa[4];
        ldmatrix_x4_trans(xa, xRow + 16 * j * LS);
        times_rows_step(acc, xa, bRow + 16 * j * LH);
    }
}

// p[0] += x and p[1] += y, atomically (one vector reduction on sm_90; p 8-byte aligned).
__device__ __forceinline__ void add_pair(float* p, float x, float y) {
#if __CUDA_ARCH__ >= 900
    asm volatile("red.global.add.v2.f32 [%0], {%1, %2};" :: "l"(p), "f"(x), "f"(y) : "memory");
#else
    atomicAdd(p, x);
    atomicAdd(p + 1, y);
#endif
}

// dK and dV of BK keys of one key/value head (16 per warp), summed over the query heads that read them (overwritten);
// and, when dq is not null, these keys' share of dQ, added to dq with atomics (FlashAttention-2's backward: five
// products per tile instead of the seven that a separate dQ kernel takes, which computes S and dP again). dq must hold
// zeros or earlier sums; the order of the additions varies from run to run, and so do dq's last bits.
extern "C" __global__ void __launch_bounds__(BT)
attention_backward_f16(float* dq, float* dk, float* dv, const unsigned short* dO, const unsigned short* q,
                       const unsigned short* k, const unsigned short* v, const float* lse, const float* delta,
                       const unsigned* maxBits, Shape s) {
    extern __shared__ float smem[];
    unsigned short* sK = reinterpret_cast<unsigned short*>(smem);    // [BK][LH]
    unsigned short* sV = sK + BK * LH;                               // [BK][LH]
    unsigned short* sQ = sV + BK * LH;                               // [STAGES][BQ][LH]
    unsigned short* sdO = sQ + STAGES * BQ * LH;                     // [STAGES][BQ][LH]
    float* sL = reinterpret_cast<float*>(sdO + STAGES * BQ * LH);    // [STAGES][BQ]: log-sum-exp in base 2
    float* sD = sL + STAGES * BQ;                                    // [STAGES][BQ]
    unsigned short* sdS = reinterpret_cast<unsigned short*>(sD + STAGES * BQ);   // [BK][LS]: dS^T, with dq only
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    // The first keys (seen by the most queries under a causal mask) first.
    const GridPlace at = ranked_place();
    const i64 k0 = (i64) at.rank * BK;
    const int kh = at.y, b = at.z;
    const int group = s.heads / s.kvHeads;
    const i64 qStride = (i64) s.heads * HEAD_DIM, kvStride = (i64) s.kvHeads * HEAD_DIM;
    const i64 kvOff = ((i64) b * s.kvRowsPerBatch) * kvStride + (i64) kh * HEAD_DIM;
    const i64 keysHere = min((i64) BK, s.seqKv - k0);
    const int kw = warp * 16;
    const float scale2 = s.scale * 1.4426950408889634f;
    fetch_half<BT>(sK, k + kvOff, k0, keysHere, kvStride, BK);
    fetch_half<BT>(sV, v + kvOff, k0, keysHere, kvStride, BK);

    // The query tiles that see these keys, for each query head of the group: tile i of head kh * group + i / perHead
    // starts at query iLo + (i % perHead) * BQ.
    const i64 kLast = k0 + keysHere - 1;
    const i64 iLo = max((i64) 0, k0 - s.qStart);
    i64 iHi = s.seqQ - 1;
    if (s.window > 0) iHi = min(iHi, kLast + s.window - 1 - s.qStart);
    const i64 perHead = iHi >= iLo ? (iHi - iLo + BQ) / BQ : 0;
    const i64 tiles = perHead * group;
    auto fetch = [&](i64 i, int buf) {
        const int h = kh * group + (int) (i / perHead);
        const i64 i0 = iLo + (i % perHead) * BQ;
        const i64 rowsHere = min((i64) BQ, s.seqQ - i0);
        const i64 qOff = ((i64) b * s.seqQ) * qStride + (i64) h * HEAD_DIM;
        fetch_half<BT>(sQ + buf * BQ * LH, q + qOff, i0, rowsHere, qStride, BQ);
        fetch_half<BT>(sdO + buf * BQ * LH, dO + qOff, i0, rowsHere, qStride, BQ);
        load_row_stats(sL + buf * BQ, sD + buf * BQ, lse, delta, b, i0, rowsHere, h, s, BQ, BT, 1.4426950408889634f);
    };
    if (tiles > 0) fetch(0, 0);
    cp_async_commit();

    float dK[OT][4], dV[OT][4];
#pragma unroll
    for (int n = 0; n < OT; n++)
#pragma unroll
        for (int c = 0; c < 4; c++) { dK[n][c] = 0.f; dV[n][c] = 0.f; }
#if HEAD_DIM <= 64
    // This warp's keys and values as A fragments, read from shared memory once rather than once per query tile: at
    // these head sizes they fit in registers without costing a block per SM (at larger ones they are read each time).
    unsigned kf[KS16][4], vf[KS16][4];
#endif
    const float qScale = dq != 0 ? grad_scale(*maxBits, true) * s.scale : 0.f;
    for (i64 i = 0; i < tiles; i++) {
        const int buf = STAGES == 2 ? (int) (i & 1) : 0;
        cp_async_wait_all();
        __syncthreads();   // tile i is in place, and every warp is done with tile i - 1's buffer
#if HEAD_DIM <= 64
        if (i == 0) {
            a_fragments(kf, sK + kw * LH, lane);
            a_fragments(vf, sV + kw * LH, lane);
        }
#endif
        if (STAGES == 2 && i + 1 < tiles) fetch(i + 1, buf ^ 1);
        cp_async_commit();
        const unsigned short* cQ = sQ + buf * BQ * LH;
        const unsigned short* cdO = sdO + buf * BQ * LH;
        const float* cL = sL + buf * BQ;
        const float* cD = sD + buf * BQ;
        const i64 i0 = iLo + (i % perHead) * BQ;
        const i64 rowsHere = min((i64) BQ, s.seqQ - i0);
        float st[NQ][4], dst[NQ][4];
#if HEAD_DIM <= 64
        rows_dot_rows<NQ>(st, kf, cQ, lane);              // S^T: this warp's keys x the tile's queries
        rows_dot_rows<NQ>(dst, vf, cdO, lane);            // dP^T
#else
        rows_dot_rows<NQ>(st, sK + kw * LH, cQ, lane);
        rows_dot_rows<NQ>(dst, sV + kw * LH, cdO, lane);
#endif
        const i64 pFirst = s.qStart + i0, pLast = pFirst + rowsHere - 1;
        // Every key of the block visible from every query of the tile: no mask to apply.
        const bool whole = rowsHere == BQ && keysHere == BK && kLast <= pFirst && (s.window == 0 || k0 > pLast - s.window);
        // Element c of tile n: key kw + g + 8 (c / 2), query n * 8 + 2 t + (c % 2).
#pragma unroll
        for (int n = 0; n < NQ; n++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const int qi = n * 8 + 2 * t + (c & 1);
                bool ok = true;
                if (!whole) {
                    const i64 key = k0 + kw + g + 8 * (c >> 1);
                    ok = qi < rowsHere && key < s.seqKv && visible(s.qStart + i0 + qi, key, s.window);
                }
                const float pr = ok ? exp2f(st[n][c] * scale2 - cL[qi]) : 0.f;
                dst[n][c] = ok ? pr * (dst[n][c] - cD[qi]) : 0.f;
                st[n][c] = pr;
            }
        if (dq != 0) {
            // dS^T, rounded to float16 as the dK product rounds it, for every warp's dQ rows below.
#pragma unroll
            for (int n = 0; n < NQ; n++)
#pragma unroll
                for (int hh = 0; hh < 2; hh++)
                    *reinterpret_cast<unsigned*>(sdS + (kw + g + 8 * hh) * LS + n * 8 + 2 * t) =
                            half_pair(dst[n][2 * hh], dst[n][2 * hh + 1]);
        }
        times_rows<NQ>(dV, st, cdO, lane);    // dV += P^T dO
        times_rows<NQ>(dK, dst, cQ, lane);    // dK += dS^T Q
        if (STAGES == 1) {
            // Every warp is done with this tile's queries, dOut and statistics (the dQ product below reads none of them).
            __syncthreads();
            if (i + 1 < tiles) fetch(i + 1, 0);
            cp_async_commit();
        }
        if (dq != 0) {
            // Every warp's keys of dS^T are in place (the next tile's first barrier guards their reuse).
            if (STAGES == 2) __syncthreads();
            // This warp's 16 queries of the tile: dQ = dS (16 x BK) K (BK x HEAD_DIM), added to dq.
            float dQ[OT][4];
#pragma unroll
            for (int n = 0; n < OT; n++)
#pragma unroll
                for (int c = 0; c < 4; c++) dQ[n][c] = 0.f;
            const int qw = warp * 16;
            transposed_times_rows<BK / 8>(dQ, sdS + qw, sK, lane);
            const int h = kh * group + (int) (i / perHead);
            float* dqHead = dq + ((i64) b * s.seqQ + i0) * qStride + (i64) h * HEAD_DIM;
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                const int qi = qw + g + 8 * hh;
                if (qi >= rowsHere) continue;
#pragma unroll
                for (int n = 0; n < OT; n++)
                    add_pair(dqHead + qi * qStride + n * 8 + 2 * t, dQ[n][2 * hh] * qScale, dQ[n][2 * hh + 1] * qScale);
            }
        }
    }
    cp_async_wait_all();
    const float inv = grad_scale(*maxBits, true);
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
                dkRow[n * 8 + 2 * t + c] = dK[n][2 * hh + c] * s.scale * inv;
                dvRow[n * 8 + 2 * t + c] = dV[n][2 * hh + c] * inv;
            }
    }
}

// dQ of BQ queries of one head (16 per warp), without atomics (run to run the same bits). Overwrites.
extern "C" __global__ void __launch_bounds__(BT)
attention_backward_q_f16(float* dq, const unsigned short* dO, const unsigned short* q, const unsigned short* k,
                         const unsigned short* v, const float* lse, const float* delta, const unsigned* maxBits, Shape s) {
    extern __shared__ float smem[];
    unsigned short* sQ = reinterpret_cast<unsigned short*>(smem);    // [BQ][LH]
    unsigned short* sdO = sQ + BQ * LH;                              // [BQ][LH]
    unsigned short* sK = sdO + BQ * LH;                              // [STAGES][BK][LH]
    unsigned short* sV = sK + STAGES * BK * LH;                      // [STAGES][BK][LH]
    float* sL = reinterpret_cast<float*>(sV + STAGES * BK * LH);     // [BQ]: log-sum-exp in base 2
    float* sD = sL + BQ;                                             // [BQ]
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    // The last queries (the most keys under a causal mask) first, so that the longest blocks do not end the grid.
    const GridPlace at = ranked_place();
    const i64 i0 = ((i64) gridDim.x - 1 - at.rank) * BQ;
    const int h = at.y, b = at.z;
    const int kh = h / (s.heads / s.kvHeads);
    const i64 qStride = (i64) s.heads * HEAD_DIM, kvStride = (i64) s.kvHeads * HEAD_DIM;
    const i64 qOff = ((i64) b * s.seqQ) * qStride + (i64) h * HEAD_DIM;
    const i64 kvOff = ((i64) b * s.kvRowsPerBatch) * kvStride + (i64) kh * HEAD_DIM;
    const i64 rowsHere = min((i64) BQ, s.seqQ - i0);
    const int qw = warp * 16;
    const float scale2 = s.scale * 1.4426950408889634f;
    fetch_half<BT>(sQ, q + qOff, i0, rowsHere, qStride, BQ);
    fetch_half<BT>(sdO, dO + qOff, i0, rowsHere, qStride, BQ);
    load_row_stats(sL, sD, lse, delta, b, i0, rowsHere, h, s, BQ, BT, 1.4426950408889634f);
    const i64 pFirst = s.qStart + i0, pLast = pFirst + rowsHere - 1;
    const i64 lo = s.window == 0 ? 0 : max((i64) 0, pFirst - s.window + 1);
    fetch_half<BT>(sK, k + kvOff, lo, min((i64) BK, s.seqKv - lo), kvStride, BK);
    fetch_half<BT>(sV, v + kvOff, lo, min((i64) BK, s.seqKv - lo), kvStride, BK);
    cp_async_commit();

    float dQ[OT][4];
#pragma unroll
    for (int n = 0; n < OT; n++)
#pragma unroll
        for (int c = 0; c < 4; c++) dQ[n][c] = 0.f;
    int buf = 0;
    for (i64 k0 = lo; k0 <= pLast; k0 += BK, buf = STAGES == 2 ? buf ^ 1 : 0) {
        cp_async_wait_all();
        __syncthreads();   // this tile is in place, and every warp is done with the last one's buffer
        if (STAGES == 2 && k0 + BK <= pLast) {
            fetch_half<BT>(sK + (buf ^ 1) * BK * LH, k + kvOff, k0 + BK, min((i64) BK, s.seqKv - k0 - BK), kvStride, BK);
            fetch_half<BT>(sV + (buf ^ 1) * BK * LH, v + kvOff, k0 + BK, min((i64) BK, s.seqKv - k0 - BK), kvStride, BK);
        }
        cp_async_commit();
        const unsigned short* cK = sK + buf * BK * LH;
        const unsigned short* cV = sV + buf * BK * LH;
        float sc[NT][4], dp[NT][4];
        rows_dot_rows<NT>(sc, sQ + qw * LH, cK, lane);
        rows_dot_rows<NT>(dp, sdO + qw * LH, cV, lane);
        const bool whole = rowsHere == BQ && k0 + BK - 1 <= pFirst && k0 + BK <= s.seqKv
                && (s.window == 0 || k0 > pLast - s.window);
        // Element c of tile n: query qw + g + 8 (c / 2), key n * 8 + 2 t + (c % 2).
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const int qi = qw + g + 8 * (c >> 1);
                bool ok = true;
                if (!whole) {
                    const i64 key = k0 + n * 8 + 2 * t + (c & 1);
                    ok = qi < rowsHere && key < s.seqKv && visible(s.qStart + i0 + qi, key, s.window);
                }
                const float pr = ok ? exp2f(sc[n][c] * scale2 - sL[qi]) : 0.f;
                dp[n][c] = ok ? pr * (dp[n][c] - sD[qi]) : 0.f;
            }
        times_rows<NT>(dQ, dp, cK, lane);     // dQ += dS K
        if (STAGES == 1) {
            __syncthreads();   // every warp is done with this tile
            if (k0 + BK <= pLast) {
                fetch_half<BT>(sK, k + kvOff, k0 + BK, min((i64) BK, s.seqKv - k0 - BK), kvStride, BK);
                fetch_half<BT>(sV, v + kvOff, k0 + BK, min((i64) BK, s.seqKv - k0 - BK), kvStride, BK);
            }
            cp_async_commit();
        }
    }
    cp_async_wait_all();
    const float inv = grad_scale(*maxBits, true) * s.scale;
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        const int qi = qw + g + 8 * hh;
        if (qi >= rowsHere) continue;
        float* row = dq + qOff + (i0 + qi) * qStride;
#pragma unroll
        for (int n = 0; n < OT; n++)
#pragma unroll
            for (int c = 0; c < 2; c++) row[n * 8 + 2 * t + c] = dQ[n][2 * hh + c] * inv;
    }
}
#endif
