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
            return t;
          });

  static {
    TIMER.setRemoveOnCancelPolicy(true);
    TIMER.setKeepAliveTime(5, TimeUnit.SECONDS);
    TIMER.allowCoreThreadTimeOut(true);
  }

  private IdleExpiry() {}

  /** Runs {@code check} every {@code periodMillis} until the returned future is cancelled. */
  static ScheduledFuture<?> watch(Runnable check, long periodMillis) {
    return TIMER.scheduleWithFixedDelay(check, periodMillis, periodMillis, TimeUnit.MILLISECONDS);
  }
}
