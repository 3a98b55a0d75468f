package dev.ropeway.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.ropeway.cuda.CudaBackend;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class DevicesCommandTest {
    @Test
    void listsTheCpuAndSaysWhetherAGpuIsUsable() throws Exception {
        CliRunner.Result text = CliRunner.run("devices");
        assertEquals(0, text.exitCode(), text.err());
        assertTrue(text.out().contains("cpu      " + Runtime.getRuntime().availableProcessors() + " threads"), text.out());
        CliRunner.Result json = CliRunner.run("devices", "--json");
        assertEquals(0, json.exitCode(), json.err());
        JsonNode root = new ObjectMapper().readTree(json.out());
        assertEquals(Runtime.getRuntime().availableProcessors(), root.path("cpu").path("threads").asInt());
        boolean gpu = CudaBackend.isAvailable();
        assertEquals(gpu, root.path("cuda").path("usable").asBoolean());
        if (gpu) {
            assertTrue(root.path("cuda").path("gpus").size() > 0);
            assertTrue(text.out().contains("--device auto picks cuda:0"), text.out());
        } else {
            assertFalse(root.path("cuda").path("problem").asText().isBlank());
            assertTrue(text.out().contains("cuda     not usable: "), text.out());
            assertTrue(text.out().contains("--device auto picks the CPU"), text.out());
        }
    }
}
