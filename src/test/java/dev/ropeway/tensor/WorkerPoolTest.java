package dev.ropeway.tensor;

import org.junit.jupiter.api.Test;

import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class WorkerPoolTest {
    @Test
    void everyTaskRunsExactlyOnce() {
        try (WorkerPool pool = new WorkerPool(4, "test")) {
            for (int round = 0; round < 50; round++) {
                AtomicLongArray hits = new AtomicLongArray(1000);
                pool.run(1000, i -> {
                    hits.incrementAndGet(i);
                    if (i % 100 == 0) busyWait(100_000);
                });
                for (int i = 0; i < 1000; i++) assertEquals(1, hits.get(i), "task " + i);
            }
        }
    }

    @Test
    void workersJoinTheCaller() {
        try (WorkerPool pool = new WorkerPool(3, "test")) {
            var threads = ConcurrentHashMap.<Thread>newKeySet();
            pool.run(100, i -> {
                threads.add(Thread.currentThread());
                // Whoever takes the first task waits (up to 10 s) for a second thread to show up.
                long end = System.nanoTime() + 10_000_000_000L;
                while (i == 0 && threads.size() < 2 && System.nanoTime() < end) Thread.onSpinWait();
            });
            assertTrue(threads.size() > 1, "ran on " + threads.size() + " thread(s)");
        }
    }

    @Test
    void forRangeCoversTheRangeExactly() {
        try (WorkerPool pool = new WorkerPool(3, "test")) {
            for (long n : new long[]{1, 5, 999, 1_000_003}) {
                AtomicLong sum = new AtomicLong();
                AtomicLong covered = new AtomicLong();
                pool.forRange(n, 1000, (from, to) -> {
                    assertTrue(from < to && to <= n);
                    covered.addAndGet(to - from);
                    long s = 0;
                    for (long i = from; i < to; i++) s += i;
                    sum.addAndGet(s);
                });
                assertEquals(n, covered.get());
                assertEquals(n * (n - 1) / 2, sum.get());
            }
        }
    }

    @Test
    void aTaskExceptionReachesTheCaller() {
        try (WorkerPool pool = new WorkerPool(3, "test")) {
            IllegalStateException boom = new IllegalStateException("boom");
            var e = assertThrows(IllegalStateException.class, () -> pool.run(64, i -> {
                if (i == 37) throw boom;
            }));
            assertSame(boom, e);
            AtomicInteger after = new AtomicInteger();
            pool.run(10, i -> after.incrementAndGet());
            assertEquals(10, after.get(), "the pool still works");
        }
    }

    @Test
    void nestedAndConcurrentJobsRunOnTheirCaller() throws Exception {
        try (WorkerPool pool = new WorkerPool(3, "test")) {
            AtomicInteger inner = new AtomicInteger();
            pool.run(8, i -> pool.run(5, j -> inner.incrementAndGet()));
            assertEquals(40, inner.get());

            CountDownLatch started = new CountDownLatch(1), release = new CountDownLatch(1);
            Thread holder = new Thread(() -> pool.run(3, i -> {
                if (i == 0) {
                    started.countDown();
                    try {
                        release.await();
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }
            }));
            holder.start();
            started.await();
            var ran = ConcurrentHashMap.<Thread>newKeySet();
            pool.run(20, i -> ran.add(Thread.currentThread()));
            assertEquals(java.util.Set.of(Thread.currentThread()), ran, "a busy pool runs the job on its caller");
            release.countDown();
            holder.join();
        }
    }

    @Test
    void aClosedPoolStillRunsJobsOnTheCaller() {
        WorkerPool pool = new WorkerPool(2, "test");
        pool.close();
        AtomicInteger n = new AtomicInteger();
        pool.run(7, i -> n.incrementAndGet());
        assertEquals(7, n.get());
    }

    private static void busyWait(long nanos) {
        long end = System.nanoTime() + nanos;
        while (System.nanoTime() < end) Thread.onSpinWait();
    }
}
