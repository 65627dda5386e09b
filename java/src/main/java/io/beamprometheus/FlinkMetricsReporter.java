package io.beamprometheus;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.flink.configuration.GlobalConfiguration;
import org.apache.flink.configuration.MetricOptions;
import org.apache.flink.metrics.Metric;
import org.apache.flink.metrics.MetricConfig;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.metrics.reporter.MetricReporter;
import org.apache.flink.metrics.reporter.Scheduled;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A Flink metric reporter that exports the Beam metrics of every job running in this
 * TaskManager, live, from inside the cluster: it works in attached, detached and application
 * mode alike and does not depend on the submitting process. Configured in Flink's configuration:
 *
 * <pre>
 * metrics.reporter.beamprom.factory.class: io.beamprometheus.FlinkMetricsReporterFactory
 * metrics.reporter.beamprom.interval: 5 SECONDS
 * metrics.reporter.beamprom.prometheusRemoteWriteUrl: http://prometheus:9090/api/v1/write
 * </pre>
 *
 * Every {@code prometheus*} key is an exporter option of the same name (map options flattened:
 * {@code prometheusLabels.env: prod}). Each Flink job gets its own exporter: {@code job} is the
 * Flink job name (Beam's {@code --jobName}), the TaskManager is the label
 * {@code flink_taskmanager} and, for the Pushgateway, the grouping key {@code instance}. When a
 * job's tasks end, their last values are exported once more and its exporter is released.
 */
public class FlinkMetricsReporter implements MetricReporter, Scheduled {
  private static final Logger LOG = LoggerFactory.getLogger(FlinkMetricsReporter.class);
  /** How long releasing a finished job's exporter may wait for its last delivery. */
  static final long RELEASE_MILLIS = 10_000;

  private static final class Job {
    final String name;
    final String taskManager;
    final FlinkBeamMetrics metrics = new FlinkBeamMetrics();
    long handle;

    Job(String name, String taskManager) {
      this.name = name;
      this.taskManager = taskManager;
    }
  }

  private final Map<String, Job> jobs = new HashMap<>();
  private final List<String[]> options = new ArrayList<>();
  private String libraryPath;
  private char delimiter = '.';
  private boolean warned;

  @Override
  public void open(MetricConfig config) {
    for (String k : config.stringPropertyNames()) {
      if (k.equals("prometheusNativeLibraryPath")) {
        libraryPath = config.getProperty(k);
      } else if (k.startsWith("prometheus")) {
        options.add(new String[] {k, config.getProperty(k)});
      }
    }
    // Beam names its Flink metrics with the configured scope delimiter (FlinkMetricContainerBase).
    String d = GlobalConfiguration.loadConfiguration().get(MetricOptions.SCOPE_DELIMITER);
    if (d != null && !d.isEmpty()) {
      delimiter = d.charAt(0);
    }
    LOG.info("beam-prometheus Flink reporter: exporting Beam metrics of this process's jobs");
  }

  @Override
  public synchronized void notifyOfAddedMetric(Metric metric, String metricName, MetricGroup group) {
    Map<String, String> vars = group.getAllVariables();
    String jobId = vars.get("<job_id>");
    FlinkBeamMetrics.Entry e =
        jobId == null ? null : FlinkBeamMetrics.classify(metric, metricName, vars.get("<operator_name>"), delimiter);
    if (e != null) {
      jobs.computeIfAbsent(jobId, id -> new Job(vars.getOrDefault("<job_name>", id), vars.getOrDefault("<tm_id>", "")))
          .metrics
          .add(e);
    }
  }

  @Override
  public synchronized void notifyOfRemovedMetric(Metric metric, String metricName, MetricGroup group) {
    Job job = jobs.get(group.getAllVariables().get("<job_id>"));
    if (job != null) {
      job.metrics.remove(metric);
    }
  }

  @Override
  public void report() {
    List<Long> finished = new ArrayList<>();
    synchronized (this) {
      for (Map.Entry<String, Job> it : new ArrayList<>(jobs.entrySet())) {
        Job job = it.getValue();
        try {
          if (!job.metrics.isEmpty()) {
            if (job.handle == 0) {
              job.handle = NativeExporter.acquire(ContractWriter.pairs(jobOptions(job)), libraryPath);
            }
            NativeExporter.export(job.handle, job.metrics.snapshot(System.currentTimeMillis()));
          }
        } catch (RuntimeException | LinkageError ex) {
          // A reporter must never fail the TaskManager; say it once, keep trying.
          if (!warned) {
            warned = true;
            LOG.warn("beam-prometheus Flink reporter cannot export job '{}': {}", job.name, ex.toString());
          }
        }
        if (!job.metrics.hasLive()) {
          jobs.remove(it.getKey());
          if (job.handle != 0) {
            finished.add(job.handle);
          }
        }
      }
    }
    for (long handle : finished) {
      release(handle);
    }
  }

  /** The exporter options of one job: the configured ones, then its job name and TaskManager. */
  private List<String[]> jobOptions(Job job) {
    List<String[]> o = new ArrayList<>();
    boolean hasJob = false;
    boolean hasKey = false;
    for (String[] p : options) {
      hasJob |= p[0].equals("prometheusJobName");
      hasKey |= p[0].startsWith("prometheusGroupingKey.");
      // A disk buffer is locked by one exporter: each job gets a directory of its own in it.
      o.add(p[0].equals("prometheusBufferDir")
          ? new String[] {p[0], p[1] + java.io.File.separator + job.name.replaceAll("[^A-Za-z0-9._-]", "_")}
          : p);
    }
    if (!hasJob) {
      o.add(new String[] {"prometheusJobName", job.name});
    }
    o.add(new String[] {"prometheusLabels.flink_taskmanager", job.taskManager});
    if (!hasKey) {
      o.add(new String[] {"prometheusGroupingKey.instance", job.taskManager});
    }
    return o;
  }

  /** Final delivery off Flink's reporter thread, which must not block (Scheduled's contract). */
  private static void release(long handle) {
    Thread t = new Thread(() -> NativeExporter.release(handle, RELEASE_MILLIS), "beam-prometheus-release");
    t.setDaemon(true);
    t.start();
  }

  @Override
  public void close() {
    report();
    synchronized (this) {
      for (Job job : jobs.values()) {
        if (job.handle != 0) {
          NativeExporter.release(job.handle, RELEASE_MILLIS);
        }
      }
      jobs.clear();
    }
  }
}
