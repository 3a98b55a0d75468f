package dev.ropeway.tensor;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.OptionalLong;

/**
 * The host memory a process can still use, on Linux: the kernel's estimate ({@code MemAvailable} in
 * {@code /proc/meminfo}), lowered to what the process's control group allows (a container's memory limit, cgroup v2 or
 * v1, less what the group uses, its inactive page cache counted as free as the kernel would reclaim it).
 */
final class HostMemory {
    private static final Path MEMINFO = Path.of("/proc/meminfo");
    private static final Path CGROUP_V2 = Path.of("/sys/fs/cgroup");
    private static final Path CGROUP_V1 = Path.of("/sys/fs/cgroup/memory");

    private HostMemory() {}

    /** Bytes available now, or empty off Linux (or where none of the files can be read). */
    static OptionalLong available() {
        OptionalLong system = meminfoAvailable(read(MEMINFO).orElse(List.of()));
        OptionalLong group = cgroupV2(CGROUP_V2);
        if (group.isEmpty()) group = cgroupV1(CGROUP_V1);
        return min(system, group);
    }

    /** {@code MemAvailable} of a {@code /proc/meminfo} text, in bytes. */
    static OptionalLong meminfoAvailable(List<String> lines) {
        for (String line : lines) {
            if (!line.startsWith("MemAvailable:")) continue;
            String[] parts = line.substring("MemAvailable:".length()).trim().split("\\s+");
            try {
                long value = Long.parseLong(parts[0]);
                return OptionalLong.of(parts.length > 1 && parts[1].equalsIgnoreCase("kB") ? value * 1024 : value);
            } catch (NumberFormatException e) {
                return OptionalLong.empty();
            }
        }
        return OptionalLong.empty();
    }

    /** cgroup v2: {@code memory.max} ("max": no limit) less {@code memory.current}, plus inactive file pages. */
    static OptionalLong cgroupV2(Path dir) {
        OptionalLong limit = number(dir.resolve("memory.max")), used = number(dir.resolve("memory.current"));
        return headroom(limit, used, statValue(dir.resolve("memory.stat"), "inactive_file"));
    }

    /** cgroup v1: {@code memory.limit_in_bytes} (a huge value: no limit) less {@code memory.usage_in_bytes}, likewise. */
    static OptionalLong cgroupV1(Path dir) {
        OptionalLong limit = number(dir.resolve("memory.limit_in_bytes")), used = number(dir.resolve("memory.usage_in_bytes"));
        return headroom(limit, used, statValue(dir.resolve("memory.stat"), "total_inactive_file"));
    }

    private static OptionalLong headroom(OptionalLong limit, OptionalLong used, long reclaimable) {
        // No limit reads as "max" (v2) or as a value near Long.MAX_VALUE rounded to pages (v1).
        if (limit.isEmpty() || used.isEmpty() || limit.getAsLong() >= Long.MAX_VALUE / 2) return OptionalLong.empty();
        return OptionalLong.of(Math.max(0, limit.getAsLong() - used.getAsLong() + reclaimable));
    }

    private static OptionalLong number(Path file) {
        List<String> lines = read(file).orElse(List.of());
        if (lines.isEmpty()) return OptionalLong.empty();
        try {
            return OptionalLong.of(Long.parseLong(lines.getFirst().trim()));
        } catch (NumberFormatException e) {
            return OptionalLong.empty();   // "max": no limit
        }
    }

    /** The value of {@code key} in a memory.stat file, or 0. */
    private static long statValue(Path file, String key) {
        for (String line : read(file).orElse(List.of())) {
            String[] parts = line.trim().split("\\s+");
            if (parts.length == 2 && parts[0].equals(key)) {
                try {
                    return Long.parseLong(parts[1]);
                } catch (NumberFormatException e) {
                    return 0;
                }
            }
        }
        return 0;
    }

    private static java.util.Optional<List<String>> read(Path file) {
        try {
            return java.util.Optional.of(Files.readAllLines(file));
        } catch (IOException | SecurityException e) {
            return java.util.Optional.empty();
        }
    }

    private static OptionalLong min(OptionalLong a, OptionalLong b) {
        if (a.isEmpty()) return b;
        if (b.isEmpty()) return a;
        return OptionalLong.of(Math.min(a.getAsLong(), b.getAsLong()));
    }
}
