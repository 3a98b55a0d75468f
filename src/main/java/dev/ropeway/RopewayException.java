package dev.ropeway;

/**
 * An error caused by the user's input (a file, a config, a command-line value) rather than by a bug. Its message
 * names the problem and, where it helps, what to do; the command line prints it without a stack trace.
 */
public class RopewayException extends RuntimeException {
    public RopewayException(String message) {
        super(message);
    }

    public RopewayException(String message, Throwable cause) {
        super(message, cause);
    }
}
