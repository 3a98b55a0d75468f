package dev.ropeway.train.corpus;

import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.zip.DeflaterOutputStream;
import java.util.zip.GZIPOutputStream;

/** Builds R XDR serialization streams by hand, item by item, for tests of the reader. */
final class RBlob {
    private final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    private final DataOutputStream out = new DataOutputStream(bytes);

    /** A stream header: "X\n", the version, writer and minimum reader versions, and for version 3 the native encoding. */
    static RBlob header(int version) {
        RBlob b = new RBlob();
        b.raw('X', '\n').i(version).i(0x040201).i(version == 3 ? 0x030500 : 0x020300);
        if (version == 3) b.i(5).raw("UTF-8".getBytes(StandardCharsets.US_ASCII));
        return b;
    }

    RBlob i(int v) {
        try {
            out.writeInt(v);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return this;
    }

    RBlob d(double v) {
        try {
            out.writeDouble(v);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return this;
    }

    RBlob raw(byte[] b) {
        bytes.writeBytes(b);
        return this;
    }

    RBlob raw(char... cs) {
        for (char c : cs) bytes.write(c);
        return this;
    }

    /** A CHARSXP; {@code levels} holds the encoding bits (8 UTF-8, 4 Latin-1, 64 ASCII, 0 native). */
    RBlob chars(String s, int levels) {
        byte[] b = s.getBytes((levels & 4) != 0 ? StandardCharsets.ISO_8859_1 : StandardCharsets.UTF_8);
        return i(RSerialization.CHARSXP | (levels << 12)).i(b.length).raw(b);
    }

    RBlob naString() {
        return i(RSerialization.CHARSXP).i(-1);
    }

    /** A STRSXP header; the elements follow as {@link #chars} / {@link #naString} calls. */
    RBlob strings(int n, boolean hasAttributes) {
        return i(RSerialization.STRSXP | (hasAttributes ? RSerialization.HAS_ATTR : 0)).i(n);
    }

    RBlob strings(String... values) {
        strings(values.length, false);
        for (String v : values) chars(v, 64);
        return this;
    }

    RBlob ints(int... values) {
        i(RSerialization.INTSXP).i(values.length);
        for (int v : values) i(v);
        return this;
    }

    RBlob list(int n, boolean hasAttributes) {
        return i(RSerialization.VECSXP | (hasAttributes ? RSerialization.HAS_ATTR : 0)).i(n);
    }

    /** A new symbol (it enters the reference table); refer to it again with {@link #ref}. */
    RBlob symbol(String name) {
        return i(RSerialization.SYMSXP).chars(name, 64);
    }

    RBlob ref(int index) {
        return i((index << 8) | RSerialization.REFSXP);
    }

    /** A tagged pairlist cell; the tag (a symbol or reference) and the value follow, then the next cell or nil. */
    RBlob cell() {
        return i(RSerialization.LISTSXP | RSerialization.HAS_TAG);
    }

    RBlob nil() {
        return i(RSerialization.NILVALUE_SXP);
    }

    byte[] bytes() {
        return bytes.toByteArray();
    }

    static byte[] gzip(byte[] b) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (GZIPOutputStream gz = new GZIPOutputStream(out)) {
            gz.write(b);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    /** An .rdb chunk as R writes it with compress = TRUE: the 4-byte big-endian length, then a zlib stream. */
    static byte[] zlibChunk(byte[] payload) {
        ByteArrayOutputStream z = new ByteArrayOutputStream();
        try (DeflaterOutputStream out = new DeflaterOutputStream(z)) {
            out.write(payload);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        byte[] compressed = z.toByteArray();
        return ByteBuffer.allocate(4 + compressed.length).putInt(payload.length).put(compressed).array();
    }

    /**
     * Writes {@code Rdata.rdx} and {@code Rdata.rdb} into {@code dir} as R writes a lazy-load database: the index
     * lists each object's c(offset, length) under "variables", and every chunk is a length header plus a zlib
     * stream. Returns the .rdx path.
     */
    static Path writeDatabase(Path dir, int version, List<String> names, List<byte[]> objects) throws IOException {
        ByteArrayOutputStream rdb = new ByteArrayOutputStream();
        int[][] extents = new int[objects.size()][];
        for (int i = 0; i < objects.size(); i++) {
            byte[] chunk = zlibChunk(objects.get(i));
            extents[i] = new int[]{rdb.size(), chunk.length};
            rdb.writeBytes(chunk);
        }
        RBlob index = header(version).list(3, true);
        index.list(names.size(), true);
        for (int[] e : extents) index.ints(e);
        index.cell().symbol("names").strings(names.toArray(String[]::new)).nil();
        index.list(0, true).cell().ref(1).strings().nil();
        index.i(RSerialization.LGLSXP).i(1).i(1);
        index.cell().ref(1).strings("variables", "references", "compressed").nil();
        Files.createDirectories(dir);
        Path rdx = dir.resolve("Rdata.rdx");
        Files.write(rdx, gzip(index.bytes()));
        Files.write(dir.resolve("Rdata.rdb"), rdb.toByteArray());
        return rdx;
    }
}
