package dev.ropeway.io;

import dev.ropeway.tensor.DType;

import java.util.Arrays;
import java.util.Objects;

/**
 * Where one tensor lives in a safetensors file: its element type, shape and byte range. {@code offset} is absolute
 * in the file (header included), so a reader can slice the mapped file directly.
 */
public record TensorInfo(String name, DType dtype, long[] shape, long offset, long byteSize) {

    public TensorInfo {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(dtype, "dtype");
        shape = Objects.requireNonNull(shape, "shape").clone(); // a record is a value: nobody may change its shape from outside
    }

    /** A copy, so that callers cannot change this record. */
    @Override
    public long[] shape() {
        return shape.clone();
    }

    /** Number of dimensions (0 for a scalar). */
    public int rank() {
        return shape.length;
    }

    /** Size of dimension {@code i}. */
    public long dim(int i) {
        return shape[i];
    }

    /** Product of the shape (1 for a scalar). The header parser has already checked that it fits in a long. */
    public long elementCount() {
        long n = 1;
        for (long d : shape) n *= d;
        return n;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof TensorInfo t && name.equals(t.name) && dtype == t.dtype && Arrays.equals(shape, t.shape)
                && offset == t.offset && byteSize == t.byteSize;
    }

    @Override
    public int hashCode() {
        return Objects.hash(name, dtype, Arrays.hashCode(shape), offset, byteSize);
    }

    @Override
    public String toString() {
        return name + " " + dtype + " " + Arrays.toString(shape) + " @" + offset + "+" + byteSize;
    }
}
