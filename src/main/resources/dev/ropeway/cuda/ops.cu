// Element-wise, row-wise and reduction kernels of the CUDA backend (float32 storage; bfloat16 where a kernel's name
// says so: the operands of mixed-precision products).
// Compiled at first use with NVRTC for the GPU in hand; every kernel is extern "C" so the host finds it by name.
// Sums whose result leaves the GPU (losses, norms, gradients of the frequencies) are reduced in a fixed order, so a
// run gives the same numbers every time.

#define THREADS 256

// The block reductions: a sum (from zero) or a maximum (from the first warp's), in a fixed order.
struct Sum {
    template <typename T> __device__ static T combine(T a, T b) { return a + b; }
    template <typename T> __device__ static T start(const T*) { return T(0); }
    static constexpr int first = 0;
};

struct Max {
    __device__ static float combine(float a, float b) { return fmaxf(a, b); }
    __device__ static float start(const float* scratch) { return scratch[0]; }
    static constexpr int first = 1;
};

template <typename Op, typename T>
__device__ __forceinline__ T warp_reduce(T v) {
    for (int o = 16; o > 0; o >>= 1) v = Op::combine(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Over a block of THREADS threads; every thread gets the result. `scratch` holds THREADS / 32 values.
template <typename Op, typename T>
__device__ __forceinline__ T block_reduce(T v, T* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_reduce<Op>(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    T t = Op::start(scratch);
    for (int w = Op::first; w < THREADS / 32; w++) t = Op::combine(t, scratch[w]);
    return t;
}

__device__ float block_sum(float v, float* scratch) { return block_reduce<Sum>(v, scratch); }
__device__ float block_max(float v, float* scratch) { return block_reduce<Max>(v, scratch); }
__device__ double block_sum_d(double v, double* scratch) { return block_reduce<Sum>(v, scratch); }

#define GRID_STRIDE(i, n) for (i64 i = (i64) blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64) gridDim.x * blockDim.x)

// ---- conversions (weights arrive as bf16 / f16 / f64) ----

extern "C" __global__ void convert_bf16(float* out, const unsigned short* in, i64 n) {
    GRID_STRIDE(i, n) out[i] = bf16_to_float(in[i]);
}

extern "C" __global__ void convert_f16(float* out, const unsigned short* in, i64 n) {
    GRID_STRIDE(i, n) {
        unsigned int h = in[i];
        unsigned int sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
        float f;
        if (exp == 0) f = (float) man * 5.9604644775390625e-8f;                 // subnormal: man * 2^-24
        else if (exp == 31) f = __uint_as_float(0x7f800000u | (man << 13));      // inf / nan
        else f = __uint_as_float(((exp + 112) << 23) | (man << 13));
        out[i] = __uint_as_float(__float_as_uint(f) | sign);
    }
}

extern "C" __global__ void convert_f64(float* out, const double* in, i64 n) {
    GRID_STRIDE(i, n) out[i] = (float) in[i];
}

extern "C" __global__ void to_bf16(unsigned short* dst, const float* src, i64 n) {
    GRID_STRIDE(i, n) dst[i] = bf16_bits(src[i]);
}

// A result stored as float32, or rounded to bfloat16.
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(unsigned short* p, float v) { *p = bf16_bits(v); }

// ---- element-wise ----

extern "C" __global__ void add_in_place(float* y, const float* x, i64 n) {
    GRID_STRIDE(i, n) y[i] += x[i];
}

extern "C" __global__ void scale_in_place(float* y, float a, i64 n) {
    // A factor of exactly 0 writes zeros, even over infinities and NaNs.
    GRID_STRIDE(i, n) y[i] = a == 0.f ? 0.f : y[i] * a;
}

extern "C" __global__ void add_bias(float* y, const float* bias, i64 rows, int cols) {
    GRID_STRIDE(i, rows * cols) y[i] += bias[i % cols];
}

// An element-wise input in float32, or in bfloat16 (a mixed-precision activation), widened exactly as it is read.
struct F32In {
    const float* p;
    __device__ float operator[](i64 i) const { return p[i]; }
};
struct Bf16In {
    const unsigned short* p;
    __device__ float operator[](i64 i) const { return bf16_to_float(p[i]); }
};

template <typename T, typename In>
__device__ __forceinline__ void swiglu(T* out, In gate, In up, i64 n) {
    GRID_STRIDE(i, n) {
        float g = gate[i];
        store(out + i, g * (1.f / (1.f + expf(-g))) * up[i]);
    }
}

extern "C" __global__ void swiglu_forward(float* out, const float* gate, const float* up, i64 n) {
    swiglu(out, F32In{gate}, F32In{up}, n);
}

extern "C" __global__ void swiglu_forward_bf16(unsigned short* out, const float* gate, const float* up, i64 n) {
    swiglu(out, F32In{gate}, F32In{up}, n);
}

extern "C" __global__ void swiglu_forward_from_bf16(float* out, const unsigned short* gate, const unsigned short* up,
                                                    i64 n) {
    swiglu(out, Bf16In{gate}, Bf16In{up}, n);
}

extern "C" __global__ void swiglu_forward_bf16_from_bf16(unsigned short* out, const unsigned short* gate,
                                                         const unsigned short* up, i64 n) {
    swiglu(out, Bf16In{gate}, Bf16In{up}, n);
}

template <typename T, typename In>
__device__ __forceinline__ void swiglu_grad(T* dGate, T* dUp, const float* dOut, In gate, In up, i64 n) {
    GRID_STRIDE(i, n) {
        float g = gate[i], u = up[i], dy = dOut[i];
        float s = 1.f / (1.f + expf(-g));
        store(dUp + i, dy * g * s);
        store(dGate + i, dy * u * s * (1.f + g * (1.f - s)));
    }
}

extern "C" __global__ void swiglu_backward(float* dGate, float* dUp, const float* dOut, const float* gate,
                                           const float* up, i64 n) {
    swiglu_grad(dGate, dUp, dOut, F32In{gate}, F32In{up}, n);
}

// The gradients rounded to bfloat16 as they are made: the operands of the gate and up products' backward.
extern "C" __global__ void swiglu_backward_bf16(unsigned short* dGate, unsigned short* dUp, const float* dOut,
                                                const float* gate, const float* up, i64 n) {
    swiglu_grad(dGate, dUp, dOut, F32In{gate}, F32In{up}, n);
}

extern "C" __global__ void swiglu_backward_from_bf16(float* dGate, float* dUp, const float* dOut,
                                                     const unsigned short* gate, const unsigned short* up, i64 n) {
    swiglu_grad(dGate, dUp, dOut, Bf16In{gate}, Bf16In{up}, n);
}

extern "C" __global__ void swiglu_backward_bf16_from_bf16(unsigned short* dGate, unsigned short* dUp, const float* dOut,
                                                          const unsigned short* gate, const unsigned short* up, i64 n) {
    swiglu_grad(dGate, dUp, dOut, Bf16In{gate}, Bf16In{up}, n);
}

extern "C" __global__ void adamw_step(float* param, const float* grad, float* m, float* v, i64 n, float lr,
                                      float beta1, float beta2, float eps, float weightDecay, float gradScale,
                                      float correct1, float correct2) {
    float keep1 = 1.f - beta1, keep2 = 1.f - beta2;
    GRID_STRIDE(i, n) {
        float g = grad[i] * gradScale, p = param[i];
        float mi = m[i] * beta1 + g * keep1;
        float vi = v[i] * beta2 + g * g * keep2;
        float update = mi * correct1 / (sqrtf(vi * correct2) + eps) + p * weightDecay;
        m[i] = mi;
        v[i] = vi;
        param[i] = p - update * lr;
    }
}

// ---- reductions ----

// partial[block] = sum of x[i]^2 over this block's share, in double.
extern "C" __global__ void sum_squares_partial(double* partial, const float* x, i64 n) {
    __shared__ double scratch[THREADS / 32];
    double s = 0.0;
    GRID_STRIDE(i, n) { double v = x[i]; s += v * v; }
    s = block_sum_d(s, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// Column sums of x[rows, cols] over row chunk blockIdx.y (rowsPerChunk rows) into partial[chunk, cols].
template <typename T>
__device__ __forceinline__ void column_sum_chunk(T* partial, const T* x, i64 rows, int cols, i64 rowsPerChunk) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    i64 r0 = (i64) blockIdx.y * rowsPerChunk, r1 = min(rows, r0 + rowsPerChunk);
    T s = 0;
    for (i64 r = r0; r < r1; r++) s += x[r * cols + c];
    partial[(i64) blockIdx.y * cols + c] = s;
}

extern "C" __global__ void column_sum_partial(float* partial, const float* x, i64 rows, int cols, i64 rowsPerChunk) {
    column_sum_chunk(partial, x, rows, cols, rowsPerChunk);
}

// out[c] += sum over chunks of partial[chunk, c], chunks in order.
extern "C" __global__ void column_sum_finish(float* out, const float* partial, int chunks, int cols) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float s = 0.f;
    for (int k = 0; k < chunks; k++) s += partial[(i64) k * cols + c];
    out[c] += s;
}

// ---- products with few rows on narrow weights (inference from a bfloat16 or float16 checkpoint) ----

// A stored weight widened to float32 (exactly): bfloat16, or float16 when HALF.
template <bool HALF> __device__ __forceinline__ float widen_weight(unsigned short b) {
    return HALF ? to_float(b) : bf16_to_float(b);
}

// y[r, o] = alpha * sum_i x[r * ldx + i] * w[o * ldw + i] + beta * y[r * ldy + o] (+ bias[o]), for r < rows (at most
// LINEAR_ROWS) and o < out: what cuBLAS computes on the weights widened to float32 (widening is exact), without a
// float32 copy of them. A decode step's products are bound by reading their weights, so this reads each weight once,
// in 16-byte loads of 8 (when `vec`: in a multiple of 8, ldw of 8, ldx of 4, w and x 16-byte aligned), two chunks of
// each of a warp's LINEAR_OUTS weight rows in flight; the few float32 rows of x come from the L1 cache. beta == 0
// ignores y, as cuBLAS does. Blocks of LINEAR_WARPS warps.
#define LINEAR_ROWS 8
#define LINEAR_OUTS 2
#define LINEAR_WARPS 4

template <bool HALF> __device__ __forceinline__ void widen8(uint4 u, float* f) {
    const unsigned w[4] = {u.x, u.y, u.z, u.w};
    for (int j = 0; j < 4; j++) {
        f[2 * j] = widen_weight<HALF>((unsigned short) (w[j] & 0xffffu));
        f[2 * j + 1] = widen_weight<HALF>((unsigned short) (w[j] >> 16));
    }
}

template <bool HALF>
__device__ __forceinline__ void linear_narrow_weights(float* y, const float* x, const unsigned short* w,
                                                      const float* bias, int rows, int in, int out, i64 ldx, i64 ldw,
                                                      i64 ldy, float alpha, float beta, int vec) {
    const int lane = threadIdx.x & 31;
    const i64 o0 = ((i64) blockIdx.x * LINEAR_WARPS + (threadIdx.x >> 5)) * LINEAR_OUTS;
    if (o0 >= out) return;   // the whole warp
    // Rows past `out` read row o0 instead (in range) and are never written.
    const unsigned short* wr[LINEAR_OUTS];
    for (int o = 0; o < LINEAR_OUTS; o++) wr[o] = w + (o0 + o < out ? o0 + o : o0) * ldw;
    float acc[LINEAR_OUTS][LINEAR_ROWS];
    for (int o = 0; o < LINEAR_OUTS; o++)
        for (int r = 0; r < LINEAR_ROWS; r++) acc[o][r] = 0.f;
    if (vec) {
        for (int i = lane * 8; i < in; i += 512) {
            const bool second = i + 256 < in;
            uint4 raw[2][LINEAR_OUTS];
            for (int o = 0; o < LINEAR_OUTS; o++) {
                raw[0][o] = *reinterpret_cast<const uint4*>(wr[o] + i);
                raw[1][o] = second ? *reinterpret_cast<const uint4*>(wr[o] + i + 256) : raw[0][o];
            }
            for (int c = 0; c < 2; c++) {
                if (c == 1 && !second) break;
                const int ic = i + 256 * c;
                float wf[LINEAR_OUTS][8];
                for (int o = 0; o < LINEAR_OUTS; o++) widen8<HALF>(raw[c][o], wf[o]);
                for (int r = 0; r < LINEAR_ROWS; r++) {
                    if (r >= rows) break;
                    const float4 a = *reinterpret_cast<const float4*>(x + r * ldx + ic);
                    const float4 b = *reinterpret_cast<const float4*>(x + r * ldx + ic + 4);
                    const float xv[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
                    for (int o = 0; o < LINEAR_OUTS; o++)
                        for (int j = 0; j < 8; j++) acc[o][r] = fmaf(xv[j], wf[o][j], acc[o][r]);
                }
            }
        }
    } else {
        for (int i = lane; i < in; i += 32) {
            float wf[LINEAR_OUTS];
            for (int o = 0; o < LINEAR_OUTS; o++) wf[o] = widen_weight<HALF>(wr[o][i]);
            for (int r = 0; r < LINEAR_ROWS; r++) {
                if (r >= rows) break;
                const float xv = x[r * ldx + i];
                for (int o = 0; o < LINEAR_OUTS; o++) acc[o][r] = fmaf(xv, wf[o], acc[o][r]);
            }
        }
    }
    for (int r = 0; r < LINEAR_ROWS; r++) {
        if (r >= rows) break;
        for (int o = 0; o < LINEAR_OUTS; o++) {
            const float s = warp_sum(acc[o][r]);
            if (lane == 0 && o0 + o < out) {
                float* dst = y + r * ldy + o0 + o;
                float v = alpha * s;
                if (beta != 0.f) v += beta * *dst;
                if (bias) v += bias[o0 + o];
                *dst = v;
            }
        }
    }
}

extern "C" __global__ void linear_bf16_weights(float* y, const float* x, const unsigned short* w, const float* bias,
                                               int rows, int in, int out, i64 ldx, i64 ldw, i64 ldy, float alpha,
                                               float beta, int vec) {
    linear_narrow_weights<false>(y, x, w, bias, rows, in, out, ldx, ldw, ldy, alpha, beta, vec);
}

extern "C" __global__ void linear_f16_weights(float* y, const float* x, const unsigned short* w, const float* bias,
                                              int rows, int in, int out, i64 ldx, i64 ldw, i64 ldy, float alpha,
                                              float beta, int vec) {
    linear_narrow_weights<true>(y, x, w, bias, rows, in, out, ldx, ldw, ldy, alpha, beta, vec);
}

// dst[r * ldDst + c] = src[r * ldSrc + c] widened (bfloat16, or float16 with HALF), for r < rows, c < cols: a block of
// a matrix's rows.
template <bool HALF>
__device__ __forceinline__ void widen_rows(float* dst, const unsigned short* src, i64 rows, int cols, i64 ldDst,
                                           i64 ldSrc) {
    GRID_STRIDE(i, rows * cols) {
        const i64 r = i / cols, c = i - r * cols;
        dst[r * ldDst + c] = widen_weight<HALF>(src[r * ldSrc + c]);
    }
}

extern "C" __global__ void widen_bf16_rows(float* dst, const unsigned short* src, i64 rows, int cols, i64 ldDst,
                                           i64 ldSrc) {
    widen_rows<false>(dst, src, rows, cols, ldDst, ldSrc);
}

extern "C" __global__ void widen_f16_rows(float* dst, const unsigned short* src, i64 rows, int cols, i64 ldDst,
                                          i64 ldSrc) {
    widen_rows<true>(dst, src, rows, cols, ldDst, ldSrc);
}

// dst[r * ldDst + c] = src[r * ldSrc + c] rounded to bfloat16 (nearest even), for r < rows, c < cols.
extern "C" __global__ void round_bf16_rows(unsigned short* dst, const float* src, i64 rows, int cols, i64 ldDst,
                                           i64 ldSrc) {
    GRID_STRIDE(i, rows * cols) {
        const i64 r = i / cols, c = i - r * cols;
        dst[r * ldDst + c] = bf16_bits(src[r * ldSrc + c]);
    }
}

// ---- embedding ----

extern "C" __global__ void embedding_forward(float* out, const float* table, const int* ids, i64 rows, int dim) {
    i64 r = blockIdx.x;
    const float* src = table + (i64) ids[r] * dim;
    float* dst = out + r * dim;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) dst[j] = src[j];
}

// The same from a bfloat16 or float16 table (a narrow checkpoint's embeddings), widened exactly.
template <bool HALF>
__device__ __forceinline__ void embedding_narrow(float* out, const unsigned short* table, const int* ids, int dim) {
    i64 r = blockIdx.x;
    const unsigned short* src = table + (i64) ids[r] * dim;
    float* dst = out + r * dim;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) dst[j] = widen_weight<HALF>(src[j]);
}

extern "C" __global__ void embedding_forward_bf16(float* out, const unsigned short* table, const int* ids, i64 rows,
                                                  int dim) {
    embedding_narrow<false>(out, table, ids, dim);
}

extern "C" __global__ void embedding_forward_f16(float* out, const unsigned short* table, const int* ids, i64 rows,
                                                 int dim) {
    embedding_narrow<true>(out, table, ids, dim);
}

// One block per distinct id: rows order[starts[u] .. starts[u+1]) of dOut (in row order) are added to dTable[ids[u]].
extern "C" __global__ void embedding_backward(float* dTable, const float* dOut, const int* uniqueIds,
                                              const int* starts, const int* order, int dim) {
    int u = blockIdx.x;
    float* dst = dTable + (i64) uniqueIds[u] * dim;
    int from = starts[u], to = starts[u + 1];
    for (int j = threadIdx.x; j < dim; j += blockDim.x) {
        float s = dst[j];
        for (int k = from; k < to; k++) s += dOut[(i64) order[k] * dim + j];
        dst[j] = s;
    }
}

// ---- RMSNorm ----

__device__ float row_rstd(const float* x, int dim, float eps, float* scratch) {
    float s = 0.f;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) s += x[j] * x[j];
    s = block_sum(s, scratch);
    return 1.f / sqrtf(s / (float) dim + eps);
}

template <typename T>
__device__ __forceinline__ void rmsnorm_row(T* out, const float* x, const float* w, int dim, float eps) {
    __shared__ float scratch[THREADS / 32];
    const float* xr = x + (i64) blockIdx.x * dim;
    T* o = out + (i64) blockIdx.x * dim;
    float r = row_rstd(xr, dim, eps, scratch);
    for (int j = threadIdx.x; j < dim; j += blockDim.x) store(o + j, w[j] * (xr[j] * r));
}

extern "C" __global__ void rmsnorm_forward(float* out, const float* x, const float* w, i64 rows, int dim, float eps) {
    rmsnorm_row(out, x, w, dim, eps);
}

extern "C" __global__ void rmsnorm_forward_bf16(unsigned short* out, const float* x, const float* w, i64 rows, int dim,
                                                float eps) {
    rmsnorm_row(out, x, w, dim, eps);
}

// sum = a + b, then out = rmsnorm(sum), one block per row: the arithmetic of add_in_place then rmsnorm_forward.
// sum may be a or b; out may be a or b (every element is read and written by the same thread), not sum.
template <typename T>
__device__ __forceinline__ void add_rmsnorm_row(T* out, float* sum, const float* a, const float* b, const float* w,
                                                int dim, float eps) {
    __shared__ float scratch[THREADS / 32];
    const i64 base = (i64) blockIdx.x * dim;
    float s = 0.f;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) {
        float v = a[base + j] + b[base + j];
        sum[base + j] = v;
        s += v * v;
    }
    s = block_sum(s, scratch);
    float r = 1.f / sqrtf(s / (float) dim + eps);
    for (int j = threadIdx.x; j < dim; j += blockDim.x) store(out + base + j, w[j] * (sum[base + j] * r));
}

extern "C" __global__ void add_rmsnorm(float* out, float* sum, const float* a, const float* b, const float* w, i64 rows,
                                       int dim, float eps) {
    add_rmsnorm_row(out, sum, a, b, w, dim, eps);
}

extern "C" __global__ void add_rmsnorm_bf16(unsigned short* out, float* sum, const float* a, const float* b,
                                            const float* w, i64 rows, int dim, float eps) {
    add_rmsnorm_row(out, sum, a, b, w, dim, eps);
}

extern "C" __global__ void rmsnorm_rstd(float* rstd, const float* x, i64 rows, int dim, float eps) {
    __shared__ float scratch[THREADS / 32];
    float r = row_rstd(x + (i64) blockIdx.x * dim, dim, eps, scratch);
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

// partial[chunk, j] = sum over the chunk's rows of dOut[r, j] * x[r, j] * rstd[r] (the weight's gradient, in parts).
extern "C" __global__ void rmsnorm_weight_partial(float* partial, const float* dOut, const float* x, const float* rstd,
                                                  i64 rows, int dim, i64 rowsPerChunk) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= dim) return;
    i64 r0 = (i64) blockIdx.y * rowsPerChunk, r1 = min(rows, r0 + rowsPerChunk);
    float s = 0.f;
    for (i64 r = r0; r < r1; r++) s += dOut[r * dim + c] * (x[r * dim + c] * rstd[r]);
    partial[(i64) blockIdx.y * dim + c] = s;
}

// dx = rstd * (dOut * w) - x * rstd^3 / dim * sum(dOut * w * x); dx may be dOut itself.
extern "C" __global__ void rmsnorm_backward_x(float* dx, const float* dOut, const float* x, const float* w,
                                              const float* rstd, i64 rows, int dim) {
    __shared__ float scratch[THREADS / 32];
    i64 base = (i64) blockIdx.x * dim;
    float r = rstd[blockIdx.x];
    float s = 0.f;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) s += dOut[base + j] * w[j] * x[base + j];
    s = block_sum(s, scratch);
    float k = r * r * r * s / (float) dim;
    for (int j = threadIdx.x; j < dim; j += blockDim.x)
        dx[base + j] = r * (dOut[base + j] * w[j]) - x[base + j] * k;
}

// The backward of a norm on the residual stream, in one pass per row: dRes += dx (rmsnorm_backward_x's dx), copy
// (when not null) = the new dRes, and partial[block, j] = sum over the block's rows of dOut * x * rstd (the weight's
// gradient, finished in order by column_sum_finish). A block takes rows [blockIdx.x * rowsPerChunk, ...) in order;
// column j of the weight's gradient belongs to thread j % THREADS, in `acc` (dim floats of dynamic shared memory).
template <typename T>
__device__ __forceinline__ void rmsnorm_backward_add_rows(float* dRes, T* copy, float* partial, const float* dOut,
                                                          const float* x, const float* w, i64 rows, int dim, float eps,
                                                          i64 rowsPerChunk) {
    extern __shared__ float acc[];
    __shared__ float scratch[THREADS / 32];
    for (int j = threadIdx.x; j < dim; j += blockDim.x) acc[j] = 0.f;
    const i64 r0 = (i64) blockIdx.x * rowsPerChunk, r1 = min(rows, r0 + rowsPerChunk);
    for (i64 r = r0; r < r1; r++) {
        const i64 base = r * dim;
        float sq = 0.f, dot = 0.f;
        for (int j = threadIdx.x; j < dim; j += blockDim.x) {
            float xv = x[base + j];
            sq += xv * xv;
            dot += dOut[base + j] * w[j] * xv;
        }
        sq = block_sum(sq, scratch);
        dot = block_sum(dot, scratch);
        float rs = 1.f / sqrtf(sq / (float) dim + eps);
        float k = rs * rs * rs * dot / (float) dim;
        for (int j = threadIdx.x; j < dim; j += blockDim.x) {
            float dy = dOut[base + j], xv = x[base + j];
            acc[j] += dy * (xv * rs);
            float d = dRes[base + j] + (rs * (dy * w[j]) - xv * k);
            dRes[base + j] = d;
            if (copy) store(copy + base + j, d);
        }
    }
    for (int j = threadIdx.x; j < dim; j += blockDim.x) partial[(i64) blockIdx.x * dim + j] = acc[j];
}

extern "C" __global__ void rmsnorm_backward_add(float* dRes, float* copy, float* partial, const float* dOut,
                                                const float* x, const float* w, i64 rows, int dim, float eps,
                                                i64 rowsPerChunk) {
    rmsnorm_backward_add_rows(dRes, copy, partial, dOut, x, w, rows, dim, eps, rowsPerChunk);
}

extern "C" __global__ void rmsnorm_backward_add_bf16(float* dRes, unsigned short* copy, float* partial,
                                                     const float* dOut, const float* x, const float* w, i64 rows,
                                                     int dim, float eps, i64 rowsPerChunk) {
    rmsnorm_backward_add_rows(dRes, copy, partial, dOut, x, w, rows, dim, eps, rowsPerChunk);
}

// ---- rotary ----

// cos / sin of (positions[r] * invFreq[j]) in float32, the trigonometry in double (as the CPU backend does).
extern "C" __global__ void rotary_table(float* cosT, float* sinT, const float* positions, const float* invFreq,
                                        i64 rows, int half, float scale) {
    GRID_STRIDE(i, rows * half) {
        float angle = positions[i / half] * invFreq[i % half];
        cosT[i] = (float) cos((double) angle) * scale;
        sinT[i] = (float) sin((double) angle) * scale;
    }
}

// One thread per (row, pair j): every head's pair (j, j + half) rotated in place.
extern "C" __global__ void rotary_forward(float* x, const float* cosT, const float* sinT, i64 rows, int heads,
                                          int headDim, int half) {
    GRID_STRIDE(i, rows * half) {
        i64 r = i / half;
        int j = (int) (i % half);
        float c = cosT[i], s = sinT[i];
        float* row = x + r * heads * headDim;
        for (int h = 0; h < heads; h++) {
            float* p = row + h * headDim;
            float x1 = p[j], x2 = p[j + half];
            p[j] = x1 * c - x2 * s;
            p[j + half] = x2 * c + x1 * s;
        }
    }
}

// Element types of the kernels below that take any of the three, by number: float32, float16, bfloat16.
#define T_F32 0
#define T_F16 1
#define T_BF16 2

__device__ __forceinline__ float load_any(const void* p, i64 i, int type) {
    if (type == T_F32) return static_cast<const float*>(p)[i];
    const unsigned short b = static_cast<const unsigned short*>(p)[i];
    return type == T_F16 ? to_float(b) : bf16_to_float(b);
}

__device__ __forceinline__ void store_any(void* p, i64 i, int type, float v) {
    if (type == T_F32) static_cast<float*>(p)[i] = v;
    else static_cast<unsigned short*>(p)[i] = type == T_F16 ? half_bits(v) : bf16_bits(v);
}

// rotary_forward out of place: out (float32, or rounded once to float16 or bfloat16: `type`) = x rotated, the
// features past 2 * half copied. One thread per element; the same products as rotary_forward.
extern "C" __global__ void rotary_into(void* out, int type, const float* x, const float* cosT, const float* sinT,
                                       i64 rows, int heads, int headDim, int half) {
    const i64 width = (i64) heads * headDim;
    GRID_STRIDE(e, rows * width) {
        const i64 r = e / width;
        const int f = (int) (e % headDim);
        float y;
        if (f < half) {
            const float c = cosT[r * half + f], s = sinT[r * half + f];
            y = x[e] * c - x[e + half] * s;
        } else if (f < 2 * half) {
            const float c = cosT[r * half + f - half], s = sinT[r * half + f - half];
            y = x[e] * c + x[e - half] * s;
        } else {
            y = x[e];
        }
        store_any(out, e, type, y);
    }
}

// In place: d (dL/dy) becomes dL/dx. When angleGrad is not null it receives, per (row, j),
// positions[r] * sum over heads of (-dy1 * y2 + dy2 * y1), in double, y being `rotated` (elements of rotatedType).
// When copy is not null, dL/dx is also written there (elements of copyType: the rounded operand of the products
// that read it).
extern "C" __global__ void rotary_backward(float* d, const void* rotated, int rotatedType, void* copy, int copyType,
                                           const float* cosT, const float* sinT, const float* positions,
                                           double* angleGrad, i64 rows, int heads, int headDim, int half) {
    GRID_STRIDE(i, rows * half) {
        i64 r = i / half;
        int j = (int) (i % half);
        float c = cosT[i], s = sinT[i];
        i64 rowBase = r * heads * headDim;
        double g = 0.0;
        for (int h = 0; h < heads; h++) {
            i64 o = rowBase + (i64) h * headDim;
            float dy1 = d[o + j], dy2 = d[o + j + half];
            if (angleGrad)
                g += (double) (-dy1 * load_any(rotated, o + j + half, rotatedType) + dy2 * load_any(rotated, o + j, rotatedType));
            const float dx1 = dy1 * c + dy2 * s, dx2 = dy2 * c - dy1 * s;
            d[o + j] = dx1;
            d[o + j + half] = dx2;
            if (copy) {
                store_any(copy, o + j, copyType, dx1);
                store_any(copy, o + j + half, copyType, dx2);
            }
        }
        if (angleGrad) angleGrad[i] = (double) positions[r] * g;
    }
}

// The features past 2 * half of each head, which the rotation leaves as they are, into copy (elements of copyType).
extern "C" __global__ void copy_unrotated(void* copy, int copyType, const float* d, i64 rows, int heads, int headDim,
                                          int half) {
    const int rest = headDim - 2 * half;
    GRID_STRIDE(e, rows * heads * rest) {
        const i64 o = (e / rest) * headDim + 2 * half + e % rest;
        store_any(copy, o, copyType, d[o]);
    }
}

// The same over a double matrix.
extern "C" __global__ void column_sum_partial_d(double* partial, const double* x, i64 rows, int cols, i64 rowsPerChunk) {
    column_sum_chunk(partial, x, rows, cols, rowsPerChunk);
}

// ---- softmax cross-entropy ----

// One block per row. loss[r] = logsumexp(row) - row[target]; when grad is not null, grad's row (which may be the
// logits' own) becomes gradScale * (softmax - onehot(target)), in float32 or rounded to bfloat16. Rows whose target
// is below 0 get loss 0 (and zero gradient). The maximum and the sum of exponentials come from one read of the row:
// each thread keeps a running maximum and rescales its sum when the maximum grows; the threads' sums are then
// brought to the row's maximum and added in a fixed order.
template <typename T>
__device__ __forceinline__ void cross_entropy_row(T* grad, const float* logits, const int* targets, double* loss,
                                                  int vocab, float gradScale) {
    __shared__ float scratch[THREADS / 32];
    __shared__ double scratchD[THREADS / 32];
    const i64 r = blockIdx.x;
    const float* row = logits + r * vocab;
    T* g = grad ? grad + r * vocab : nullptr;
    const int target = targets[r];
    if (target < 0) {
        if (g) for (int j = threadIdx.x; j < vocab; j += blockDim.x) store(g + j, 0.f);
        if (threadIdx.x == 0) loss[r] = 0.0;
        return;
    }
    float mine = -INFINITY;
    double s = 0.0;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
        const float v = row[j];
        if (v > mine) {
            s = s * (double) expf(mine - v) + 1.0;
            mine = v;
        } else if (mine != -INFINITY) {   // (a -INFINITY before any finite logit adds nothing)
            s += (double) expf(v - mine);
        }
    }
    const float m = block_max(mine, scratch);
    s = block_sum_d(mine == -INFINITY ? 0.0 : s * (double) expf(mine - m), scratchD);
    const float t = row[target];
    __syncthreads();
    if (threadIdx.x == 0) loss[r] = log(s) + (double) m - (double) t;
    if (g) {
        const float inv = (float) (1.0 / s);
        for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
            const float p = expf(row[j] - m) * inv;
            store(g + j, gradScale * (j == target ? p - 1.f : p));
        }
    }
}

extern "C" __global__ void cross_entropy(float* grad, const float* logits, const int* targets, double* loss, i64 rows,
                                         int vocab, float gradScale) {
    cross_entropy_row(grad, logits, targets, loss, vocab, gradScale);
}

extern "C" __global__ void cross_entropy_bf16(unsigned short* grad, const float* logits, const int* targets,
                                              double* loss, i64 rows, int vocab, float gradScale) {
    cross_entropy_row(grad, logits, targets, loss, vocab, gradScale);
}

// ---- float16 storage (the KV cache) ----

extern "C" __global__ void to_half(unsigned short* dst, const float* src, i64 n) {
    for (i64 i = blockIdx.x * (i64) blockDim.x + threadIdx.x; i < n; i += (i64) gridDim.x * blockDim.x)
        dst[i] = half_bits(src[i]);
}

extern "C" __global__ void from_half(float* dst, const unsigned short* src, i64 n) {
    for (i64 i = blockIdx.x * (i64) blockDim.x + threadIdx.x; i < n; i += (i64) gridDim.x * blockDim.x)
        dst[i] = to_float(src[i]);
}

// Between the two 16-bit types, through float32 (exact) and rounded once to nearest even.
extern "C" __global__ void half_to_bf16(unsigned short* dst, const unsigned short* src, i64 n) {
    GRID_STRIDE(i, n) dst[i] = bf16_bits(to_float(src[i]));
}

extern "C" __global__ void bf16_to_half(unsigned short* dst, const unsigned short* src, i64 n) {
    GRID_STRIDE(i, n) dst[i] = half_bits(bf16_to_float(src[i]));
}

// ---- cuDNN's attention statistics ----

// out[b][j][i] = in[b][i][j] for `batch` matrices of rows x cols (a row-softmax statistic between cuDNN's
// [batch, heads, seq] layout and the kernels' [batch, seq, heads] one).
extern "C" __global__ void transpose_batched(float* out, const float* in, i64 batch, i64 rows, i64 cols) {
    GRID_STRIDE(x, batch * rows * cols) {
        i64 b = x / (rows * cols), r = x / cols % rows, c = x % cols;
        out[(b * cols + c) * rows + r] = in[x];
    }
}

// A decode step's new key or value row into row *position of a cache of `rows` rows of `width` values (the position
// is read when the kernel runs, so a recorded step stores each token at its own row; one out of range stores nothing).
extern "C" __global__ void store_row(float* cache, const float* src, const i64* position, i64 rows, int width) {
    const i64 p = *position;
    if (p < 0 || p >= rows) return;
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < width; j += gridDim.x * blockDim.x) cache[p * width + j] = src[j];
}

extern "C" __global__ void store_row_half(unsigned short* cache, const float* src, const i64* position, i64 rows,
                                          int width) {
    const i64 p = *position;
    if (p < 0 || p >= rows) return;
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < width; j += gridDim.x * blockDim.x)
        cache[p * width + j] = half_bits(src[j]);
}
