package dev.ropeway.eval;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

class ModelRecordTest {
    /** Retraining into the same folder keeps the config and the sizes; the record must still tell the models apart. */
    @Test
    void retrainedWeightsOfTheSameSizeGiveAnotherRecord(@TempDir Path dir) throws Exception {
        Files.writeString(dir.resolve("config.json"), "{\"hidden_size\": 8}");
        byte[] weights = new byte[3_000_000];
        new Random(1).nextBytes(weights);
        Files.write(dir.resolve("model.safetensors"), weights);
        ModelRecord first = ModelRecord.of(dir), again = ModelRecord.of(dir);
        assertEquals(first, again);
        new Random(2).nextBytes(weights);
        Files.write(dir.resolve("model.safetensors"), weights);
        ModelRecord retrained = ModelRecord.of(dir);
        assertEquals(first.configSha256(), retrained.configSha256());
        assertEquals(first.weightBytes(), retrained.weightBytes());
        assertNotEquals(first.weightSampleSha256(), retrained.weightSampleSha256());
        assertNotEquals(first.toJson(), retrained.toJson());
    }

    @Test
    void smallFilesAreSampledWhole(@TempDir Path dir) throws Exception {
        Files.writeString(dir.resolve("config.json"), "{}");
        Files.write(dir.resolve("model.safetensors"), new byte[] {1, 2, 3});
        String a = ModelRecord.of(dir).weightSampleSha256();
        Files.write(dir.resolve("model.safetensors"), new byte[] {1, 2, 4});
        assertNotEquals(a, ModelRecord.of(dir).weightSampleSha256());
    }
}
