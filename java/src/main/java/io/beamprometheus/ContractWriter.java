package io.beamprometheus;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Writes the primitives of the binary contract (CONTRACT.md): big-endian integers and a string
 * table that stores each distinct string once.
 */
final class ContractWriter {
  /** Exposes its buffer so that assembling the snapshot copies each part once. */
  private static final class Buf extends ByteArrayOutputStream {
    Buf(int size) {
      super(size);
    }

    void appendTo(ByteArrayOutputStream out) {
      out.write(buf, 0, count);
    }
  }

  private final Buf body = new Buf(4096);
  private final Map<String, Integer> index = new HashMap<>();
  private final Buf table = new Buf(1024);
  private int strings;

  void u8(int v) {
    body.write(v);
  }

  void u32(int v) {
    writeInt(body, v);
  }

  void i64(long v) {
    writeInt(body, (int) (v >>> 32));
    writeInt(body, (int) v);
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
      writeInt(table, b.length);
      table.write(b, 0, b.length);
    }
    u32(i);
  }

  /** The snapshot: magic, time, the string table, then the body. */
  byte[] snapshot(long timeMillis) {
    ByteArrayOutputStream out = new ByteArrayOutputStream(body.size() + table.size() + 16);
    out.write('B');
    out.write('P');
    out.write('M');
    out.write('1');
    writeInt(out, (int) (timeMillis >>> 32));
    writeInt(out, (int) timeMillis);
    writeInt(out, strings);
    table.appendTo(out);
    body.appendTo(out);
    return out.toByteArray();
  }

  /** Options as (name, value) pairs: {@code u32 count}, then length-prefixed UTF-8 strings. */
  static byte[] pairs(List<String[]> pairs) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    writeInt(out, pairs.size());
    for (String[] p : pairs) {
      for (String s : p) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        writeInt(out, b.length);
        out.write(b, 0, b.length);
      }
    }
    return out.toByteArray();
  }

  private static void writeInt(ByteArrayOutputStream out, int v) {
    out.write(v >>> 24);
    out.write(v >>> 16);
    out.write(v >>> 8);
    out.write(v);
  }
}
