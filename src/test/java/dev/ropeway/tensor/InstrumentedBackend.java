package dev.ropeway.tensor;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.util.OptionalLong;
import java.util.concurrent.atomic.AtomicLong;

/** Test backends: a real backend seen through a proxy that counts allocations and reports chosen memory figures. */
public final class InstrumentedBackend {
    private InstrumentedBackend() {}

    /**
     * {@code backend}, adding the bytes of every tensor allocated through it to {@code allocated} (when not null),
     * with logits blocks of {@code blockFloats} floats (0: the backend's own) and {@code available} bytes of memory left.
     */
    public static Backend of(Backend backend, AtomicLong allocated, long blockFloats, OptionalLong available) {
        return (Backend) Proxy.newProxyInstance(Backend.class.getClassLoader(), new Class<?>[] {Backend.class},
                (proxy, method, args) -> {
                    switch (method.getName()) {
                        case "blockFloats" -> {
                            if (blockFloats > 0) return blockFloats;
                        }
                        case "memoryAvailable" -> {
                            return available;
                        }
                        case "allocate" -> {
                            if (allocated != null)
                                allocated.addAndGet((long) args[0] * (args.length == 2 ? ((DType) args[1]).bytes() : 4));
                        }
                        default -> {}
                    }
                    try {
                        return method.invoke(backend, args);
                    } catch (InvocationTargetException e) {
                        throw e.getCause();
                    }
                });
    }
}
