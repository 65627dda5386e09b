package io.beamprometheus;

import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

/**
 * One timer thread that checks sinks for idleness (see {@link PrometheusMetricsSink}); it ends
 * on its own once no sink is watched, so a finished job's classloader is not kept alive by it.
 */
final class IdleExpiry {
  private static final ScheduledThreadPoolExecutor TIMER =
      new ScheduledThreadPoolExecutor(
          1,
          r -> {
            Thread t = new Thread(r, "beam-prometheus-idle");
            t.setDaemon(true);
            t.setContextClassLoader(null); // not pinning the class loader of whoever started it
            return t;
          });

  static {
    TIMER.setRemoveOnCancelPolicy(true);
    TIMER.setKeepAliveTime(1, TimeUnit.SECONDS);
    TIMER.allowCoreThreadTimeOut(true);
  }

  private IdleExpiry() {}

  /** Runs a release (final delivery, up to its budget) on a short-lived daemon thread of its own. */
  static void release(Runnable release) {
    Thread t = new Thread(release, "beam-prometheus-release");
    t.setDaemon(true);
    t.setContextClassLoader(null); // a thread must not pin the job's class loader while it runs
    t.start();
  }

  /** Runs {@code check} every {@code periodMillis} until the returned future is cancelled. */
  static ScheduledFuture<?> watch(Runnable check, long periodMillis) {
    return TIMER.scheduleWithFixedDelay(check, periodMillis, periodMillis, TimeUnit.MILLISECONDS);
  }
}
