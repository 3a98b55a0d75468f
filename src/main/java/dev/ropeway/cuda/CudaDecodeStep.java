package dev.ropeway.cuda;

import dev.ropeway.tensor.DecodeStep;

import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * A decode step's inputs in GPU memory, where the step kernels read them when they run: one block of
 * {@code [long position][int token][float position][float invFreq[half]]}, copied in whole by each {@link #set}.
 * The copy goes through the legacy default stream, so it waits for the previous step's kernels and the next step's
 * wait for it.
 */
final class CudaDecodeStep extends DecodeStep {
    static final long POSITION = 0, TOKEN = 8, POSITION_FLOAT = 12, INV_FREQ = 16;

    private final CudaBackend backend;
    private final CudaTensor block;

    CudaDecodeStep(CudaBackend backend, int half) {
        super(half);
        this.backend = backend;
        this.block = backend.allocate(4L + half);
    }

    CudaBackend backend() {
        return backend;
    }

    /** Device address of the block (the offsets above are in bytes). */
    long address() {
        return block.address();
    }

    @Override
    protected void publish() {
        int half = half();
        float[] freq = invFreq();
        backend.locked(() -> {
            try (HostScratch a = HostScratch.begin()) {
                MemorySegment host = a.allocate(INV_FREQ + 4L * half, 8);
                host.set(JAVA_LONG, POSITION, position());
                host.set(JAVA_INT, TOKEN, token());
                host.set(JAVA_FLOAT, POSITION_FLOAT, (float) position());
                MemorySegment.copy(freq, 0, host, JAVA_FLOAT, INV_FREQ, half);
                backend.driver().copyToDevice(block.address(), host, host.byteSize());
            }
        });
    }

    @Override
    public void close() {
        block.close();
    }
}
