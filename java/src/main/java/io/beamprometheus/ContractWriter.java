package io.beamprometheus;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;

/**
 * Writes the primitives of the binary contract (CONTRACT.md): big-endian integers and a string
 * table that stores each distinct string once.
 */
final class ContractWriter {
  /**
   * A growable byte buffer. Not ByteArrayOutputStream: its write methods are synchronized, and
   * a lock per byte made up most of the encoding time.
   */
  private static final class Buf {
    byte[] buf;
    int count;

    Buf(int size) {
      buf = new byte[size];
    }

    private void room(int n) {
      if (buf.length - count < n) {
        buf = Arrays.copyOf(buf, Math.max(buf.length * 2, count + n));
      }
    }

    void u8(int v) {
      room(1);
      buf[count++] = (byte) v;
    }

    void u32(int v) {
      room(4);
      buf[count++] = (byte) (v >>> 24);
      buf[count++] = (byte) (v >>> 16);
      buf[count++] = (byte) (v >>> 8);
      buf[count++] = (byte) v;
    }

    void bytes(byte[] b) {
      room(b.length);
      System.arraycopy(b, 0, buf, count, b.length);
      count += b.length;
    }

    void appendTo(Buf out) {
      out.room(count);
      System.arraycopy(buf, 0, out.buf, out.count, count);
      out.count += count;
    }
  }

  /**
   * String to table index, open addressing over flat arrays. Not HashMap: the lookup is most of
   * the encoding, and a HashMap's nodes and boxed indices, scattered over the heap once the
   * collector has moved them, made a kept table slower than a fresh one at 100k series.
   */
  private static final class Index {
    private String[] keys = new String[1024];
    private int[] hashes = new int[1024];
    private int[] ids = new int[1024];
    private int size;

    /** Fibonacci hashing: the product's top bits, as many as the table has index bits. */
    private static int slot(int hash, int mask) {
      return (hash * 0x9E3779B9) >>> (32 - Integer.bitCount(mask)) & mask;
    }

    /** The index of {@code s}, or -1. */
    int get(String s) {
      int h = s.hashCode();
      int mask = keys.length - 1;
      for (int i = slot(h, mask); ; i = (i + 1) & mask) {
        String k = keys[i];
        if (k == null) {
          return -1;
        }
        if (k == s || (hashes[i] == h && k.equals(s))) {
          return ids[i];
        }
      }
    }

    /** Adds {@code s}, which {@link #get} did not find. */
    void put(String s, int id) {
      if (2 * (size + 1) > keys.length) {
        String[] oldKeys = keys;
        int[] oldIds = ids;
        // All three allocated before any is replaced: a failed allocation leaves the index whole.
        String[] newKeys = new String[oldKeys.length * 2];
        int[] newHashes = new int[newKeys.length];
        int[] newIds = new int[newKeys.length];
        keys = newKeys;
        hashes = newHashes;
        ids = newIds;
        size = 0;
        for (int i = 0; i < oldKeys.length; i++) {
          if (oldKeys[i] != null) {
            put(oldKeys[i], oldIds[i]);
          }
        }
      }
      int h = s.hashCode();
      int mask = keys.length - 1;
      int i = slot(h, mask);
      while (keys[i] != null) {
        i = (i + 1) & mask;
      }
      keys[i] = s;
      hashes[i] = h;
      ids[i] = id;
      size++;
    }

    void clear() {
      Arrays.fill(keys, null);
      size = 0;
    }
  }

  private final Buf body;
  private final Index index = new Index();
  private final Buf table = new Buf(1024);
  private int strings;
  /** Per string, the last snapshot that used it; {@code live}: how many this snapshot used. */
  private int[] lastUse = new int[256];
  private int epoch;
  private int live;

  ContractWriter() {
    body = new Buf(4096);
  }

  void u8(int v) {
    body.u8(v);
  }

  void u32(int v) {
    body.u32(v);
  }

  void i64(long v) {
    body.u32((int) (v >>> 32));
    body.u32((int) v);
  }

  void f64(double v) {
    i64(Double.doubleToRawLongBits(v));
  }

  /** Starts a snapshot: an empty body (also after an encoding that failed half-way). */
  void begin() {
    body.count = 0;
    epoch++;
    live = 0;
  }

  /** A reference into the string table; the string is added on first use. */
  void ref(String s) {
    int i = index.get(s);
    if (i < 0) {
      // Everything that can fail (an OutOfMemoryError) before the string counts: a writer kept
      // for the life of a sink must never hold a count its table does not.
      byte[] b = s.getBytes(StandardCharsets.UTF_8);
      if (strings == lastUse.length) {
        lastUse = Arrays.copyOf(lastUse, strings * 2);
      }
      int mark = table.count;
      try {
        table.u32(b.length);
        table.bytes(b);
        index.put(s, strings);
      } catch (Throwable t) {
        table.count = mark;
        clear();
        throw t;
      }
      i = strings++;
      lastUse[i] = epoch;
      live++;
    } else if (lastUse[i] != epoch) {
      lastUse[i] = epoch;
      live++;
    }
    body.u32(i);
  }

  /**
   * The snapshot: magic, time, the string table, then the body. The writer is then ready for the
   * next snapshot of the same source, with its string table kept: a runner reports the same
   * metrics every period, so nothing is added, and the table, part of the structure the exporter
   * compares, stays the same; where the runner hands over the same {@code MetricName} and step
   * strings (the sink's runners), each is found by identity, without comparing characters. The
   * table starts afresh after a snapshot when it holds more than twice the strings that snapshot
   * used, plus 64 (metrics that come and go), so a snapshot carries at most that many plus those
   * it adds.
   */
  byte[] snapshot(long timeMillis) {
    Buf out = new Buf(16 + table.count + body.count);
    out.u8('B');
    out.u8('P');
    out.u8('M');
    out.u8('1');
    out.u32((int) (timeMillis >>> 32));
    out.u32((int) timeMillis);
    out.u32(strings);
    table.appendTo(out);
    body.appendTo(out);
    if (strings > 2 * live + 64) {
      clear();
    }
    return out.buf;
  }

  /** An empty string table. */
  private void clear() {
    index.clear();
    table.count = 0;
    strings = 0;
  }

  /** Options as (name, value) pairs: {@code u32 count}, then length-prefixed UTF-8 strings. */
  static byte[] pairs(List<String[]> pairs) {
    Buf out = new Buf(256);
    out.u32(pairs.size());
    for (String[] p : pairs) {
      for (String s : p) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        out.u32(b.length);
        out.bytes(b);
      }
    }
    return Arrays.copyOf(out.buf, out.count);
  }
}
