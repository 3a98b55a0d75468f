package dev.ropeway.tensor;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Random;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;

/**
 * The decode kernels' reading ahead ({@link ReadAhead}) stays inside the weights and changes no result: products of
 * one to four rows with bfloat16, float16 and Q8_0 matrices of every small shape, whose last groups of rows have no
 * next group to read, equal the float32 products over their values exactly, with rows short enough to read the next
 * group ahead and long enough to read ahead within each row instead.
 */
public class ReadAheadTest {
    static CpuBackend auto, q8, f32;
    static Arena arena;

    @BeforeAll
    static void open() {
        auto = new CpuBackend(2);
        q8 = new CpuBackend(2, DType.F32, CpuBackend.Weights.Q8_0);
        f32 = new CpuBackend(2, DType.F32, CpuBackend.Weights.F32);
        arena = Arena.ofShared();
    }

    @AfterAll
    static void close() {
        auto.close();
        q8.close();
        f32.close();
        arena.close();
    }

    @Test
    void readsTheNextGroupOnlyWhereItIsThere() {
        MemorySegment s = arena.allocate(1000);
        for (int i = 0; i < 1000; i++) s.set(JAVA_BYTE, i, (byte) (i % 7));
        assertEquals(600, ReadAhead.from(s, 300, 600, 400));
        assertEquals(300, ReadAhead.from(s, 300, 600, 401));
        // Bytes 10, 74 and 138: one per cache line, summed.
        assertEquals(10 % 7 + 74 % 7 + 138 % 7, ReadAhead.lines(s, 10, 3));
        assertEquals(0, ReadAhead.lines(s, 999, 0));
        assertEquals(2, ReadAhead.perStep(128));
        assertEquals(1, ReadAhead.perStep(8));
        assertEquals(3, ReadAhead.count(3, ReadAhead.MAX_GROUP));
        assertEquals(0, ReadAhead.count(3, ReadAhead.MAX_GROUP + 1));
    }

    @Test
    void decodeProductsOfNarrowWeightsAreUnchanged() {
        Random r = new Random(7);
        // 64 and 96 values: rows short enough to read ahead; 4096 float16 ones: four span 32 KiB, past MAX_GROUP.
        for (int in : new int[] {64, 96, 4096}) {
            // Past eight rows of 4,096 the float16 kernel reads into the next group's rows; below, it stays in its own.
            for (int out = 1; out <= (in > 96 ? 9 : 11); out++) {
                for (DType type : new DType[] {DType.BF16, DType.F16, DType.Q8_0}) {
                    Tensor w;
                    float[] wide;
                    if (type == DType.Q8_0) {
                        MemorySegment src = arena.allocate(4L * in * out, 64);
                        for (int i = 0; i < in * out; i++) src.setAtIndex(JAVA_FLOAT, i, (float) r.nextGaussian());
                        w = q8.uploadWeights(src, DType.F32, out, in);
                        assertInstanceOf(CpuQ8Tensor.class, w);
                        wide = Q8WeightsTest.read(q8, w);
                    } else {
                        Bf16WeightsTest.Weights h = Bf16WeightsTest.Weights.random(r, in * out, arena, type, 0.5);
                        w = auto.uploadWeights(h.bits(), type, out, in);
                        wide = h.wide();
                    }
                    Tensor wf = f32.upload(wide);
                    for (int rows = 1; rows <= 4; rows++) {
                        String what = type + " [" + out + ", " + in + "], " + rows + " rows";
                        Tensor x = f32.upload(Bf16WeightsTest.random(r.nextLong(), rows * in));
                        Tensor y = f32.allocate((long) rows * out), want = f32.allocate((long) rows * out);
                        (type == DType.Q8_0 ? q8 : auto).linear(y, x, w, null, rows, in, out);
                        f32.linear(want, x, wf, null, rows, in, out);
                        assertArrayEquals(Q8WeightsTest.read(f32, want), Q8WeightsTest.read(f32, y), what);
                    }
                }
            }
        }
    }
}
