package dev.ropeway.io;

import dev.ropeway.tensor.DType;

import com.fasterxml.jackson.databind.JsonNode;

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/** A {@link WeightStore} over one or more mapped safetensors files, with each tensor name resolved to its shard. */
final class CheckpointFolder implements WeightStore {
    static final String SINGLE_FILE = "model.safetensors";
    static final String INDEX_FILE = "model.safetensors.index.json";

    private final Path directory;
    private final List<SafeTensors> shards;
    private final Map<String, SafeTensors> shardOf; // sorted by name, so names() lists in a stable order

    private CheckpointFolder(Path directory, List<SafeTensors> shards, Map<String, SafeTensors> shardOf) {
        this.directory = directory;
        this.shards = shards;
        this.shardOf = shardOf;
    }

    static CheckpointFolder open(Path path) {
        if (Files.isRegularFile(path)) return single(path.toAbsolutePath().getParent(), path);
        if (!Files.isDirectory(path)) throw new CheckpointException("checkpoint folder " + path + " does not exist");
        Path single = path.resolve(SINGLE_FILE);
        if (Files.exists(single)) return single(path, single);
        Path index = path.resolve(INDEX_FILE);
        if (Files.exists(index)) return sharded(path, index);
        throw new CheckpointException("no " + SINGLE_FILE + " or " + INDEX_FILE + " in " + path
                + ": not a Hugging Face safetensors checkpoint");
    }

    private static CheckpointFolder single(Path directory, Path file) {
        SafeTensors st = SafeTensors.open(file);
        Map<String, SafeTensors> shardOf = new TreeMap<>();
        for (TensorInfo t : st.tensors()) shardOf.put(t.name(), st);
        return new CheckpointFolder(directory, List.of(st), shardOf);
    }

    private static CheckpointFolder sharded(Path directory, Path index) {
        Map<String, String> weightMap = weightMap(index);
        Map<String, SafeTensors> byFile = new LinkedHashMap<>();
        try {
            Map<String, SafeTensors> shardOf = new TreeMap<>();
            for (Map.Entry<String, String> e : weightMap.entrySet()) {
                String shardName = e.getValue();
                SafeTensors shard = byFile.get(shardName);
                if (shard == null) {
                    shard = SafeTensors.open(shardPath(directory, index, shardName));
                    byFile.put(shardName, shard);
                }
                if (shard.info(e.getKey()) == null) {
                    throw new CheckpointException(index + " maps tensor '" + e.getKey() + "' to " + shardName
                            + ", which does not contain it");
                }
                shardOf.put(e.getKey(), shard);
            }
            return new CheckpointFolder(directory, List.copyOf(byFile.values()), shardOf);
        } catch (RuntimeException e) {
            byFile.values().forEach(SafeTensors::close);
            throw e;
        }
    }

    private static Map<String, String> weightMap(Path index) {
        JsonNode map = Json.readObjectNode(index).get("weight_map");
        if (map == null || !map.isObject()) {
            throw new CheckpointException(index + " has no \"weight_map\" object (tensor name -> shard file)");
        }
        Map<String, String> weightMap = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> e : map.properties()) {
            if (!e.getValue().isTextual()) {
                throw new CheckpointException(index + ": weight_map entry '" + e.getKey() + "' must name a shard file");
            }
            weightMap.put(e.getKey(), e.getValue().textValue());
        }
        return weightMap;
    }

    private static Path shardPath(Path directory, Path index, String shardName) {
        Path base = directory.toAbsolutePath().normalize();
        Path shard = base.resolve(shardName).normalize();
        // An index names files in its own folder; anything else is corruption or an attempt to read elsewhere.
        if (shardName.isEmpty() || !shard.getParent().equals(base)) {
            throw new CheckpointException(index + " names shard '" + shardName + "', which is not a file in " + directory);
        }
        if (!Files.isRegularFile(shard)) {
            throw new CheckpointException("shard " + shardName + " named by " + index + " is missing");
        }
        return shard;
    }

    @Override
    public Path directory() {
        return directory;
    }

    @Override
    public Set<String> names() {
        return Collections.unmodifiableSet(shardOf.keySet());
    }

    @Override
    public boolean contains(String name) {
        return shardOf.containsKey(name);
    }

    @Override
    public TensorInfo info(String name) {
        return shard(name).info(name);
    }

    @Override
    public MemorySegment data(String name) {
        return shard(name).data(name);
    }

    @Override
    public float[] readFloats(String name) {
        return shard(name).readFloats(name);
    }

    @Override
    public TensorInfo require(String name, long... expectedShape) {
        TensorInfo t = info(name);
        if (!Arrays.equals(t.shape(), expectedShape)) {
            throw new CheckpointException("tensor " + name + " has shape " + Arrays.toString(t.shape())
                    + " but the config implies " + Arrays.toString(expectedShape));
        }
        return t;
    }

    @Override
    public DType dominantDtype() {
        Map<DType, Long> counts = new EnumMap<>(DType.class);
        for (String name : shardOf.keySet()) {
            DType d = info(name).dtype();
            if (d.isFloatWeight() || d.isQuantised()) counts.merge(d, 1L, Long::sum);
        }
        // Ties go to the wider type, the one listed earlier in DType.
        return counts.entrySet().stream()
                .max(Comparator.<Map.Entry<DType, Long>>comparingLong(Map.Entry::getValue)
                        .thenComparing(Map.Entry::getKey, Comparator.reverseOrder()))
                .map(Map.Entry::getKey)
                .orElse(null);
    }

    @Override
    public long totalElements() {
        long total = 0;
        for (String name : shardOf.keySet()) total += info(name).elementCount();
        return total;
    }

    @Override
    public void close() {
        shards.forEach(SafeTensors::close);
    }

    private SafeTensors shard(String name) {
        SafeTensors shard = shardOf.get(name);
        if (shard == null) throw new CheckpointException("missing tensor " + name + " in " + directory);
        return shard;
    }
}
