package dev.ropeway.io;

import dev.ropeway.tensor.DType;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * A {@link WeightStore} in which some tensors that a checkpoint stores stacked along their rows (Phi-3's
 * {@code qkv_proj} holds the q, k and v projections one above the other) are seen as the separate tensors they
 * stack. A part is a slice of the mapped bytes (rows are contiguous in row-major storage), so nothing is copied.
 * Where a checkpoint already stores a part on its own, that tensor is used as it is.
 */
public final class SplitWeights implements WeightStore {

    /** A block of rows of a stacked tensor, named as the tensor it stands for. */
    public record Part(String name, long rows) {}

    private record Slice(String stacked, long firstRow, long rows, long stackedRows) {}

    private final WeightStore store;
    private final Map<String, Slice> slices = new LinkedHashMap<>();
    private final Set<String> names;

    /**
     * Views {@code store} with each key of {@code stacked} (a stacked tensor's name) seen as its parts, top rows
     * first. Stacked tensors the store lacks are ignored here and reported when a part is asked for.
     */
    public static WeightStore of(WeightStore store, Map<String, List<Part>> stacked) {
        return stacked.isEmpty() ? store : new SplitWeights(store, stacked);
    }

    private SplitWeights(WeightStore store, Map<String, List<Part>> stacked) {
        this.store = store;
        Set<String> all = new TreeSet<>(store.names());
        stacked.forEach((name, parts) -> {
            long total = parts.stream().mapToLong(Part::rows).sum();
            long row = 0;
            for (Part p : parts) {
                if (!store.contains(p.name())) slices.put(p.name(), new Slice(name, row, p.rows(), total));
                row += p.rows();
            }
            if (store.contains(name)) {
                all.remove(name);
                for (Part p : parts) all.add(p.name());
            }
        });
        this.names = Collections.unmodifiableSet(all);
    }

    @Override
    public Path directory() { return store.directory(); }

    @Override
    public Set<String> names() { return names; }

    @Override
    public boolean contains(String name) { return names.contains(name); }

    @Override
    public TensorInfo info(String name) {
        Slice s = slices.get(name);
        if (s == null || !store.contains(s.stacked())) return store.info(name);
        TensorInfo whole = store.info(s.stacked());
        long[] shape = whole.shape();
        if (shape.length == 0 || shape[0] != s.stackedRows())
            throw new CheckpointException("tensor " + s.stacked() + " in " + store.directory() + " has shape "
                    + Arrays.toString(shape) + "; it should stack " + s.stackedRows() + " rows (" + name + " among them)");
        long rowBytes = whole.byteSize() / shape[0];
        shape[0] = s.rows();
        return new TensorInfo(name, whole.dtype(), shape, whole.offset() + s.firstRow() * rowBytes, s.rows() * rowBytes);
    }

    @Override
    public MemorySegment data(String name) {
        Slice s = slices.get(name);
        if (s == null || !store.contains(s.stacked())) return store.data(name);
        TensorInfo part = info(name);
        long rowBytes = part.byteSize() / s.rows();
        return store.data(s.stacked()).asSlice(s.firstRow() * rowBytes, part.byteSize());
    }

    @Override
    public float[] readFloats(String name) {
        Slice s = slices.get(name);
        if (s == null || !store.contains(s.stacked())) return store.readFloats(name);
        TensorInfo part = info(name);
        return FloatConversion.toFloats(data(name), part.dtype(), part.elementCount(),
                "tensor " + name + " (rows of " + s.stacked() + ") in " + store.directory());
    }

    @Override
    public TensorInfo require(String name, long... expectedShape) {
        Slice s = slices.get(name);
        if (s == null) return store.require(name, expectedShape);
        if (!store.contains(s.stacked()))
            throw new CheckpointException("missing tensor " + s.stacked() + " (or " + name + ") in " + store.directory());
        long[] whole = expectedShape.clone();
        if (whole.length > 0) whole[0] = s.stackedRows();
        store.require(s.stacked(), whole);
        return info(name);
    }

    @Override
    public DType dominantDtype() { return store.dominantDtype(); }

    @Override
    public long totalElements() { return store.totalElements(); }

    @Override
    public void close() { store.close(); }
}
