// The CUDA execution model on the CPU, enough to run Ropeway's element-wise, row and reduction kernels (ops.cu)
// without a GPU: a grid's blocks run one after another, a block's threads are OS threads, __syncthreads is a
// barrier of the block, and a warp shuffle exchanges values through a per-warp buffer between two barriers of the
// warp. Shared memory is static storage (one block runs at a time). Inline PTX is not supported; the test replaces
// the few float16 conversions written in it before compiling.
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

struct Dim3 {
    unsigned x, y, z;
};
thread_local Dim3 threadIdx, blockIdx;
Dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__
#define __launch_bounds__(...)

struct WarpExchange {
    std::barrier<> bar{32};
    double slot[32];
    unsigned regs[32][6];                // tensor-core fragments (mma_shim.h)
    const unsigned short* rows[32];      // ldmatrix row addresses (mma_shim.h)
};
std::barrier<>* blockBarrier;
std::vector<std::unique_ptr<WarpExchange>> warpExchanges;
thread_local WarpExchange* myWarp;
thread_local int myLane;

inline void __syncthreads() { blockBarrier->arrive_and_wait(); }

template <typename T>
T __shfl_xor_sync(unsigned, T v, int laneMask) {
    T* slot = reinterpret_cast<T*>(myWarp->slot);
    slot[myLane] = v;
    myWarp->bar.arrive_and_wait();
    T other = slot[myLane ^ laneMask];
    myWarp->bar.arrive_and_wait();
    return other;
}

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned i; std::memcpy(&i, &f, 4); return i; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline float fmaxf(float a, float b) { return std::fmax(a, b); }

// Dynamic shared memory (extern __shared__ arrays are rewritten to point here).
alignas(16) float dynamicShared[1 << 16];

inline unsigned short shimHalfBits(float x) { _Float16 h = (_Float16) x; unsigned short b; std::memcpy(&b, &h, 2); return b; }
inline float shimHalfToFloat(unsigned short b) { _Float16 h; std::memcpy(&h, &b, 2); return (float) h; }

// Runs kernel() as a grid of gx x gy blocks of `threads` threads (a multiple of 32): the threads are started once
// and walk the blocks in order together, a barrier between one block and the next.
template <typename Kernel>
void launch(int gx, int gy, int threads, Kernel kernel) {
    gridDim = {(unsigned) gx, (unsigned) gy, 1};
    blockDim = {(unsigned) threads, 1, 1};
    std::barrier<> bar(threads);
    blockBarrier = &bar;
    warpExchanges.clear();
    for (int w = 0; w < threads / 32; w++) warpExchanges.push_back(std::make_unique<WarpExchange>());
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; t++)
        ts.emplace_back([&, t] {
            threadIdx = {(unsigned) t, 0, 0};
            myWarp = warpExchanges[t / 32].get();
            myLane = t % 32;
            for (int by = 0; by < gy; by++)
                for (int bx = 0; bx < gx; bx++) {
                    blockIdx = {(unsigned) bx, (unsigned) by, 0};
                    kernel();
                    bar.arrive_and_wait();
                }
        });
    for (auto& t : ts) t.join();
}
