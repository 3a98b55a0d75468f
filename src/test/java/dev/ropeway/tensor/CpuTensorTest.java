package dev.ropeway.tensor;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class CpuTensorTest {
    private static CpuBackend cpu;

    @BeforeAll
    static void start() {
        cpu = new CpuBackend(2);
    }

    @AfterAll
    static void stop() {
        cpu.close();
    }

    @Test
    void allocationIsZeroFilledAlignedAndSized() {
        for (long size : new long[]{0, 1, 17, 1000, 1 << 20}) {
            try (CpuTensor t = cpu.allocate(size)) {
                assertEquals(size, t.size());
                MemorySegment s = t.segment();
                assertEquals(size * 4, s.byteSize());
                assertEquals(0, s.address() % 64, "64-byte aligned");
                for (long i = 0; i < size; i += Math.max(1, size / 97)) assertEquals(0f, s.getAtIndex(JAVA_FLOAT, i));
                if (size > 0) assertEquals(0f, s.getAtIndex(JAVA_FLOAT, size - 1));
            }
        }
    }

    @Test
    void closedTensorIsRejected() {
        CpuTensor t = cpu.allocate(8);
        t.close();
        t.close();
        assertTrue(t.isClosed());
        assertThrows(IllegalStateException.class, t::segment);
        var e = assertThrows(IllegalArgumentException.class, () -> cpu.addInPlace(t, t, 8));
        assertTrue(e.getMessage().contains("closed"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> CpuBackend.segment(t));
    }

    @Test
    void foreignTensorsAndBadSizesAreRejected() {
        Tensor foreign = new Tensor() {
            public long size() { return 4; }
            public void close() {}
        };
        var e = assertThrows(IllegalArgumentException.class, () -> CpuBackend.segment(foreign));
        assertTrue(e.getMessage().contains("not a CPU tensor"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> cpu.allocate(-1));
    }

    @Test
    void uploadDownloadAndCopyRoundTrip() {
        float[] data = new float[1003];
        for (int i = 0; i < data.length; i++) data[i] = i * 0.5f - 7;
        try (CpuTensor t = cpu.upload(data); CpuTensor u = cpu.allocate(1003)) {
            float[] back = new float[10];
            cpu.download(t, 500, back, 3, 7);
            for (int i = 0; i < 7; i++) assertEquals(data[500 + i], back[3 + i]);
            assertEquals(0f, back[0]);
            cpu.copy(u, 1, t, 0, 1002);
            float[] all = new float[1003];
            cpu.download(u, 0, all, 0, 1003);
            assertEquals(0f, all[0]);
            for (int i = 1; i < 1003; i++) assertEquals(data[i - 1], all[i]);
            // Overlapping copy inside one tensor behaves like memmove.
            cpu.copy(t, 10, t, 0, 100);
            cpu.download(t, 10, back, 0, 10);
            for (int i = 0; i < 10; i++) assertEquals(data[i], back[i]);
        }
    }

    @Test
    void largeCopyUsesEveryChunk() {
        int n = 1_000_003;
        float[] data = new float[n];
        for (int i = 0; i < n; i++) data[i] = i;
        try (CpuTensor t = cpu.upload(data); CpuTensor u = cpu.allocate(n)) {
            cpu.copy(u, 0, t, 0, n);
            float[] back = new float[n];
            cpu.download(u, 0, back, 0, n);
            for (int i = 0; i < n; i += 9973) assertEquals(i, back[i]);
            assertEquals(n - 1, back[n - 1]);
        }
    }

    @Test
    void rangesAreChecked() {
        try (CpuTensor t = cpu.allocate(10)) {
            var e = assertThrows(IllegalArgumentException.class, () -> cpu.download(t, 5, new float[10], 0, 6));
            assertTrue(e.getMessage().startsWith("download: src range [5, 11)"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> cpu.download(t, 0, new float[3], 1, 3));
            assertThrows(IllegalArgumentException.class, () -> cpu.copy(t, 8, t, 0, 3));
            assertThrows(IllegalArgumentException.class, () -> cpu.copy(t, -1, t, 0, 3));
        }
    }

    @Test
    void opsAfterCloseFail() {
        CpuBackend b = new CpuBackend(2);
        assertEquals(2, b.threads());
        assertEquals("cpu", b.name());
        try (CpuTensor t = b.allocate(4)) {
            b.close();
            assertThrows(IllegalStateException.class, () -> b.addInPlace(t, t, 4));
        }
    }
}
