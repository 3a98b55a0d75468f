package dev.ropeway.tensor;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static dev.ropeway.tensor.GemmTest.random;
import static dev.ropeway.tensor.GradCheck.assertClose;
import static dev.ropeway.tensor.GradCheck.toDouble;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

class EmbeddingBackwardTest {
    private static CpuBackend cpu;

    @BeforeAll
    static void start() {
        cpu = new CpuBackend(3);
    }

    @AfterAll
    static void stop() {
        cpu.close();
    }

    static float[] download(CpuBackend backend, Tensor t) {
        float[] out = new float[(int) t.size()];
        backend.download(t, 0, out, 0, out.length);
        return out;
    }

    /** L = sum dOut * table[ids]. */
    static double loss(double[] table, double[] dOut, int[] ids, int dim) {
        double l = 0;
        for (int r = 0; r < ids.length; r++)
            for (int i = 0; i < dim; i++) l += dOut[r * dim + i] * table[ids[r] * dim + i];
        return l;
    }

    static double[] backward(double[] dTable, double[] dOut, int[] ids, int dim) {
        double[] d = dTable.clone();
        for (int r = 0; r < ids.length; r++)
            for (int i = 0; i < dim; i++) d[ids[r] * dim + i] += dOut[r * dim + i];
        return d;
    }

    @Test
    void referenceMatchesFiniteDifferences() {
        int vocab = 6, dim = 5;
        int[] ids = {2, 0, 2, 5, 2};
        Random rnd = new Random(6);
        double[] table = toDouble(random(rnd, vocab * dim)), dOut = toDouble(random(rnd, ids.length * dim));
        double[] grad = backward(new double[table.length], dOut, ids, dim);
        GradCheck.check(table, grad, GradCheck.sample(table.length), p -> loss(p, dOut, ids, dim), "dTable");
    }

    @Test
    void repeatedIdsAccumulateTheSameForAnyThreadCount() {
        int vocab = 301, dim = 37, rows = 3000;
        Random rnd = new Random(7);
        int[] ids = new int[rows];
        for (int r = 0; r < rows; r++) ids[r] = r % 3 == 0 ? 7 : rnd.nextInt(vocab);   // id 7 a thousand times
        ids[rows - 1] = vocab - 1;
        float[] dOut = random(rnd, rows * dim), dTable = random(rnd, vocab * dim);
        double[] expect = backward(toDouble(dTable), toDouble(dOut), ids, dim);
        try (CpuBackend serial = new CpuBackend(1); Tensor dy = cpu.upload(dOut); Tensor t = cpu.upload(dTable);
             Tensor dySerial = serial.upload(dOut); Tensor tSerial = serial.upload(dTable)) {
            cpu.embeddingBackward(t, dy, ids, dim);
            serial.embeddingBackward(tSerial, dySerial, ids, dim);
            float[] got = download(cpu, t);
            assertClose(expect, got, 1e-4, "dTable");
            assertArrayEquals(download(serial, tSerial), got, "one thread and three give the same bits");
            // A row no id points at keeps what it had.
            boolean[] used = new boolean[vocab];
            for (int id : ids) used[id] = true;
            for (int v = 0; v < vocab; v++)
                if (!used[v]) for (int i = 0; i < dim; i++) assertEquals(dTable[v * dim + i], got[v * dim + i]);
        }
    }

    @Test
    void checksIds() {
        try (Tensor t = cpu.allocate(10 * 4); Tensor dy = cpu.allocate(2 * 4)) {
            var e = assertThrows(IllegalArgumentException.class, () -> cpu.embeddingBackward(t, dy, new int[]{3, 10}, 4));
            assertEquals("embeddingBackward: ids[1] = 10 is outside the table's 10 rows", e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> cpu.embeddingBackward(t, dy, new int[]{1, 2, 3}, 4));
            assertEquals("embeddingBackward: dOut has 8 floats, needs ids.length*dim = 12", e.getMessage());
        }
    }
}
