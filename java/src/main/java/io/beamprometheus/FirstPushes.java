package io.beamprometheus;

import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The first pushes still due from this class loader's sinks that were built once their pipeline
 * had ended. Beam's Flink runner starts MetricsPusher only when an attached job has ended; its
 * push of the final values runs at once on a daemon thread and races a {@code main} that returns,
 * and the JVM exit that closes the exporters. A poller's {@code finish} and the exit hook wait
 * here for those pushes, always bounded.
 */
final class FirstPushes {
  private static final Logger LOG = LoggerFactory.getLogger(FirstPushes.class);
  /** Sinks remembered: a JVM's recent ones; an older one has long pushed or been given up. */
  static final int REMEMBERED = 1024;
  /** How long the exit hook waits for the first pushes still due. */
  static final long FIRST_PUSH_AT_EXIT_MILLIS = 3_000;

  private static long lastSink;
  /** Sink id to its pipeline's id, for sinks whose first push is due. */
  private static final Map<Long, Long> DUE = new LinkedHashMap<>();

  private FirstPushes() {}

  /** A sink of {@code pipeline} built once the pipeline has ended: its id, for {@link #done}. */
  static synchronized long firstPushDue(long pipeline) {
    long sink = ++lastSink;
    DUE.put(sink, pipeline);
    if (DUE.size() > REMEMBERED) {
      Iterator<Long> eldest = DUE.keySet().iterator();
      eldest.next();
      eldest.remove();
      FirstPushes.class.notifyAll(); // whoever waited for it stops waiting
    }
    return sink;
  }

  /** The sink pushed (or failed to), or will not push any more (closed, released when idle). */
  static void done(long sink) {
    if (sink != 0) {
      doneDue(sink);
    }
  }

  private static synchronized void doneDue(long sink) {
    if (DUE.remove(sink) != null) {
      FirstPushes.class.notifyAll();
    }
  }

  /** The newest sink of {@code pipeline} whose first push is due, or 0. */
  static synchronized long newestDue(long pipeline) {
    long newest = 0;
    for (Map.Entry<Long, Long> e : DUE.entrySet()) {
      if (e.getValue() == pipeline) {
        newest = e.getKey();
      }
    }
    return newest;
  }

  static synchronized boolean due(long sink) {
    return DUE.containsKey(sink);
  }

  /** Waits until the first push of {@code sink} is no longer due, at most {@code timeoutMillis}; false if it still is. */
  static synchronized boolean awaitFirstPush(long sink, long timeoutMillis) {
    return awaitWhile(() -> DUE.containsKey(sink), timeoutMillis);
  }

  /** The exit hook's wait: until no first push is due, at most {@code timeoutMillis}. */
  static synchronized boolean awaitFirstPushes(long timeoutMillis) {
    if (awaitWhile(() -> !DUE.isEmpty(), timeoutMillis)) {
      return true;
    }
    LOG.warn(
        "the JVM exits before Beam's MetricsPusher's first push from {} sink(s){}",
        DUE.size(), Thread.currentThread().isInterrupted() ? " (interrupted)" : " within " + timeoutMillis + " ms");
    return false;
  }

  /** Under the class lock; false at the deadline or on interrupt (the interrupt is kept). */
  private static boolean awaitWhile(java.util.function.BooleanSupplier pending, long timeoutMillis) {
    long deadline = System.currentTimeMillis() + timeoutMillis;
    while (pending.getAsBoolean()) {
      long left = deadline - System.currentTimeMillis();
      if (left <= 0 || Thread.currentThread().isInterrupted()) {
        return false;
      }
      try {
        FirstPushes.class.wait(left);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return false;
      }
    }
    return true;
  }
}
