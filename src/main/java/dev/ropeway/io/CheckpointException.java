package dev.ropeway.io;

import dev.ropeway.RopewayException;

/** A checkpoint file or folder that cannot be read as it claims to be: the message names the file and the problem. */
public class CheckpointException extends RopewayException {
    public CheckpointException(String message) {
        super(message);
    }

    public CheckpointException(String message, Throwable cause) {
        super(message, cause);
    }
}
