package dev.ropeway.train.corpus;

import dev.ropeway.RopewayException;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * A public-domain or freely licensed long text that {@code ropeway corpus fetch} takes from Debian {@code main},
 * with the exact package versions it was checked against. Versions are pinned because Debian point releases
 * replace packages (the kernel source above all), and the same pins give the same corpus everywhere.
 */
public enum Source {
    KJV("kjv", "King James Bible (printed by the package's own `bible` program)", 2.5,
            new Pin("bible-kjv", "4.38"), new Pin("bible-kjv-text", "4.38")),
    JARGON("jargon", "The Jargon File 4.4.7", 0.7, new Pin("jargon-text", "4.4.7-4.1")),
    VIM("vim", "Vim reference manual (doc/*.txt)", 7.0, new Pin("vim-runtime", "2:9.0.1378-2+deb12u2")),
    PERL("perl", "Perl documentation (pod/*.pod)", 7.9, new Pin("perl-doc", "5.36.0-7+deb12u3")),
    LINUX_DOC("linux-doc", "Linux 6.1 Documentation/ (.rst and .txt files)", 139.1,
            new Pin("linux-source-6.1", "6.1.176-1")),
    LINUX_CODE("linux-code", "Linux 6.1 C files of 128 KB or more from its core folders (a held-out code domain)", 139.1,
            new Pin("linux-source-6.1", "6.1.176-1")),
    AUSTEN("austen", "Jane Austen's six novels (R data set janeaustenr)", 1.6, new Pin("r-cran-janeaustenr", "1.0.0-1")),
    MOBY_DICK("mobydick", "Moby Dick (R data set tokenizers::mobydick)", 0.7, new Pin("r-cran-tokenizers", "0.3.0-1"));

    /** A Debian package at an exact version (with epoch, as apt spells it). */
    public record Pin(String pkg, String version) {}

    private final String id;
    private final String title;
    private final double downloadMb;
    private final List<Pin> packages;

    Source(String id, String title, double downloadMb, Pin... packages) {
        this.id = id;
        this.title = title;
        this.downloadMb = downloadMb;
        this.packages = List.of(packages);
    }

    /** The name used on the command line, in the manifest and as the source's folder. */
    public String id() {
        return id;
    }

    public String title() {
        return title;
    }

    /** Approximate size of the .deb files to download, in MB. */
    public double downloadMb() {
        return downloadMb;
    }

    public List<Pin> packages() {
        return packages;
    }

    public static Source byId(String id) {
        for (Source s : values()) if (s.id.equals(id)) return s;
        throw new RopewayException("unknown corpus source '" + id + "' (known: " + ids() + ")");
    }

    /** All source ids, comma-separated, for messages and help. */
    public static String ids() {
        return String.join(",", Arrays.stream(values()).map(Source::id).toList());
    }

    /**
     * Parses a selection: {@code include} is a comma-separated list of ids or {@code all}, and {@code exclude}
     * (may be null or empty) removes ids from it. An empty result is an error, since it would fetch nothing.
     */
    public static Set<Source> select(String include, String exclude) {
        Set<Source> chosen = EnumSet.noneOf(Source.class);
        for (String id : split(include == null ? "all" : include)) {
            if (id.equals("all")) chosen.addAll(EnumSet.allOf(Source.class));
            else chosen.add(byId(id));
        }
        for (String id : split(exclude == null ? "" : exclude)) chosen.remove(byId(id));
        if (chosen.isEmpty()) throw new RopewayException("no corpus sources selected (known: " + ids() + ")");
        return chosen;
    }

    private static List<String> split(String list) {
        List<String> out = new ArrayList<>();
        for (String part : list.split(",")) {
            String id = part.trim().toLowerCase(Locale.ROOT);
            if (!id.isEmpty()) out.add(id);
        }
        return out;
    }
}
