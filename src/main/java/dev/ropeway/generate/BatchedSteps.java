package dev.ropeway.generate;

import dev.ropeway.RopewayException;
import dev.ropeway.model.Decoder;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Decode steps of generations running on different threads, combined into batched steps
 * ({@link Decoder#next(List, int[])}): the weights are read once per step for every sequence in it, so several
 * concurrent generations cost little more per step than one, where the matrix products are bound by reading the
 * weights (a decode step usually is).
 *
 * <p>A generation joins at its first step (after its prompt's prefill, which runs on its own) and leaves when it ends
 * ({@link #done}). A step starts when every member has asked for its next token, up to {@code maxBatch} of them, or
 * when the oldest request has waited half the last step's time (at least 0.5 ms, at most 5 ms), so a member that is
 * slow to ask does not hold the others up for long. The thread whose request is waiting runs the step and hands each
 * member its logits. When a batched step fails, its members' steps are run again one by one, so that a failure is
 * reported to the generation it belongs to only.
 */
public final class BatchedSteps implements Generator.Steps {
    private static final long MIN_WAIT_NANOS = TimeUnit.MICROSECONDS.toNanos(500);
    private static final long MAX_WAIT_NANOS = TimeUnit.MILLISECONDS.toNanos(5);

    private final int maxBatch;
    private final long minWait, maxWait;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    private final ArrayDeque<Request> pending = new ArrayDeque<>();
    private final Set<Decoder> members = Collections.newSetFromMap(new IdentityHashMap<>());
    private boolean stepping;
    private long lastStepNanos;
    private final AtomicLong steps = new AtomicLong(), rows = new AtomicLong();

    private static final class Request {
        final Decoder decoder;
        final int token;
        final long arrived = System.nanoTime();
        float[] logits;
        RuntimeException error;
        boolean done;

        Request(Decoder decoder, int token) {
            this.decoder = decoder;
            this.token = token;
        }
    }

    /** Steps of at most {@code maxBatch} sequences. */
    public BatchedSteps(int maxBatch) {
        this(maxBatch, MIN_WAIT_NANOS, MAX_WAIT_NANOS);
    }

    /** As above, waiting for members that have not asked yet between {@code minWaitNanos} and {@code maxWaitNanos}. */
    public BatchedSteps(int maxBatch, long minWaitNanos, long maxWaitNanos) {
        if (maxBatch < 1) throw new IllegalArgumentException("a batch holds at least one sequence, got " + maxBatch);
        if (minWaitNanos < 0 || maxWaitNanos < minWaitNanos)
            throw new IllegalArgumentException("waits must satisfy 0 <= min <= max, got " + minWaitNanos + " and " + maxWaitNanos);
        this.maxBatch = maxBatch;
        this.minWait = minWaitNanos;
        this.maxWait = maxWaitNanos;
        this.lastStepNanos = minWaitNanos;
    }

    /** Appends {@code token} to {@code decoder}'s sequence in the next batched step; returns its next-token logits. */
    @Override
    public float[] next(Decoder decoder, int token) {
        Request r = new Request(decoder, token);
        lock.lock();
        try {
            members.add(decoder);
            pending.add(r);
            changed.signalAll();
            while (!r.done) {
                if (stepping || pending.isEmpty()) {
                    changed.awaitUninterruptibly();
                    continue;
                }
                long now = System.nanoTime();
                long deadline = pending.peekFirst().arrived + Math.clamp(lastStepNanos / 2, minWait, maxWait);
                if (pending.size() >= Math.min(members.size(), maxBatch) || now - deadline >= 0) {
                    lead();
                } else {
                    try {
                        changed.awaitNanos(deadline - now);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }
            }
            if (r.error != null) throw r.error;
            return r.logits;
        } finally {
            lock.unlock();
        }
    }

    /** Called with the lock held: takes the oldest requests, runs their step without the lock, hands out the results. */
    private void lead() {
        List<Request> batch = new ArrayList<>();
        while (!pending.isEmpty() && batch.size() < maxBatch) batch.add(pending.pollFirst());
        stepping = true;
        lock.unlock();
        long start = System.nanoTime();
        try {
            run(batch);
        } finally {
            lock.lock();
            lastStepNanos = System.nanoTime() - start;
            stepping = false;
            for (Request q : batch) {
                if (q.logits == null && q.error == null)
                    q.error = new RopewayException("the decode step of a batch of " + batch.size() + " sequences failed");
                q.done = true;
            }
            changed.signalAll();
        }
    }

    private void run(List<Request> batch) {
        steps.incrementAndGet();
        rows.addAndGet(batch.size());
        List<Decoder> decoders = new ArrayList<>(batch.size());
        int[] ids = new int[batch.size()];
        for (int i = 0; i < ids.length; i++) {
            decoders.add(batch.get(i).decoder);
            ids[i] = batch.get(i).token;
        }
        try {
            List<float[]> logits = Decoder.next(decoders, ids);
            for (int i = 0; i < ids.length; i++) batch.get(i).logits = logits.get(i);
        } catch (RuntimeException e) {
            if (batch.size() == 1) {
                batch.get(0).error = e;
                return;
            }
            // Each on its own, so that only the sequence at fault sees the error.
            for (Request q : batch) {
                try {
                    q.logits = q.decoder.next(q.token);
                } catch (RuntimeException alone) {
                    q.error = alone;
                }
            }
        }
    }

    /**
     * Makes {@code decoder}'s generation a member before its first step (which would make it one anyway): steps wait
     * for it from now on, within the wait bounds, until {@link #done}.
     */
    public void join(Decoder decoder) {
        lock.lock();
        try {
            members.add(decoder);
        } finally {
            lock.unlock();
        }
    }

    /** {@code decoder}'s generation has ended: the next steps no longer wait for it. */
    @Override
    public void done(Decoder decoder) {
        lock.lock();
        try {
            members.remove(decoder);
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Batched steps run so far. */
    public long steps() {
        return steps.get();
    }

    /** Sequence steps run so far (the sum of the batched steps' sizes). */
    public long rows() {
        return rows.get();
    }
}
