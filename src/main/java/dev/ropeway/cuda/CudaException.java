package dev.ropeway.cuda;

import dev.ropeway.RopewayException;

/** A CUDA library that is missing or a CUDA call that failed; the message names the library or the call. */
public final class CudaException extends RopewayException {
    public CudaException(String message) {
        super(message);
    }
}
