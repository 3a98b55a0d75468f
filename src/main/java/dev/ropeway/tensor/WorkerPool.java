package dev.ropeway.tensor;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

/**
 * A fixed set of worker threads that run the numbered tasks of one job at a time; the calling thread works too.
 * Tasks are claimed from a shared counter, so uneven tasks balance themselves.
 *
 * <p>A job submitted while another is running (a second thread using the same backend, or a kernel that calls back
 * into the pool from inside a task) runs all its tasks on the calling thread. That keeps concurrent use correct and
 * deadlock-free; it only loses parallelism for the second caller.
 *
 * <p>Workers spin for a few tens of microseconds after a job before they park, because a forward pass issues
 * kernels back to back and waking a parked thread costs more than most small kernels.
 */
final class WorkerPool implements AutoCloseable {
    /** One task of a job. */
    @FunctionalInterface
    interface Task {
        void run(int index);
    }

    /** A half-open range {@code [from, to)} of a long index space. */
    @FunctionalInterface
    interface Range {
        void run(long from, long to);
    }

    private static final long SPIN_NANOS = 40_000;

    /** A pool that runs everything on the calling thread. */
    static final WorkerPool SERIAL = new WorkerPool(1, "serial");

    private final int threads;
    private final Thread[] workers;
    private final AtomicBoolean busy = new AtomicBoolean();
    private volatile Job current;
    private volatile boolean closed;

    WorkerPool(int threads, String name) {
        if (threads <= 0) throw new IllegalArgumentException("threads must be positive, got " + threads);
        this.threads = threads;
        this.workers = new Thread[threads - 1];
        for (int i = 0; i < workers.length; i++) {
            workers[i] = Thread.ofPlatform().daemon().name(name + "-" + (i + 1)).unstarted(this::workLoop);
            workers[i].start();
        }
    }

    int threads() {
        return threads;
    }

    /** True when the worker threads may read {@code segment} (false for a confined arena's memory). */
    boolean workersCanAccess(MemorySegment segment) {
        return workers.length == 0 || segment.isAccessibleBy(workers[0]);
    }

    /** Runs {@code task.run(i)} for every i in [0, count), in parallel when the pool is free. */
    void run(int count, Task task) {
        if (count <= 0) return;
        if (count == 1 || workers.length == 0 || closed || !busy.compareAndSet(false, true)) {
            for (int i = 0; i < count; i++) task.run(i);
            return;
        }
        Job job = new Job(task, count, Thread.currentThread());
        try {
            current = job;
            for (Thread w : workers) LockSupport.unpark(w);
            job.work();
            job.awaitDone();
        } finally {
            current = null;
            busy.set(false);
        }
        job.rethrow();
    }

    /**
     * Splits {@code [0, n)} into at most {@code 2 * threads} ranges of at least {@code minChunk} elements each and
     * runs them in parallel; a small {@code n} runs as one range on the calling thread.
     */
    void forRange(long n, long minChunk, Range range) {
        if (n <= 0) return;
        long chunks = Math.min(2L * threads, Math.max(1, n / Math.max(1, minChunk)));
        if (chunks <= 1) {
            range.run(0, n);
            return;
        }
        long step = (n + chunks - 1) / chunks;
        int count = (int) ((n + step - 1) / step);
        run(count, i -> range.run(i * step, Math.min(n, (i + 1) * step)));
    }

    private void workLoop() {
        Job seen = null;
        while (!closed) {
            Job job = current;
            if (job == null || job == seen) {
                job = waitForJob(seen);
                if (job == null) continue;
            }
            seen = job;
            job.work();
        }
    }

    /** Spins briefly, then parks until a job other than {@code seen} is published (or the pool closes). */
    private Job waitForJob(Job seen) {
        long deadline = System.nanoTime() + SPIN_NANOS;
        while (System.nanoTime() < deadline) {
            Job job = current;
            if (job != null && job != seen) return job;
            Thread.onSpinWait();
        }
        while (!closed) {
            Job job = current;
            if (job != null && job != seen) return job;
            LockSupport.park(this);
        }
        return null;
    }

    @Override
    public void close() {
        closed = true;
        for (Thread w : workers) LockSupport.unpark(w);
    }

    /** The shared state of one {@link #run} call. */
    private static final class Job {
        final Task task;
        final int count;
        final Thread owner;
        final AtomicInteger next = new AtomicInteger();
        final AtomicInteger done = new AtomicInteger();
        volatile Throwable error;

        Job(Task task, int count, Thread owner) {
            this.task = task;
            this.count = count;
            this.owner = owner;
        }

        void work() {
            for (int i; (i = next.getAndIncrement()) < count; ) {
                try {
                    if (error == null) task.run(i);
                } catch (Throwable t) {
                    if (error == null) error = t;
                } finally {
                    if (done.incrementAndGet() == count) LockSupport.unpark(owner);
                }
            }
        }

        void awaitDone() {
            long deadline = System.nanoTime() + SPIN_NANOS;
            while (done.get() < count) {
                if (System.nanoTime() < deadline) Thread.onSpinWait();
                else LockSupport.park(this);
            }
        }

        void rethrow() {
            Throwable t = error;
            if (t == null) return;
            if (t instanceof RuntimeException r) throw r;
            if (t instanceof Error e) throw e;
            throw new IllegalStateException(t);
        }
    }
}
