package dev.ropeway.tensor;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.util.Map;
import java.util.OptionalLong;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A real backend seen through a proxy for tests: it counts the calls of each op and the bytes of the tensors allocated,
 * and reports the block size, prefill chunk and free memory a test chooses (the backend's own where none is chosen).
 */
public final class InstrumentedBackend {
    private final Backend backend;
    private final Map<String, AtomicLong> calls = new ConcurrentHashMap<>();
    private final AtomicLong allocatedBytes = new AtomicLong();
    private Long blockFloats;
    private Integer prefillChunk;
    private OptionalLong memoryAvailable;
    private DType attentionOperandType;
    private volatile Runnable onSynchronize;

    private InstrumentedBackend(Backend backend) {
        this.backend = backend;
    }

    public static InstrumentedBackend of(Backend backend) {
        return new InstrumentedBackend(backend);
    }

    public InstrumentedBackend blockFloats(long floats) {
        this.blockFloats = floats;
        return this;
    }

    public InstrumentedBackend prefillChunk(int tokens) {
        this.prefillChunk = tokens;
        return this;
    }

    public InstrumentedBackend memoryAvailable(OptionalLong bytes) {
        this.memoryAvailable = bytes;
        return this;
    }

    /** Reports {@code type} as the attention operand type (allocating it is the real backend's business). */
    public InstrumentedBackend attentionOperandType(DType type) {
        this.attentionOperandType = type;
        return this;
    }

    /** Runs {@code hook} on the calling thread before every {@code synchronize} (to hold a prefill between chunks). */
    public InstrumentedBackend onSynchronize(Runnable hook) {
        this.onSynchronize = hook;
        return this;
    }

    /** Calls of the op {@code name} so far (every overload). */
    public long calls(String name) {
        AtomicLong n = calls.get(name);
        return n == null ? 0 : n.get();
    }

    /** Bytes of the tensors allocated through the proxy so far (none freed is subtracted). */
    public long allocatedBytes() {
        return allocatedBytes.get();
    }

    public Backend backend() {
        return (Backend) Proxy.newProxyInstance(Backend.class.getClassLoader(), new Class<?>[] {Backend.class},
                (proxy, method, args) -> {
                    String name = method.getName();
                    calls.computeIfAbsent(name, k -> new AtomicLong()).incrementAndGet();
                    if (name.equals("blockFloats") && blockFloats != null) return blockFloats;
                    if (name.equals("prefillChunk") && prefillChunk != null) return prefillChunk;
                    if (name.equals("memoryAvailable") && memoryAvailable != null) return memoryAvailable;
                    if (name.equals("attentionOperandType") && attentionOperandType != null) return attentionOperandType;
                    Runnable hook = onSynchronize;
                    if (name.equals("synchronize") && hook != null) hook.run();
                    if (name.equals("allocate"))
                        allocatedBytes.addAndGet((long) args[0] * (args.length == 2 ? ((DType) args[1]).bytes() : 4));
                    try {
                        return method.invoke(backend, args);
                    } catch (InvocationTargetException e) {
                        throw e.getCause();
                    }
                });
    }
}
