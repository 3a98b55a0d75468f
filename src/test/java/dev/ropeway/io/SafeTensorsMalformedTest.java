package dev.ropeway.io;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Each way a safetensors file can be malformed gets its own message, naming the file and the problem. */
class SafeTensorsMalformedTest {
    @TempDir Path dir;

    private String errorOf(byte[] content) {
        Path file = RawSafeTensors.write(dir.resolve("bad.safetensors"), content);
        CheckpointException e = assertThrows(CheckpointException.class, () -> SafeTensors.open(file).close());
        assertTrue(e.getMessage().contains(file.toString()), "message names the file: " + e.getMessage());
        return e.getMessage();
    }

    private String errorOfHeader(String json, int dataBytes) {
        return errorOf(RawSafeTensors.file(json, dataBytes));
    }

    private static void assertMentions(String message, String... parts) {
        for (String part : parts) assertTrue(message.contains(part), "expected '" + part + "' in: " + message);
    }

    private static String tensor(String name, String dtype, String shape, String offsets) {
        return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
    }

    @Test
    void fileShorterThanTheLengthField() {
        assertMentions(errorOf(new byte[0]), "too short", "0 bytes");
        assertMentions(errorOf(new byte[7]), "too short", "7 bytes");
    }

    @Test
    void headerLengthBeyondTheFileMeansTruncation() {
        byte[] valid = RawSafeTensors.file("{" + tensor("a", "F32", "[2]", "[0,8]") + "}", 8);
        byte[] cut = RawSafeTensors.withHeaderLength(valid, valid.length);
        assertMentions(errorOf(cut), "header length " + valid.length, "truncated");
    }

    @Test
    void absurdHeaderLengthIsRejectedBeforeReading() {
        byte[] valid = RawSafeTensors.file("{}", 0);
        assertMentions(errorOf(RawSafeTensors.withHeaderLength(valid, 100_000_001L)), "absurdly large");
        // Read as unsigned, as the format defines it, rather than as a negative number.
        assertMentions(errorOf(RawSafeTensors.withHeaderLength(valid, -1L)), "absurdly large", "18446744073709551615");
    }

    @Test
    void headerMustBeUtf8() {
        byte[] header = "{\"a\u00FF\":1}".getBytes(StandardCharsets.ISO_8859_1);
        assertMentions(errorOf(RawSafeTensors.file(header, 0)), "not valid UTF-8", "offset 3");
    }

    @Test
    void headerMustBeJsonWithItsPosition() {
        assertMentions(errorOfHeader("{\"a\": [1, 2}", 0), "not valid JSON", "line 1, column");
        assertMentions(errorOfHeader("{}\n{}", 0), "not valid JSON", "line 2");
        assertMentions(errorOfHeader("{\"x\":{},\"x\":{}}", 0), "not valid JSON", "Duplicate field 'x'");
    }

    @Test
    void headerMustBeAnObject() {
        assertMentions(errorOfHeader("[1,2]", 0), "must be a JSON object", "array");
        assertMentions(errorOfHeader("42", 0), "must be a JSON object", "number");
        assertMentions(errorOfHeader("", 0), "empty");
        assertMentions(errorOfHeader("        ", 0), "empty");
    }

    @Test
    void entryMustBeAnObject() {
        assertMentions(errorOfHeader("{\"w\": [1, 2]}", 0), "entry for tensor 'w' must be an object", "array");
        assertMentions(errorOfHeader("{\"w\": null}", 0), "entry for tensor 'w' must be an object", "null");
    }

    @Test
    void dtypeMustBeKnown() {
        assertMentions(errorOfHeader("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "tensor 'w' has no dtype");
        assertMentions(errorOfHeader("{" + tensor("w", "F31", "[1]", "[0,4]") + "}", 4), "tensor 'w' has unknown dtype 'F31'");
        assertMentions(errorOfHeader("{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                "dtype of tensor 'w' must be a string");
    }

    @Test
    void shapeMustBeAListOfNonNegativeIntegers() {
        assertMentions(errorOfHeader("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4), "tensor 'w' has no shape");
        assertMentions(errorOfHeader("{" + tensor("w", "F32", "4", "[0,4]") + "}", 4),
                "shape of tensor 'w' must be a list of non-negative integers");
        assertMentions(errorOfHeader("{" + tensor("w", "F32", "[-1]", "[0,4]") + "}", 4),
                "shape of tensor 'w' must be a list of non-negative integers", "element 0");
        assertMentions(errorOfHeader("{" + tensor("w", "F32", "[1, 1.5]", "[0,4]") + "}", 4), "element 1", "1.5");
        assertMentions(errorOfHeader("{" + tensor("w", "F32", "[\"1\"]", "[0,4]") + "}", 4), "element 0", "string");
        assertMentions(errorOfHeader("{" + tensor("w", "F32", "[99999999999999999999]", "[0,4]") + "}", 4), "element 0");
    }

    @Test
    void shapeWhoseProductOverflowsIsRejected() {
        String huge = "[4294967296, 4294967296]";
        assertMentions(errorOfHeader("{" + tensor("w", "F32", huge, "[0,4]") + "}", 4),
                "has more elements than a 64-bit count can hold");
        // Elements fit, bytes do not.
        assertMentions(errorOfHeader("{" + tensor("w", "F64", "[4611686018427387904]", "[0,4]") + "}", 4),
                "needs more bytes than fit in 64 bits");
    }

    @Test
    void dataOffsetsMustBeTwoOrderedIntegersInsideTheFile() {
        assertMentions(errorOfHeader("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4), "tensor 'w' has no data_offsets");
        for (String bad : new String[] {"[0]", "[0,4,8]", "[\"0\",4]", "[0,4.0]", "[-4,0]", "{}", "4"}) {
            assertMentions(errorOfHeader("{" + tensor("w", "F32", "[1]", bad) + "}", 4),
                    "data_offsets of tensor 'w' must be two non-negative integers");
        }
        assertMentions(errorOfHeader("{" + tensor("w", "F32", "[0]", "[8,4]") + "}", 8),
                "data_offsets of tensor 'w' begin (8) after they end (4)");
        assertMentions(errorOfHeader("{" + tensor("w", "F32", "[2]", "[0,8]") + "}", 7),
                "tensor 'w'", "points past the end of the file", "holds 7 bytes");
    }

    @Test
    void byteLengthMustMatchShapeAndDtype() {
        assertMentions(errorOfHeader("{" + tensor("w", "BF16", "[2, 3]", "[0,8]") + "}", 8),
                "tensor 'w' is BF16 [2, 3] = 6 elements x 2 bytes = 12 bytes", "span 8 bytes");
    }

    @Test
    void overlappingTensorsAreBothNamed() {
        String header = "{" + tensor("first", "F32", "[2]", "[0,8]") + "," + tensor("second", "F32", "[2]", "[4,12]") + "}";
        assertMentions(errorOfHeader(header, 12), "tensors 'first' and 'second' overlap", "[0, 8)", "[4, 12)");
        // A tensor inside a larger one, listed after a third that sits between them in the file.
        String nested = "{" + tensor("big", "F32", "[4]", "[0,16]") + "," + tensor("small", "F32", "[1]", "[8,12]")
                + "," + tensor("early", "U8", "[4]", "[0,4]") + "}";
        assertMentions(errorOfHeader(nested, 16), "tensors 'early' and 'big' overlap");
    }

    @Test
    void metadataMustMapStringsToStrings() {
        assertMentions(errorOfHeader("{\"__metadata__\": [\"a\"]}", 0), "__metadata__ must be an object of strings");
        assertMentions(errorOfHeader("{\"__metadata__\": {\"format\": \"pt\", \"step\": 3}}", 0),
                "__metadata__ must map strings to strings, but 'step' is number 3");
    }

    @Test
    void longJsonValuesAreShortenedInMessages() {
        String longName = "x".repeat(500);
        String message = errorOfHeader("{\"w\": \"" + longName + "\"}", 0);
        assertTrue(message.length() < 300, message);
    }

    @Test
    void legalCornerCasesOpen() {
        // Zero-element tensors (anywhere, even inside another's range), a scalar, a null metadata, unordered entries,
        // an unaligned F32 tensor and trailing space padding.
        String header = "{\"__metadata__\":null,"
                + tensor("scalar", "F32", "[]", "[5,9]") + ","
                + tensor("empty", "F32", "[0, 1000000]", "[6,6]") + ","
                + tensor("byte", "U8", "[5]", "[0,5]") + ","
                + tensor("huge-but-empty", "F64", "[4294967296, 4294967296, 0]", "[9,9]") + "}    ";
        Path file = RawSafeTensors.write(dir.resolve("ok.safetensors"), RawSafeTensors.file(header, 9));
        try (SafeTensors st = SafeTensors.open(file)) {
            assertEquals(4, st.tensors().size());
            assertEquals(java.util.Map.of(), st.metadata());
            assertEquals("byte", st.tensors().getFirst().name(), "tensors come in file order");
            assertEquals(1, st.info("scalar").elementCount());
            assertEquals(0, st.readFloats("empty").length);
            assertEquals(0, st.readFloats("huge-but-empty").length);
            byte[] raw = RawSafeTensors.file(header, 9);
            int dataStart = (int) (8 + RawSafeTensors.headerLength(raw));
            float expected = java.nio.ByteBuffer.wrap(raw, dataStart + 5, 4).order(java.nio.ByteOrder.LITTLE_ENDIAN).getFloat();
            assertEquals(expected, st.readFloats("scalar")[0]);
            assertArrayEquals(java.util.Arrays.copyOfRange(raw, dataStart, dataStart + 5),
                    st.data("byte").toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
        }
    }

    @Test
    void missingFileAndFolderAreCheckpointErrors() {
        CheckpointException missing = assertThrows(CheckpointException.class, () -> SafeTensors.open(dir.resolve("nope.safetensors")));
        assertMentions(missing.getMessage(), "no such file", "nope.safetensors");
        CheckpointException folder = assertThrows(CheckpointException.class, () -> SafeTensors.open(dir));
        assertMentions(folder.getMessage(), "is a folder");
    }

    @Test
    void ggmlBlockEntriesMustNameAU8MatrixOfWholeBlocks() {
        String meta = "\"__metadata__\":{\"ggml_type:w\":\"%s\"},";
        assertMentions(errorOfHeader("{" + meta.formatted("Q4_K") + tensor("v", "U8", "[2,144]", "[0,288]") + "}", 288),
                "ggml_type:w", "names a tensor the file does not have");
        assertMentions(errorOfHeader("{" + meta.formatted("Q8_1") + tensor("w", "U8", "[2,36]", "[0,72]") + "}", 72),
                "'Q8_1'", "not a block type", "Q4_K");
        assertMentions(errorOfHeader("{" + meta.formatted("Q4_K") + tensor("w", "U8", "[2,140]", "[0,280]") + "}", 280),
                "tensor 'w' is U8 [2, 140]", "a multiple of 144 bytes");
        assertMentions(errorOfHeader("{" + meta.formatted("Q8_0") + tensor("w", "F32", "[2,34]", "[0,272]") + "}", 272),
                "tensor 'w' is F32");
        assertMentions(errorOfHeader("{" + meta.formatted("Q8_0") + tensor("w", "U8", "[68]", "[0,68]") + "}", 68),
                "U8 [68]", "[rows, a multiple of 34 bytes]");
    }
}
