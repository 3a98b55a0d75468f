package dev.ropeway.tensor;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.OptionalLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class HostMemoryTest {

    @Test
    void readsMemAvailableInBytes() {
        List<String> meminfo = List.of("MemTotal:       32768000 kB", "MemFree:         1000000 kB",
                "MemAvailable:   24289524 kB", "Buffers:          123 kB");
        assertEquals(OptionalLong.of(24289524L * 1024), HostMemory.meminfoAvailable(meminfo));
        assertEquals(OptionalLong.empty(), HostMemory.meminfoAvailable(List.of("MemTotal: 1 kB")));
        assertEquals(OptionalLong.empty(), HostMemory.meminfoAvailable(List.of("MemAvailable: lots")));
    }

    @Test
    void aControlGroupLimitCountsItsReclaimablePageCacheAsFree(@TempDir Path dir) throws IOException {
        Path v2 = Files.createDirectories(dir.resolve("v2"));
        Files.writeString(v2.resolve("memory.max"), "8589934592\n");
        Files.writeString(v2.resolve("memory.current"), "2147483648\n");
        Files.writeString(v2.resolve("memory.stat"), "anon 1000\nfile 3000\ninactive_file 1073741824\nactive_file 5\n");
        assertEquals(OptionalLong.of(7L << 30), HostMemory.cgroupV2(v2), "8 GiB - 2 GiB + 1 GiB of inactive files");
        Files.writeString(v2.resolve("memory.max"), "max\n");
        assertEquals(OptionalLong.empty(), HostMemory.cgroupV2(v2), "no limit");

        Path v1 = Files.createDirectories(dir.resolve("v1"));
        Files.writeString(v1.resolve("memory.limit_in_bytes"), "4294967296\n");
        Files.writeString(v1.resolve("memory.usage_in_bytes"), "5368709120\n");
        Files.writeString(v1.resolve("memory.stat"), "cache 10\ntotal_inactive_file 536870912\n");
        assertEquals(OptionalLong.of(0), HostMemory.cgroupV1(v1), "over the limit: nothing left, never negative");
        Files.writeString(v1.resolve("memory.limit_in_bytes"), "9223372036854771712\n");
        assertEquals(OptionalLong.empty(), HostMemory.cgroupV1(v1), "v1's 'no limit'");
        assertEquals(OptionalLong.empty(), HostMemory.cgroupV1(dir.resolve("absent")));
    }

    @Test
    void theCpuBackendReportsTheHostsMemoryOnLinux() {
        org.junit.jupiter.api.Assumptions.assumeTrue(
                System.getProperty("os.name", "").toLowerCase(java.util.Locale.ROOT).contains("linux"), "Linux only");
        try (CpuBackend cpu = new CpuBackend()) {
            OptionalLong available = cpu.memoryAvailable();
            assertTrue(available.isPresent() && available.getAsLong() > (64L << 20), "available: " + available);
        }
    }
}
