package io.beamprometheus;

import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The writes of this class loader's sinks, per pipeline. Beam's MetricsPusher pushes a pipeline's
 * final values from a daemon thread after the pipeline has ended (Flink: it is started only when
 * an attached job has ended; Spark: at its next period), racing a {@code main} that returns and the
 * JVM exit that closes the exporters. A poller's {@code finish} and the exit hook wait here for
 * that push, always bounded.
 */
final class SinkWrites {
  private static final Logger LOG = LoggerFactory.getLogger(SinkWrites.class);
  /** Pipelines remembered: a JVM's recent ones; a pipeline that old has long been exported. */
  static final int REMEMBERED = 1024;
  /** How long the exit hook waits for the first push of sinks built after their pipeline ended. */
  static final long FIRST_PUSH_AT_EXIT_MILLIS = 3_000;

  /** Pipeline id to the start time of its newest write that has reached the exporter. */
  private static final Map<Long, Long> LAST_WRITE =
      new LinkedHashMap<Long, Long>() {
        @Override
        protected boolean removeEldestEntry(Map.Entry<Long, Long> eldest) {
          return size() > REMEMBERED;
        }
      };
  /** Pipelines whose sink was built after they ended (attached Flink) and has not written yet. */
  private static final Set<Long> FIRST_PUSH_DUE = new LinkedHashSet<>();

  private SinkWrites() {}

  /**
   * A sink of {@code pipeline} built once the pipeline has ended: its first push is due at once,
   * unless a sink of the pipeline has pushed already (a second sink, e.g. one built for stats).
   */
  static synchronized void firstPushDue(long pipeline) {
    if (LAST_WRITE.containsKey(pipeline)) {
      return;
    }
    FIRST_PUSH_DUE.add(pipeline);
    if (FIRST_PUSH_DUE.size() > REMEMBERED) {
      Iterator<Long> eldest = FIRST_PUSH_DUE.iterator();
      eldest.next();
      eldest.remove();
    }
  }

  /** A write of {@code pipeline} begun at {@code startedMillis} has been handed to the exporter. */
  static synchronized void written(long pipeline, long startedMillis) {
    LAST_WRITE.merge(pipeline, startedMillis, Math::max);
    FIRST_PUSH_DUE.remove(pipeline);
    SinkWrites.class.notifyAll();
  }

  /** The sink will not write any more (closed, or released when idle): nothing to wait for. */
  static synchronized void gone(long pipeline) {
    if (FIRST_PUSH_DUE.remove(pipeline)) {
      SinkWrites.class.notifyAll();
    }
  }

  /**
   * Waits until a write of {@code pipeline} begun at or after {@code sinceMillis} has reached the
   * exporter, at most {@code timeoutMillis}; false on timeout.
   */
  static synchronized boolean awaitWrite(long pipeline, long sinceMillis, long timeoutMillis) {
    long deadline = System.currentTimeMillis() + timeoutMillis;
    while (true) {
      Long last = LAST_WRITE.get(pipeline);
      if (last != null && last >= sinceMillis) {
        return true;
      }
      long left = deadline - System.currentTimeMillis();
      if (left <= 0 || !waitUpTo(left)) {
        return false;
      }
    }
  }

  /**
   * The exit hook's wait: until every sink built after its pipeline ended has written once, at
   * most {@code timeoutMillis}. A pipeline without metrics is never pushed by MetricsPusher, and
   * costs the exit this bound.
   */
  static synchronized boolean awaitFirstPushes(long timeoutMillis) {
    long deadline = System.currentTimeMillis() + timeoutMillis;
    while (!FIRST_PUSH_DUE.isEmpty()) {
      long left = deadline - System.currentTimeMillis();
      if (left <= 0 || !waitUpTo(left)) {
        LOG.warn(
            "the JVM exits before Beam's MetricsPusher pushed the final metrics of {} pipeline(s) within {} ms",
            FIRST_PUSH_DUE.size(), timeoutMillis);
        return false;
      }
    }
    return true;
  }

  /** Under the class lock; false when interrupted (the interrupt is kept). */
  private static boolean waitUpTo(long millis) {
    try {
      SinkWrites.class.wait(millis);
      return true;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return false;
    }
  }
}
