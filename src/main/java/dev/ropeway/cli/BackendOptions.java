package dev.ropeway.cli;

import dev.ropeway.RopewayException;
import dev.ropeway.tensor.Backend;
import dev.ropeway.tensor.CpuBackend;
import picocli.CommandLine.Option;

/** Options that choose where compute runs, shared by every command that runs a model. */
final class BackendOptions {
    @Option(names = "--device", defaultValue = "cpu", description = "Where to compute: cpu (default).")
    String device;

    @Option(names = "--threads", description = "Worker threads for the CPU backend (default: all cores).")
    Integer threads;

    Backend open() {
        if (!device.equals("cpu"))
            throw new RopewayException("unknown --device '" + device + "' (available: cpu)");
        if (threads != null && threads < 1) throw new RopewayException("--threads must be at least 1, got " + threads);
        return threads == null ? new CpuBackend() : new CpuBackend(threads);
    }
}
