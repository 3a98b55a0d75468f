// The CUDA execution model on the CPU, enough to run Ropeway's kernels without a GPU: a grid's blocks run one after
// another on the calling thread; a block's threads are fibers (each with its own stack, switched in user space) run in
// turn until each reaches a synchronisation point: __syncthreads (every thread of the block), or a warp's exchange
// (the 32 lanes of one warp: shuffles, and the tensor-core stand-ins of mma_shim.h). A point is passed once every
// thread it waits for has reached it (a thread that has returned counts as arrived); a block where no point can be
// passed is a deadlock, reported. Warps run one after another between barriers, in index order in one block and in
// reverse order in the next, so that a missing barrier shows (shimRunBlock). Shared memory is static storage (one block runs at a time). Inline PTX is not
// supported; the few helpers written in it get CPU bodies before compiling. x86-64 only (the context switch).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sys/mman.h>
#include <type_traits>
#include <utility>
#include <vector>

struct Dim3 {
    unsigned x, y, z;
};
Dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__
#define __launch_bounds__(...)

struct WarpExchange {
    double slot[32];
    unsigned regs[32][6];                // tensor-core fragments (mma_shim.h)
    const unsigned short* rows[32];      // ldmatrix row addresses (mma_shim.h)
    float product[16][8];                // an mma's product, made by lane 0 (mma_shim.h)
};
// (Never destroyed: a process that exits while a launch runs must not pull them from under it.)
std::vector<std::unique_ptr<WarpExchange>>& warpExchanges = *new std::vector<std::unique_ptr<WarpExchange>>;
WarpExchange* myWarp;
int myLane;

// ---- fibers ----

// Saves the callee-saved registers, the SSE and x87 control words and the stack pointer into *save, and resumes the
// context whose stack pointer is `next` (System V x86-64).
extern "C" void shimSwitch(void** save, void* next);
asm(R"(
    .text
    .globl shimSwitch
    .hidden shimSwitch
    .type shimSwitch, @function
shimSwitch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size shimSwitch, .-shimSwitch
)");

enum FiberState { RUNNABLE, AT_BLOCK, AT_WARP, DONE };

struct Fiber {
    void* sp;
    char* stack;
    FiberState state;
};

const size_t STACK_BYTES = 256 * 1024, GUARD_BYTES = 4096;
std::vector<Fiber>& fibers = *new std::vector<Fiber>;
int currentFiber;
void* schedulerSp;
void (*fiberBody)(void*);
void* fiberContext;

// Where a fiber starts: the kernel, then it is done and hands back for good.
extern "C" void shimFiberEntry() {
    fiberBody(fiberContext);
    fibers[currentFiber].state = DONE;
    shimSwitch(&fibers[currentFiber].sp, schedulerSp);
    std::abort();   // a finished fiber is never resumed
}

// A fresh context for fiber i, entering shimFiberEntry on its first resume.
inline void shimStartFiber(int i) {
    Fiber& f = fibers[i];
    if (f.stack == nullptr) {
        void* m = mmap(nullptr, STACK_BYTES + GUARD_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) { std::fprintf(stderr, "shim: no memory for a fiber stack\n"); std::abort(); }
        mprotect(m, GUARD_BYTES, PROT_NONE);   // an overflowing stack faults instead of writing over another
        f.stack = (char*) m;
    }
    uint64_t* top = (uint64_t*) (f.stack + STACK_BYTES + GUARD_BYTES);
    uint64_t* ret = top - 2;                   // 16-byte aligned: entered as if called
    ret[0] = (uint64_t) &shimFiberEntry;
    for (int r = 1; r <= 6; r++) ret[-r] = 0;  // rbp, rbx, r12 .. r15
    uint32_t* control = (uint32_t*) (ret - 7);
    control[0] = 0x1f80;                       // MXCSR: all exceptions masked, round to nearest
    control[1] = 0x037f;                       // x87 control word, the default
    f.sp = ret - 7;
    f.state = RUNNABLE;
}

inline void shimYield(FiberState state) {
    fibers[currentFiber].state = state;
    shimSwitch(&fibers[currentFiber].sp, schedulerSp);
}

inline void __syncthreads() { shimYield(AT_BLOCK); }

// Waits until every lane of this warp has come here.
inline void shimWarpSync() { shimYield(AT_WARP); }

// Runs one block. Between two barriers a GPU may run a block's warps in any order and at any pace, so the stand-in
// runs them one at a time: a warp's lanes together (each lane to its next warp exchange, in turn) up to the next
// __syncthreads or the end, then the next warp; warps (and lanes) in index order, or in reverse order when `reverse`
// (launch alternates from block to block). A kernel that reads what another warp writes without a barrier between
// the two then reads stale data under one of the orders, and its results show it.
inline void shimRunBlock(int threads, bool reverse) {
    for (int i = 0; i < threads; i++) shimStartFiber(i);
    const int warps = threads / 32;
    for (;;) {
        for (int wi = 0; wi < warps; wi++) {
            const int w = reverse ? warps - 1 - wi : wi;
            myWarp = warpExchanges[w].get();
            for (;;) {
                for (int li = 0; li < 32; li++) {
                    const int i = 32 * w + (reverse ? 31 - li : li);
                    if (fibers[i].state != RUNNABLE) continue;
                    currentFiber = i;
                    threadIdx = {(unsigned) i, 0, 0};
                    myLane = i % 32;
                    shimSwitch(&schedulerSp, fibers[i].sp);
                }
                bool waiting = false, atBlock = false;
                for (int l = 32 * w; l < 32 * w + 32; l++) {
                    if (fibers[l].state == AT_WARP) waiting = true;
                    if (fibers[l].state == AT_BLOCK) atBlock = true;
                }
                if (!waiting) break;   // every lane at the barrier or done
                if (atBlock) {
                    std::fprintf(stderr, "shim: deadlock in block (%u, %u, %u): lanes of warp %d wait at different points\n",
                                 blockIdx.x, blockIdx.y, blockIdx.z, w);
                    std::abort();
                }
                for (int l = 32 * w; l < 32 * w + 32; l++)
                    if (fibers[l].state == AT_WARP) fibers[l].state = RUNNABLE;
            }
        }
        // Every thread is at the barrier or has returned (which counts as arrived).
        bool allDone = true;
        for (int i = 0; i < threads; i++) {
            if (fibers[i].state != DONE) allDone = false;
            if (fibers[i].state == AT_BLOCK) fibers[i].state = RUNNABLE;
        }
        if (allDone) return;
    }
}

template <typename T>
T __shfl_xor_sync(unsigned, T v, int laneMask) {
    T* slot = reinterpret_cast<T*>(myWarp->slot);
    slot[myLane] = v;
    shimWarpSync();
    T other = slot[myLane ^ laneMask];
    shimWarpSync();
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
// float16 to float32 through a table of all 65536 values (the compiler's own conversion is a library call without F16C).
struct ShimHalfTable {
    float value[65536];
    ShimHalfTable() {
        for (unsigned b = 0; b < 65536; b++) {
            unsigned short bits = (unsigned short) b;
            _Float16 h;
            std::memcpy(&h, &bits, 2);
            value[b] = (float) h;
        }
    }
};
inline const ShimHalfTable shimHalves;
inline float shimHalfToFloat(unsigned short b) { return shimHalves.value[b]; }

// The dynamic shared memory a block was given, when a launch says (-1: unknown). Writes past it are caught after each
// block, in a window beyond its end (a GPU would fault, or write over another block's memory).
inline long shimSharedBytes = -1;

inline void shimCheckSharedBounds() {
    if (shimSharedBytes < 0) return;
    const unsigned char* bytes = reinterpret_cast<const unsigned char*>(dynamicShared);
    const long end = (long) sizeof dynamicShared, window = shimSharedBytes > 0 ? 16384 : 1024;
    for (long i = shimSharedBytes; i < end && i < shimSharedBytes + window; i++)
        if (bytes[i] != 0xff) {
            std::fprintf(stderr, "shim: block (%u, %u, %u) wrote shared memory at byte %ld, past the %ld bytes it was given\n",
                         blockIdx.x, blockIdx.y, blockIdx.z, i, shimSharedBytes);
            std::abort();
        }
}

// Aborts when `p` is not a multiple of `bytes` (what a GPU instruction's operand must be).
inline void shimAligned(const void* p, unsigned bytes, const char* what) {
    if (reinterpret_cast<uintptr_t>(p) % bytes != 0) {
        std::fprintf(stderr, "shim: %s at %p, not %u-byte aligned\n", what, p, bytes);
        std::abort();
    }
}

// A pointer to a 4-, 8- or 16-byte value (a pair of halves, float2, float4, uint4), checked for the alignment a GPU
// needs to load or store it in one access.
template <typename T, typename P>
inline T* shimVectorCast(P* p) {
    shimAligned(p, sizeof(T), "a vector load or store");
    return reinterpret_cast<T*>(p);
}

// Asynchronous copies (cp.async). A GPU lands one at any moment between its issue and the issuing thread's wait
// (cp.async.wait_group 0), so the stand-in takes the two extremes, in alternate pairs of blocks (launch): lazily, only
// when the thread waits, so that a kernel reading a tile before waiting for it reads what was there; or eagerly, at
// once, so that a kernel copying into a buffer that another warp may still be reading (no barrier between that read
// and the copy) overwrites it under one of the warp orders.
inline bool shimEagerCopies = false;

struct ShimCopy {
    void* dst;
    const void* src;
    bool valid;
};
inline std::vector<std::vector<ShimCopy>> shimPendingCopies;   // by thread of the running block

inline void shimCpAsync(void* dst, const void* src, bool valid) {
    shimAligned(dst, 16, "cp.async destination");
    shimAligned(src, 16, "cp.async source");
    if (shimEagerCopies) {
        if (valid) std::memcpy(dst, src, 16);
        else std::memset(dst, 0, 16);
        return;
    }
    shimPendingCopies[currentFiber].push_back({dst, src, valid});
}

inline void shimCpAsyncWait() {
    for (const ShimCopy& c : shimPendingCopies[currentFiber]) {
        if (c.valid) std::memcpy(c.dst, c.src, 16);
        else std::memset(c.dst, 0, 16);
    }
    shimPendingCopies[currentFiber].clear();
}

// Runs kernel() as a grid of gx x gy x gz blocks of `threads` threads (a multiple of 32, at most 1024), block after
// block. Dynamic shared memory starts filled with 0xFF bytes (NaN as float32 and as float16), as a GPU's holds
// whatever was there before.
template <typename Kernel>
void launch(int gx, int gy, int gz, int threads, Kernel kernel) {
    if (threads <= 0 || threads % 32 != 0 || threads > 1024) {
        std::fprintf(stderr, "shim: blocks of %d threads\n", threads);
        std::abort();
    }
    gridDim = {(unsigned) gx, (unsigned) gy, (unsigned) gz};
    blockDim = {(unsigned) threads, 1, 1};
    std::memset(dynamicShared, 0xff, sizeof dynamicShared);
    if ((int) fibers.size() < threads) fibers.resize(threads, Fiber{nullptr, nullptr, DONE});
    while ((int) warpExchanges.size() < threads / 32) warpExchanges.push_back(std::make_unique<WarpExchange>());
    fiberBody = [](void* k) { (*static_cast<Kernel*>(k))(); };
    fiberContext = &kernel;
    for (int bz = 0; bz < gz; bz++)
        for (int by = 0; by < gy; by++)
            for (int bx = 0; bx < gx; bx++) {
                blockIdx = {(unsigned) bx, (unsigned) by, (unsigned) bz};
                shimPendingCopies.assign(threads, {});   // copies a block never waited for are dropped with it
                // Blocks 0, 1, 2, 3, 4, ... (by the sum of their indices): warps in order with lazy copies, reversed
                // with lazy copies, in order with eager ones, reversed with eager ones, and again.
                const int n = bx + by + bz;
                shimEagerCopies = (n & 2) != 0;
                shimRunBlock(threads, (n & 1) != 0);
                shimCheckSharedBounds();
            }
}

template <typename Kernel>
void launch(int gx, int gy, int threads, Kernel kernel) {
    launch(gx, gy, 1, threads, kernel);
}

// A kernel called with cuLaunchKernel's argument array: one pointer per parameter, to its value. Returns 1 when the
// array has a pointer past the last parameter (the caller ends it with a null), 2 when it ends before.
template <typename... A, std::size_t... I>
void shimCallWith(void (*f)(A...), void** p, std::index_sequence<I...>) {
    f(*reinterpret_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(p[I])...);
}

template <typename... A>
void shimCall(void (*f)(A...), void** p) {
    shimCallWith(f, p, std::index_sequence_for<A...>{});
}

template <typename... A>
int shimCheckArguments(void (*)(A...), void** p) {
    for (std::size_t i = 0; i < sizeof...(A); i++)
        if (p[i] == nullptr) return 2;
    return p[sizeof...(A)] == nullptr ? 0 : 1;
}

// The byte size of each of a kernel's parameters (for copying an argument array when a launch is recorded).
template <typename... A>
int shimArgumentSizes(void (*)(A...), int* sizes, int capacity) {
    const int n = (int) sizeof...(A);
    const int all[] = {0, (int) sizeof(std::remove_cv_t<std::remove_reference_t<A>>)...};
    for (int i = 0; i < n && i < capacity; i++) sizes[i] = all[i + 1];
    return n;
}

// The launcher the emulated driver calls for kernel `name` (a module built for the CPU has one per kernel).
#define SHIM_LAUNCHER(name)                                                                                         \
    extern "C" __attribute__((visibility("default"))) int ropeway_launch_##name(unsigned gx, unsigned gy, unsigned gz, \
                                                                                unsigned threads, unsigned shared,  \
                                                                                void** p) {                         \
        int status = shimCheckArguments(name, p);                                                                    \
        if (status != 0) return status;                                                                              \
        shimSharedBytes = (long) shared;                                                                             \
        launch((int) gx, (int) gy, (int) gz, (int) threads, [&] { shimCall(name, p); });                             \
        shimSharedBytes = -1;                                                                                        \
        return 0;                                                                                                    \
    }                                                                                                                \
    extern "C" __attribute__((visibility("default"))) int ropeway_argsizes_##name(int* sizes, int capacity) {        \
        return shimArgumentSizes(name, sizes, capacity);                                                             \
    }
