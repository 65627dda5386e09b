package io.beamprometheus;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

import java.util.Arrays;
import java.util.Collections;
import java.util.EnumSet;
import org.junit.Test;

/**
 * BeamApi on the Beam the tests compile against (2.70.0); the version matrix (build.gradle) runs
 * the same lookups on each release from 2.49.0 to 2.73.0.
 */
public class BeamApiTest {
  @Test
  public void beam270OffersEveryKindAndLacksNothing() {
    assertEquals("2.70.0", BeamApi.VERSION);
    assertEquals(EnumSet.allOf(BeamApi.Kind.class), BeamApi.KINDS);
    assertEquals(Collections.emptyList(), BeamApi.MISSING);
    assertTrue(BeamApi.LABELS != null);
    BeamApi.requireSupported();
  }

  @Test
  public void olderThanTheOldestSupportedIsRefusedNamingBoth() {
    assertEquals(
        "beam-prometheus supports Apache Beam 2.50.0 and newer; the classpath has Beam 2.49.0",
        BeamApi.problem("2.49.0", Collections.emptyList()));
    assertEquals(
        "beam-prometheus supports Apache Beam 2.50.0 and newer; the classpath has Beam 1.99.9",
        BeamApi.problem("1.99.9", Collections.emptyList()));
    assertNull(BeamApi.problem("2.50.0", Collections.emptyList()));
    assertNull(BeamApi.problem("2.73.0", Collections.emptyList()));
    assertNull(BeamApi.problem("3.0.0", Collections.emptyList()));
    // Development builds and unreadable versions are judged by their API alone.
    assertNull(BeamApi.problem("2.74.0-SNAPSHOT", Collections.emptyList()));
    assertNull(BeamApi.problem("unknown", Collections.emptyList()));
  }

  @Test
  public void aMissingAccessorIsRefusedNamingItAndTheVersion() {
    assertEquals(
        "beam-prometheus supports Apache Beam 2.50.0 and newer; the Beam on the classpath (2.80.0) lacks"
            + " MetricQueryResults.getGauges(), GaugeResult.getTimestamp()",
        BeamApi.problem("2.80.0", Arrays.asList("MetricQueryResults.getGauges()", "GaugeResult.getTimestamp()")));
  }

  @Test
  public void releaseNumbersCompareNumerically() {
    assertTrue(BeamApi.compare("2.9.0", "2.50.0") < 0);
    assertTrue(BeamApi.compare("2.100.0", "2.50.0") > 0);
    assertEquals(0, BeamApi.compare("2.50.0", "2.50.0"));
    assertTrue(BeamApi.compare("2.50.1", "2.50.0") > 0);
  }
}
