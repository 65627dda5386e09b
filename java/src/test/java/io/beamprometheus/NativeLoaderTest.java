package io.beamprometheus;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;
import static org.junit.Assume.assumeTrue;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.attribute.FileTime;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/**
 * The loader: platform names, the private content-named extraction, and, in child JVMs (a library
 * loads once per JVM), what sinks and pollers do when no library fits: a missing platform, a glibc
 * too old, blocked, read-only and noexec temp directories; FAIL and DISABLE.
 */
public class NativeLoaderTest {
  @Rule public TemporaryFolder tmp = new TemporaryFolder();

  private static final String USER = System.getProperty("user.name");
  private static final String REMOTE = "--prometheusRemoteWriteUrl=http://127.0.0.1:9/api/v1/write";

  @Test
  public void platformsAreNamedAsInTheJar() {
    assertEquals("linux-x86_64", NativeLibraryLoader.platform("Linux", "amd64").id);
    assertEquals("linux-aarch64", NativeLibraryLoader.platform("Linux", "aarch64").id);
    assertEquals("/native/linux-aarch64/libbeam_prometheus.so", NativeLibraryLoader.platform("Linux", "aarch64").resource());
    assertEquals("macos-aarch64", NativeLibraryLoader.platform("Mac OS X", "aarch64").id);
    assertEquals("libbeam_prometheus.dylib", NativeLibraryLoader.platform("Mac OS X", "x86_64").fileName);
    assertEquals("windows-x86_64", NativeLibraryLoader.platform("Windows 11", "amd64").id);
    assertEquals("beam_prometheus.dll", NativeLibraryLoader.platform("Windows 11", "amd64").fileName);
    assertEquals("linux-riscv64", NativeLibraryLoader.platform("Linux", "riscv64").id);
  }

  @Test
  public void theBuiltJarResourcesHoldBothLinuxLibraries() {
    for (String arch : new String[] {"x86_64", "aarch64"}) {
      String r = NativeLibraryLoader.platform("Linux", arch).resource();
      assertTrue(r + " on the classpath", NativeLibraryLoader.class.getResource(r) != null);
    }
  }

  @Test
  public void extractionIsPrivateNamedByContentAndReused() throws IOException {
    byte[] v1 = "library version one".getBytes(StandardCharsets.UTF_8);
    Path base = tmp.newFolder("base").toPath();
    Path f1 = NativeLibraryLoader.extract(v1, "libbeam_prometheus.so", base);
    assertEquals(base.resolve("beam-prometheus-" + USER), f1.getParent());
    assertEquals("libbeam_prometheus-" + NativeLibraryLoader.sha256(v1).substring(0, 20) + ".so", f1.getFileName().toString());
    assertEquals("rwx------", PosixFilePermissions.toString(Files.getPosixFilePermissions(f1.getParent())));
    String filePerms = PosixFilePermissions.toString(Files.getPosixFilePermissions(f1));
    assertTrue(filePerms, filePerms.endsWith("------"));
    assertArrayEquals(v1, Files.readAllBytes(f1));

    // Same content: the same file, not written again (its old timestamp stays).
    FileTime old = FileTime.fromMillis(1_000_000_000_000L);
    Files.setLastModifiedTime(f1, old);
    assertEquals(f1, NativeLibraryLoader.extract(v1, "libbeam_prometheus.so", base));
    assertEquals(old, Files.getLastModifiedTime(f1));

    // Other content: another file beside it.
    byte[] v2 = "library version two".getBytes(StandardCharsets.UTF_8);
    Path f2 = NativeLibraryLoader.extract(v2, "libbeam_prometheus.so", base);
    assertNotEquals(f1, f2);
    assertArrayEquals(v2, Files.readAllBytes(f2));

    // A damaged file under the right name is replaced, not loaded.
    Files.write(f1, "truncat".getBytes(StandardCharsets.UTF_8));
    assertEquals(f1, NativeLibraryLoader.extract(v1, "libbeam_prometheus.so", base));
    assertArrayEquals(v1, Files.readAllBytes(f1));
    // Nothing else is left behind (no temporary files).
    assertEquals(2, f1.getParent().toFile().list().length);
  }

  @Test
  public void aPrivateFolderOpenedUpIsMadePrivateAgain() throws IOException {
    Path base = tmp.newFolder("open").toPath();
    Path dir = Files.createDirectory(base.resolve("beam-prometheus-" + USER));
    Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxrwxrwx"));
    NativeLibraryLoader.extract(new byte[] {1, 2, 3}, "libbeam_prometheus.so", base);
    assertEquals("rwx------", PosixFilePermissions.toString(Files.getPosixFilePermissions(dir)));
  }

  @Test
  public void aFolderOfAnotherUserIsRefused() throws IOException {
    assumeTrue("needs root to give a folder away", "root".equals(USER));
    Path base = tmp.newFolder("shared").toPath();
    Path dir = Files.createDirectory(base.resolve("beam-prometheus-" + USER));
    Files.setOwner(dir, dir.getFileSystem().getUserPrincipalLookupService().lookupPrincipalByName("nobody"));
    try {
      NativeLibraryLoader.extract(new byte[] {1}, "libbeam_prometheus.so", base);
      fail("extracted into a folder owned by nobody");
    } catch (AccessDeniedException e) {
      assertTrue(e.getMessage(), e.getMessage().contains("owned by nobody"));
    }
  }

  @Test
  public void otherVersionsAreRemovedAfterLoading() throws IOException {
    Path dir = tmp.newFolder("versions").toPath();
    Path loaded = Files.write(dir.resolve("libbeam_prometheus-bbbb.so"), new byte[] {2});
    Files.write(dir.resolve("libbeam_prometheus-aaaa.so"), new byte[] {1});
    Files.write(dir.resolve("unrelated.txt"), new byte[] {3});
    Files.write(dir.resolve("libbeam_prometheus-cccc.so123.tmp"), new byte[] {4}); // another JVM writing
    NativeLibraryLoader.removeOtherVersions(loaded);
    assertEquals(Arrays.asList("libbeam_prometheus-bbbb.so", "libbeam_prometheus-cccc.so123.tmp", "unrelated.txt"),
        Arrays.stream(dir.toFile().list()).sorted().collect(Collectors.toList()));
  }

  @Test
  public void noLibraryForThePlatformFailsSinkAndPollerWithOneClearMessage() throws Exception {
    List<String> out = probe(Arrays.asList("-Dos.arch=riscv64"), null, REMOTE);
    for (String who : new String[] {"sink1", "sink2", "poller"}) {
      String line = line(out, who);
      assertTrue(line, line.startsWith(who + " FAILED io.beamprometheus.NativeLibraryLoader$NativeLoadException"));
      assertTrue(line, line.contains("no native library for linux-riscv64 in its jar (it carries linux-x86_64, linux-aarch64, glibc 2.17 or newer)"));
      assertTrue(line, line.contains("build it from source"));
      assertTrue(line, line.contains("--prometheusNativeLibraryPath"));
      assertTrue(line, line.contains("set --prometheusOnNativeLoadFailure=DISABLE"));
    }
  }

  @Test
  public void disableLogsOnceAndSinksAndPollerExportNothing() throws Exception {
    List<String> out = probe(Arrays.asList("-Dos.arch=riscv64"), null, REMOTE, "--prometheusOnNativeLoadFailure=DISABLE");
    assertEquals("sink1 BUILT active=false", line(out, "sink1"));
    assertEquals("sink2 BUILT active=false", line(out, "sink2"));
    assertEquals("poller BUILT active=false", line(out, "poller"));
    List<String> logged = out.stream().filter(l -> l.contains("metrics are not exported")).collect(Collectors.toList());
    assertEquals(out.toString(), 1, logged.size());
    assertTrue(logged.get(0), logged.get(0).contains("ERROR") && logged.get(0).contains("linux-riscv64"));
  }

  @Test
  public void aBadValueOfTheOptionIsRefused() throws Exception {
    List<String> out = probe(Arrays.asList("-Dos.arch=riscv64"), null, "--prometheusOnNativeLoadFailure=SOMETIMES");
    assertTrue(out.toString(), out.stream().anyMatch(l -> l.contains("SOMETIMES") && l.contains("OnNativeLoadFailure")));
  }

  /** A real dlopen failure: our library with its GLIBC_2.17 requirement rewritten to 2.99. */
  @Test
  public void aGlibcTooOldIsNamedWithTheVersionsOnBothSides() throws Exception {
    assumeTrue(NativeLibraryLoader.currentPlatform().id.equals("linux-x86_64"));
    byte[] lib = NativeLibraryLoader.class.getResourceAsStream("/native/linux-x86_64/libbeam_prometheus.so").readAllBytes();
    byte[] from = "GLIBC_2.17\0".getBytes(StandardCharsets.US_ASCII);
    byte[] to = "GLIBC_2.99\0".getBytes(StandardCharsets.US_ASCII);
    int at = indexOf(lib, from);
    assertTrue("the library requires GLIBC_2.17 symbols", at >= 0);
    System.arraycopy(to, 0, lib, at, to.length);
    Path patched = Files.write(tmp.newFile("libbeam_prometheus_glibc299.so").toPath(), lib);
    List<String> out = probe(new ArrayList<>(), null, REMOTE, "--prometheusNativeLibraryPath=" + patched);
    String line = line(out, "sink1");
    assertTrue(line, line.contains("needs glibc 2.99 or newer, and this system has glibc " + NativeLibraryLoader.systemGlibc()));
    assertTrue(line, line.contains("version `GLIBC_2.99' not found"));
    assertTrue(line, line.contains("build it from source"));
  }

  @Test
  public void aTempDirThatCannotBeWrittenFallsBackToTheCacheDir() throws Exception {
    File cache = tmp.newFolder("cache");
    List<String> out = probe(Arrays.asList("-Djava.io.tmpdir=/proc/version/tmp"), cache, REMOTE);
    assertEquals("sink1 BUILT active=true", line(out, "sink1"));
    assertEquals("poller BUILT active=true", line(out, "poller"));
    String files = line(out, "FILES " + cache);
    assertTrue(files, files.matches(".*\\[libbeam_prometheus-[0-9a-f]{20}\\.so\\]"));
  }

  @Test
  public void noUsableDirectoryGivesOneClearMessage() throws Exception {
    List<String> out = probe(Arrays.asList("-Djava.io.tmpdir=/proc/version/tmp"), new File("/proc/version/cache"), REMOTE);
    String line = line(out, "sink1");
    assertTrue(line, line.contains("could not extract and load its native library for linux-"));
    assertTrue(line, line.contains("/proc/version/tmp: cannot write there"));
    assertTrue(line, line.contains("/proc/version/cache: cannot write there"));
    assertTrue(line, line.contains("-Dbeamprometheus.extract.dir="));
  }

  /** /tmp mounted noexec (in a mount namespace of the child's own): the cache dir takes over. */
  @Test
  public void aNoexecTempDirFallsBackToTheCacheDir() throws Exception {
    assumeTrue("needs unshare -m (root)", canUnshare());
    File t = tmp.newFolder("noexec");
    File cache = tmp.newFolder("cache");
    List<String> out = probeMounted("noexec", t, cache);
    assertEquals("sink1 BUILT active=true", line(out, "sink1"));
    // It went to the noexec dir first (the file is there), could not map it, and loaded from the cache.
    assertTrue(line(out, "FILES " + t), line(out, "FILES " + t).contains("libbeam_prometheus-"));
    assertTrue(line(out, "FILES " + cache), line(out, "FILES " + cache).contains("libbeam_prometheus-"));
  }

  @Test
  public void aReadOnlyTempDirFallsBackToTheCacheDir() throws Exception {
    assumeTrue("needs unshare -m (root)", canUnshare());
    File t = tmp.newFolder("ro");
    File cache = tmp.newFolder("cache");
    List<String> out = probeMounted("ro", t, cache);
    assertEquals("sink1 BUILT active=true", line(out, "sink1"));
    assertEquals("FILES " + t + " -", line(out, "FILES " + t));
    assertTrue(line(out, "FILES " + cache), line(out, "FILES " + cache).contains("libbeam_prometheus-"));
  }

  @Test
  public void noexecEverywhereGivesOneClearMessage() throws Exception {
    assumeTrue("needs unshare -m (root)", canUnshare());
    File t = tmp.newFolder("noexec-only");
    List<String> out = probeMounted("noexec", t, new File("/proc/version/cache"));
    String line = line(out, "sink1");
    assertTrue(line, line.contains("cannot be loaded (") && line.contains("failed to map segment"));
    assertTrue(line, line.contains("-Dbeamprometheus.extract.dir="));
  }

  // --- child JVMs ---

  private static boolean canUnshare() throws Exception {
    Process p = new ProcessBuilder("unshare", "-m", "true").redirectErrorStream(true).start();
    return p.waitFor(10, TimeUnit.SECONDS) && p.exitValue() == 0;
  }

  /** The probe in a child JVM whose java.io.tmpdir is a fresh tmpfs mounted with {@code flag}. */
  private List<String> probeMounted(String flag, File tmpDir, File cache) throws Exception {
    List<String> cmd = new ArrayList<>(Arrays.asList("unshare", "-m", "sh", "-c",
        "mount -t tmpfs -o " + flag + ",mode=1777 tmpfs \"$0\" && exec \"$@\"", tmpDir.getPath()));
    cmd.addAll(javaCommand(Arrays.asList("-Djava.io.tmpdir=" + tmpDir), REMOTE));
    return run(cmd, cache);
  }

  private List<String> probe(List<String> jvmArgs, File cache, String... args) throws Exception {
    return run(javaCommand(jvmArgs, args), cache != null ? cache : tmp.newFolder());
  }

  private static List<String> javaCommand(List<String> jvmArgs, String... args) {
    List<String> cmd = new ArrayList<>();
    cmd.add(Paths.get(System.getProperty("java.home"), "bin", "java").toString());
    cmd.addAll(jvmArgs);
    cmd.add("-cp");
    cmd.add(System.getProperty("java.class.path"));
    cmd.add(NativeLoadProbe.class.getName());
    cmd.addAll(Arrays.asList(args));
    return cmd;
  }

  private List<String> run(List<String> cmd, File cache) throws Exception {
    File log = tmp.newFile();
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log);
    pb.environment().put("XDG_CACHE_HOME", cache.getPath());
    Process p = pb.start();
    if (!p.waitFor(90, TimeUnit.SECONDS)) {
      p.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
      fail("probe did not finish within 90 s: " + cmd);
    }
    return Files.readAllLines(log.toPath(), StandardCharsets.UTF_8);
  }

  private static String line(List<String> out, String prefix) {
    return out.stream().filter(l -> l.startsWith(prefix)).findFirst().orElseThrow(() -> new AssertionError("no line " + prefix + " in " + out));
  }

  private static int indexOf(byte[] hay, byte[] needle) {
    outer:
    for (int i = 0; i + needle.length <= hay.length; i++) {
      for (int j = 0; j < needle.length; j++) {
        if (hay[i + j] != needle[j]) {
          continue outer;
        }
      }
      return i;
    }
    return -1;
  }
}
