package dev.ropeway.cuda;

import dev.ropeway.tensor.AttentionShape;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

/**
 * Causal attention forward and backward as cuDNN graphs, which cuDNN runs as its fused flash-attention kernels.
 *
 * <p>The graphs are the operation patterns cuDNN recognises as scaled dot-product attention: scores {@code Q K^T},
 * times the scale, the causal mask (row index >= column index, else minus infinity; with a sliding window of W keys
 * also column + W > row), a softmax that also writes its
 * row statistic ({@code max + log(sum)}, the kernels' {@code lse}), then {@code P V}; the backward recomputes the
 * probabilities from that statistic and forms dV, dK and dQ (dQ accumulated in float32). Grouped-query heads are
 * broadcast in the products and summed back in the backward.
 *
 * <p>Tensors are given as {@code [batch, heads, seq, headDim]} views of the backend's row layout
 * ({@code [batch * seq, heads * headDim]}), so no copy reorders them; inputs and outputs are float16 or bfloat16,
 * everything in between float32. Plans are built per shape on first use and kept (a few; cuDNN may compile kernels
 * for a new one, which takes a moment).
 */
final class CudnnAttention implements AutoCloseable {
    static final int MAX_PLANS = 16;

    private final Cudnn cudnn;
    private final Map<String, Plan> plans = new LinkedHashMap<>(16, 0.75f, true);
    /** Shapes cuDNN would not build a plan for, with its reason (not asked again). */
    private final Map<String, CudaException> refused = new java.util.HashMap<>();

    CudnnAttention(Cudnn cudnn) {
        long v = cudnn.versionNumber();
        // NVIDIA's own frontend refuses scaled dot-product attention on these two releases for known bugs.
        if (v == 91000 || v == 91001)
            throw new CudaException("cuDNN " + cudnn.version() + " has known bugs in its fused attention (fixed in 9.10.2); "
                    + "install another cuDNN 9 or run with --gpu-attention kernels");
        this.cudnn = cudnn;
    }

    /**
     * Whether the backward graph serves {@code s}: cuDNN up to 9.15.0 needs a padding mask (which these graphs do not
     * build) when the sequence is not a multiple of its 128-row tiles, so such shapes stay on the kernels there.
     */
    boolean backwardSupports(AttentionShape s) {
        return backwardServes(s, cudnn.versionNumber());
    }

    /** {@link #backwardSupports} for cuDNN {@code version} (major * 10000 + minor * 100 + patch). */
    static boolean backwardServes(AttentionShape s, long version) {
        return supports(s) && (s.seqKv() % 128 == 0 || version > 91500);
    }

    /** Whether the graphs express this call: whole causal sequences (queries = keys from position 0), any window. */
    static boolean supports(AttentionShape s) {
        return s.seqQ() == s.seqKv() && s.qStart() == 0 && s.window() < (1L << 24) && s.seqQ() > 1
                && s.headDim() % 8 == 0 && s.headDim() <= 128;
    }

    /** A built plan: its workspace size, and how to run it. */
    final class Plan implements AutoCloseable {
        private final Cudnn.Descriptors descriptors;
        private final Cudnn.Descriptor plan;
        /** The variant pack's ids: the tensors' (in role order), the scale's, the constants'. */
        private final long[] ids;
        private final int tensors;
        final long workspaceBytes;
        /** Host memory for the by-value scalars: the attention scale (set per run), then the graph's constants. */
        private final Arena arena = Arena.ofShared();
        private final MemorySegment scalars;

        private Plan(GraphBuilder g, Cudnn.Descriptor plan, long[] uids) {
            this.descriptors = g.descriptors;
            this.plan = plan;
            this.workspaceBytes = plan.getLong(Cudnn.EXECUTION_PLAN_WORKSPACE_SIZE);
            this.tensors = uids.length;
            int constants = g.constantUids.size();
            this.ids = java.util.Arrays.copyOf(uids, tensors + 1 + constants);
            ids[tensors] = g.scaleUid;
            this.scalars = arena.allocate(JAVA_FLOAT, 1 + constants);
            for (int i = 0; i < constants; i++) {
                ids[tensors + 1 + i] = g.constantUids.get(i);
                scalars.setAtIndex(JAVA_FLOAT, 1 + i, g.constantValues.get(i));
            }
        }

        /** Runs the plan on the handle's stream with the tensors at {@code addresses} (in role order). */
        void run(long[] addresses, float attentionScale, long workspace) {
            if (addresses.length != tensors) throw new IllegalArgumentException("expected " + tensors + " tensors");
            scalars.setAtIndex(JAVA_FLOAT, 0, attentionScale);
            long[] pointers = java.util.Arrays.copyOf(addresses, ids.length);
            for (int i = tensors; i < ids.length; i++) pointers[i] = scalars.address() + 4L * (i - tensors);
            try (Cudnn.Descriptors pack = cudnn.localDescriptors()) {
                Cudnn.Descriptor v = pack.make(Cudnn.VARIANT_PACK)
                        .longs(Cudnn.VARIANT_PACK_UNIQUE_IDS, ids)
                        .pointers(Cudnn.VARIANT_PACK_DATA_POINTERS, pointers)
                        .pointers(Cudnn.VARIANT_PACK_WORKSPACE, workspace)
                        .finish();
                cudnn.execute(plan, v);
            }
        }

        @Override
        public void close() {
            descriptors.close();
            arena.close();
        }
    }

    /**
     * The forward's plan for {@code shape} with inputs and outputs of {@code ioType} (Cudnn.HALF or BFLOAT16). Its
     * tensors, in {@link Plan#run} order: q, k, v, out (row layout), stats (float32, [batch, heads, seq]).
     */
    Plan forward(AttentionShape shape, int ioType) {
        return plan("fwd/" + ioType + "/" + key(shape), () -> buildForward(shape, ioType));
    }

    /**
     * The backward's plan for {@code shape} (bfloat16 inputs and outputs: gradients need its range). Its tensors, in
     * {@link Plan#run} order: q, k, v, out, dOut, stats, dq, dk, dv, then two float32 buffers it works in: the rows'
     * sums of dOut * out ([batch, heads, seq]) and dq's accumulator ([batch, heads, seq, headDim], zeroed).
     */
    Plan backward(AttentionShape shape) {
        return plan("bwd/" + key(shape), () -> buildBackward(shape));
    }

    /** The keys of the cached plans ("fwd/ioType/shape" or "bwd/shape"), least recently used first. */
    List<String> planKeys() {
        return List.copyOf(plans.keySet());
    }

    private static String key(AttentionShape s) {
        return s.batch() + "x" + s.seqQ() + "/" + s.kvRowsPerBatch() + "/" + s.heads() + "/" + s.kvHeads() + "/" + s.headDim()
                + "/w" + s.window();
    }

    private Plan plan(String key, java.util.function.Supplier<Plan> build) {
        Plan p = plans.get(key);
        if (p != null) return p;
        CudaException no = refused.get(key);
        if (no != null) throw no;
        try {
            p = build.get();
        } catch (CudaException e) {
            refused.put(key, e);
            throw e;
        }
        plans.put(key, p);
        if (plans.size() > MAX_PLANS) {
            var eldest = plans.entrySet().iterator().next();
            plans.remove(eldest.getKey());
            eldest.getValue().close();
        }
        return p;
    }

    // ---- graphs ----

    /** Dimensions of the tensors of one attention call, as [b, h, s, d] views of the row layout. */
    private record Dims(long b, long hq, long hk, long s, long kvRows, long d) {
        static Dims of(AttentionShape sh) {
            return new Dims(sh.batch(), sh.heads(), sh.kvHeads(), sh.seqQ(), sh.kvRowsPerBatch(), sh.headDim());
        }

        long[] q() { return new long[] {b, hq, s, d}; }

        /** Queries, outputs and their gradients: rows of heads * d. */
        long[] qStrides() { return new long[] {s * hq * d, d, hq * d, 1}; }

        long[] kv() { return new long[] {b, hk, s, d}; }

        long[] kvStrides() { return new long[] {kvRows * hk * d, d, hk * d, 1}; }

        /** Keys (or values) transposed: [b, hk, d, s]. */
        long[] kvT() { return new long[] {b, hk, d, s}; }

        long[] kvTStrides() { return new long[] {kvRows * hk * d, d, 1, hk * d}; }

        long[] scores() { return new long[] {b, hq, s, s}; }

        long[] scoreStrides() { return new long[] {hq * s * s, s * s, s, 1}; }

        /** The scores' transpose (queries and keys are the same length): the same dimensions, strides swapped. */
        long[] scoreTStrides() { return new long[] {hq * s * s, s * s, 1, s}; }

        long[] rows() { return new long[] {b, hq, s, 1}; }

        long[] rowStrides() { return new long[] {hq * s, s, 1, 1}; }

        long[] packed() { return new long[] {hq * s * d, s * d, d, 1}; }
    }

    /** Builds one operation graph: tensors with fresh unique ids, operations in order, then a plan. */
    private final class GraphBuilder {
        final Cudnn.Descriptors descriptors = cudnn.descriptors();
        final List<Cudnn.Descriptor> ops = new ArrayList<>();
        private long nextUid = 1;
        long scaleUid;
        final List<Long> constantUids = new ArrayList<>();
        final List<Float> constantValues = new ArrayList<>();

        final class T {
            final Cudnn.Descriptor d;
            final long uid;
            final long[] dims;

            T(long[] dims, long[] strides, int type, boolean virtual, boolean byValue) {
                this.uid = nextUid++;
                this.dims = dims;
                d = descriptors.make(Cudnn.TENSOR)
                        .ints(Cudnn.TENSOR_DATA_TYPE, Cudnn.TYPE_DATA_TYPE, type)
                        .longs(Cudnn.TENSOR_DIMENSIONS, dims)
                        .longs(Cudnn.TENSOR_STRIDES, strides)
                        .longs(Cudnn.TENSOR_UNIQUE_ID, uid)
                        .longs(Cudnn.TENSOR_BYTE_ALIGNMENT, 16)
                        .bool(Cudnn.TENSOR_IS_VIRTUAL, virtual);
                if (byValue) d.bool(Cudnn.TENSOR_IS_BY_VALUE, true);
                d.finish();
            }
        }

        T tensor(long[] dims, long[] strides, int type) {
            return new T(dims, strides, type, false, false);
        }

        T virtual(long[] dims, long[] strides, int type) {
            return new T(dims, strides, type, true, false);
        }

        T scalar() {
            return new T(new long[] {1}, new long[] {1}, Cudnn.FLOAT, false, true);
        }

        /** A by-value scalar whose value is fixed with the plan. */
        T constant(float value) {
            T t = scalar();
            constantUids.add(t.uid);
            constantValues.add(value);
            return t;
        }

        T matmul(T a, T b, T c) {
            Cudnn.Descriptor m = descriptors.make(Cudnn.MATMUL).ints(Cudnn.MATMUL_COMP_TYPE, Cudnn.TYPE_DATA_TYPE, Cudnn.FLOAT).finish();
            ops.add(descriptors.make(Cudnn.OP_MATMUL).descriptor(Cudnn.OP_MATMUL_ADESC, a.d)
                    .descriptor(Cudnn.OP_MATMUL_BDESC, b.d).descriptor(Cudnn.OP_MATMUL_CDESC, c.d)
                    .descriptor(Cudnn.OP_MATMUL_DESC, m).finish());
            return c;
        }

        /** y = mode(x[, b][, t]) computed in {@code compute}; GEN_INDEX takes {@code axis}. */
        T pointwise(int mode, int compute, T x, T b, T t, T y, long axis) {
            Cudnn.Descriptor p = descriptors.make(Cudnn.POINTWISE).ints(Cudnn.POINTWISE_MODE, Cudnn.TYPE_POINTWISE_MODE, mode)
                    .ints(Cudnn.POINTWISE_MATH_PREC, Cudnn.TYPE_DATA_TYPE, compute);
            if (mode == Cudnn.GEN_INDEX) p.longs(Cudnn.POINTWISE_AXIS, axis);
            p.finish();
            Cudnn.Descriptor op = descriptors.make(Cudnn.OP_POINTWISE).descriptor(Cudnn.OP_POINTWISE_PW_DESCRIPTOR, p)
                    .descriptor(Cudnn.OP_POINTWISE_XDESC, x.d);
            if (b != null) op.descriptor(Cudnn.OP_POINTWISE_BDESC, b.d);
            if (t != null) op.descriptor(Cudnn.OP_POINTWISE_TDESC, t.d);
            op.descriptor(Cudnn.OP_POINTWISE_YDESC, y.d).floats(Cudnn.OP_POINTWISE_ALPHA1, 1f)
                    .floats(Cudnn.OP_POINTWISE_ALPHA2, 1f);
            ops.add(op.finish());
            return y;
        }

        T pointwise(int mode, T x, T b, T y) {
            return pointwise(mode, Cudnn.FLOAT, x, b, null, y, 0);
        }

        T reduce(int operator, T x, T y) {
            Cudnn.Descriptor r = descriptors.make(Cudnn.REDUCTION)
                    .ints(Cudnn.REDUCTION_OPERATOR, Cudnn.TYPE_REDUCTION_OPERATOR, operator)
                    .ints(Cudnn.REDUCTION_COMP_TYPE, Cudnn.TYPE_DATA_TYPE, Cudnn.FLOAT).finish();
            ops.add(descriptors.make(Cudnn.OP_REDUCTION).descriptor(Cudnn.OP_REDUCTION_XDESC, x.d)
                    .descriptor(Cudnn.OP_REDUCTION_YDESC, y.d).descriptor(Cudnn.OP_REDUCTION_DESC, r).finish());
            return y;
        }

        T reshape(T x, T y) {
            ops.add(descriptors.make(Cudnn.OP_RESHAPE).descriptor(Cudnn.OP_RESHAPE_XDESC, x.d)
                    .descriptor(Cudnn.OP_RESHAPE_YDESC, y.d).finish());
            return y;
        }

        /** Scores outside the causal triangle (column > row), and outside the window if any, set to minus infinity. */
        T causalMask(T scores, Dims n, long window) {
            T row = pointwise(Cudnn.GEN_INDEX, Cudnn.FLOAT, scores, null, null,
                    virtual(n.scores(), n.scoreStrides(), Cudnn.INT32), 2);
            T col = pointwise(Cudnn.GEN_INDEX, Cudnn.FLOAT, scores, null, null,
                    virtual(n.scores(), n.scoreStrides(), Cudnn.INT32), 3);
            T keep = pointwise(Cudnn.CMP_GE, Cudnn.BOOLEAN, row, col, null,
                    virtual(n.scores(), n.scoreStrides(), Cudnn.BOOLEAN), 0);
            T masked = pointwise(Cudnn.BINARY_SELECT, Cudnn.FLOAT, scores, constant(cudnn.negativeInfinity()), keep,
                    virtual(n.scores(), n.scoreStrides(), Cudnn.FLOAT), 0);
            return window == 0 ? masked : windowMask(masked, n, window);
        }

        /** Scores of keys outside a sliding window of {@code window} keys (column + window <= row) to minus infinity. */
        private T windowMask(T scores, Dims n, long window) {
            T row = pointwise(Cudnn.GEN_INDEX, Cudnn.FLOAT, scores, null, null,
                    virtual(n.scores(), n.scoreStrides(), Cudnn.INT32), 2);
            T col = pointwise(Cudnn.GEN_INDEX, Cudnn.FLOAT, scores, null, null,
                    virtual(n.scores(), n.scoreStrides(), Cudnn.INT32), 3);
            T reach = pointwise(Cudnn.ADD, Cudnn.FLOAT, col, constant(window), null,
                    virtual(n.scores(), n.scoreStrides(), Cudnn.FLOAT), 0);
            T keep = pointwise(Cudnn.CMP_GT, Cudnn.BOOLEAN, reach, row, null,
                    virtual(n.scores(), n.scoreStrides(), Cudnn.BOOLEAN), 0);
            return pointwise(Cudnn.BINARY_SELECT, Cudnn.FLOAT, scores, constant(cudnn.negativeInfinity()), keep,
                    virtual(n.scores(), n.scoreStrides(), Cudnn.FLOAT), 0);
        }

        /** Finalises the graph and the first engine configuration cuDNN's heuristics propose that it accepts. */
        Cudnn.Descriptor plan() {
            Cudnn.Descriptor graph = descriptors.make(Cudnn.OPERATION_GRAPH).handle(Cudnn.OPERATIONGRAPH_HANDLE)
                    .descriptors(Cudnn.OPERATIONGRAPH_OPS, ops).finish();
            int lastStatus = 0;
            CudaException heuristicsFailure = null;
            for (int mode : new int[] {Cudnn.HEUR_MODE_A, Cudnn.HEUR_MODE_FALLBACK}) {
                List<Cudnn.Descriptor> configs;
                try {
                    configs = descriptors.make(Cudnn.ENGINEHEUR).descriptor(Cudnn.ENGINEHEUR_OPERATION_GRAPH, graph)
                            .ints(Cudnn.ENGINEHEUR_MODE, Cudnn.TYPE_HEUR_MODE, mode).finish().engineConfigs(descriptors, 8);
                } catch (CudaException e) {
                    heuristicsFailure = e;   // this mode has nothing for the graph: try the next
                    continue;
                }
                for (Cudnn.Descriptor config : configs) {
                    Cudnn.Descriptor plan = descriptors.make(Cudnn.EXECUTION_PLAN).handle(Cudnn.EXECUTION_PLAN_HANDLE)
                            .descriptor(Cudnn.EXECUTION_PLAN_ENGINE_CONFIG, config);
                    lastStatus = plan.tryFinish();
                    if (lastStatus == 0) return plan;
                }
            }
            if (lastStatus == 0 && heuristicsFailure != null) throw heuristicsFailure;
            cudnn.check("no cuDNN engine runs this attention graph; the last plan's finalize", lastStatus == 0 ? 3000 : lastStatus);
            throw new CudaException("no cuDNN engine runs this attention graph");
        }
    }

    private Plan buildForward(AttentionShape shape, int io) {
        Dims n = Dims.of(shape);
        GraphBuilder g = new GraphBuilder();
        try {
            GraphBuilder.T q = g.tensor(n.q(), n.qStrides(), io), kT = g.tensor(n.kvT(), n.kvTStrides(), io),
                    v = g.tensor(n.kv(), n.kvStrides(), io), o = g.tensor(n.q(), n.qStrides(), io),
                    stats = g.tensor(n.rows(), n.rowStrides(), Cudnn.FLOAT), scale = g.scalar();
            g.scaleUid = scale.uid;
            GraphBuilder.T s = g.matmul(q, kT, g.virtual(n.scores(), n.scoreStrides(), Cudnn.FLOAT));
            s = g.pointwise(Cudnn.MUL, s, scale, g.virtual(n.scores(), n.scoreStrides(), Cudnn.FLOAT));
            s = g.causalMask(s, n, shape.window());
            GraphBuilder.T max = g.reduce(Cudnn.REDUCE_MAX, s, g.virtual(n.rows(), n.rowStrides(), Cudnn.FLOAT));
            GraphBuilder.T shifted = g.pointwise(Cudnn.SUB, s, max, g.virtual(n.scores(), n.scoreStrides(), Cudnn.FLOAT));
            GraphBuilder.T e = g.pointwise(Cudnn.EXP, shifted, null, g.virtual(n.scores(), n.scoreStrides(), Cudnn.FLOAT));
            GraphBuilder.T sum = g.reduce(Cudnn.REDUCE_ADD, e, g.virtual(n.rows(), n.rowStrides(), Cudnn.FLOAT));
            GraphBuilder.T log = g.pointwise(Cudnn.LOG, sum, null, g.virtual(n.rows(), n.rowStrides(), Cudnn.FLOAT));
            g.pointwise(Cudnn.ADD, max, log, stats);
            GraphBuilder.T p = g.pointwise(Cudnn.DIV, e, sum, g.virtual(n.scores(), n.scoreStrides(), io));
            g.matmul(p, v, o);
            return new Plan(g, g.plan(), new long[] {q.uid, kT.uid, v.uid, o.uid, stats.uid});
        } catch (RuntimeException e) {
            g.descriptors.close();
            throw e;
        }
    }

    private Plan buildBackward(AttentionShape shape) {
        Dims n = Dims.of(shape);
        int io = Cudnn.BFLOAT16;
        GraphBuilder g = new GraphBuilder();
        try {
            GraphBuilder.T q = g.tensor(n.q(), n.qStrides(), io), kT = g.tensor(n.kvT(), n.kvTStrides(), io),
                    vT = g.tensor(n.kvT(), n.kvTStrides(), io), o = g.tensor(n.q(), n.qStrides(), io),
                    dO = g.tensor(n.q(), n.qStrides(), io), stats = g.tensor(n.rows(), n.rowStrides(), Cudnn.FLOAT),
                    dQ = g.tensor(n.q(), n.qStrides(), io), dK = g.tensor(n.kv(), n.kvStrides(), io),
                    dV = g.tensor(n.kv(), n.kvStrides(), io), scale = g.scalar(), one = g.constant(1f);
            g.scaleUid = scale.uid;
            // delta = rowsum(dO * O), kept (float32) for the dS step.
            GraphBuilder.T dOo = g.pointwise(Cudnn.MUL, dO, o,
                    g.virtual(n.q(), new long[] {n.hq() * n.s() * n.d(), n.s() * n.d(), n.hq() * n.d(), 1}, Cudnn.FLOAT));
            GraphBuilder.T delta = g.reduce(Cudnn.REDUCE_ADD, dOo, g.virtual(n.rows(), n.rowStrides(), Cudnn.FLOAT));
            GraphBuilder.T softmaxSum = g.pointwise(Cudnn.MUL, delta, one, g.tensor(n.rows(), n.rowStrides(), Cudnn.FLOAT));
            // P = exp(scale * Q K^T - stats), masked.
            GraphBuilder.T s = g.matmul(q, kT, g.virtual(n.scores(), n.scoreStrides(), Cudnn.FLOAT));
            s = g.pointwise(Cudnn.MUL, s, scale, g.virtual(n.scores(), n.scoreStrides(), Cudnn.FLOAT));
            s = g.pointwise(Cudnn.SUB, s, stats, g.virtual(n.scores(), n.scoreStrides(), Cudnn.FLOAT));
            s = g.causalMask(s, n, shape.window());
            GraphBuilder.T p = g.pointwise(Cudnn.EXP, s, null, g.virtual(n.scores(), n.scoreStrides(), Cudnn.FLOAT));
            // dV = P^T dO (summed over the query heads of a key/value head).
            GraphBuilder.T pT = g.reshape(p, g.virtual(n.scores(), n.scoreTStrides(), io));
            headSum(g, g.matmul(pT, dO, n.hq() == n.hk() ? dV : g.virtual(n.q(), n.packed(), io)), dV);
            // dS = P * (dO V^T - delta) * scale.
            GraphBuilder.T dP = g.matmul(dO, vT, g.virtual(n.scores(), n.scoreStrides(), Cudnn.FLOAT));
            dP = g.pointwise(Cudnn.SUB, dP, softmaxSum, g.virtual(n.scores(), n.scoreStrides(), Cudnn.FLOAT));
            dP = g.pointwise(Cudnn.MUL, dP, p, g.virtual(n.scores(), n.scoreStrides(), Cudnn.FLOAT));
            GraphBuilder.T dS = g.pointwise(Cudnn.MUL, dP, scale, g.virtual(n.scores(), n.scoreStrides(), Cudnn.FLOAT));
            // dK = dS^T Q.
            GraphBuilder.T dST = g.reshape(dS, g.virtual(n.scores(), n.scoreTStrides(), io));
            headSum(g, g.matmul(dST, q, n.hq() == n.hk() ? dK : g.virtual(n.q(), n.packed(), io)), dK);
            // dQ = dS K, accumulated in float32, then rounded into dQ.
            GraphBuilder.T k = g.reshape(kT, g.virtual(n.kv(), n.kvStrides(), Cudnn.FLOAT));
            GraphBuilder.T dQaccum = g.matmul(dS, k, g.tensor(n.q(), n.packed(), Cudnn.FLOAT));
            g.pointwise(Cudnn.IDENTITY, dQaccum, null, dQ);
            return new Plan(g, g.plan(), new long[] {q.uid, kT.uid, vT.uid, o.uid, dO.uid, stats.uid, dQ.uid, dK.uid,
                    dV.uid, softmaxSum.uid, dQaccum.uid});
        } catch (RuntimeException e) {
            g.descriptors.close();
            throw e;
        }
    }

    /** With grouped-query heads, the per-query-head gradient {@code full} summed into its key/value head's. */
    private static void headSum(GraphBuilder g, GraphBuilder.T full, GraphBuilder.T out) {
        if (full != out) g.reduce(Cudnn.REDUCE_ADD, full, out);
    }

    @Override
    public void close() {
        for (Plan p : plans.values()) p.close();
        plans.clear();
    }
}
