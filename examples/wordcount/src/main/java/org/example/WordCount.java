package org.example;

import io.beamprometheus.PrometheusMetricsPoller;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.io.TextIO;
import org.apache.beam.sdk.metrics.Counter;
import org.apache.beam.sdk.metrics.Distribution;
import org.apache.beam.sdk.metrics.Metrics;
import org.apache.beam.sdk.options.Default;
import org.apache.beam.sdk.options.Description;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.options.Validation.Required;
import org.apache.beam.sdk.transforms.Count;
import org.apache.beam.sdk.transforms.DoFn;
import org.apache.beam.sdk.transforms.MapElements;
import org.apache.beam.sdk.transforms.ParDo;
import org.apache.beam.sdk.values.KV;
import org.apache.beam.sdk.values.TypeDescriptors;

/**
 * Beam's WordCount with its metrics exported to Prometheus. The exporter's options
 * (--prometheusRemoteWriteUrl, --prometheusPushgatewayUrl, ...) are registered by the
 * beam-prometheus jar, so they parse like any other option.
 *
 * <p>On runners with Beam's MetricsPusher (Flink, Spark) pass
 * --metricsSink=io.beamprometheus.PrometheusMetricsSink; on the others (direct, Dataflow, ...) the
 * poller below exports. With the sink set on a MetricsPusher runner the poller does not poll (it
 * only makes sure the final values are out before main returns), so the same main works everywhere.
 */
public class WordCount {
  /** Splits lines into words, counting words and empty lines and measuring line lengths. */
  static class ExtractWordsFn extends DoFn<String, String> {
    private final Counter words = Metrics.counter(ExtractWordsFn.class, "words");
    private final Counter emptyLines = Metrics.counter(ExtractWordsFn.class, "empty_lines");
    private final Distribution lineLength = Metrics.distribution(ExtractWordsFn.class, "line_length");

    @ProcessElement
    public void processElement(@Element String line, OutputReceiver<String> out) {
      lineLength.update(line.length());
      if (line.trim().isEmpty()) {
        emptyLines.inc();
      }
      for (String word : line.split("[^\\p{L}]+")) {
        if (!word.isEmpty()) {
          words.inc();
          out.output(word);
        }
      }
    }
  }

  public interface WordCountOptions extends PipelineOptions {
    @Description("Path of the file to read from")
    @Required
    String getInputFile();

    void setInputFile(String value);

    @Description("Path prefix of the files to write to")
    @Default.String("counts")
    String getOutput();

    void setOutput(String value);
  }

  public static void main(String[] args) {
    WordCountOptions options = PipelineOptionsFactory.fromArgs(args).withValidation().as(WordCountOptions.class);
    Pipeline p = Pipeline.create(options);
    p.apply("ReadLines", TextIO.read().from(options.getInputFile()))
        .apply("ExtractWords", ParDo.of(new ExtractWordsFn()))
        .apply(Count.perElement())
        .apply("FormatResults",
            MapElements.into(TypeDescriptors.strings())
                .via((KV<String, Long> wordCount) -> wordCount.getKey() + ": " + wordCount.getValue()))
        .apply("WriteCounts", TextIO.write().to(options.getOutput()));
    PipelineResult result = p.run();
    // Exports every --metricsPushPeriod seconds until the pipeline ends, then once more.
    PipelineResult.State state = PrometheusMetricsPoller.exportUntilFinish(result, options);
    System.out.println("pipeline finished: " + state);
  }
}
