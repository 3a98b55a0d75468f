package dev.ropeway.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * cuDNN's graph ("backend") API, bound through FFM: one handle on the backend's stream, and descriptors built,
 * finalised and executed. Every call's status is checked; a failure throws {@link CudaException} naming the call,
 * cuDNN's name for the status and, from cuDNN 9, its last error message (what it found wrong with a graph).
 */
final class Cudnn implements AutoCloseable {
    // cudnnBackendDescriptorType_t
    static final int POINTWISE = 0, ENGINECFG = 3, ENGINEHEUR = 4, EXECUTION_PLAN = 5, OP_POINTWISE = 13,
            OPERATION_GRAPH = 15, VARIANT_PACK = 16, TENSOR = 17, MATMUL = 18, OP_MATMUL = 19, REDUCTION = 21,
            OP_REDUCTION = 22, OP_RESHAPE = 31;
    // cudnnBackendAttributeType_t
    static final int TYPE_HANDLE = 0, TYPE_DATA_TYPE = 1, TYPE_BOOLEAN = 2, TYPE_INT64 = 3, TYPE_FLOAT = 4,
            TYPE_VOID_PTR = 6, TYPE_HEUR_MODE = 8, TYPE_POINTWISE_MODE = 14, TYPE_BACKEND_DESCRIPTOR = 15,
            TYPE_REDUCTION_OPERATOR = 18;
    // cudnnBackendAttributeName_t
    static final int POINTWISE_MODE = 0, POINTWISE_MATH_PREC = 1, POINTWISE_AXIS = 9,
            ENGINEHEUR_MODE = 200, ENGINEHEUR_OPERATION_GRAPH = 201, ENGINEHEUR_RESULTS = 202,
            EXECUTION_PLAN_HANDLE = 400, EXECUTION_PLAN_ENGINE_CONFIG = 401, EXECUTION_PLAN_WORKSPACE_SIZE = 402,
            OP_POINTWISE_PW_DESCRIPTOR = 750, OP_POINTWISE_XDESC = 751, OP_POINTWISE_BDESC = 752,
            OP_POINTWISE_YDESC = 753, OP_POINTWISE_ALPHA1 = 754, OP_POINTWISE_ALPHA2 = 755, OP_POINTWISE_TDESC = 758,
            OPERATIONGRAPH_HANDLE = 800, OPERATIONGRAPH_OPS = 801,
            TENSOR_BYTE_ALIGNMENT = 900, TENSOR_DATA_TYPE = 901, TENSOR_DIMENSIONS = 902, TENSOR_STRIDES = 903,
            TENSOR_UNIQUE_ID = 906, TENSOR_IS_VIRTUAL = 907, TENSOR_IS_BY_VALUE = 908,
            VARIANT_PACK_UNIQUE_IDS = 1000, VARIANT_PACK_DATA_POINTERS = 1001, VARIANT_PACK_WORKSPACE = 1003,
            MATMUL_COMP_TYPE = 1500, OP_MATMUL_ADESC = 1520, OP_MATMUL_BDESC = 1521, OP_MATMUL_CDESC = 1522,
            OP_MATMUL_DESC = 1523, REDUCTION_OPERATOR = 1600, REDUCTION_COMP_TYPE = 1601, OP_REDUCTION_XDESC = 1610,
            OP_REDUCTION_YDESC = 1611, OP_REDUCTION_DESC = 1612, OP_RESHAPE_XDESC = 2200, OP_RESHAPE_YDESC = 2201;
    // cudnnDataType_t
    static final int FLOAT = 0, HALF = 2, INT32 = 4, BFLOAT16 = 9, BOOLEAN = 11;
    // cudnnPointwiseMode_t
    static final int ADD = 0, MUL = 1, DIV = 6, SUB = 9, EXP = 13, LOG = 15, IDENTITY = 21, CMP_GT = 302, CMP_GE = 303,
            GEN_INDEX = 501, BINARY_SELECT = 601;
    // cudnnReduceTensorOp_t
    static final int REDUCE_ADD = 0, REDUCE_MAX = 3;
    // cudnnBackendHeurMode_t
    static final int HEUR_MODE_A = 3, HEUR_MODE_FALLBACK = 2;

    private static volatile Cudnn.Library library;
    private static volatile Throwable failure;

    /** The loaded library and its functions (one per process). */
    record Library(NativeLibrary lib, long version, MethodHandle create, MethodHandle destroy, MethodHandle setStream,
                   MethodHandle errorString, Optional<MethodHandle> lastError, MethodHandle createDescriptor,
                   MethodHandle destroyDescriptor, MethodHandle finalizeDescriptor, MethodHandle setAttribute,
                   MethodHandle getAttribute, MethodHandle execute) {}

    /**
     * cuDNN, loaded once: {@code libcudnn.so.9} (with {@code libcudnn_graph} first, so that the dispatcher finds it by
     * name wherever it was found), from the same folders as the other CUDA libraries. Throws naming what is missing.
     */
    static Library library() {
        Library l = library;
        if (l != null) return l;
        synchronized (Cudnn.class) {
            if (library != null) return library;
            if (failure != null) throw new CudaException(failure.getMessage());
            try {
                library = load();
                return library;
            } catch (RuntimeException e) {
                failure = e;
                throw e;
            }
        }
    }

    /** Whether cuDNN can be loaded here (never throws). */
    static boolean isAvailable() {
        try {
            library();
            return true;
        } catch (RuntimeException | LinkageError e) {
            return false;
        }
    }

    private static Library load() {
        NativeLibrary.find("cudnn_graph");
        NativeLibrary lib = NativeLibrary.load("cudnn", "NVIDIA's deep-learning library, for its fused attention");
        MethodHandle version = lib.function("cudnnGetVersion", FunctionDescriptor.of(JAVA_LONG));
        long v;
        try {
            v = (long) version.invokeExact();
        } catch (Throwable t) {
            throw Driver.wrap(t);
        }
        if (v < 90000)
            throw new CudaException(lib.location + " is cuDNN " + versionString(v) + "; the fused attention needs cuDNN 9 or newer");
        return new Library(lib, v,
                lib.function("cudnnCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS)),
                lib.function("cudnnDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS)),
                lib.function("cudnnSetStream", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS)),
                lib.function("cudnnGetErrorString", FunctionDescriptor.of(ADDRESS, JAVA_INT)),
                lib.optionalFunction("cudnnGetLastErrorString", FunctionDescriptor.ofVoid(ADDRESS, JAVA_LONG)),
                lib.function("cudnnBackendCreateDescriptor", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS)),
                lib.function("cudnnBackendDestroyDescriptor", FunctionDescriptor.of(JAVA_INT, ADDRESS)),
                lib.function("cudnnBackendFinalize", FunctionDescriptor.of(JAVA_INT, ADDRESS)),
                lib.function("cudnnBackendSetAttribute", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT,
                        JAVA_LONG, ADDRESS)),
                lib.function("cudnnBackendGetAttribute", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT,
                        JAVA_LONG, ADDRESS, ADDRESS)),
                lib.function("cudnnBackendExecute", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS)));
    }

    private static boolean partsLoaded;

    /**
     * cuDNN 9 loads its parts (graph, heuristics, engines) by name when first used; those beside the library found are
     * loaded before the first handle (not when cuDNN is only probed: the engines are large), so that they are the ones
     * it gets wherever that folder is (a pip wheel's, say, off the loader's path).
     */
    private static synchronized void preloadParts(NativeLibrary lib) {
        if (partsLoaded) return;
        partsLoaded = true;
        java.nio.file.Path dir = java.nio.file.Path.of(lib.location).getParent();
        if (dir == null) return;
        for (String part : List.of("cudnn_graph", "cudnn_heuristic", "cudnn_engines_runtime_compiled",
                "cudnn_engines_precompiled")) {
            NativeLibrary.newest(dir, part).ifPresent(p -> {
                try {
                    java.lang.foreign.SymbolLookup.libraryLookup(p, Arena.global());
                } catch (IllegalArgumentException e) {
                    // not loadable here: cuDNN reports what it misses when it needs it
                }
            });
        }
    }

    /** "9.10.2" for 91002 (cuDNN 9's encoding: major * 10000 + minor * 100 + patch). */
    static String versionString(long v) {
        return v >= 90000 ? (v / 10000) + "." + (v / 100 % 100) + "." + (v % 100) : (v / 1000) + "." + (v / 100 % 10) + "." + (v % 100);
    }

    private final Library lib;
    private final MemorySegment handle;

    /** A handle whose work goes to {@code stream}. */
    Cudnn(MemorySegment stream) {
        lib = library();
        preloadParts(lib.lib());
        try (Arena a = Arena.ofConfined()) {
            MemorySegment h = a.allocate(ADDRESS);
            check("cudnnCreate", (int) lib.create.invokeExact(h));
            handle = h.get(ADDRESS, 0);
            check("cudnnSetStream", (int) lib.setStream.invokeExact(handle, stream));
        } catch (Throwable t) {
            throw Driver.wrap(t);
        }
    }

    String location() {
        return lib.lib().location;
    }

    String version() {
        return versionString(lib.version());
    }

    /** cuDNN's version number (major * 10000 + minor * 100 + patch for cuDNN 9). */
    long versionNumber() {
        return lib.version();
    }

    MemorySegment handle() {
        return handle;
    }

    /** The masked scores' value: minus infinity, or the lowest float for cuDNN before 9.10, which prefers it. */
    float negativeInfinity() {
        return lib.version() < 91000 ? -Float.MAX_VALUE : Float.NEGATIVE_INFINITY;
    }

    /** Throws for a status other than success, with cuDNN's name for it and its last error message. */
    void check(String call, int status) {
        if (status == 0) return;
        String name = "status " + status;
        try {
            name = ((MemorySegment) lib.errorString().invokeExact(status)).reinterpret(256).getString(0) + " (" + status + ")";
        } catch (Throwable ignored) {
            // keep the number
        }
        String detail = "";
        if (lib.lastError().isPresent()) {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment buffer = a.allocate(1024);
                lib.lastError().get().invokeExact(buffer, 1024L);
                String m = buffer.getString(0).strip();
                if (!m.isEmpty()) detail = ": " + m;
            } catch (Throwable ignored) {
                // no message
            }
        }
        throw new CudaException(call + " failed: " + name + detail);
    }

    /**
     * A backend descriptor under construction, freed with the {@link Descriptors} that made it. Attribute setters
     * return this descriptor so that a descriptor reads as one expression.
     */
    final class Descriptor {
        final MemorySegment pointer;
        final int type;
        private final Arena arena;

        private Descriptor(int type, Arena arena) {
            this.type = type;
            this.arena = arena;
            try {
                MemorySegment p = arena.allocate(ADDRESS);
                check("cudnnBackendCreateDescriptor(" + type + ")", (int) lib.createDescriptor().invokeExact(type, p));
                pointer = p.get(ADDRESS, 0);
            } catch (Throwable t) {
                throw Driver.wrap(t);
            }
        }

        private Descriptor set(int name, int attributeType, long count, MemorySegment values) {
            try {
                check("cudnnBackendSetAttribute(descriptor " + type + ", attribute " + name + ")",
                        (int) lib.setAttribute().invokeExact(pointer, name, attributeType, count, values));
            } catch (Throwable t) {
                throw Driver.wrap(t);
            }
            return this;
        }

        Descriptor ints(int name, int attributeType, int value) {
            return set(name, attributeType, 1, arena.allocateFrom(JAVA_INT, value));
        }

        Descriptor longs(int name, long... values) {
            return set(name, TYPE_INT64, values.length, arena.allocateFrom(JAVA_LONG, values));
        }

        Descriptor bool(int name, boolean value) {
            return set(name, TYPE_BOOLEAN, 1, arena.allocateFrom(JAVA_BYTE, (byte) (value ? 1 : 0)));
        }

        Descriptor floats(int name, float value) {
            return set(name, TYPE_FLOAT, 1, arena.allocateFrom(JAVA_FLOAT, value));
        }

        Descriptor handle(int name) {
            MemorySegment h = arena.allocate(ADDRESS);
            h.set(ADDRESS, 0, handle);
            return set(name, TYPE_HANDLE, 1, h);
        }

        Descriptor descriptors(int name, List<Descriptor> values) {
            MemorySegment array = arena.allocate(ADDRESS, values.size());
            for (int i = 0; i < values.size(); i++) array.setAtIndex(ADDRESS, i, values.get(i).pointer);
            return set(name, TYPE_BACKEND_DESCRIPTOR, values.size(), array);
        }

        Descriptor descriptor(int name, Descriptor value) {
            return descriptors(name, List.of(value));
        }

        Descriptor pointers(int name, long... addresses) {
            return set(name, TYPE_VOID_PTR, addresses.length, arena.allocateFrom(JAVA_LONG, addresses));
        }

        /** Finalises this descriptor; throws with cuDNN's reason when it refuses. */
        Descriptor finish() {
            try {
                check("cudnnBackendFinalize(descriptor " + type + ")", (int) lib.finalizeDescriptor().invokeExact(pointer));
            } catch (Throwable t) {
                throw Driver.wrap(t);
            }
            return this;
        }

        /** The status of finalising, without throwing (a candidate engine configuration may be refused). */
        int tryFinish() {
            try {
                return (int) lib.finalizeDescriptor().invokeExact(pointer);
            } catch (Throwable t) {
                throw Driver.wrap(t);
            }
        }

        long getLong(int name) {
            MemorySegment count = arena.allocate(JAVA_LONG), value = arena.allocate(JAVA_LONG);
            try {
                check("cudnnBackendGetAttribute(" + name + ")",
                        (int) lib.getAttribute().invokeExact(pointer, name, TYPE_INT64, 1L, count, value));
            } catch (Throwable t) {
                throw Driver.wrap(t);
            }
            return value.get(JAVA_LONG, 0);
        }

        /** Up to {@code max} engine configurations a finalised heuristics descriptor proposes, best first. */
        List<Descriptor> engineConfigs(Descriptors owner, int max) {
            MemorySegment count = arena.allocate(JAVA_LONG);
            try {
                check("cudnnBackendGetAttribute(engine heuristics results)",
                        (int) lib.getAttribute().invokeExact(pointer, ENGINEHEUR_RESULTS, TYPE_BACKEND_DESCRIPTOR, 0L,
                                count, MemorySegment.NULL));
                int n = (int) Math.min(max, count.get(JAVA_LONG, 0));
                List<Descriptor> configs = new ArrayList<>();
                if (n == 0) return configs;
                MemorySegment array = arena.allocate(ADDRESS, n);
                for (int i = 0; i < n; i++) {
                    Descriptor c = owner.make(ENGINECFG);
                    configs.add(c);
                    array.setAtIndex(ADDRESS, i, c.pointer);
                }
                check("cudnnBackendGetAttribute(engine heuristics results)",
                        (int) lib.getAttribute().invokeExact(pointer, ENGINEHEUR_RESULTS, TYPE_BACKEND_DESCRIPTOR,
                                (long) n, count, array));
                return configs.subList(0, (int) Math.min(n, count.get(JAVA_LONG, 0)));
            } catch (Throwable t) {
                throw Driver.wrap(t);
            }
        }
    }

    /** The descriptors of one graph or plan, destroyed together (the plan needs the graph's while it lives). */
    final class Descriptors implements AutoCloseable {
        private final Arena arena;
        private final List<Descriptor> made = new ArrayList<>();

        private Descriptors(Arena arena) {
            this.arena = arena;
        }

        Descriptor make(int type) {
            Descriptor d = new Descriptor(type, arena);
            made.add(d);
            return d;
        }

        @Override
        public void close() {
            for (int i = made.size() - 1; i >= 0; i--) {
                try {
                    int ignored = (int) lib.destroyDescriptor().invokeExact(made.get(i).pointer);
                } catch (Throwable ignored) {
                    // freeing
                }
            }
            made.clear();
            arena.close();
        }
    }

    /** Descriptors that may be freed from any thread (a plan's). */
    Descriptors descriptors() {
        return new Descriptors(Arena.ofShared());
    }

    /** Descriptors made and freed by one thread in one call (a variant pack). */
    Descriptors localDescriptors() {
        return new Descriptors(Arena.ofConfined());
    }

    /** Runs {@code plan} with the tensors of {@code variantPack}. */
    void execute(Descriptor plan, Descriptor variantPack) {
        try {
            check("cudnnBackendExecute", (int) lib.execute().invokeExact(handle, plan.pointer, variantPack.pointer));
        } catch (Throwable t) {
            throw Driver.wrap(t);
        }
    }

    @Override
    public void close() {
        try {
            int ignored = (int) lib.destroy().invokeExact(handle);
        } catch (Throwable ignored) {
            // closing at exit
        }
    }
}
