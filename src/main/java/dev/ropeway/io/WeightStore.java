package dev.ropeway.io;

import dev.ropeway.tensor.DType;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.Set;

/**
 * The tensors of a Hugging Face checkpoint folder, whether saved as one {@code model.safetensors} or sharded
 * behind {@code model.safetensors.index.json}. Callers ask for tensors by name and never see the shards.
 */
public interface WeightStore extends AutoCloseable {

    /** Opens {@code modelDir} (or a single {@code .safetensors} file); every shard is mapped and validated now. */
    static WeightStore open(Path modelDir) {
        return CheckpointFolder.open(modelDir);
    }

    /** The checkpoint folder. */
    Path directory();

    /** Every tensor name, sorted. */
    Set<String> names();

    boolean contains(String name);

    /** Where the tensor lives; a {@link CheckpointException} "missing tensor NAME in DIR" when absent. */
    TensorInfo info(String name);

    /** The raw little-endian bytes, a read-only slice of the mapped shard (valid until {@link #close}). */
    MemorySegment data(String name);

    /** The tensor converted to float32 (F32, F16, BF16, F64 or a ggml block type only). */
    float[] readFloats(String name);

    /**
     * The tensor's info after checking that it exists and has {@code expectedShape}: the config and the weights
     * disagreeing is the commonest way a checkpoint is wrong, and the message says which tensor and both shapes.
     */
    TensorInfo require(String name, long... expectedShape);

    /** The most common dtype among the floating and quantised tensors (what a user would call "the model's dtype"); null if none. */
    DType dominantDtype();

    /** The number of parameters: elements summed over all tensors. */
    long totalElements();

    /** Unmaps every shard. */
    @Override
    void close();
}
