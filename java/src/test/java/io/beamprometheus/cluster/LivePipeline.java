package io.beamprometheus.cluster;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.util.List;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.io.GenerateSequence;
import org.apache.beam.sdk.metrics.Counter;
import org.apache.beam.sdk.metrics.Metrics;
import org.apache.beam.sdk.transforms.DoFn;
import org.apache.beam.sdk.transforms.ParDo;
import org.joda.time.Duration;

/**
 * A streaming pipeline that never ends by itself: an unbounded sequence at a fixed rate, each
 * element counted ({@code beam_ticks_total}) and, for measuring freshness, its counting time
 * appended to a tally file on this machine (line k = when the k-th element was counted). The
 * cluster runs on loopback, so the file is shared between the worker and the test.
 */
public final class LivePipeline {
  public static final String NS = "io.beamprometheus.cluster.LivePipeline";
  public static final String STEP = "Tick/ParMultiDo(Tick)";

  private LivePipeline() {}

  static class Tick extends DoFn<Long, Long> {
    private final Counter ticks = Metrics.counter(NS, "ticks");
    private final String tally;

    Tick(String tally) {
      this.tally = tally;
    }

    @ProcessElement
    public void process(@Element Long x, OutputReceiver<Long> out) throws IOException {
      ticks.inc();
      Files.write(
          Paths.get(tally),
          (System.currentTimeMillis() + "\n").getBytes(StandardCharsets.US_ASCII),
          StandardOpenOption.CREATE,
          StandardOpenOption.APPEND);
      out.output(x);
    }
  }

  /** Unbounded: {@code perSecond} elements a second until the job is cancelled. */
  public static Pipeline build(Pipeline p, int perSecond, Path tally) {
    p.apply("Sequence", GenerateSequence.from(0).withRate(perSecond, Duration.standardSeconds(1)))
        .apply("Tick", ParDo.of(new Tick(tally.toString())));
    return p;
  }

  /** The counting times of the elements so far, in order (line k: the k-th element). */
  public static long[] tally(Path tally) throws IOException {
    if (!Files.exists(tally)) {
      return new long[0];
    }
    List<String> lines = Files.readAllLines(tally, StandardCharsets.US_ASCII);
    return lines.stream().filter(s -> !s.isEmpty()).mapToLong(Long::parseLong).toArray();
  }
}
