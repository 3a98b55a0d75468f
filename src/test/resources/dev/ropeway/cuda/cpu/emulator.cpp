// The CUDA driver, NVRTC and cuBLAS, emulated on the CPU: the parts of their C APIs that the GPU backend binds,
// with the same signatures and status codes, so that the backend's own Java code (argument packing, launch shapes,
// shared-memory opt-ins, copies, products) runs unchanged against it. Built as one shared library that answers for
// libcuda, libnvrtc, libcublas, libcublasLt and libcudnn (cudnn.cpp).
//
// - Device memory is host memory. Every allocation is remembered, filled with 0xFF bytes (NaN in float32, bfloat16 and
//   float16) so that a read of what was never written shows, and every copy and product checks that the bytes it
//   touches lie inside one live allocation.
// - "Compiling" a kernel source asks a compiler registered by the test (ropeway_emulator_set_compiler), which builds it
//   for the CPU as a shared library (shim.h, mma_shim.h) with one launcher per kernel; the "CUBIN" names that library.
// - A launch checks the grid, the block and the dynamic shared memory against the kernel's limit (raised only by
//   cuFuncSetAttribute, as on a GPU), and the number of arguments against the kernel's parameter list; a block that
//   writes shared memory past the bytes its launch gave it, or an asynchronous copy, ldmatrix or vector atomic on a
//   misaligned address (and any 4-, 8- or 16-byte vector load or store), aborts the process with a message (shim.h),
//   where a GPU would fault or corrupt memory.
// - cublasGemmEx computes in double from inputs rounded as the compute type says (TF32: 10 mantissa bits; 16BF: 7).
// - Streams run in issue order. While a stream is captured, launches, device-to-device copies, fills and products on
//   it are recorded (with copies of their arguments) into a graph that cuGraphLaunch runs again; anything a real
//   capture refuses (stream-ordered allocation or free, a synchronous copy, a synchronisation, work on another
//   stream) fails and invalidates the capture, as CUDA does.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#define EXPORT extern "C" __attribute__((visibility("default")))

namespace {

std::recursive_mutex lock;

// ---- device memory ----

const size_t TOTAL_MEMORY = size_t(8) << 30;
std::map<uintptr_t, size_t> allocations;   // start -> bytes
size_t used = 0;

// Whether [p, p + bytes) lies inside one live allocation.
bool inside(uintptr_t p, size_t bytes) {
    auto it = allocations.upper_bound(p);
    if (it == allocations.begin()) return false;
    --it;
    return p >= it->first && p + bytes <= it->first + it->second;
}

// ---- modules and functions ----

struct Function {
    int (*launch)(unsigned, unsigned, unsigned, unsigned, unsigned, void**);
    int (*argumentSizes)(int*, int);
    int maxDynamicShared;
    std::string name;
};

// ---- streams and graphs ----

struct Stream {};

struct Graph {
    std::vector<std::function<int()>> work;
};

const int CAPTURE_UNSUPPORTED = 900;   // CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
const int CAPTURE_INVALIDATED = 901;   // CUDA_ERROR_STREAM_CAPTURE_INVALIDATED

Stream* capturing = nullptr;   // the stream being captured, if any
Graph* captured = nullptr;     // what it has recorded so far
bool captureInvalid = false;

// Called by every call a capture refuses: fails it (and the capture) while one is under way.
bool refusedWhileCapturing(const char* call) {
    if (capturing == nullptr) return false;
    std::fprintf(stderr, "emulated %s: not allowed while a stream is being captured\n", call);
    captureInvalid = true;
    return true;
}

// Work on `stream`: recorded when it is the captured stream, refused on another stream during a capture, else run.
int submit(void* stream, const char* call, std::function<int()> work) {
    if (capturing != nullptr) {
        if (stream != capturing) {
            std::fprintf(stderr, "emulated %s: work on another stream while one is being captured\n", call);
            captureInvalid = true;
            return CAPTURE_UNSUPPORTED;
        }
        captured->work.push_back(std::move(work));
        return 0;
    }
    return work();
}

struct Module {
    void* handle;
};

const char MODULE_MAGIC[] = "ROPEWAY-CPU-MODULE\n";

const int SHARED_DEFAULT = 48 * 1024;
const int SHARED_OPT_IN = 227 * 1024;   // an H100's
const int MULTIPROCESSORS = 8;

// ---- NVRTC ----

typedef int (*Compiler)(const char* name, const char* source, const char* options, char* out, long capacity);
Compiler compiler = nullptr;

struct Program {
    std::string source, name, log, image;
};

float roundMantissa(float x, int bits) {   // round to nearest even, keeping `bits` explicit mantissa bits
    if (bits >= 23 || !std::isfinite(x)) return x;
    uint32_t u;
    std::memcpy(&u, &x, 4);
    const int drop = 23 - bits;
    const uint32_t half = 1u << (drop - 1), lsb = (u >> drop) & 1u;
    u = (u + half - 1 + lsb) & ~((1u << drop) - 1);
    std::memcpy(&x, &u, 4);
    return x;
}

float bf16ToFloat(uint16_t b) {
    uint32_t u = (uint32_t) b << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

uint16_t floatToBf16(float x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    if (std::isnan(x)) return (uint16_t) ((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t) (u >> 16);
}

}  // namespace

// =====================================================================================================================
// The driver API (libcuda)
// =====================================================================================================================

EXPORT int cuInit(unsigned) { return 0; }

EXPORT int cuDriverGetVersion(int* v) {
    *v = 13000;
    return 0;
}

EXPORT int cuDeviceGetCount(int* n) {
    *n = 1;
    return 0;
}

EXPORT int cuDeviceGet(int* device, int ordinal) {
    if (ordinal != 0) return 101;   // CUDA_ERROR_INVALID_DEVICE
    *device = 0;
    return 0;
}

EXPORT int cuDeviceGetName(char* name, int length, int device) {
    if (device != 0) return 101;
    std::snprintf(name, length, "CPU emulation of an sm_90 GPU");
    return 0;
}

EXPORT int cuDeviceGetAttribute(int* value, int attribute, int device) {
    if (device != 0) return 101;
    switch (attribute) {
        case 16: *value = MULTIPROCESSORS; return 0;   // multiprocessor count
        case 75: *value = 9; return 0;                 // compute capability
        case 76: *value = 0; return 0;
        case 97: *value = SHARED_OPT_IN; return 0;     // shared memory per block, opted in
        default: return 1;                             // CUDA_ERROR_INVALID_VALUE: not emulated
    }
}

EXPORT int cuDeviceTotalMem_v2(size_t* bytes, int device) {
    if (device != 0) return 101;
    *bytes = TOTAL_MEMORY;
    return 0;
}

static int contextToken;

EXPORT int cuDevicePrimaryCtxRetain(void** context, int device) {
    if (device != 0) return 101;
    *context = &contextToken;
    return 0;
}

EXPORT int cuCtxSetCurrent(void* context) { return context == &contextToken ? 0 : 201; }   // CUDA_ERROR_INVALID_CONTEXT

EXPORT int cuCtxSynchronize() {
    std::lock_guard<std::recursive_mutex> g(lock);
    return refusedWhileCapturing("cuCtxSynchronize") ? CAPTURE_UNSUPPORTED : 0;
}

EXPORT int cuDeviceGetDefaultMemPool(void** pool, int device) {
    if (device != 0) return 101;
    *pool = &contextToken;
    return 0;
}

EXPORT int cuMemPoolSetAttribute(void*, int, void*) { return 0; }

// Freed memory goes straight back here (no pool keeps it), so trimming has nothing to give back.
EXPORT int cuMemPoolTrimTo(void* pool, size_t) { return pool == &contextToken ? 0 : 1; }

int allocate(uintptr_t* pointer, size_t bytes) {
    if (bytes == 0) return 1;
    if (used + bytes > TOTAL_MEMORY) return 2;   // CUDA_ERROR_OUT_OF_MEMORY
    void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
    if (p == nullptr) return 2;
    std::memset(p, 0xff, bytes);
    allocations[(uintptr_t) p] = bytes;
    used += bytes;
    *pointer = (uintptr_t) p;
    return 0;
}

EXPORT int cuMemAllocAsync(uintptr_t* pointer, size_t bytes, void*) {
    std::lock_guard<std::recursive_mutex> g(lock);
    if (refusedWhileCapturing("cuMemAllocAsync")) return CAPTURE_UNSUPPORTED;
    return allocate(pointer, bytes);
}

// cuMemAlloc may be called while capturing in relaxed mode (it is not stream work).
EXPORT int cuMemAlloc_v2(uintptr_t* pointer, size_t bytes) {
    std::lock_guard<std::recursive_mutex> g(lock);
    return allocate(pointer, bytes);
}

int release(uintptr_t pointer) {
    auto it = allocations.find(pointer);
    if (it == allocations.end()) return 1;
    used -= it->second;
    allocations.erase(it);
    std::free((void*) pointer);
    return 0;
}

EXPORT int cuMemFreeAsync(uintptr_t pointer, void*) {
    std::lock_guard<std::recursive_mutex> g(lock);
    if (refusedWhileCapturing("cuMemFreeAsync")) return CAPTURE_UNSUPPORTED;
    return release(pointer);
}

EXPORT int cuMemFree_v2(uintptr_t pointer) {
    std::lock_guard<std::recursive_mutex> g(lock);
    if (refusedWhileCapturing("cuMemFree")) return CAPTURE_UNSUPPORTED;
    return release(pointer);
}

EXPORT int cuMemGetInfo_v2(size_t* free, size_t* total) {
    std::lock_guard<std::recursive_mutex> g(lock);
    *free = TOTAL_MEMORY - used;
    *total = TOTAL_MEMORY;
    return 0;
}

EXPORT int cuMemcpyHtoD_v2(uintptr_t dst, const void* src, size_t bytes) {
    std::lock_guard<std::recursive_mutex> g(lock);
    if (refusedWhileCapturing("cuMemcpyHtoD")) return CAPTURE_UNSUPPORTED;
    if (bytes == 0) return 0;
    if (!inside(dst, bytes)) return 1;
    std::memcpy((void*) dst, src, bytes);
    return 0;
}

EXPORT int cuMemcpyDtoH_v2(void* dst, uintptr_t src, size_t bytes) {
    std::lock_guard<std::recursive_mutex> g(lock);
    if (refusedWhileCapturing("cuMemcpyDtoH")) return CAPTURE_UNSUPPORTED;
    if (bytes == 0) return 0;
    if (!inside(src, bytes)) return 1;
    std::memcpy(dst, (const void*) src, bytes);
    return 0;
}

EXPORT int cuMemcpyDtoDAsync_v2(uintptr_t dst, uintptr_t src, size_t bytes, void* stream) {
    std::lock_guard<std::recursive_mutex> g(lock);
    return submit(stream, "cuMemcpyDtoDAsync", [=] {
        if (bytes == 0) return 0;
        if (!inside(dst, bytes) || !inside(src, bytes)) return 1;
        std::memmove((void*) dst, (const void*) src, bytes);
        return 0;
    });
}

EXPORT int cuMemsetD32Async(uintptr_t dst, unsigned value, size_t count, void* stream) {
    std::lock_guard<std::recursive_mutex> g(lock);
    return submit(stream, "cuMemsetD32Async", [=] {
        if (count == 0) return 0;
        if (dst % 4 != 0 || !inside(dst, count * 4)) return 1;
        unsigned* p = (unsigned*) dst;
        for (size_t i = 0; i < count; i++) p[i] = value;
        return 0;
    });
}

EXPORT int cuModuleLoadData(Module** module, const void* image) {
    std::lock_guard<std::recursive_mutex> g(lock);
    const char* text = (const char*) image;
    if (std::strncmp(text, MODULE_MAGIC, sizeof(MODULE_MAGIC) - 1) != 0) return 200;   // CUDA_ERROR_INVALID_IMAGE
    void* handle = dlopen(text + sizeof(MODULE_MAGIC) - 1, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
        std::fprintf(stderr, "emulated cuModuleLoadData: %s\n", dlerror());
        return 218;   // CUDA_ERROR_INVALID_PTX
    }
    *module = new Module{handle};
    return 0;
}

EXPORT int cuModuleGetFunction(Function** function, Module* module, const char* name) {
    std::lock_guard<std::recursive_mutex> g(lock);
    void* launch = dlsym(module->handle, (std::string("ropeway_launch_") + name).c_str());
    void* sizes = dlsym(module->handle, (std::string("ropeway_argsizes_") + name).c_str());
    if (launch == nullptr || sizes == nullptr) return 500;   // CUDA_ERROR_NOT_FOUND
    *function = new Function{(int (*)(unsigned, unsigned, unsigned, unsigned, unsigned, void**)) launch, (int (*)(int*, int)) sizes,
                             SHARED_DEFAULT, name};
    return 0;
}

EXPORT int cuFuncSetAttribute(Function* f, int attribute, int value) {
    std::lock_guard<std::recursive_mutex> g(lock);
    if (attribute != 8) return 1;   // only CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    if (value < 0 || value > SHARED_OPT_IN) return 1;
    f->maxDynamicShared = value;
    return 0;
}

EXPORT int cuLaunchKernel(Function* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                          unsigned shared, void* stream, void** params, void** extra) {
    std::lock_guard<std::recursive_mutex> g(lock);
    if (gx == 0 || gy == 0 || gz == 0 || gx > 2147483647u || gy > 65535 || gz > 65535) return 1;
    if (bx == 0 || by != 1 || bz != 1 || bx > 1024 || bx % 32 != 0) {
        // The kernels launch one-dimensional blocks of whole warps; anything else is a mistake here.
        std::fprintf(stderr, "emulated cuLaunchKernel(%s): block %ux%ux%u\n", f->name.c_str(), bx, by, bz);
        return 1;
    }
    if ((int) shared > f->maxDynamicShared) return 1;   // as a GPU: above 48 KiB only once opted in
    if (extra != nullptr || params == nullptr) return 1;
    // The argument values are copied now, as cuLaunchKernel copies them (into a graph's kernel node when the stream
    // is captured), after checking the array against the kernel's parameter list.
    int sizes[64];
    const int n = f->argumentSizes(sizes, 64);
    int status = n > 64 ? 1 : 0;
    for (int i = 0; i < n && status == 0; i++)
        if (params[i] == nullptr) status = 2;
    if (status == 0 && params[n] != nullptr) status = 1;
    if (status != 0) {
        std::fprintf(stderr, "emulated cuLaunchKernel(%s): %s arguments than the kernel's parameters\n", f->name.c_str(),
                     status == 1 ? "more" : "fewer");
        return 1;
    }
    auto values = std::make_shared<std::vector<std::vector<unsigned char>>>();
    for (int i = 0; i < n; i++) values->emplace_back((unsigned char*) params[i], (unsigned char*) params[i] + sizes[i]);
    return submit(stream, "cuLaunchKernel", [=] {
        std::vector<void*> p;
        for (auto& v : *values) p.push_back(v.data());
        p.push_back(nullptr);
        return f->launch(gx, gy, gz, bx, shared, p.data()) == 0 ? 0 : 1;
    });
}

EXPORT int cuStreamCreate(Stream** stream, unsigned) {
    *stream = new Stream();
    return 0;
}

EXPORT int cuStreamDestroy_v2(Stream* stream) {
    std::lock_guard<std::recursive_mutex> g(lock);
    if (stream == capturing) return 1;
    delete stream;
    return 0;
}

EXPORT int cuStreamSynchronize(Stream*) {
    std::lock_guard<std::recursive_mutex> g(lock);
    return refusedWhileCapturing("cuStreamSynchronize") ? CAPTURE_UNSUPPORTED : 0;
}

EXPORT int cuStreamBeginCapture_v2(Stream* stream, int mode) {
    std::lock_guard<std::recursive_mutex> g(lock);
    if (stream == nullptr || capturing != nullptr || mode < 0 || mode > 2) return 1;   // never the legacy stream
    capturing = stream;
    captured = new Graph();
    captureInvalid = false;
    return 0;
}

EXPORT int cuStreamEndCapture(Stream* stream, Graph** graph) {
    std::lock_guard<std::recursive_mutex> g(lock);
    if (stream != capturing || capturing == nullptr) return 1;
    capturing = nullptr;
    if (captureInvalid) {
        delete captured;
        captured = nullptr;
        *graph = nullptr;
        return CAPTURE_INVALIDATED;
    }
    *graph = captured;
    captured = nullptr;
    return 0;
}

EXPORT int cuGraphInstantiateWithFlags(Graph** exec, Graph* graph, unsigned long long) {
    std::lock_guard<std::recursive_mutex> g(lock);
    if (graph == nullptr) return 1;
    *exec = new Graph(*graph);
    return 0;
}

EXPORT int cuGraphLaunch(Graph* exec, Stream* stream) {
    std::lock_guard<std::recursive_mutex> g(lock);
    if (exec == nullptr) return 1;
    if (capturing != nullptr) return CAPTURE_UNSUPPORTED;
    (void) stream;
    for (auto& w : exec->work) {
        int status = w();
        if (status != 0) return status;
    }
    return 0;
}

EXPORT int cuGraphExecDestroy(Graph* exec) {
    delete exec;
    return 0;
}

EXPORT int cuGraphDestroy(Graph* graph) {
    delete graph;
    return 0;
}

EXPORT int cuGetErrorName(int status, const char** name) {
    switch (status) {
        case 0: *name = "CUDA_SUCCESS"; return 0;
        case 1: *name = "CUDA_ERROR_INVALID_VALUE"; return 0;
        case 2: *name = "CUDA_ERROR_OUT_OF_MEMORY"; return 0;
        case 101: *name = "CUDA_ERROR_INVALID_DEVICE"; return 0;
        case 200: *name = "CUDA_ERROR_INVALID_IMAGE"; return 0;
        case 201: *name = "CUDA_ERROR_INVALID_CONTEXT"; return 0;
        case 218: *name = "CUDA_ERROR_INVALID_PTX"; return 0;
        case 500: *name = "CUDA_ERROR_NOT_FOUND"; return 0;
        case 900: *name = "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"; return 0;
        case 901: *name = "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED"; return 0;
        default: return 1;
    }
}

// =====================================================================================================================
// NVRTC
// =====================================================================================================================

EXPORT void ropeway_emulator_set_compiler(Compiler c) { compiler = c; }

// Version 0.0: no real NVRTC's, so that a disk cache shared with one by mistake can never mix their outputs.
EXPORT int nvrtcVersion(int* major, int* minor) {
    *major = 0;
    *minor = 0;
    return 0;
}

EXPORT const char* nvrtcGetErrorString(int status) {
    switch (status) {
        case 0: return "NVRTC_SUCCESS";
        case 3: return "NVRTC_ERROR_INVALID_INPUT";
        case 6: return "NVRTC_ERROR_COMPILATION";
        default: return "NVRTC_ERROR (emulated)";
    }
}

EXPORT int nvrtcCreateProgram(Program** program, const char* source, const char* name, int headers, const char* const*,
                              const char* const*) {
    if (source == nullptr || headers != 0) return 3;
    *program = new Program{source, name == nullptr ? "default_program" : name, "", ""};
    return 0;
}

EXPORT int nvrtcCompileProgram(Program* p, int count, const char* const* options) {
    std::string joined;
    for (int i = 0; i < count; i++) joined += std::string(i ? "\n" : "") + options[i];
    if (compiler == nullptr) {
        p->log = "no CPU compiler is registered with the emulator (ropeway_emulator_set_compiler)";
        return 6;
    }
    std::vector<char> out(1 << 20);
    int status = compiler(p->name.c_str(), p->source.c_str(), joined.c_str(), out.data(), (long) out.size());
    out.back() = 0;
    if (status != 0) {
        p->log = out.data();
        return 6;
    }
    p->image = std::string(MODULE_MAGIC) + out.data();
    return 0;
}

EXPORT int nvrtcGetProgramLogSize(Program* p, size_t* size) {
    *size = p->log.size() + 1;
    return 0;
}

EXPORT int nvrtcGetProgramLog(Program* p, char* log) {
    std::memcpy(log, p->log.c_str(), p->log.size() + 1);
    return 0;
}

EXPORT int nvrtcGetCUBINSize(Program* p, size_t* size) {
    if (p->image.empty()) return 3;
    *size = p->image.size() + 1;
    return 0;
}

EXPORT int nvrtcGetCUBIN(Program* p, char* image) {
    if (p->image.empty()) return 3;
    std::memcpy(image, p->image.c_str(), p->image.size() + 1);
    return 0;
}

EXPORT int nvrtcDestroyProgram(Program** p) {
    delete *p;
    *p = nullptr;
    return 0;
}

// =====================================================================================================================
// cuBLAS
// =====================================================================================================================

// A handle remembers the stream its products go to (one per backend).
struct BlasHandle {
    void* stream = nullptr;
};
static std::set<void*> handles;

static BlasHandle* handleOf(void* h) {
    return handles.count(h) != 0 ? static_cast<BlasHandle*>(h) : nullptr;
}

EXPORT int cublasCreate_v2(void** handle) {
    std::lock_guard<std::recursive_mutex> g(lock);
    BlasHandle* h = new BlasHandle();
    handles.insert(h);
    *handle = h;
    return 0;
}

EXPORT int cublasDestroy_v2(void* handle) {
    std::lock_guard<std::recursive_mutex> g(lock);
    BlasHandle* h = handleOf(handle);
    if (h == nullptr) return 1;   // CUBLAS_STATUS_NOT_INITIALIZED
    handles.erase(handle);
    delete h;
    return 0;
}

EXPORT int cublasSetStream_v2(void* handle, void* stream) {
    std::lock_guard<std::recursive_mutex> g(lock);
    BlasHandle* h = handleOf(handle);
    if (h == nullptr) return 1;
    h->stream = stream;
    return 0;
}

EXPORT int cublasSetWorkspace_v2(void* handle, uintptr_t workspace, size_t bytes) {
    std::lock_guard<std::recursive_mutex> g(lock);
    if (handleOf(handle) == nullptr) return 1;
    return bytes == 0 || inside(workspace, bytes) ? 0 : 7;   // CUBLAS_STATUS_INVALID_VALUE
}

EXPORT const char* cublasGetStatusString(int status) {
    switch (status) {
        case 0: return "CUBLAS_STATUS_SUCCESS";
        case 7: return "CUBLAS_STATUS_INVALID_VALUE";
        case 14: return "CUBLAS_STATUS_INTERNAL_ERROR";
        case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
        default: return "CUBLAS_STATUS (emulated)";
    }
}

namespace {
const int CUDA_R_32F = 0, CUDA_R_16BF = 14;

size_t elementBytes(int type) { return type == CUDA_R_32F ? 4 : 2; }

float load(const void* base, int type, size_t index) {
    return type == CUDA_R_32F ? ((const float*) base)[index] : bf16ToFloat(((const uint16_t*) base)[index]);
}

// Whether a column-major rows x cols matrix with leading dimension ld at p lies inside one allocation.
bool matrixInside(uintptr_t p, int type, long rows, long cols, long ld) {
    if (rows == 0 || cols == 0) return true;
    return inside(p, ((cols - 1) * ld + rows) * elementBytes(type));
}
}  // namespace

// Column-major C (m x n) = alpha op(A) op(B) + beta C, where op(A) is m x k and op(B) is k x n; beta 0 reads no C.
static int gemm(int transa, int transb, int m, int n, int k, const float* alpha, uintptr_t A, int aType, int lda, uintptr_t B,
                int bType, int ldb, const float* beta, uintptr_t C, int cType, int ldc, int computeType, int algo) {
    if (m < 0 || n < 0 || k < 0 || (transa != 0 && transa != 1) || (transb != 0 && transb != 1)) return 7;
    const long aRows = transa ? k : m, aCols = transa ? m : k, bRows = transb ? n : k, bCols = transb ? k : n;
    if (lda < std::max(1L, aRows) || ldb < std::max(1L, bRows) || ldc < std::max(1, m)) return 7;
    if (aType != bType || (aType != CUDA_R_32F && aType != CUDA_R_16BF) || (cType != CUDA_R_32F && cType != CUDA_R_16BF))
        return 15;
    int bits = 23;
    if (computeType == 77) bits = 10;        // CUBLAS_COMPUTE_32F_FAST_TF32
    else if (computeType == 75) bits = 7;    // CUBLAS_COMPUTE_32F_FAST_16BF
    else if (computeType != 68) return 15;   // CUBLAS_COMPUTE_32F
    if (aType == CUDA_R_16BF && computeType != 68) return 15;
    if (m == 0 || n == 0) return 0;
    const bool reads = k > 0 && *alpha != 0.f;
    if ((reads && (!matrixInside(A, aType, aRows, aCols, lda) || !matrixInside(B, bType, bRows, bCols, ldb)))
        || !matrixInside(C, cType, m, n, ldc)) {
        std::fprintf(stderr, "emulated cublasGemmEx: an operand reaches outside its allocation (m %d n %d k %d)\n", m, n, k);
        return 7;
    }
    // op(A) as rows of k and op(B) as columns of k, rounded as the compute type rounds them.
    std::vector<float> a((size_t) m * k), b((size_t) n * k);
    for (long i = 0; i < m; i++)
        for (long p = 0; p < k; p++)
            a[i * k + p] = roundMantissa(load((const void*) A, aType, transa ? p + i * lda : i + p * lda), bits);
    for (long j = 0; j < n; j++)
        for (long p = 0; p < k; p++)
            b[j * k + p] = roundMantissa(load((const void*) B, bType, transb ? j + p * ldb : p + j * ldb), bits);
    for (long j = 0; j < n; j++)
        for (long i = 0; i < m; i++) {
            double s = 0;
            if (reads) {
                const float* ai = &a[i * k];
                const float* bj = &b[j * k];
                for (long p = 0; p < k; p++) s += (double) ai[p] * bj[p];
            }
            const size_t at = (size_t) (i + j * ldc);
            double r = (double) *alpha * s;
            if (*beta != 0.f) r += (double) *beta * load((const void*) C, cType, at);
            if (cType == CUDA_R_32F) ((float*) C)[at] = (float) r;
            else ((uint16_t*) C)[at] = floatToBf16((float) r);
        }
    (void) algo;
    return 0;
}

// On the handle's stream; host scalars are read at the call (a captured product keeps their values then).
EXPORT int cublasGemmEx(void* handle, int transa, int transb, int m, int n, int k, const float* alpha, uintptr_t A,
                        int aType, int lda, uintptr_t B, int bType, int ldb, const float* beta, uintptr_t C, int cType,
                        int ldc, int computeType, int algo) {
    std::lock_guard<std::recursive_mutex> g(lock);
    BlasHandle* h = handleOf(handle);
    if (h == nullptr) return 1;
    const float a = *alpha, b = *beta;
    return submit(h->stream, "cublasGemmEx", [=] {
        return gemm(transa, transb, m, n, k, &a, A, aType, lda, B, bType, ldb, &b, C, cType, ldc, computeType, algo);
    });
}

// =====================================================================================================================
// cuDNN
// =====================================================================================================================

#include "cudnn.cpp"
