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
 * {@code prometheusLabels.env: prod}). Each Flink job name gets its own exporter: {@code job} is
 * the Flink job name (Beam's {@code --jobName}; with {@code prometheusJobName} configured, the
 * label {@code flink_job}), the TaskManager is the label {@code flink_taskmanager} and, for the
 * Pushgateway, the grouping key {@code instance}. When a job's tasks have all ended, its final
 * values are exported and its exporter is released.
 */
public class FlinkMetricsReporter implements MetricReporter, Scheduled {
  private static final Logger LOG = LoggerFactory.getLogger(FlinkMetricsReporter.class);
  /** How long releasing a finished job's exporter may wait for its last delivery. */
  static final long RELEASE_MILLIS = 10_000;
  /**
   * The pipeline id of every export: a job's exporter is its own (its options name the job), and
   * its snapshot already sums the job's subtasks. Beam's options ids count from 0.
   */
  static final long PIPELINE = -1;

  private static final class Job {
    final String name;
    final String taskManager;
    final FlinkBeamMetrics metrics = new FlinkBeamMetrics();
    long handle;
    boolean warned;

    Job(String name, String taskManager) {
      this.name = name;
      this.taskManager = taskManager;
    }
  }

  /** Options that only the Java side reads; the native exporter refuses names it does not know. */
  private static final java.util.Set<String> JAVA_ONLY =
      new java.util.HashSet<>(java.util.Arrays.asList(
          "prometheusNativeLibraryPath", "prometheusOnNativeLoadFailure", "prometheusIdleCloseSeconds"));

  /**
   * By Flink job name (Beam's --jobName): jobs running under one name are one exporter's series,
   * so their metrics are one snapshot (two snapshots to one exporter would flip a Pushgateway
   * group between them).
   */
  private final Map<String, Job> jobs = new HashMap<>();
  private final List<String[]> options = new ArrayList<>();
  private String libraryPath;
  private char delimiter = '.';

  @Override
  public void open(MetricConfig config) {
    for (String k : config.stringPropertyNames()) {
      if (k.equals("prometheusNativeLibraryPath")) {
        libraryPath = config.getProperty(k);
      } else if (k.startsWith("prometheus") && !JAVA_ONLY.contains(k)) {
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

  private static String jobName(Map<String, String> vars) {
    String name = vars.get("<job_name>");
    return name != null ? name : vars.get("<job_id>");
  }

  @Override
  public synchronized void notifyOfAddedMetric(Metric metric, String metricName, MetricGroup group) {
    Map<String, String> vars = group.getAllVariables();
    String name = jobName(vars);
    FlinkBeamMetrics.Entry e =
        name == null ? null : FlinkBeamMetrics.classify(metric, metricName, vars.get("<operator_name>"), delimiter);
    if (e != null) {
      jobs.computeIfAbsent(name, n -> new Job(n, vars.getOrDefault("<tm_id>", ""))).metrics.add(e);
    }
  }

  @Override
  public synchronized void notifyOfRemovedMetric(Metric metric, String metricName, MetricGroup group) {
    Job job = jobs.get(jobName(group.getAllVariables()));
    if (job != null) {
      job.metrics.remove(metric);
    }
  }

  /**
   * Snapshots are taken under the lock; exporting (a disk buffer may fsync) and releasing the
   * exporter of a job that has ended happen outside it, on this reporter thread: a job's end is
   * rare, and its final delivery is bounded by RELEASE_MILLIS.
   */
  @Override
  public void report() {
    List<Job> toExport = new ArrayList<>();
    List<byte[]> snapshots = new ArrayList<>();
    List<Job> ended = new ArrayList<>();
    synchronized (this) {
      for (Map.Entry<String, Job> it : new ArrayList<>(jobs.entrySet())) {
        Job job = it.getValue();
        toExport.add(job);
        snapshots.add(job.metrics.snapshot(System.currentTimeMillis()));
        if (!job.metrics.hasLive()) {
          jobs.remove(it.getKey());
          ended.add(job);
        }
      }
    }
    for (int i = 0; i < toExport.size(); i++) {
      Job job = toExport.get(i);
      try {
        if (job.handle == 0) {
          job.handle = NativeExporter.acquire(ContractWriter.pairs(jobOptions(job)), libraryPath);
        }
        NativeExporter.export(job.handle, PIPELINE, snapshots.get(i));
      } catch (RuntimeException | LinkageError ex) {
        // A reporter must never fail the TaskManager; say it once per job, keep trying.
        if (!job.warned) {
          job.warned = true;
          LOG.warn("beam-prometheus Flink reporter cannot export job '{}': {}", job.name, ex.toString());
        }
      }
    }
    for (Job job : ended) {
      release(job);
    }
  }

  /** The exporter options of one job: the configured ones, then its job name and TaskManager. */
  private List<String[]> jobOptions(Job job) {
    List<String[]> o = new ArrayList<>();
    boolean hasJob = false;
    boolean hasInstance = false;
    for (String[] p : options) {
      hasJob |= p[0].equals("prometheusJobName");
      hasInstance |= p[0].equals("prometheusGroupingKey.instance");
      // A disk buffer is locked by one exporter: each job gets a directory of its own in it.
      o.add(p[0].equals("prometheusBufferDir")
          ? new String[] {p[0], p[1] + java.io.File.separator + job.name.replaceAll("[^A-Za-z0-9._-]", "_")}
          : p);
    }
    if (hasJob) {
      // One configured job name for every Flink job: the Flink job name keeps them apart.
      o.add(new String[] {"prometheusLabels.flink_job", job.name});
    } else {
      o.add(new String[] {"prometheusJobName", job.name});
    }
    o.add(new String[] {"prometheusLabels.flink_taskmanager", job.taskManager});
    if (!hasInstance) {
      // TaskManagers must not replace each other's Pushgateway group.
      o.add(new String[] {"prometheusGroupingKey.instance", job.taskManager});
    }
    return o;
  }


  private static void release(Job job) {
    if (job.handle != 0) {
      try {
        NativeExporter.release(job.handle, RELEASE_MILLIS);
      } catch (RuntimeException ex) {
        LOG.warn("beam-prometheus Flink reporter: closing job '{}' failed: {}", job.name, ex.toString());
      }
      job.handle = 0;
    }
  }

  /** A last report, then every job's exporter released (final delivery, at most RELEASE_MILLIS each). */
  @Override
  public void close() {
    report();
    List<Job> left;
    synchronized (this) {
      left = new ArrayList<>(jobs.values());
      jobs.clear();
    }
    for (Job job : left) {
      release(job);
    }
  }
}
