package io.beamprometheus;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.AccessDeniedException;
import java.nio.file.DirectoryStream;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Finds the jar's native library for this platform, extracts it into a directory private to the
 * user (named by its content hash, so JVMs of one user share one file per version and nothing is
 * rewritten in place) and loads it. Directories are tried in order until one both takes the file
 * and lets it be mapped executable: {@code -Dbeamprometheus.extract.dir}, {@code java.io.tmpdir},
 * the user's cache directory; so a read-only or {@code noexec} {@code /tmp} falls through to the
 * next. Every failure becomes one {@link NativeLoadException} whose message says why and what to do.
 */
final class NativeLibraryLoader {
  static final String EXTRACT_DIR_PROPERTY = "beamprometheus.extract.dir";
  static final String BASE_NAME = "beam_prometheus";
  /** Platforms whose library the published jar carries (scripts/native.sh). */
  static final List<String> SHIPPED = Arrays.asList("linux-x86_64", "linux-aarch64");
  static final String GLIBC_FLOOR = "2.17";
  static final String FROM_SOURCE =
      "build it from source (Rust toolchain: `cargo build --release --lib` in a checkout of"
          + " beam-prometheus, see README \"Native libraries\") and pass"
          + " --prometheusNativeLibraryPath=/path/to/that/library (or -D"
          + NativeExporter.LIBRARY_PATH_PROPERTY + "=)";
  private static final Set<PosixFilePermission> OWNER_ONLY = PosixFilePermissions.fromString("rwx------");
  private static final Pattern GLIBC_MISSING = Pattern.compile("version [`']GLIBC_([0-9.]+)' not found");

  private NativeLibraryLoader() {}

  /** Where and what to load on one platform. */
  static final class Platform {
    final String id; // e.g. linux-x86_64, the folder under native/ in the jar
    final String fileName;

    Platform(String id, String fileName) {
      this.id = id;
      this.fileName = fileName;
    }

    String resource() {
      return "/native/" + id + "/" + fileName;
    }
  }

  /** The platform of os.name / os.arch as the jar names it. */
  static Platform platform(String osName, String osArch) {
    String os = osName.toLowerCase(Locale.ROOT);
    String arch = osArch.toLowerCase(Locale.ROOT);
    String a = arch.equals("amd64") || arch.equals("x86_64") ? "x86_64" : arch.equals("arm64") || arch.equals("aarch64") ? "aarch64" : arch;
    if (os.contains("mac") || os.contains("darwin")) {
      return new Platform("macos-" + a, "lib" + BASE_NAME + ".dylib");
    }
    if (os.contains("win")) {
      return new Platform("windows-" + a, BASE_NAME + ".dll");
    }
    String name = os.contains("linux") ? "linux" : os.replaceAll("[^a-z0-9]", "");
    return new Platform(name + "-" + a, "lib" + BASE_NAME + ".so");
  }

  static Platform currentPlatform() {
    return platform(System.getProperty("os.name"), System.getProperty("os.arch"));
  }

  /** The directories tried for extraction, in order. */
  static List<Path> candidateDirs() {
    List<Path> dirs = new ArrayList<>();
    String explicit = System.getProperty(EXTRACT_DIR_PROPERTY);
    if (explicit != null && !explicit.isEmpty()) {
      dirs.add(Paths.get(explicit));
    }
    dirs.add(Paths.get(System.getProperty("java.io.tmpdir")));
    String xdg = System.getenv("XDG_CACHE_HOME");
    String home = System.getProperty("user.home");
    if (xdg != null && xdg.startsWith("/")) {
      dirs.add(Paths.get(xdg));
    } else if (home != null && !home.isEmpty() && !home.equals("?")) {
      String os = System.getProperty("os.name").toLowerCase(Locale.ROOT);
      dirs.add(os.contains("mac") ? Paths.get(home, "Library", "Caches") : Paths.get(home, ".cache"));
    }
    return dirs;
  }

  /** Loads the jar's library for this platform; throws NativeLoadException with the reason. */
  static Path loadFromJar() {
    return loadFromJar(currentPlatform(), candidateDirs());
  }

  static Path loadFromJar(Platform platform, List<Path> dirs) {
    byte[] bytes = readResource(platform);
    List<String> attempts = new ArrayList<>();
    for (Path base : dirs) {
      // Twice at most: another JVM of this user loading another version may remove this file
      // between our extraction and our load (removeOtherVersions); extracting again settles it.
      for (int attempt = 0; attempt < 2; attempt++) {
        Path file;
        try {
          file = extract(bytes, platform.fileName, base);
        } catch (IOException | RuntimeException e) {
          attempts.add(base + ": cannot write there (" + e + ")");
          break;
        }
        try {
          loadInThisClassLoader(file, dirs);
          removeOtherVersions(file);
          return file;
        } catch (UnsatisfiedLinkError e) {
          String glibc = glibcNeeded(e.getMessage());
          if (glibc != null) {
            throw new NativeLoadException(glibcMessage(platform, glibc, e.getMessage()), e);
          }
          if (attempt == 0 && !Files.exists(file)) {
            continue;
          }
          // Most often a noexec mount: the next directory may allow mapping it executable.
          attempts.add(file + ": cannot be loaded (" + e.getMessage() + ")");
          break;
        }
      }
    }
    if (platform.id.startsWith("linux-") && systemGlibc() == null && muslLoaderPresent()) {
      throw new NativeLoadException(
          "beam-prometheus' native libraries need glibc " + GLIBC_FLOOR + " or newer and this system"
              + " runs musl libc (e.g. Alpine): use a glibc-based image, or " + FROM_SOURCE
              + ". The loader said: " + String.join("; ", attempts),
          null);
    }
    throw new NativeLoadException(
        "beam-prometheus could not extract and load its native library for " + platform.id
            + "; tried " + String.join("; ", attempts) + ". Point -D" + EXTRACT_DIR_PROPERTY
            + "=/a/writable/dir/without/noexec at a directory that allows executable mappings,"
            + " or install the library and pass --prometheusNativeLibraryPath",
        null);
  }

  /** Loads a library the user built or installed. */
  static void loadPath(String path) {
    Path p = Paths.get(path).toAbsolutePath();
    try {
      loadInThisClassLoader(p, candidateDirs());
    } catch (UnsatisfiedLinkError e) {
      String glibc = glibcNeeded(e.getMessage());
      String why = glibc != null ? glibcMessage(currentPlatform(), glibc, e.getMessage()) : "beam-prometheus could not load the native library " + p + " given by --prometheusNativeLibraryPath / -D" + NativeExporter.LIBRARY_PATH_PROPERTY + ": " + e.getMessage();
      throw new NativeLoadException(why, e);
    }
  }

  /**
   * {@code System.load}, also when another class loader of this JVM loaded the same file before
   * (Flink gives every job a class loader of its own): the JVM refuses a file name that another
   * class loader holds, so this one loads a hard link of the file under a fresh name, in the
   * file's folder or a private one of {@code dirs}, and removes the link at once. The dynamic
   * linker knows the file by device and inode and hands back the library already mapped: one copy
   * in memory, one set of exporters, no file left behind. Only where no hard link can be made (the
   * file on another file system than every writable folder) is it copied, and then loaded as a
   * second copy.
   */
  static void loadInThisClassLoader(Path file, List<Path> dirs) {
    try {
      System.load(file.toString());
      return;
    } catch (UnsatisfiedLinkError e) {
      if (e.getMessage() == null || !e.getMessage().contains("already loaded in another classloader")) {
        throw e;
      }
    }
    List<Path> folders = new ArrayList<>();
    folders.add(file.getParent());
    for (Path base : dirs) {
      try {
        folders.add(privateDir(base));
      } catch (IOException | RuntimeException e) {
        // not usable: the next one
      }
    }
    List<String> attempts = new ArrayList<>();
    for (boolean copy : new boolean[] {false, true}) {
      for (Path folder : folders) {
        if (copy && folder.equals(file.getParent())) {
          continue; // a copy goes to a private folder only
        }
        Path alias = folder.resolve(file.getFileName() + "." + Long.toHexString(System.nanoTime()) + ".loader.tmp");
        try {
          if (copy) {
            Files.copy(file, alias);
          } else {
            Files.createLink(alias, file);
          }
        } catch (IOException | RuntimeException e) {
          attempts.add(alias + ": " + e);
          continue;
        }
        try {
          System.load(alias.toString());
          return;
        } finally {
          try {
            Files.deleteIfExists(alias); // the mapping stays; the name is not needed any more
          } catch (IOException ignored) {
            // best effort
          }
        }
      }
    }
    throw new UnsatisfiedLinkError(
        "Native Library " + file + " is loaded by another class loader of this JVM, and no second"
            + " name for it could be made: " + String.join("; ", attempts));
  }

  private static byte[] readResource(Platform platform) {
    try (InputStream in = NativeLibraryLoader.class.getResourceAsStream(platform.resource())) {
      if (in == null) {
        throw new NativeLoadException(
            "beam-prometheus has no native library for " + platform.id + " in its jar (it carries "
                + String.join(", ", SHIPPED) + ", glibc " + GLIBC_FLOOR + " or newer)"
                + (platform.id.startsWith("linux-") ? "" : "; macOS and Windows libraries are not published")
                + "; " + FROM_SOURCE,
            null);
      }
      ByteArrayOutputStream out = new ByteArrayOutputStream(4 << 20);
      byte[] buf = new byte[64 << 10];
      int n;
      while ((n = in.read(buf)) > 0) {
        out.write(buf, 0, n);
      }
      return out.toByteArray();
    } catch (IOException e) {
      throw new NativeLoadException("beam-prometheus cannot read its native library from the jar: " + e, e);
    }
  }

  /**
   * Puts {@code bytes} at {@code <base>/beam-prometheus-<user>/<name>-<sha256 prefix><ext>}, the
   * folder private to the user (0700, owned by them, or refused). A file already there with the
   * same content is reused; otherwise it is written to a temporary name and moved into place
   * atomically, so concurrent JVMs never see half a file.
   */
  static Path extract(byte[] bytes, String fileName, Path base) throws IOException {
    String hash = sha256(bytes).substring(0, 20);
    int dot = fileName.lastIndexOf('.');
    String target = fileName.substring(0, dot) + "-" + hash + fileName.substring(dot);
    Path dir = privateDir(base);
    Path file = dir.resolve(target);
    if (Files.isRegularFile(file, LinkOption.NOFOLLOW_LINKS) && Arrays.equals(Files.readAllBytes(file), bytes)) {
      return file; // reused: same content, same name
    }
    Path tmp = posix()
        ? Files.createTempFile(dir, target, ".tmp", PosixFilePermissions.asFileAttribute(OWNER_ONLY))
        : Files.createTempFile(dir, target, ".tmp");
    try {
      Files.write(tmp, bytes);
      Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    } finally {
      Files.deleteIfExists(tmp);
    }
    return file;
  }

  /** {@code <base>/beam-prometheus-<user>}: created 0700, or refused unless the user owns it alone. */
  static Path privateDir(Path base) throws IOException {
    String user = System.getProperty("user.name", "user").replaceAll("[^A-Za-z0-9._-]", "_");
    Path dir = base.resolve("beam-prometheus-" + user);
    if (!posix()) {
      return Files.createDirectories(dir);
    }
    if (!Files.exists(dir, LinkOption.NOFOLLOW_LINKS)) {
      Files.createDirectories(base);
      try {
        Files.createDirectory(dir, PosixFilePermissions.asFileAttribute(OWNER_ONLY));
      } catch (java.nio.file.FileAlreadyExistsException raced) {
        // another JVM made it: checked below like any existing one
      }
    }
    if (!Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS)) {
      throw new IOException(dir + " exists and is not a directory");
    }
    String owner = Files.getOwner(dir, LinkOption.NOFOLLOW_LINKS).getName();
    if (!owner.equals(System.getProperty("user.name"))) {
      throw new AccessDeniedException(dir.toString(), null, "owned by " + owner + ", not by this user");
    }
    Set<PosixFilePermission> perms = Files.getPosixFilePermissions(dir, LinkOption.NOFOLLOW_LINKS);
    if (!perms.equals(OWNER_ONLY)) {
      Files.setPosixFilePermissions(dir, OWNER_ONLY); // ours: made private again
    }
    return dir;
  }

  /**
   * Removes the other versions' files left in the private folder. A process that loaded one keeps
   * its mapping on Linux and macOS; on Windows a loaded file cannot be deleted and stays.
   */
  static void removeOtherVersions(Path loaded) {
    String name = loaded.getFileName().toString();
    String prefix = name.substring(0, name.lastIndexOf('-') + 1);
    try (DirectoryStream<Path> files = Files.newDirectoryStream(loaded.getParent(), prefix + "*")) {
      for (Path f : files) {
        // Temporary files may be another JVM's extraction in progress: left alone.
        if (!f.equals(loaded) && !f.getFileName().toString().endsWith(".tmp")) {
          try {
            Files.deleteIfExists(f);
          } catch (IOException inUse) {
            // in use (Windows) or gone: the next load tries again
          }
        }
      }
    } catch (IOException e) {
      // cleanup is best effort; loading succeeded
    }
  }

  /** The glibc version a dlopen error says is missing, or null. */
  static String glibcNeeded(String dlopenError) {
    if (dlopenError == null) {
      return null;
    }
    Matcher m = GLIBC_MISSING.matcher(dlopenError);
    return m.find() ? m.group(1) : null;
  }

  private static String glibcMessage(Platform platform, String needed, String dlopenError) {
    String have = systemGlibc();
    return "beam-prometheus' native library for " + platform.id + " needs glibc " + needed
        + " or newer, and this system has " + (have == null ? "an older one" : "glibc " + have)
        + " (the published jar's libraries need glibc " + GLIBC_FLOOR + "); " + FROM_SOURCE
        + ". The loader said: " + dlopenError;
  }

  /** This system's glibc version, from `getconf GNU_LIBC_VERSION` (only asked when loading failed). */
  static String systemGlibc() {
    try {
      Process p = new ProcessBuilder("getconf", "GNU_LIBC_VERSION").redirectErrorStream(true).start();
      if (!p.waitFor(5, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        return null;
      }
      String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8).trim();
      return p.exitValue() == 0 && out.startsWith("glibc ") ? out.substring(6) : null;
    } catch (IOException e) {
      return null;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return null;
    }
  }

  private static boolean muslLoaderPresent() {
    try (DirectoryStream<Path> libs = Files.newDirectoryStream(Paths.get("/lib"), "ld-musl-*")) {
      return libs.iterator().hasNext();
    } catch (IOException e) {
      return false;
    }
  }

  private static boolean posix() {
    return FileSystems.getDefault().supportedFileAttributeViews().contains("posix");
  }

  static String sha256(byte[] bytes) {
    try {
      StringBuilder sb = new StringBuilder();
      for (byte b : MessageDigest.getInstance("SHA-256").digest(bytes)) {
        sb.append(String.format("%02x", b));
      }
      return sb.toString();
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  /** Loading the native library failed; the message says why and what to do. */
  static final class NativeLoadException extends IllegalStateException {
    NativeLoadException(String message, Throwable cause) {
      super(message, cause);
    }
  }
}
