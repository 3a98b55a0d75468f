package dev.ropeway.eval;

import dev.ropeway.BuildInfo;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * Where a set of results came from, written beside them: the exact command line, Ropeway's version and git
 * revision, the machine and the date.
 */
public record RunRecord(String command, String version, String revision, String date, Map<String, Object> machine) {
    private static final Pattern PLAIN = Pattern.compile("[A-Za-z0-9_@%+=:,./-]+");

    /** The record of a run started now with {@code args} (the arguments after the program name). */
    public static RunRecord now(List<String> args) {
        BuildInfo b = BuildInfo.current();
        return new RunRecord(commandLine(args), b.version(), b.describeRevision(),
                Instant.now().truncatedTo(ChronoUnit.SECONDS).toString(), describeMachine());
    }

    /** {@code ropeway} and its arguments, each quoted for a POSIX shell where it needs it, so the line can be rerun. */
    public static String commandLine(List<String> args) {
        StringBuilder sb = new StringBuilder("ropeway");
        for (String a : args) sb.append(' ').append(PLAIN.matcher(a).matches() ? a : "'" + a.replace("'", "'\\''") + "'");
        return sb.toString();
    }

    static Map<String, Object> describeMachine() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("cores", Runtime.getRuntime().availableProcessors());
        m.put("cpu", cpuModel());
        m.put("os", System.getProperty("os.name") + " " + System.getProperty("os.version"));
        m.put("arch", System.getProperty("os.arch"));
        m.put("java", Runtime.version().toString());
        m.put("max_heap_bytes", Runtime.getRuntime().maxMemory());
        return m;
    }

    private static String cpuModel() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/cpuinfo")))
                if (line.startsWith("model name")) return line.substring(line.indexOf(':') + 1).strip();
        } catch (IOException | RuntimeException e) {
            // Not Linux, or not readable: the model is simply not recorded.
        }
        return BuildInfo.UNKNOWN;
    }

    public Map<String, Object> toJson() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("command", command);
        m.put("ropeway_version", version);
        m.put("git_revision", revision);
        m.put("date", date);
        m.put("machine", machine);
        return m;
    }
}
