package dev.ropeway.cuda;

import org.junit.platform.engine.TestExecutionResult;
import org.junit.platform.launcher.Launcher;
import org.junit.platform.launcher.LauncherDiscoveryRequest;
import org.junit.platform.launcher.TestExecutionListener;
import org.junit.platform.launcher.TagFilter;
import org.junit.platform.launcher.TestIdentifier;
import org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder;
import org.junit.platform.launcher.core.LauncherFactory;
import org.junit.platform.launcher.listeners.SummaryGeneratingListener;
import org.junit.platform.launcher.listeners.TestExecutionSummary;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import static org.junit.platform.engine.discovery.DiscoverySelectors.selectClass;
import static org.junit.platform.engine.discovery.DiscoverySelectors.selectMethod;

/**
 * The child process of {@link EmulatedGpuTest}: installs the CUDA emulator's kernel compiler, runs the GPU test
 * classes (or the given selectors: a class name, or {@code Class#method}) through the JUnit launcher, prints each
 * test's outcome and a summary line, and exits 0 only when tests ran and none failed or was aborted (a GPU test that
 * skips here, finding no device, is a failure of the emulation). Tests tagged {@value #FULL_SIZE} are left out.
 *
 * <p>Usage: {@code EmulatedGpuMain <emulator folder> <C++ compiler> [selector...]}, with {@code LD_LIBRARY_PATH}
 * starting at {@code <emulator folder>/lib} and {@code ROPEWAY_CUDA_CACHE} at a folder of its own; the emulator is
 * built into the folder first if it is not there.
 */
public final class EmulatedGpuMain {
    /** The tag of GPU tests too large for the emulator (a 32k-token attention, say): real GPUs only. */
    public static final String FULL_SIZE = "full-size";
    static final List<String> DEFAULT_SELECTORS = List.of("dev.ropeway.cuda.CudaBackendTest", "dev.ropeway.model.CudaParityTest",
            "dev.ropeway.cli.CudaCliTest");

    public static void main(String[] args) throws Exception {
        Path folder = Path.of(args[0]), cxx = Path.of(args[1]);
        if (!java.nio.file.Files.isDirectory(folder.resolve("lib"))) CudaEmulator.build(folder, cxx);
        CudaEmulator.install(folder, cxx);
        List<String> selectors = args.length > 2 ? List.of(args).subList(2, args.length) : DEFAULT_SELECTORS;
        LauncherDiscoveryRequestBuilder request = LauncherDiscoveryRequestBuilder.request();
        for (String s : selectors) request.selectors(s.contains("#") ? selectMethod(s) : selectClass(s));
        request.filters(TagFilter.excludeTags(FULL_SIZE));
        LauncherDiscoveryRequest built = request.build();
        Launcher launcher = LauncherFactory.create();
        SummaryGeneratingListener summary = new SummaryGeneratingListener();
        launcher.execute(built, summary, new Progress());
        TestExecutionSummary s = summary.getSummary();
        PrintWriter out = new PrintWriter(System.out, true);
        s.printFailuresTo(out, 40);
        out.printf("EMULATED GPU TESTS: %d succeeded, %d failed, %d aborted, %d skipped, in %.0f s%n",
                s.getTestsSucceededCount(), s.getTotalFailureCount(), s.getTestsAbortedCount(), s.getTestsSkippedCount(),
                (s.getTimeFinished() - s.getTimeStarted()) / 1e3);
        out.flush();
        boolean ok = s.getTestsSucceededCount() > 0 && s.getTotalFailureCount() == 0 && s.getTestsAbortedCount() == 0;
        System.exit(ok ? 0 : 1);
    }

    /** One line per finished test, with its time. */
    private static final class Progress implements TestExecutionListener {
        private final Map<String, Long> started = new ConcurrentHashMap<>();

        @Override
        public void executionStarted(TestIdentifier id) {
            started.put(id.getUniqueId(), System.nanoTime());
        }

        @Override
        public void executionFinished(TestIdentifier id, TestExecutionResult result) {
            if (!id.isTest() && result.getStatus() == TestExecutionResult.Status.SUCCESSFUL) return;
            long t0 = started.getOrDefault(id.getUniqueId(), System.nanoTime());
            List<String> parts = new ArrayList<>();
            parts.add(result.getStatus().toString());
            result.getThrowable().ifPresent(t -> parts.add(t.toString().lines().findFirst().orElse("")));
            System.out.printf("[emulated gpu] %-70s %6.1f s  %s%n", id.getLegacyReportingName(),
                    (System.nanoTime() - t0) / 1e9, String.join(": ", parts));
        }

        @Override
        public void executionSkipped(TestIdentifier id, String reason) {
            System.out.printf("[emulated gpu] %-70s skipped: %s%n", id.getLegacyReportingName(), reason);
        }
    }
}
