package dev.ropeway.train.corpus;

import dev.ropeway.RopewayException;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.DataFormatException;
import java.util.zip.GZIPInputStream;
import java.util.zip.Inflater;

/**
 * An R lazy-load database, the pair of files in which an installed R package keeps its data sets
 * ({@code data/Rdata.rdx} and {@code data/Rdata.rdb}). The {@code .rdx} file is a gzip-compressed serialized list
 * whose {@code variables} element maps each object name to {@code c(offset, length)} in the {@code .rdb} file;
 * each {@code .rdb} chunk is the 4-byte big-endian length of the serialized object followed by its compressed
 * bytes.
 */
public final class RLazyLoadDb {
    /** How the chunks are compressed, from the index's {@code compressed} element. */
    private enum Compression { NONE, ZLIB, TYPED }

    private record Extent(long offset, int length) {}

    private final Path rdb;
    private final Map<String, Extent> variables;
    private final Compression compression;

    private RLazyLoadDb(Path rdb, Map<String, Extent> variables, Compression compression) {
        this.rdb = rdb;
        this.variables = variables;
        this.compression = compression;
    }

    /** Opens the database whose index is {@code rdx}; the data file is the {@code .rdb} file beside it. */
    public static RLazyLoadDb open(Path rdx) {
        String name = rdx.getFileName().toString();
        if (!name.endsWith(".rdx")) throw new RopewayException(rdx + ": expected an R lazy-load index (.rdx)");
        Path rdb = rdx.resolveSibling(name.substring(0, name.length() - 4) + ".rdb");
        if (!Files.isRegularFile(rdx)) throw new RopewayException("no such R lazy-load index: " + rdx);
        if (!Files.isRegularFile(rdb)) throw new RopewayException("no such R lazy-load data file: " + rdb);
        byte[] indexBytes;
        try (InputStream gz = new GZIPInputStream(Files.newInputStream(rdx))) {
            indexBytes = gz.readAllBytes();
        } catch (java.util.zip.ZipException e) {
            throw new RopewayException(rdx + " is not gzip-compressed R data: " + e.getMessage());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + rdx, e);
        }
        return fromIndex(rdx, rdb, RSerialization.unserialize(indexBytes));
    }

    private static RLazyLoadDb fromIndex(Path rdx, Path rdb, RValue index) {
        if (!(index instanceof RValue.ListValue top) || !(top.get("variables") instanceof RValue.ListValue vars))
            throw new RopewayException(rdx + ": not an R lazy-load index (no list element \"variables\")");
        Map<String, Extent> variables = new LinkedHashMap<>();
        List<String> names = vars.names();
        for (int i = 0; i < vars.values().size(); i++) {
            String name = i < names.size() ? names.get(i) : null;
            long[] pos = numbers(vars.values().get(i));
            if (name == null || pos == null || pos.length != 2 || pos[0] < 0 || pos[1] < 4 || pos[1] > Integer.MAX_VALUE)
                throw new RopewayException(rdx + ": malformed entry " + (i + 1) + " in \"variables\"");
            variables.put(name, new Extent(pos[0], (int) pos[1]));
        }
        return new RLazyLoadDb(rdb, Collections.unmodifiableMap(variables), compression(rdx, top.get("compressed")));
    }

    /** {@code TRUE}: zlib; 2 or 3: a type byte after the length says which compressor; absent or {@code FALSE}: none. */
    private static Compression compression(Path rdx, RValue flag) {
        if (flag == null || flag instanceof RValue.Null) return Compression.NONE;
        long[] v = flag instanceof RValue.Logicals l && l.values().length == 1 ? new long[]{l.values()[0]} : numbers(flag);
        if (v == null || v.length != 1) throw new RopewayException(rdx + ": malformed \"compressed\" entry");
        if (v[0] == 0) return Compression.NONE;
        if (v[0] == 1) return Compression.ZLIB;
        if (v[0] == 2 || v[0] == 3) return Compression.TYPED;
        throw new RopewayException(rdx + ": unknown compression " + v[0]);
    }

    private static long[] numbers(RValue v) {
        if (v instanceof RValue.Integers i) {
            long[] out = new long[i.values().length];
            for (int k = 0; k < out.length; k++) out[k] = i.values()[k];
            return out;
        }
        if (v instanceof RValue.Doubles d) {
            long[] out = new long[d.values().length];
            for (int k = 0; k < out.length; k++) {
                if (d.values()[k] != Math.rint(d.values()[k])) return null;
                out[k] = (long) d.values()[k];
            }
            return out;
        }
        return null;
    }

    /** The names of the objects in the database, in index order. */
    public List<String> names() {
        return new ArrayList<>(variables.keySet());
    }

    /** The object called {@code name}. */
    public RValue get(String name) {
        Extent extent = variables.get(name);
        if (extent == null) throw new RopewayException(rdb + " has no object " + name + " (it has " + variables.keySet() + ")");
        byte[] chunk = new byte[extent.length];
        try (FileChannel ch = FileChannel.open(rdb, StandardOpenOption.READ)) {
            ByteBuffer buf = ByteBuffer.wrap(chunk);
            long pos = extent.offset;
            while (buf.hasRemaining()) {
                int n = ch.read(buf, pos);
                if (n < 0) throw new RopewayException(rdb + " is truncated: object " + name + " lies past its end");
                pos += n;
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + rdb, e);
        }
        return RSerialization.unserialize(decompress(name, chunk));
    }

    /** The character vector called {@code name}; NA elements become empty strings. */
    public List<String> strings(String name) {
        RValue v = get(name);
        if (!(v instanceof RValue.Strings s))
            throw new RopewayException(rdb + ": object " + name + " is " + RSerialization.describe(v) + ", not a character vector");
        List<String> out = new ArrayList<>(s.values().size());
        for (String line : s.values()) out.add(line == null ? "" : line);
        return out;
    }

    private byte[] decompress(String name, byte[] chunk) {
        if (compression == Compression.NONE) return chunk;
        int size = ByteBuffer.wrap(chunk, 0, 4).getInt();
        if (size < 0) throw new RopewayException(rdb + ": object " + name + " has a bad length header");
        int start = 4;
        if (compression == Compression.TYPED) {
            if (chunk.length < 5) throw new RopewayException(rdb + ": object " + name + " is too short to hold data");
            byte kind = chunk[4];
            start = 5;
            if (kind == '0') return java.util.Arrays.copyOfRange(chunk, 5, chunk.length);
            if (kind != 'Z')
                throw new RopewayException(rdb + ": object " + name + " is " + (kind == '2' ? "bzip2" : "xz")
                        + "-compressed; only zlib-compressed R data is supported");
        }
        return inflate(name, chunk, start, size);
    }

    private byte[] inflate(String name, byte[] chunk, int start, int size) {
        Inflater inflater = new Inflater();
        try {
            inflater.setInput(chunk, start, chunk.length - start);
            ByteArrayOutputStream out = new ByteArrayOutputStream(size);
            byte[] buf = new byte[1 << 16];
            while (!inflater.finished()) {
                int n = inflater.inflate(buf);
                if (n == 0 && (inflater.needsInput() || inflater.needsDictionary()))
                    throw new RopewayException(rdb + ": object " + name + " is a truncated zlib stream");
                out.write(buf, 0, n);
            }
            if (out.size() != size)
                throw new RopewayException(rdb + ": object " + name + " inflates to " + out.size()
                        + " bytes, but its header says " + size);
            return out.toByteArray();
        } catch (DataFormatException e) {
            throw new RopewayException(rdb + ": object " + name + " is not valid zlib data: " + e.getMessage());
        } finally {
            inflater.end();
        }
    }
}
