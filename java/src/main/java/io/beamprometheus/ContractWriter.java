package io.beamprometheus;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

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

  private final Buf body;
  private final Map<String, Integer> index = new HashMap<>();
  private final Buf table = new Buf(1024);
  private int strings;

  ContractWriter() {
    this(0);
  }

  /**
   * {@code expectedBytes}: about the size of the snapshot (the previous one's), so a large body is
   * not regrown and copied a dozen times.
   */
  ContractWriter(int expectedBytes) {
    body = new Buf(Math.max(4096, expectedBytes));
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

  /** A reference into the string table; the string is added on first use. */
  void ref(String s) {
    Integer i = index.get(s);
    if (i == null) {
      i = strings++;
      index.put(s, i);
      byte[] b = s.getBytes(StandardCharsets.UTF_8);
      table.u32(b.length);
      table.bytes(b);
    }
    body.u32(i);
  }

  /** The snapshot: magic, time, the string table, then the body. */
  byte[] snapshot(long timeMillis) {
    Buf out = new Buf(body.count + table.count + 16);
    out.u8('B');
    out.u8('P');
    out.u8('M');
    out.u8('1');
    out.u32((int) (timeMillis >>> 32));
    out.u32((int) timeMillis);
    out.u32(strings);
    table.appendTo(out);
    body.appendTo(out);
    // Sized exactly above, so this is the array itself.
    return out.count == out.buf.length ? out.buf : Arrays.copyOf(out.buf, out.count);
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
