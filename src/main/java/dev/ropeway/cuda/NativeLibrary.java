package dev.ropeway.cuda;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * A shared library of the CUDA stack, found where CUDA installs put it: {@code ROPEWAY_CUDA_LIBS}, {@code CUDA_HOME} /
 * {@code CUDA_PATH}, {@code LD_LIBRARY_PATH}, {@code /usr/local/cuda*}, the system library folders, the driver's
 * folders, and the {@code nvidia/*} folders of pip-installed CUDA wheels (PyTorch's, for example), then the system
 * loader's own search. The newest version in the first folder that has one wins.
 */
final class NativeLibrary {
    private static final Linker LINKER = Linker.nativeLinker();

    final String name;
    final String location;
    private final SymbolLookup lookup;

    private NativeLibrary(String name, String location, SymbolLookup lookup) {
        this.name = name;
        this.location = location;
        this.lookup = lookup;
    }

    /**
     * Loads library {@code stem} (e.g. "cublas" for libcublas.so.N), or throws naming what was searched.
     * {@code purpose} says what it is for, for the error message.
     */
    static NativeLibrary load(String stem, String purpose) {
        Optional<NativeLibrary> found = find(stem);
        if (found.isPresent()) return found.get();
        throw new CudaException("the CUDA backend needs lib" + stem + ".so (" + purpose + ") and it was not found in "
                + String.join(", ", searchFolders().stream().map(Path::toString).limit(12).toList())
                + " or the system loader's path. " + (stem.equals("cuda")
                        ? "It comes with the NVIDIA driver; without an NVIDIA GPU, use --device cpu."
                        : "Install the CUDA toolkit or the pip wheel that has it (PyTorch's environment does), or point "
                        + "ROPEWAY_CUDA_LIBS (or CUDA_HOME) at the folder that holds it."));
    }

    /**
     * The library, if it can be found and opened. The driver ({@code cuda}) is asked of the system loader first: it
     * belongs to the installed kernel driver, and a toolkit folder may hold a stub or compatibility copy of it.
     */
    static Optional<NativeLibrary> find(String stem) {
        if (stem.equals("cuda")) {
            Optional<NativeLibrary> system = fromSystemLoader(stem);
            if (system.isPresent()) return system;
        }
        Pattern file = Pattern.compile("lib" + Pattern.quote(stem) + "\\.so(\\.\\d+)*");
        for (Path dir : searchFolders()) {
            Optional<Path> best = newest(dir, file);
            if (best.isPresent()) {
                try {
                    return Optional.of(new NativeLibrary(stem, best.get().toString(),
                            SymbolLookup.libraryLookup(best.get(), Arena.global())));
                } catch (IllegalArgumentException e) {
                    // Present but not loadable here (wrong architecture, missing dependency): keep looking.
                }
            }
        }
        return fromSystemLoader(stem);
    }

    private static Optional<NativeLibrary> fromSystemLoader(String stem) {
        for (String soname : List.of("lib" + stem + ".so.1", "lib" + stem + ".so")) {
            try {
                return Optional.of(new NativeLibrary(stem, soname, SymbolLookup.libraryLookup(soname, Arena.global())));
            } catch (IllegalArgumentException e) {
                // not known to the system loader
            }
        }
        return Optional.empty();
    }

    /** A downcall handle for {@code symbol}; fails naming the library when the symbol is missing. */
    MethodHandle function(String symbol, FunctionDescriptor descriptor) {
        return lookup.find(symbol).map(s -> LINKER.downcallHandle(s, descriptor))
                .orElseThrow(() -> new CudaException(location + " has no function " + symbol
                        + " (a CUDA library older than this backend needs?)"));
    }

    Optional<MethodHandle> optionalFunction(String symbol, FunctionDescriptor descriptor) {
        return lookup.find(symbol).map(s -> LINKER.downcallHandle(s, descriptor));
    }

    /** The newest {@code lib<stem>.so[.N...]} in {@code dir}. */
    static Optional<Path> newest(Path dir, String stem) {
        return newest(dir, Pattern.compile("lib" + Pattern.quote(stem) + "\\.so(\\.\\d+)*"));
    }

    private static Optional<Path> newest(Path dir, Pattern file) {
        if (!Files.isDirectory(dir)) return Optional.empty();
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(p -> file.matcher(p.getFileName().toString()).matches())
                    .max(Comparator.comparing((Path p) -> versionKey(p.getFileName().toString())));
        } catch (IOException e) {
            return Optional.empty();
        }
    }

    /** "libx.so.12.4.1" sorts after "libx.so.12" and "libx.so"; numbers compare as numbers. */
    private static String versionKey(String fileName) {
        StringBuilder key = new StringBuilder();
        int so = fileName.indexOf(".so");
        for (String part : fileName.substring(so + 3).split("\\.")) {
            if (part.isEmpty()) continue;
            key.append(String.format("%08d.", Integer.parseInt(part)));
        }
        return key.toString();
    }

    static List<Path> searchFolders() {
        Set<Path> dirs = new LinkedHashSet<>();
        for (String env : List.of("ROPEWAY_CUDA_LIBS", "LD_LIBRARY_PATH"))
            addPathList(dirs, System.getenv(env));
        for (String env : List.of("CUDA_HOME", "CUDA_PATH")) {
            String home = System.getenv(env);
            if (home == null || home.isBlank()) continue;
            for (String sub : List.of("lib64", "lib", "targets/x86_64-linux/lib")) dirs.add(Path.of(home, sub));
        }
        for (String sub : List.of("lib64", "lib", "targets/x86_64-linux/lib")) dirs.add(Path.of("/usr/local/cuda", sub));
        dirs.addAll(versionedCudaFolders());
        for (String d : List.of("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/nvidia/lib64",
                "/usr/local/nvidia/lib", "/usr/lib/wsl/lib"))
            dirs.add(Path.of(d));
        dirs.addAll(pipNvidiaFolders());
        return new ArrayList<>(dirs);
    }

    private static void addPathList(Set<Path> dirs, String list) {
        if (list == null) return;
        for (String d : list.split(":")) if (!d.isBlank()) dirs.add(Path.of(d));
    }

    private static List<Path> versionedCudaFolders() {
        List<Path> out = new ArrayList<>();
        try (Stream<Path> s = Files.list(Path.of("/usr/local"))) {
            s.filter(p -> p.getFileName().toString().startsWith("cuda-"))
                    .sorted(Comparator.comparing(Path::toString).reversed())
                    .forEach(p -> {
                        out.add(p.resolve("lib64"));
                        out.add(p.resolve("targets/x86_64-linux/lib"));
                    });
        } catch (IOException | RuntimeException e) {
            // no /usr/local, nothing to add
        }
        return out;
    }

    /** Every lib folder under nvidia/ in the Python environments a machine usually has (pip's CUDA wheels). */
    private static List<Path> pipNvidiaFolders() {
        List<Path> roots = new ArrayList<>();
        String venv = System.getenv("VIRTUAL_ENV");
        if (venv != null) roots.add(Path.of(venv, "lib"));
        String conda = System.getenv("CONDA_PREFIX");
        if (conda != null) roots.add(Path.of(conda, "lib"));
        roots.add(Path.of(System.getProperty("user.home"), ".local", "lib"));
        roots.add(Path.of("/usr/local/lib"));
        roots.add(Path.of("/usr/lib"));
        roots.add(Path.of("/opt/conda/lib"));
        try (Stream<Path> s = Files.list(Path.of("/opt"))) {
            s.forEach(p -> {
                roots.add(p.resolve(".venv/lib"));
                roots.add(p.resolve("venv/lib"));
                roots.add(p.resolve("lib"));
            });
        } catch (IOException | RuntimeException e) {
            // no /opt
        }
        List<Path> out = new ArrayList<>();
        for (Path root : roots) {
            if (!Files.isDirectory(root)) continue;
            try (Stream<Path> pythons = Files.list(root)) {
                for (Path py : pythons.filter(p -> p.getFileName().toString().startsWith("python3")).toList())
                    for (String pkgs : List.of("site-packages", "dist-packages")) {
                        Path nvidia = py.resolve(pkgs).resolve("nvidia");
                        if (!Files.isDirectory(nvidia)) continue;
                        try (Stream<Path> walk = Files.walk(nvidia, 3)) {
                            walk.filter(p -> p.getFileName().toString().equals("lib") && Files.isDirectory(p))
                                    .sorted().forEach(out::add);
                        }
                    }
            } catch (IOException | RuntimeException e) {
                // unreadable: skip
            }
        }
        return out;
    }
}
