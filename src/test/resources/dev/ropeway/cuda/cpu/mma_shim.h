// Tensor-core and asynchronous-copy instructions of attention_mma.cu on the CPU stand-in (shim.h): ldmatrix and
// mma.sync gather their operands across the warp through the warp's exchange, with the fragment layouts of the PTX ISA
// (m16n8k16, .f16 inputs, .f32 accumulators). cp.async lands when its thread waits for it (shim.h).
#include <atomic>
struct float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
inline float exp2f(float x) { return std::exp2(x); }
inline int ilogbf(float x) { return std::ilogb(x); }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float2 make_float2(float x, float y) { return {x, y}; }


inline unsigned short shimHalfOf(float x) { return shimHalfBits(x); }
inline float shimHalf(unsigned bits, int high) { return shimHalfToFloat((unsigned short) (high ? bits >> 16 : bits & 0xffffu)); }

inline unsigned shimHalfPair(float lo, float hi) { return ((unsigned) shimHalfBits(hi) << 16) | shimHalfBits(lo); }

// d += A (16 x 16) B (16 x 8): lane l = 4 g + t holds A[g][2t..], A[g+8][2t..], A[g][2t+8..], A[g+8][2t+8..],
// B[2t..][g], B[2t+8..][g] (pairs: the lower index in the low half), and D[g][2t], D[g][2t+1], D[g+8][2t], D[g+8][2t+1].
// Lane 0 gathers the fragments and multiplies once for the warp; each lane then adds its four elements.
inline void shimMma16(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    WarpExchange* x = myWarp;
    for (int i = 0; i < 4; i++) x->regs[myLane][i] = a[i];
    x->regs[myLane][4] = b0;
    x->regs[myLane][5] = b1;
    shimWarpSync();
    if (myLane == 0) {
        float A[16][16], B[16][8];
        for (int l = 0; l < 32; l++) {
            const int g = l / 4, t = l % 4;
            for (int reg = 0; reg < 4; reg++)
                for (int half = 0; half < 2; half++)
                    A[g + 8 * (reg & 1)][2 * t + half + 8 * (reg >> 1)] = shimHalf(x->regs[l][reg], half);
            for (int reg = 0; reg < 2; reg++)
                for (int half = 0; half < 2; half++) B[2 * t + half + 8 * reg][g] = shimHalf(x->regs[l][4 + reg], half);
        }
        for (int r = 0; r < 16; r++)
            for (int c = 0; c < 8; c++) {
                float s = 0.f;
                for (int k = 0; k < 16; k++) s += A[r][k] * B[k][c];
                x->product[r][c] = s;
            }
    }
    shimWarpSync();
    const int g = myLane / 4, t = myLane % 4;
    for (int i = 0; i < 4; i++) d[i] += x->product[g + (i >= 2 ? 8 : 0)][2 * t + (i % 2)];
}

// ldmatrix .m8n8 .x2 / .x4 (.trans): lane 8 m + i names row i of matrix m; each lane receives, of each matrix, row
// l / 4, columns 2 (l % 4) and + 1 (transposed: rows 2 (l % 4) and + 1 of column l / 4).
inline void shimLdmatrix(const unsigned short* row, int matrices, bool trans, unsigned* r) {
    if (myLane < 8 * matrices) shimAligned(row, 16, "an ldmatrix row");
    WarpExchange* x = myWarp;
    x->rows[myLane] = row;
    shimWarpSync();
    const int g = myLane / 4, t = myLane % 4;
    for (int m = 0; m < matrices; m++) {
        unsigned short lo, hi;
        if (!trans) {
            lo = x->rows[8 * m + g][2 * t];
            hi = x->rows[8 * m + g][2 * t + 1];
        } else {
            lo = x->rows[8 * m + 2 * t][g];
            hi = x->rows[8 * m + 2 * t + 1][g];
        }
        r[m] = ((unsigned) hi << 16) | lo;
    }
    shimWarpSync();
}

inline unsigned __reduce_max_sync(unsigned, unsigned v) {
    unsigned m = v;
    for (int o = 16; o > 0; o >>= 1) m = max(m, __shfl_xor_sync(0xffffffffu, m, o));
    return m;
}

inline unsigned atomicMax(unsigned* p, unsigned v) {
    std::atomic_ref<unsigned> a(*p);
    unsigned old = a.load();
    while (old < v && !a.compare_exchange_weak(old, v)) {}
    return old;
}
