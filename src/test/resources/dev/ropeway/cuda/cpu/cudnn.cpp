// cuDNN's graph ("backend") API emulated on the CPU, included into emulator.cpp: descriptors with typed attributes,
// finalisation that checks what a real one needs (every required attribute, matching shapes, an operation graph
// whose virtual tensors are each made once before they are read), one engine configuration per graph, and execution
// that evaluates the graph's operations in order: matrix products, pointwise operations and reductions with the
// broadcasting cuDNN applies (a dimension of 1 broadcasts; a dimension that divides the other's groups it, as grouped
// query heads do), reshapes as views of the same memory. Values are computed in double and rounded to each tensor's
// type as they are stored (a bfloat16 or float16 tensor holds only what that type can), so rounding shows as it would.
//
// An attribute of the wrong type, one a descriptor does not have, or one set after finalisation fails with
// CUDNN_STATUS_BAD_PARAM and a message that cudnnGetLastErrorString returns, as cuDNN 9 does.

namespace cudnn_emu {

const int SUCCESS = 0, NOT_INITIALIZED = 1001, BAD_PARAM = 2000, NOT_SUPPORTED = 3000, EXECUTION_FAILED = 5000;

// descriptor types
enum { POINTWISE = 0, ENGINECFG = 3, ENGINEHEUR = 4, EXECUTION_PLAN = 5, OP_POINTWISE = 13, OPERATION_GRAPH = 15,
       VARIANT_PACK = 16, TENSOR = 17, MATMUL = 18, OP_MATMUL = 19, REDUCTION = 21, OP_REDUCTION = 22, OP_RESHAPE = 31 };
// attribute types
enum { T_HANDLE = 0, T_DATA_TYPE = 1, T_BOOLEAN = 2, T_INT64 = 3, T_FLOAT = 4, T_VOID_PTR = 6, T_HEUR_MODE = 8,
       T_POINTWISE_MODE = 14, T_DESCRIPTOR = 15, T_REDUCTION_OPERATOR = 18 };
// data types
enum { D_FLOAT = 0, D_HALF = 2, D_INT32 = 4, D_BFLOAT16 = 9, D_BOOLEAN = 11 };

thread_local std::string lastError;

int fail(int status, const std::string& message) {
    lastError = message;
    return status;
}

struct Handle {
    void* stream = nullptr;
};
std::set<void*> cudnnHandles;

// Which descriptor type has which attribute, and of which type.
struct AttributeRule {
    int descriptor, type;
};
const std::map<int, AttributeRule> RULES = {
    {0, {POINTWISE, T_POINTWISE_MODE}}, {1, {POINTWISE, T_DATA_TYPE}}, {9, {POINTWISE, T_INT64}},
    {200, {ENGINEHEUR, T_HEUR_MODE}}, {201, {ENGINEHEUR, T_DESCRIPTOR}},
    {400, {EXECUTION_PLAN, T_HANDLE}}, {401, {EXECUTION_PLAN, T_DESCRIPTOR}},
    {750, {OP_POINTWISE, T_DESCRIPTOR}}, {751, {OP_POINTWISE, T_DESCRIPTOR}}, {752, {OP_POINTWISE, T_DESCRIPTOR}},
    {753, {OP_POINTWISE, T_DESCRIPTOR}}, {754, {OP_POINTWISE, T_FLOAT}}, {755, {OP_POINTWISE, T_FLOAT}},
    {758, {OP_POINTWISE, T_DESCRIPTOR}},
    {800, {OPERATION_GRAPH, T_HANDLE}}, {801, {OPERATION_GRAPH, T_DESCRIPTOR}},
    {900, {TENSOR, T_INT64}}, {901, {TENSOR, T_DATA_TYPE}}, {902, {TENSOR, T_INT64}}, {903, {TENSOR, T_INT64}},
    {906, {TENSOR, T_INT64}}, {907, {TENSOR, T_BOOLEAN}}, {908, {TENSOR, T_BOOLEAN}},
    {1000, {VARIANT_PACK, T_INT64}}, {1001, {VARIANT_PACK, T_VOID_PTR}}, {1003, {VARIANT_PACK, T_VOID_PTR}},
    {1500, {MATMUL, T_DATA_TYPE}}, {1520, {OP_MATMUL, T_DESCRIPTOR}}, {1521, {OP_MATMUL, T_DESCRIPTOR}},
    {1522, {OP_MATMUL, T_DESCRIPTOR}}, {1523, {OP_MATMUL, T_DESCRIPTOR}},
    {1600, {REDUCTION, T_REDUCTION_OPERATOR}}, {1601, {REDUCTION, T_DATA_TYPE}},
    {1610, {OP_REDUCTION, T_DESCRIPTOR}}, {1611, {OP_REDUCTION, T_DESCRIPTOR}}, {1612, {OP_REDUCTION, T_DESCRIPTOR}},
    {2200, {OP_RESHAPE, T_DESCRIPTOR}}, {2201, {OP_RESHAPE, T_DESCRIPTOR}},
};

size_t attributeBytes(int type) {
    switch (type) {
        case T_BOOLEAN: return 1;
        case T_INT64: case T_VOID_PTR: case T_HANDLE: case T_DESCRIPTOR: return 8;
        default: return 4;
    }
}

struct Desc {
    int type;
    bool finalized = false;
    std::map<int, std::vector<uint8_t>> attributes;   // raw elements
    std::map<int, long> counts;
    // filled in by finalisation
    std::vector<Desc*> ops;   // an operation graph's, in order
    Desc* graph = nullptr;    // an engine configuration's or a plan's graph
    long workspace = 0;

    bool has(int name) const { return attributes.count(name) != 0; }
    long count(int name) const { return has(name) ? counts.at(name) : 0; }
    template <typename V> V get(int name, long i = 0) const {
        V v;
        std::memcpy(&v, attributes.at(name).data() + i * sizeof(V), sizeof(V));
        return v;
    }
    Desc* desc(int name, long i = 0) const { return get<Desc*>(name, i); }
    std::vector<long> longs(int name) const {
        std::vector<long> v(count(name));
        for (long i = 0; i < (long) v.size(); i++) v[i] = get<long>(name, i);
        return v;
    }
    // A tensor's
    std::vector<long> dims() const { return longs(902); }
    std::vector<long> strides() const { return longs(903); }
    long uid() const { return get<long>(906); }
    int dataType() const { return get<int>(901); }
    bool isVirtual() const { return has(907) && get<uint8_t>(907) != 0; }
    bool byValue() const { return has(908) && get<uint8_t>(908) != 0; }
};
std::set<Desc*> descs;

Desc* live(void* d) { return descs.count((Desc*) d) ? (Desc*) d : nullptr; }

long elements(const std::vector<long>& dims) {
    long n = 1;
    for (long d : dims) n *= d;
    return n;
}

std::string shape(const std::vector<long>& dims) {
    std::string s = "[";
    for (size_t i = 0; i < dims.size(); i++) s += (i ? "," : "") + std::to_string(dims[i]);
    return s + "]";
}

// Whether input dimension `in` fits output dimension `out`: equal, broadcast (1), or grouped (divides it).
bool fits(long in, long out) { return in == out || in == 1 || (in > 0 && out % in == 0); }

bool broadcastsTo(const Desc* in, const std::vector<long>& out) {
    auto d = in->dims();
    if (in->byValue() && elements(d) == 1) return true;
    if (d.size() != out.size()) return false;
    for (size_t i = 0; i < d.size(); i++) if (!fits(d[i], out[i])) return false;
    return true;
}

Desc* tensorAt(const Desc* op, int name, const char* what, std::string& error) {
    if (!op->has(name)) { error = std::string("missing ") + what; return nullptr; }
    Desc* t = op->desc(name);
    if (!live(t) || t->type != TENSOR || !t->finalized) { error = std::string(what) + " is not a finalized tensor"; return nullptr; }
    return t;
}

// Each operation type's tensor attributes: its inputs (optional ones included), then its output.
struct TensorSlots {
    std::vector<int> ins;
    int out;
};
const std::map<int, TensorSlots> TENSOR_SLOTS = {
    {OP_POINTWISE, {{751, 752, 758}, 753}}, {OP_MATMUL, {{1520, 1521}, 1522}},
    {OP_REDUCTION, {{1610}, 1611}}, {OP_RESHAPE, {{2200}, 2201}},
};

// Checks a descriptor at finalisation; returns an error message, empty when it is complete and consistent.
std::string check(Desc* d) {
    std::string e;
    switch (d->type) {
        case TENSOR: {
            for (int a : {900, 901, 902, 903, 906})
                if (!d->has(a)) return "tensor: attribute " + std::to_string(a) + " not set";
            auto dims = d->dims(), strides = d->strides();
            if (dims.empty() || dims.size() > 8 || dims.size() != strides.size()) return "tensor: dimensions and strides disagree";
            for (size_t i = 0; i < dims.size(); i++) if (dims[i] <= 0 || strides[i] <= 0) return "tensor: non-positive dimension or stride";
            int t = d->dataType();
            if (t != D_FLOAT && t != D_HALF && t != D_BFLOAT16 && t != D_INT32 && t != D_BOOLEAN) return "tensor: unsupported data type";
            if (d->byValue() && (d->isVirtual() || elements(dims) != 1)) return "tensor: a by-value tensor is one non-virtual element";
            return "";
        }
        case POINTWISE:
            if (!d->has(0) || !d->has(1)) return "pointwise: mode and math precision are required";
            if (d->get<int>(0) == 501 && !d->has(9)) return "pointwise: GEN_INDEX needs an axis";
            return "";
        case MATMUL:
            return d->has(1500) ? "" : "matmul: compute type is required";
        case REDUCTION:
            return d->has(1600) && d->has(1601) ? "" : "reduction: operator and compute type are required";
        case OP_POINTWISE: {
            if (!d->has(750) || !live(d->desc(750)) || !d->desc(750)->finalized) return "pointwise op: no finalized pointwise descriptor";
            int mode = d->desc(750)->get<int>(0);
            Desc* x = tensorAt(d, 751, "x", e); if (!x) return "pointwise op: " + e;
            Desc* y = tensorAt(d, 753, "y", e); if (!y) return "pointwise op: " + e;
            bool unary = mode == 13 || mode == 15 || mode == 21 || mode == 501;
            Desc* b = nullptr;
            if (!unary) { b = tensorAt(d, 752, "b", e); if (!b) return "pointwise op (mode " + std::to_string(mode) + "): " + e; }
            if (mode == 601) { Desc* t = tensorAt(d, 758, "t", e); if (!t) return "binary select: " + e;
                if (!broadcastsTo(t, y->dims())) return "binary select: t does not broadcast to y"; }
            if (!broadcastsTo(x, y->dims()) || (b && !broadcastsTo(b, y->dims())))
                return "pointwise op: inputs " + shape(x->dims()) + (b ? " " + shape(b->dims()) : "") + " do not broadcast to " + shape(y->dims());
            return "";
        }
        case OP_MATMUL: {
            Desc* a = tensorAt(d, 1520, "a", e); if (!a) return "matmul op: " + e;
            Desc* b = tensorAt(d, 1521, "b", e); if (!b) return "matmul op: " + e;
            Desc* c = tensorAt(d, 1522, "c", e); if (!c) return "matmul op: " + e;
            if (!d->has(1523) || !live(d->desc(1523)) || !d->desc(1523)->finalized) return "matmul op: no finalized matmul descriptor";
            auto ad = a->dims(), bd = b->dims(), cd = c->dims();
            size_t r = cd.size();
            if (r < 2 || ad.size() != r || bd.size() != r) return "matmul op: ranks differ";
            if (ad[r - 2] != cd[r - 2] || bd[r - 1] != cd[r - 1] || ad[r - 1] != bd[r - 2])
                return "matmul op: " + shape(ad) + " x " + shape(bd) + " cannot give " + shape(cd);
            for (size_t i = 0; i + 2 < r; i++) if (!fits(ad[i], cd[i]) || !fits(bd[i], cd[i])) return "matmul op: batch dimensions do not broadcast";
            return "";
        }
        case OP_REDUCTION: {
            Desc* x = tensorAt(d, 1610, "x", e); if (!x) return "reduction op: " + e;
            Desc* y = tensorAt(d, 1611, "y", e); if (!y) return "reduction op: " + e;
            if (!d->has(1612) || !live(d->desc(1612)) || !d->desc(1612)->finalized) return "reduction op: no finalized reduction descriptor";
            auto xd = x->dims(), yd = y->dims();
            if (xd.size() != yd.size()) return "reduction op: ranks differ";
            for (size_t i = 0; i < xd.size(); i++) if (!fits(yd[i], xd[i])) return "reduction op: " + shape(yd) + " is no reduction of " + shape(xd);
            return "";
        }
        case OP_RESHAPE: {
            Desc* x = tensorAt(d, 2200, "x", e); if (!x) return "reshape op: " + e;
            Desc* y = tensorAt(d, 2201, "y", e); if (!y) return "reshape op: " + e;
            return elements(x->dims()) == elements(y->dims()) ? "" : "reshape op: element counts differ";
        }
        case OPERATION_GRAPH: {
            if (!d->has(800) || !d->has(801)) return "operation graph: handle and operations are required";
            std::set<long> made;
            std::map<long, Desc*> byUid;
            d->ops.clear();
            for (long i = 0; i < d->count(801); i++) {
                Desc* op = d->desc(801, i);
                if (!live(op) || !op->finalized) return "operation graph: operation " + std::to_string(i) + " is not finalized";
                auto slots = TENSOR_SLOTS.find(op->type);
                if (slots == TENSOR_SLOTS.end()) return "operation graph: unsupported operation type " + std::to_string(op->type);
                for (int a : slots->second.ins) if (op->has(a)) {
                    Desc* t = op->desc(a);
                    if (byUid.count(t->uid()) && byUid[t->uid()] != t) return "operation graph: two tensors share uid " + std::to_string(t->uid());
                    byUid[t->uid()] = t;
                    if (t->isVirtual() && !made.count(t->uid()))
                        return "operation graph: virtual tensor " + std::to_string(t->uid()) + " is read before it is made";
                }
                {
                    Desc* t = op->desc(slots->second.out);
                    if (byUid.count(t->uid()) && byUid[t->uid()] != t) return "operation graph: two tensors share uid " + std::to_string(t->uid());
                    byUid[t->uid()] = t;
                    if (made.count(t->uid())) return "operation graph: tensor " + std::to_string(t->uid()) + " is written twice";
                    if (t->byValue()) return "operation graph: an output is by value";
                    made.insert(t->uid());
                }
                d->ops.push_back(op);
            }
            return "";
        }
        case ENGINEHEUR:
            if (!d->has(200) || !d->has(201)) return "engine heuristics: mode and graph are required";
            if (!live(d->desc(201)) || d->desc(201)->type != OPERATION_GRAPH || !d->desc(201)->finalized) return "engine heuristics: no finalized graph";
            return "";
        case EXECUTION_PLAN: {
            if (!d->has(400) || !d->has(401)) return "execution plan: handle and engine configuration are required";
            Desc* c = d->desc(401);
            if (!live(c) || c->type != ENGINECFG || c->graph == nullptr) return "execution plan: no engine configuration from heuristics";
            d->graph = c->graph;
            d->workspace = 4096;   // a real engine may want some; the backend must pass it
            return "";
        }
        case VARIANT_PACK:
            if (!d->has(1000) || !d->has(1001) || d->count(1000) != d->count(1001)) return "variant pack: ids and pointers disagree";
            return "";
        default:
            return "descriptor type " + std::to_string(d->type) + " is not emulated";
    }
}

// ---- execution ----

// The float16 nearest to f (ties to even), as bits.
uint16_t halfBits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t) ((u >> 16) & 0x8000);
    float a = std::fabs(f);
    if (std::isnan(f)) return sign | 0x7e00;
    if (a >= 65520.f) return sign | 0x7c00;   // past halfway above the largest float16: infinity
    // Subnormals in steps of 2^-24; a mantissa that rounds up to 1024 carries into the exponent, as it must.
    if (a < 6.103515625e-05f) return sign | (uint16_t) std::lrint(a / 5.9604644775390625e-8f);
    int e;
    float m = std::frexp(a, &e);   // a = m * 2^e, m in [0.5, 1)
    return sign | (uint16_t) (((e + 14) << 10) + std::lrint((m * 2 - 1) * 1024));
}

float halfValue(uint16_t h) {
    int exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float v = exp == 0 ? man * 5.9604644775390625e-8f : exp == 31 ? (man ? NAN : INFINITY) : std::ldexp(1.f + man / 1024.f, exp - 15);
    return (h & 0x8000) ? -v : v;
}

float roundTo(int type, double v) {
    switch (type) {
        case D_BFLOAT16: return bf16ToFloat(floatToBf16((float) v));
        case D_HALF: return halfValue(halfBits((float) v));
        case D_INT32: return (float) (int32_t) v;
        case D_BOOLEAN: return v != 0 ? 1.f : 0.f;
        default: return (float) v;
    }
}

size_t typeBytes(int type) { return type == D_HALF || type == D_BFLOAT16 ? 2 : type == D_BOOLEAN ? 1 : 4; }

// A tensor's values while a graph runs: virtual ones in dense row-major order, others in device memory by strides.
struct Values {
    const Desc* t;
    std::vector<long> dims, strides;
    int type;
    std::vector<double> dense;   // virtual
    uintptr_t memory = 0;        // device (or host, by value)

    long offset(const std::vector<long>& index) const {
        long o = 0;
        for (size_t i = 0; i < index.size(); i++) o += index[i] * strides[i];
        return o;
    }
    long denseIndex(const std::vector<long>& index) const {
        long o = 0;
        for (size_t i = 0; i < index.size(); i++) o = o * dims[i] + index[i];
        return o;
    }
    double read(const std::vector<long>& index) const {
        if (t->byValue()) return ((const float*) memory)[0];
        if (!memory) return dense[denseIndex(index)];
        return readAt(offset(index));
    }
    double readAt(long at) const {
        switch (type) {
            case D_FLOAT: return ((const float*) memory)[at];
            case D_BFLOAT16: return bf16ToFloat(((const uint16_t*) memory)[at]);
            case D_HALF: return halfValue(((const uint16_t*) memory)[at]);
            case D_INT32: return ((const int32_t*) memory)[at];
            default: return ((const uint8_t*) memory)[at];
        }
    }
    void write(const std::vector<long>& index, double v) {
        float r = roundTo(type, v);
        if (!memory) { dense[denseIndex(index)] = r; return; }
        long at = offset(index);
        switch (type) {
            case D_FLOAT: ((float*) memory)[at] = r; break;
            case D_BFLOAT16: ((uint16_t*) memory)[at] = floatToBf16(r); break;
            case D_HALF: ((uint16_t*) memory)[at] = halfBits(r); break;
            case D_INT32: ((int32_t*) memory)[at] = (int32_t) r; break;
            default: ((uint8_t*) memory)[at] = r != 0; break;
        }
    }
    long span() const {
        long s = 1;
        for (size_t i = 0; i < dims.size(); i++) s += (dims[i] - 1) * strides[i];
        return s;
    }
};

// Calls f(index) for every index of dims, in row-major order.
template <typename F> void forEach(const std::vector<long>& dims, F f) {
    std::vector<long> i(dims.size(), 0);
    long n = elements(dims);
    for (long k = 0; k < n; k++) {
        f(i);
        for (long j = (long) dims.size() - 1; j >= 0; j--) {
            if (++i[j] < dims[j]) break;
            i[j] = 0;
        }
    }
}

// The input's index for an output index: broadcast dimensions read 0, grouped ones their group.
std::vector<long> inputIndex(const Values& in, const std::vector<long>& out, const std::vector<long>& outDims) {
    if (in.t->byValue()) return {0};
    std::vector<long> i(out.size());
    for (size_t j = 0; j < out.size(); j++)
        i[j] = in.dims[j] == 1 ? 0 : in.dims[j] < outDims[j] && outDims[j] % in.dims[j] == 0
                ? out[j] / (outDims[j] / in.dims[j]) : out[j];
    return i;
}

double pointwise(int mode, double x, double b, double t) {
    switch (mode) {
        case 0: return x + b;
        case 1: return x * b;
        case 6: return x / b;
        case 9: return x - b;
        case 13: return std::exp(x);
        case 15: return std::log(x);
        case 21: return x;
        case 302: return x > b ? 1 : 0;
        case 303: return x >= b ? 1 : 0;
        case 601: return t != 0 ? x : b;
        default: return NAN;
    }
}

int run(Desc* graph, const std::map<long, uintptr_t>& pointers) {
    std::map<long, Values> values;
    auto valuesOf = [&](Desc* t) -> Values& {
        auto it = values.find(t->uid());
        if (it != values.end()) return it->second;
        Values v{t, t->dims(), t->strides(), t->dataType()};
        if (t->isVirtual()) v.dense.assign(elements(v.dims), NAN);
        else v.memory = pointers.at(t->uid());
        return values.emplace(t->uid(), std::move(v)).first->second;
    };
    for (Desc* op : graph->ops) {
        if (op->type == OP_POINTWISE) {
            int mode = op->desc(750)->get<int>(0);
            Values& x = valuesOf(op->desc(751));
            Values* b = op->has(752) ? &valuesOf(op->desc(752)) : nullptr;
            Values* t = op->has(758) ? &valuesOf(op->desc(758)) : nullptr;
            Values& y = valuesOf(op->desc(753));
            long axis = mode == 501 ? op->desc(750)->get<long>(9) : 0;
            forEach(y.dims, [&](const std::vector<long>& i) {
                double r = mode == 501 ? (double) i[axis]
                        : pointwise(mode, x.read(inputIndex(x, i, y.dims)), b ? b->read(inputIndex(*b, i, y.dims)) : 0,
                                    t ? t->read(inputIndex(*t, i, y.dims)) : 0);
                y.write(i, r);
            });
        } else if (op->type == OP_MATMUL) {
            Values& a = valuesOf(op->desc(1520));
            Values& b = valuesOf(op->desc(1521));
            Values& c = valuesOf(op->desc(1522));
            size_t r = c.dims.size();
            long k = a.dims[r - 1];
            forEach(c.dims, [&](const std::vector<long>& i) {
                std::vector<long> ai = inputIndex(a, i, c.dims), bi = inputIndex(b, i, c.dims);
                ai[r - 2] = i[r - 2];
                bi[r - 1] = i[r - 1];
                double s = 0;
                for (long p = 0; p < k; p++) {
                    ai[r - 1] = p;
                    bi[r - 2] = p;
                    s += a.read(ai) * b.read(bi);
                }
                c.write(i, s);
            });
        } else if (op->type == OP_REDUCTION) {
            int operation = op->desc(1612)->get<int>(1600);
            Values& x = valuesOf(op->desc(1610));
            Values& y = valuesOf(op->desc(1611));
            std::map<long, double> acc;
            std::map<long, std::vector<long>> where;
            forEach(x.dims, [&](const std::vector<long>& i) {
                std::vector<long> yi = inputIndex(y, i, x.dims);
                long key = y.denseIndex(yi);
                double v = x.read(i);
                auto it = acc.find(key);
                if (it == acc.end()) { acc[key] = v; where[key] = yi; }
                else it->second = operation == 3 ? std::max(it->second, v) : it->second + v;
            });
            for (auto& [key, v] : acc) y.write(where[key], v);
        } else {   // reshape: the same memory seen through the output's dimensions and strides
            Values& x = valuesOf(op->desc(2200));
            Values& y = valuesOf(op->desc(2201));
            std::vector<double> memory(std::max(x.span(), y.span()), NAN);
            forEach(x.dims, [&](const std::vector<long>& i) { memory[x.offset(i)] = x.read(i); });
            forEach(y.dims, [&](const std::vector<long>& i) { y.write(i, memory[y.offset(i)]); });
        }
    }
    return SUCCESS;
}


EXPORT size_t cudnnGetVersion() { return 91002; }

EXPORT const char* cudnnGetErrorString(int status) {
    switch (status) {
        case SUCCESS: return "CUDNN_STATUS_SUCCESS";
        case NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
        case BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
        case NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
        case EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
        default: return "CUDNN_STATUS (emulated)";
    }
}

EXPORT void cudnnGetLastErrorString(char* message, size_t max) {
    if (max == 0) return;
    std::snprintf(message, max, "%s", lastError.c_str());
    lastError.clear();
}

EXPORT int cudnnCreate(void** handle) {
    std::lock_guard<std::recursive_mutex> g(lock);
    Handle* h = new Handle();
    cudnnHandles.insert(h);
    *handle = h;
    return SUCCESS;
}

EXPORT int cudnnDestroy(void* handle) {
    std::lock_guard<std::recursive_mutex> g(lock);
    if (!cudnnHandles.erase(handle)) return fail(BAD_PARAM, "cudnnDestroy: not a handle");
    delete (Handle*) handle;
    return SUCCESS;
}

EXPORT int cudnnSetStream(void* handle, void* stream) {
    std::lock_guard<std::recursive_mutex> g(lock);
    if (!cudnnHandles.count(handle)) return fail(BAD_PARAM, "cudnnSetStream: not a handle");
    ((Handle*) handle)->stream = stream;
    return SUCCESS;
}

EXPORT int cudnnBackendCreateDescriptor(int type, void** descriptor) {
    std::lock_guard<std::recursive_mutex> g(lock);
    static const std::set<int> known = {POINTWISE, ENGINECFG, ENGINEHEUR, EXECUTION_PLAN, OP_POINTWISE, OPERATION_GRAPH,
                                        VARIANT_PACK, TENSOR, MATMUL, OP_MATMUL, REDUCTION, OP_REDUCTION, OP_RESHAPE};
    if (!known.count(type)) return fail(NOT_SUPPORTED, "descriptor type " + std::to_string(type) + " is not emulated");
    Desc* d = new Desc();
    d->type = type;
    descs.insert(d);
    *descriptor = d;
    return SUCCESS;
}

EXPORT int cudnnBackendDestroyDescriptor(void* descriptor) {
    std::lock_guard<std::recursive_mutex> g(lock);
    if (!descs.erase((Desc*) descriptor)) return fail(BAD_PARAM, "cudnnBackendDestroyDescriptor: not a descriptor");
    delete (Desc*) descriptor;
    return SUCCESS;
}

EXPORT int cudnnBackendSetAttribute(void* descriptor, int name, int type, int64_t count, const void* elements) {
    std::lock_guard<std::recursive_mutex> g(lock);
    Desc* d = live(descriptor);
    if (!d) return fail(BAD_PARAM, "cudnnBackendSetAttribute: not a descriptor");
    if (d->finalized) return fail(BAD_PARAM, "attribute " + std::to_string(name) + " set after finalisation");
    auto rule = RULES.find(name);
    if (rule == RULES.end() || rule->second.descriptor != d->type)
        return fail(BAD_PARAM, "descriptor type " + std::to_string(d->type) + " has no attribute " + std::to_string(name));
    if (rule->second.type != type)
        return fail(BAD_PARAM, "attribute " + std::to_string(name) + " takes type " + std::to_string(rule->second.type)
                    + ", got " + std::to_string(type));
    if (count < 0 || (count > 0 && elements == nullptr)) return fail(BAD_PARAM, "attribute " + std::to_string(name) + ": no elements");
    const uint8_t* p = (const uint8_t*) elements;
    d->attributes[name].assign(p, p + count * attributeBytes(type));
    d->counts[name] = count;
    if (type == T_DESCRIPTOR)
        for (int64_t i = 0; i < count; i++)
            if (!live(d->desc(name, i))) return fail(BAD_PARAM, "attribute " + std::to_string(name) + ": not a descriptor");
    if (type == T_HANDLE && !cudnnHandles.count(d->get<void*>(name))) return fail(BAD_PARAM, "attribute " + std::to_string(name) + ": not a handle");
    return SUCCESS;
}

EXPORT int cudnnBackendFinalize(void* descriptor) {
    std::lock_guard<std::recursive_mutex> g(lock);
    Desc* d = live(descriptor);
    if (!d) return fail(BAD_PARAM, "cudnnBackendFinalize: not a descriptor");
    if (d->finalized) return fail(BAD_PARAM, "finalized twice");
    std::string problem = check(d);
    if (!problem.empty()) return fail(BAD_PARAM, problem);
    d->finalized = true;
    return SUCCESS;
}

EXPORT int cudnnBackendGetAttribute(void* descriptor, int name, int type, int64_t requested, int64_t* count, void* elements) {
    std::lock_guard<std::recursive_mutex> g(lock);
    Desc* d = live(descriptor);
    if (!d || !d->finalized) return fail(BAD_PARAM, "cudnnBackendGetAttribute: not a finalized descriptor");
    if (d->type == ENGINEHEUR && name == 202 && type == T_DESCRIPTOR) {
        *count = 1;   // one engine: the emulation
        if (requested >= 1) {
            Desc* c = live(((void**) elements)[0]);
            if (!c || c->type != ENGINECFG) return fail(BAD_PARAM, "engine heuristics results: pass engine configuration descriptors");
            c->graph = d->desc(201);
            c->finalized = true;
        }
        return SUCCESS;
    }
    if (d->type == EXECUTION_PLAN && name == 402 && type == T_INT64 && requested >= 1) {
        *count = 1;
        *(int64_t*) elements = d->workspace;
        return SUCCESS;
    }
    return fail(NOT_SUPPORTED, "attribute " + std::to_string(name) + " cannot be read here");
}

EXPORT int cudnnBackendExecute(void* handle, void* plan, void* variantPack) {
    std::lock_guard<std::recursive_mutex> g(lock);
    if (!cudnnHandles.count(handle)) return fail(BAD_PARAM, "cudnnBackendExecute: not a handle");
    Desc* p = live(plan);
    Desc* v = live(variantPack);
    if (!p || p->type != EXECUTION_PLAN || !p->finalized) return fail(BAD_PARAM, "cudnnBackendExecute: not a finalized plan");
    if (!v || v->type != VARIANT_PACK || !v->finalized) return fail(BAD_PARAM, "cudnnBackendExecute: not a finalized variant pack");
    std::map<long, uintptr_t> pointers;
    for (long i = 0; i < v->count(1000); i++) pointers[v->get<long>(1000, i)] = v->get<uintptr_t>(1001, i);
    if (p->workspace > 0 && (!v->has(1003) || !inside(v->get<uintptr_t>(1003), p->workspace)))
        return fail(BAD_PARAM, "cudnnBackendExecute: the plan needs a workspace of " + std::to_string(p->workspace) + " bytes");
    // Every non-virtual tensor needs a pointer: device memory that holds it, or host memory for a by-value one.
    std::map<long, float> byValue;
    for (Desc* op : p->graph->ops) {
        const TensorSlots& slots = TENSOR_SLOTS.at(op->type);
        std::vector<int> names = slots.ins;
        names.push_back(slots.out);
        for (int name : names) {
            if (!op->has(name)) continue;
            Desc* t = op->desc(name);
            if (t->isVirtual()) continue;
            auto it = pointers.find(t->uid());
            if (it == pointers.end()) return fail(BAD_PARAM, "variant pack: no pointer for tensor " + std::to_string(t->uid()));
            if (t->byValue()) { byValue[t->uid()] = *(const float*) it->second; continue; }
            Values probe{t, t->dims(), t->strides(), t->dataType()};
            if (!inside(it->second, probe.span() * typeBytes(t->dataType())))
                return fail(BAD_PARAM, "variant pack: tensor " + std::to_string(t->uid()) + " reaches outside its allocation");
        }
    }
    // By-value scalars are read now (as a launch reads its arguments); tensors when the work runs on the stream.
    auto held = std::make_shared<std::vector<float>>();
    held->reserve(byValue.size());   // the addresses below stay valid
    std::map<long, uintptr_t> at = pointers;
    for (auto& [uid, value] : byValue) {
        held->push_back(value);
        at[uid] = (uintptr_t) &held->back();
    }
    Desc* graph = p->graph;
    int status = submit(((Handle*) handle)->stream, "cudnnBackendExecute", [graph, at, held] { return run(graph, at); });
    return status == 0 ? SUCCESS : fail(EXECUTION_FAILED, "cudnnBackendExecute: the stream refused the work");
}

}  // namespace cudnn_emu
