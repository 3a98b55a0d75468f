// What every kernel file shares. The backend compiles each .cu file with this text in front of it (one source, no
// include paths to find at run time).

typedef long long i64;

#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

// One attention call's shape (AttentionShape), passed by value: five long longs, two ints, a float.
struct Shape {
    i64 seqQ, seqKv, kvRowsPerBatch, qStart, window;
    int heads, kvHeads;
    float scale;
};

// Key j is visible from query position p: causal, and inside the sliding window when there is one.
__device__ __forceinline__ bool visible(i64 p, i64 j, i64 window) {
    return j <= p && (window == 0 || j > p - window);
}

// A block's place in a grid of (tiles along the sequence) x (heads) x (sequences), ranked so that the GPU, which starts
// blocks in the order of their linear index (x fastest), starts the rank-0 tile of every (head, sequence) first, then
// every rank-1 tile, and so on: with tiles ranked by decreasing work (as a causal mask makes it), the longest blocks
// all start early and none is left to run alone at the end of the grid.
// (32-bit arithmetic: the backend keeps these grids under 2^32 blocks.)
struct GridPlace {
    unsigned rank;   // 0 for the tiles started first
    int y, z;        // head and sequence
};

__device__ __forceinline__ GridPlace ranked_place() {
    const unsigned pairs = gridDim.y * gridDim.z;
    const unsigned linear = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned pair = linear % pairs;
    return {linear / pairs, (int) (pair % gridDim.y), (int) (pair / gridDim.y)};
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// The log-sum-exp (times lseScale: log2(e) for a softmax in base 2) and delta of `rows` query rows from i0 of head h
// (zeros past rowsHere), by a block of `threads`.
__device__ __forceinline__ void load_row_stats(float* sL, float* sDelta, const float* lse, const float* delta, i64 b,
                                               i64 i0, i64 rowsHere, int h, const Shape& s, int rows, int threads,
                                               float lseScale = 1.f) {
    for (int r = threadIdx.x; r < rows; r += threads) {
        const i64 idx = ((i64) b * s.seqQ + i0 + r) * s.heads + h;
        sL[r] = r < rowsHere ? lse[idx] * lseScale : 0.f;
        sDelta[r] = r < rowsHere ? delta[idx] : 0.f;
    }
}

// Cached keys and values: float32, or float16 when the module is built with -DKV_HALF (the KV cache's storage).
// Only the kernels that read a cache take kv_t; to_float widens either.
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
// float32 to float16, rounded to nearest even.
__device__ __forceinline__ unsigned short half_bits(float x) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
    return h;
}
// float32 to bfloat16, rounded to nearest even; a NaN stays a (quiet) NaN: the CPU backend's rounding, bit for bit.
__device__ __forceinline__ unsigned short bf16_bits(float x) {
    const unsigned u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short) ((u >> 16) | 0x40u);
    return (unsigned short) ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ float bf16_to_float(unsigned short b) { return __uint_as_float(((unsigned) b) << 16); }

#ifdef KV_HALF
typedef unsigned short kv_t;
#define KV_BYTES 2
#else
typedef float kv_t;
#define KV_BYTES 4
#endif
