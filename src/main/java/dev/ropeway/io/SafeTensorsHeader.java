package dev.ropeway.io;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dev.ropeway.tensor.DType;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.CharBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The validated header of a safetensors file: an 8-byte little-endian length, then that many bytes of UTF-8 JSON
 * mapping tensor names to {dtype, shape, data_offsets}, with an optional "__metadata__" string map. Every way the
 * bytes can be wrong becomes a {@link CheckpointException} naming the file and the problem, so a corrupt or hostile
 * file can never surface as an index or arithmetic error deep inside a model load.
 *
 * <p>A matrix in one of ggml's block quantisations ({@link DType#isQuantised()}: Q8_0, Q2_K to Q6_K, IQ4_XS, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL) is stored as a U8
 * tensor of shape [rows, bytes per row] holding its blocks as a GGUF file does, named by a metadata entry
 * {@code "ggml_type:<tensor name>": "<type>"}; other readers see the bytes, this one the [rows, columns] matrix of that
 * type, after checking that each row is a whole number of blocks.
 */
record SafeTensorsHeader(Map<String, String> metadata, List<TensorInfo> tensors, long dataStart) {

    /** The same cap the reference implementation uses: a larger header is corruption, not a model. */
    static final long MAX_HEADER_BYTES = 100_000_000L;

    static final String METADATA_KEY = "__metadata__";

    /** The metadata key prefix naming a U8 tensor's ggml block type. */
    static final String GGML_TYPE = "ggml_type:";

    private static final ValueLayout.OfLong LENGTH = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    // Strict: a header with two entries of the same name or bytes after the JSON object is not trustworthy.
    private static final ObjectMapper STRICT = JsonMapper.builder()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    /** Parses and checks the header of {@code file}, whose whole content is {@code bytes}. */
    static SafeTensorsHeader parse(Path file, MemorySegment bytes) {
        return new Parser(file, bytes.byteSize()).parse(bytes);
    }

    private static final class Parser {
        private final Path file;
        private final long fileSize;

        Parser(Path file, long fileSize) {
            this.file = file;
            this.fileSize = fileSize;
        }

        SafeTensorsHeader parse(MemorySegment bytes) {
            if (fileSize < 8) {
                throw fail("file is too short to be safetensors (" + fileSize
                        + " bytes; the header length field alone takes 8)");
            }
            long headerLength = bytes.get(LENGTH, 0);
            if (headerLength < 0 || headerLength > MAX_HEADER_BYTES) {
                throw fail("header length " + Long.toUnsignedString(headerLength) + " is absurdly large (limit "
                        + MAX_HEADER_BYTES + " bytes): not a safetensors file, or a corrupt one");
            }
            if (headerLength > fileSize - 8) {
                throw fail("header length " + headerLength + " is larger than the " + (fileSize - 8)
                        + " bytes that follow it: the file is truncated");
            }
            String text = decodeUtf8(bytes.asSlice(8, headerLength).toArray(ValueLayout.JAVA_BYTE));
            JsonNode root = parseJson(text);
            long dataStart = 8 + headerLength;
            long dataLength = fileSize - dataStart;

            Map<String, String> metadata = Map.of();
            List<TensorInfo> tensors = new ArrayList<>();
            for (Map.Entry<String, JsonNode> entry : root.properties()) {
                if (entry.getKey().equals(METADATA_KEY)) {
                    metadata = metadata(entry.getValue());
                } else {
                    tensors.add(tensor(entry.getKey(), entry.getValue(), dataStart, dataLength));
                }
            }
            tensors = quantised(metadata, tensors);
            tensors.sort(Comparator.comparingLong(TensorInfo::offset).thenComparingLong(TensorInfo::byteSize));
            checkNoOverlap(tensors, dataStart);
            return new SafeTensorsHeader(metadata, Collections.unmodifiableList(tensors), dataStart);
        }

        /** The U8 tensors the metadata names as ggml blocks, as matrices of their block type. */
        private List<TensorInfo> quantised(Map<String, String> metadata, List<TensorInfo> tensors) {
            Map<String, TensorInfo> byName = new LinkedHashMap<>();
            for (TensorInfo t : tensors) byName.put(t.name(), t);
            for (Map.Entry<String, String> e : metadata.entrySet()) {
                if (!e.getKey().startsWith(GGML_TYPE)) continue;
                String name = e.getKey().substring(GGML_TYPE.length());
                TensorInfo t = byName.get(name);
                if (t == null) throw fail("metadata " + e.getKey() + " names a tensor the file does not have");
                DType type = Arrays.stream(DType.values()).filter(d -> d.isQuantised() && d.name().equals(e.getValue()))
                        .findFirst().orElseThrow(() -> fail("metadata " + e.getKey() + " is '" + e.getValue()
                                + "', not a block type this version reads (" + Arrays.stream(DType.values())
                                .filter(DType::isQuantised).map(DType::name).toList() + ")"));
                if (t.dtype() != DType.U8 || t.rank() != 2 || t.dim(1) % type.blockBytes() != 0)
                    throw fail("tensor '" + name + "' is " + t.dtype() + " " + Arrays.toString(t.shape()) + "; as " + type
                            + " blocks it must be U8 [rows, a multiple of " + type.blockBytes() + " bytes]");
                long cols = t.dim(1) / type.blockBytes() * type.blockSize();
                byName.put(name, new TensorInfo(name, type, new long[] {t.dim(0), cols}, t.offset(), t.byteSize()));
            }
            return new ArrayList<>(byName.values());
        }

        private String decodeUtf8(byte[] header) {
            CharsetDecoder decoder = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT);
            ByteBuffer in = ByteBuffer.wrap(header);
            CharBuffer out = CharBuffer.allocate(header.length);
            CoderResult result = decoder.decode(in, out, true);
            if (!result.isError()) result = decoder.flush(out);
            if (result.isError()) {
                throw fail("header is not valid UTF-8 (bad byte at header offset " + in.position() + ")");
            }
            return out.flip().toString();
        }

        private JsonNode parseJson(String text) {
            JsonNode root;
            try {
                root = STRICT.readTree(text);
            } catch (JacksonException e) {
                JsonLocation at = e.getLocation();
                String where = at == null ? "" : " (line " + at.getLineNr() + ", column " + at.getColumnNr() + ")";
                throw new CheckpointException(file + ": header is not valid JSON: " + e.getOriginalMessage() + where, e);
            }
            if (root == null || root.isMissingNode()) throw fail("header is empty; it must be a JSON object");
            if (!root.isObject()) throw fail("header must be a JSON object but is " + describe(root));
            return root;
        }

        private Map<String, String> metadata(JsonNode node) {
            // The reference implementation reads a null __metadata__ as absent.
            if (node.isNull()) return Map.of();
            if (!node.isObject()) throw fail(METADATA_KEY + " must be an object of strings but is " + describe(node));
            Map<String, String> metadata = new LinkedHashMap<>();
            for (Map.Entry<String, JsonNode> e : node.properties()) {
                if (!e.getValue().isTextual()) {
                    throw fail(METADATA_KEY + " must map strings to strings, but '" + e.getKey() + "' is "
                            + describe(e.getValue()));
                }
                metadata.put(e.getKey(), e.getValue().textValue());
            }
            return Collections.unmodifiableMap(metadata);
        }

        private TensorInfo tensor(String name, JsonNode node, long dataStart, long dataLength) {
            if (!node.isObject()) throw fail("entry for tensor '" + name + "' must be an object but is " + describe(node));
            DType dtype = dtype(name, node.get("dtype"));
            long[] shape = shape(name, node.get("shape"));
            long[] offsets = dataOffsets(name, node.get("data_offsets"));
            long begin = offsets[0], end = offsets[1];
            if (begin > end) {
                throw fail("data_offsets of tensor '" + name + "' begin (" + begin + ") after they end (" + end + ")");
            }
            if (end > dataLength) {
                throw fail("data_offsets of tensor '" + name + "' end at byte " + end + " of the data region, which"
                        + " points past the end of the file (the data region holds " + dataLength + " bytes)");
            }
            long elements = elementCount(name, shape);
            long expectedBytes;
            try {
                expectedBytes = Math.multiplyExact(elements, (long) dtype.bytes());
            } catch (ArithmeticException e) {
                throw fail("tensor '" + name + "' of shape " + Arrays.toString(shape) + " needs more bytes than fit in 64 bits");
            }
            if (expectedBytes != end - begin) {
                throw fail("tensor '" + name + "' is " + dtype + " " + Arrays.toString(shape) + " = " + elements
                        + " elements x " + dtype.bytes() + " bytes = " + expectedBytes
                        + " bytes, but its data_offsets span " + (end - begin) + " bytes");
            }
            return new TensorInfo(name, dtype, shape, dataStart + begin, end - begin);
        }

        private DType dtype(String name, JsonNode node) {
            if (node == null || node.isNull()) throw fail("tensor '" + name + "' has no dtype");
            if (!node.isTextual()) throw fail("dtype of tensor '" + name + "' must be a string but is " + describe(node));
            DType dtype = DType.fromSafetensors(node.textValue());
            if (dtype == null) throw fail("tensor '" + name + "' has unknown dtype '" + node.textValue() + "'");
            return dtype;
        }

        private long[] shape(String name, JsonNode node) {
            if (node == null || node.isNull()) throw fail("tensor '" + name + "' has no shape");
            if (!node.isArray()) {
                throw fail("shape of tensor '" + name + "' must be a list of non-negative integers but is " + describe(node));
            }
            long[] shape = new long[node.size()];
            for (int i = 0; i < shape.length; i++) {
                JsonNode d = node.get(i);
                if (!isNonNegativeLong(d)) {
                    throw fail("shape of tensor '" + name + "' must be a list of non-negative integers, but element "
                            + i + " is " + describe(d));
                }
                shape[i] = d.longValue();
            }
            return shape;
        }

        private long elementCount(String name, long[] shape) {
            // A zero dimension makes the product zero even when the other dimensions together would overflow.
            for (long d : shape) if (d == 0) return 0;
            long n = 1;
            for (long d : shape) {
                try {
                    n = Math.multiplyExact(n, d);
                } catch (ArithmeticException e) {
                    throw fail("shape " + Arrays.toString(shape) + " of tensor '" + name
                            + "' has more elements than a 64-bit count can hold");
                }
            }
            return n;
        }

        private long[] dataOffsets(String name, JsonNode node) {
            if (node == null || node.isNull()) throw fail("tensor '" + name + "' has no data_offsets");
            if (!node.isArray() || node.size() != 2 || !isNonNegativeLong(node.get(0)) || !isNonNegativeLong(node.get(1))) {
                throw fail("data_offsets of tensor '" + name + "' must be two non-negative integers [begin, end] but are "
                        + describe(node));
            }
            return new long[] {node.get(0).longValue(), node.get(1).longValue()};
        }

        private void checkNoOverlap(List<TensorInfo> byOffset, long dataStart) {
            TensorInfo reach = null; // the tensor whose range ends furthest among those seen so far
            for (TensorInfo t : byOffset) {
                if (t.byteSize() == 0) continue; // an empty range overlaps nothing
                if (reach != null && t.offset() < reach.offset() + reach.byteSize()) {
                    throw fail("tensors '" + reach.name() + "' and '" + t.name() + "' overlap: bytes "
                            + range(reach, dataStart) + " and " + range(t, dataStart) + " of the data region");
                }
                if (reach == null || t.offset() + t.byteSize() > reach.offset() + reach.byteSize()) reach = t;
            }
        }

        private static String range(TensorInfo t, long dataStart) {
            long begin = t.offset() - dataStart;
            return "[" + begin + ", " + (begin + t.byteSize()) + ")";
        }

        private static boolean isNonNegativeLong(JsonNode n) {
            return n != null && n.isIntegralNumber() && n.canConvertToLong() && n.longValue() >= 0;
        }

        /** A short, printable account of a JSON value for error messages (a hostile file may hold a huge one). */
        private static String describe(JsonNode node) {
            if (node == null) return "missing";
            String text = node.toString();
            if (text.length() > 60) text = text.substring(0, 57) + "...";
            return node.getNodeType().name().toLowerCase(java.util.Locale.ROOT) + " " + text;
        }

        private CheckpointException fail(String problem) {
            return new CheckpointException(file + ": " + problem);
        }
    }
}
