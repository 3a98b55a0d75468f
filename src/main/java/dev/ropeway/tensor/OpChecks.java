package dev.ropeway.tensor;

/**
 * Argument checks every backend makes the same way, with the same messages: counts, sizes that must not overflow,
 * and token ids against a table.
 */
public final class OpChecks {
    private OpChecks() {}

    public static void positive(String op, String name, long value) {
        if (value <= 0) throw new IllegalArgumentException(op + ": " + name + " must be positive, got " + value);
    }

    public static void nonNegative(String op, String name, long value) {
        if (value < 0) throw new IllegalArgumentException(op + ": " + name + " must be >= 0, got " + value);
    }

    /** rows * cols, failing rather than overflowing. */
    public static long product(String op, long rows, long cols) {
        try {
            return Math.multiplyExact(rows, cols);
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException(op + ": " + rows + " x " + cols + " overflows");
        }
    }

    /** A row op's counts: rows >= 0 and dim > 0; returns rows * dim. */
    public static long rows(String op, long rows, int dim) {
        nonNegative(op, "rows", rows);
        positive(op, "dim", dim);
        return product(op, rows, dim);
    }

    /** {@link Backend#addRmsNorm}'s counts and aliasing (out must not be sum); returns rows * dim. */
    public static long addRmsNorm(String op, Tensor out, Tensor sum, long rows, int dim) {
        long n = rows(op, rows, dim);
        if (out == sum) throw new IllegalArgumentException(op + ": out and sum are the same tensor");
        return n;
    }

    /** {@link Backend#rmsNormBackwardAdd}'s counts and aliasing (dResidual is its own tensor); returns rows * dim. */
    public static long rmsNormBackwardAdd(String op, Tensor dResidual, Tensor rounded, Tensor dOut, Tensor x, long rows,
                                          int dim) {
        long n = rows(op, rows, dim);
        if (dResidual == dOut || dResidual == x || rounded == dResidual)
            throw new IllegalArgumentException(op + ": dResidual must be a tensor of its own");
        return n;
    }

    /** Every id must index a row of a table with {@code rows} rows. */
    public static void ids(String op, int[] ids, long rows) {
        for (int r = 0; r < ids.length; r++)
            if (ids[r] < 0 || ids[r] >= rows)
                throw new IllegalArgumentException(op + ": ids[" + r + "] = " + ids[r] + " is outside the table's " + rows + " rows");
    }
}
