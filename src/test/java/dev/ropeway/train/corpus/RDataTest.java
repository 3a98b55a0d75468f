package dev.ropeway.train.corpus;

import dev.ropeway.RopewayException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** R's XDR serialization and lazy-load databases, on streams built byte by byte. */
class RDataTest {
    @TempDir
    Path tmp;

    @ParameterizedTest
    @ValueSource(ints = {2, 3})
    void readsCharacterVectorWithEncodingsNaAndNames(int version) {
        byte[] blob = RBlob.header(version)
                .strings(4, true)
                .chars("caf\u00e9", 8)        // UTF-8
                .chars("na\u00efve", 4)       // Latin-1 bytes
                .naString()
                .chars("plain", 64)           // ASCII
                .cell().symbol("names").strings("a", "b", "c", "d").nil()
                .bytes();
        RValue v = RSerialization.unserialize(blob);
        RValue.Strings s = assertInstanceOf(RValue.Strings.class, v);
        assertEquals(Arrays.asList("caf\u00e9", "na\u00efve", null, "plain"), s.values());
        assertEquals(List.of("a", "b", "c", "d"), s.names());
    }

    @Test
    void resolvesReferencesToEarlierSymbols() {
        // list(x = 1:2, y = list()) where the inner list's names attribute refers back to the symbol "names".
        byte[] blob = RBlob.header(3)
                .list(2, true)
                .ints(1, 2)
                .list(0, true).cell().symbol("names").strings().nil()
                .cell().ref(1).strings("x", "y").nil()
                .bytes();
        RValue.ListValue list = assertInstanceOf(RValue.ListValue.class, RSerialization.unserialize(blob));
        assertEquals(List.of("x", "y"), list.names());
        assertArrayEquals(new int[]{1, 2}, assertInstanceOf(RValue.Integers.class, list.get("x")).values());
        assertTrue(list.get("y").attributes().containsKey("names"));
    }

    @Test
    void expandsCompactIntegerSequences() {
        // 5:7 as R 3.5+ writes it: ALTREP class info, state c(n, start, step), no attributes.
        byte[] blob = RBlob.header(3)
                .i(RSerialization.ALTREP_SXP)
                .i(RSerialization.LISTSXP).symbol("compact_intseq")
                .i(RSerialization.LISTSXP).symbol("base")
                .i(RSerialization.LISTSXP).ints(13).nil()
                .i(RSerialization.REALSXP).i(3).d(3).d(5).d(1)
                .nil()
                .bytes();
        RValue.Integers v = assertInstanceOf(RValue.Integers.class, RSerialization.unserialize(blob));
        assertArrayEquals(new int[]{5, 6, 7}, v.values());
    }

    @Test
    void rejectsOtherFormatsAndTruncation() {
        var ascii = assertThrows(RopewayException.class, () -> RSerialization.unserialize("A\n1\n".getBytes()));
        assertTrue(ascii.getMessage().contains("ASCII"), ascii.getMessage());
        var v4 = assertThrows(RopewayException.class, () -> RSerialization.unserialize(withVersion(4)));
        assertTrue(v4.getMessage().contains("version 4"), v4.getMessage());
        byte[] full = RBlob.header(2).strings("hello").bytes();
        var cut = assertThrows(RopewayException.class,
                () -> RSerialization.unserialize(Arrays.copyOf(full, full.length - 2)));
        assertTrue(cut.getMessage().contains("ends early") || cut.getMessage().contains("string length"), cut.getMessage());
    }

    private static byte[] withVersion(int version) {
        byte[] b = RBlob.header(2).strings("x").bytes();
        ByteBuffer.wrap(b).putInt(2, version);
        return b;
    }

    private Path database(int version, List<String> names, List<byte[]> objects) throws IOException {
        return RBlob.writeDatabase(tmp, version, names, objects);
    }

    @ParameterizedTest
    @ValueSource(ints = {2, 3})
    void readsObjectsFromLazyLoadDatabase(int version) throws IOException {
        byte[] novel = RBlob.header(version).strings("CHAPTER I", "", "It is a truth universally acknowledged").bytes();
        byte[] whale = RBlob.header(version).strings("Call me Ishmael.\r\nSome years ago").bytes();
        Path rdx = database(version, List.of("novel", "whale"), List.of(novel, whale));
        RLazyLoadDb db = RLazyLoadDb.open(rdx);
        assertEquals(List.of("novel", "whale"), db.names());
        assertEquals(List.of("CHAPTER I", "", "It is a truth universally acknowledged"), db.strings("novel"));
        assertEquals(List.of("Call me Ishmael.\r\nSome years ago"), db.strings("whale"));
        var missing = assertThrows(RopewayException.class, () -> db.get("emma"));
        assertTrue(missing.getMessage().contains("no object emma"), missing.getMessage());
    }

    @Test
    void naElementsBecomeEmptyLinesAndNonStringsAreRejected() throws IOException {
        byte[] withNa = RBlob.header(3).strings(2, false).chars("a", 64).naString().bytes();
        byte[] numbers = RBlob.header(3).ints(1, 2, 3).bytes();
        RLazyLoadDb db = RLazyLoadDb.open(database(3, List.of("text", "n"), List.of(withNa, numbers)));
        assertEquals(List.of("a", ""), db.strings("text"));
        assertNull(assertInstanceOf(RValue.Strings.class, db.get("text")).values().get(1));
        var e = assertThrows(RopewayException.class, () -> db.strings("n"));
        assertTrue(e.getMessage().contains("integer vector of 3"), e.getMessage());
    }

    @Test
    void corruptChunkIsAClearError() throws IOException {
        byte[] obj = RBlob.header(2).strings("some text that compresses").bytes();
        Path rdx = database(2, List.of("x"), List.of(obj));
        Path rdb = tmp.resolve("Rdata.rdb");
        byte[] chunk = Files.readAllBytes(rdb);
        ByteBuffer.wrap(chunk).putInt(0, obj.length + 5); // header now disagrees with the stream
        Files.write(rdb, chunk);
        var e = assertThrows(RopewayException.class, () -> RLazyLoadDb.open(rdx).get("x"));
        assertTrue(e.getMessage().contains("inflates to " + obj.length), e.getMessage());
        var noIndex = assertThrows(RopewayException.class, () -> RLazyLoadDb.open(tmp.resolve("none.rdx")));
        assertTrue(noIndex.getMessage().contains("no such R lazy-load index"), noIndex.getMessage());
    }
}
