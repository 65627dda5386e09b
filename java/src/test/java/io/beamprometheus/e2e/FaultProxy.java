package io.beamprometheus.e2e;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A TCP proxy on loopback in front of a real server, for fault tests: FORWARD passes bytes both
 * ways, RESET closes each new connection at once (the server looks down), HANG accepts and never
 * answers. Connections are bounded by the test's lifetime: close() ends them all.
 */
public final class FaultProxy implements AutoCloseable {
  public enum Mode { FORWARD, RESET, HANG, RESPOND }

  private final ServerSocket server;
  private final InetSocketAddress target;
  private final List<Socket> open = new CopyOnWriteArrayList<>();
  private volatile Mode mode = Mode.FORWARD;
  private volatile boolean closed;
  private volatile String response = "";
  private volatile int respondTimes;
  private final java.util.concurrent.atomic.AtomicInteger responded = new java.util.concurrent.atomic.AtomicInteger();
  private final List<Long> requestTimes = new CopyOnWriteArrayList<>();

  /**
   * Answers the next {@code times} requests itself with this status, extra header lines and body,
   * then forwards again.
   */
  public void respond(int status, String headerLines, String body, int times) {
    byte[] b = body.getBytes(java.nio.charset.StandardCharsets.UTF_8);
    this.response = "HTTP/1.1 " + status + " Injected\r\n" + headerLines + "Content-Length: " + b.length
        + "\r\nConnection: close\r\n\r\n" + body;
    this.respondTimes = times;
    responded.set(0);
    mode(Mode.RESPOND);
  }

  /** Requests answered by {@link #respond} so far. */
  public int responded() {
    return responded.get();
  }

  /** Arrival times (System.nanoTime) of every request seen in any mode. */
  public List<Long> requestTimes() {
    return requestTimes;
  }

  public FaultProxy(String targetHost, int targetPort) throws IOException {
    this.target = new InetSocketAddress(targetHost, targetPort);
    this.server = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
    Thread t = new Thread(this::acceptLoop, "fault-proxy");
    t.setDaemon(true);
    t.start();
  }

  public String url() {
    return "http://127.0.0.1:" + server.getLocalPort();
  }

  public void mode(Mode m) {
    this.mode = m;
    if (m != Mode.FORWARD) {
      // Established keep-alive connections would bypass the fault: cut them.
      for (Socket s : open) {
        try {
          s.close();
        } catch (IOException ignored) {
          // already gone
        }
      }
      open.clear();
    }
  }

  private void acceptLoop() {
    while (!closed) {
      try {
        Socket client = server.accept();
        requestTimes.add(System.nanoTime());
        if (mode == Mode.RESPOND && responded.get() >= respondTimes) {
          mode = Mode.FORWARD;
        }
        switch (mode) {
          case RESPOND:
            answer(client);
            break;
          case RESET:
            client.setSoLinger(true, 0);
            client.close();
            break;
          case HANG:
            open.add(client);
            break;
          default:
            Socket upstream = new Socket();
            upstream.connect(target, 5000);
            open.add(client);
            open.add(upstream);
            pipe(client.getInputStream(), upstream.getOutputStream(), client, upstream);
            pipe(upstream.getInputStream(), client.getOutputStream(), client, upstream);
        }
      } catch (IOException e) {
        if (closed) {
          return;
        }
      }
    }
  }

  /** Reads one request (headers and Content-Length body) and writes the injected response. */
  private void answer(Socket client) {
    try (Socket c = client) {
      c.setSoTimeout(5000);
      InputStream in = c.getInputStream();
      StringBuilder head = new StringBuilder();
      while (!head.toString().endsWith("\r\n\r\n")) {
        int b = in.read();
        if (b < 0) {
          return;
        }
        head.append((char) b);
      }
      java.util.regex.Matcher m =
          java.util.regex.Pattern.compile("(?i)content-length:\\s*(\\d+)").matcher(head);
      long left = m.find() ? Long.parseLong(m.group(1)) : 0;
      while (left > 0) {
        long n = in.skip(left);
        if (n <= 0 && in.read() < 0) {
          break;
        }
        left -= Math.max(n, 1);
      }
      c.getOutputStream().write(response.getBytes(java.nio.charset.StandardCharsets.UTF_8));
      c.getOutputStream().flush();
      responded.incrementAndGet();
    } catch (IOException ignored) {
      // the client gave up
    }
  }

  private static void pipe(InputStream in, OutputStream out, Socket a, Socket b) {
    Thread t = new Thread(() -> {
      byte[] buf = new byte[16384];
      try {
        int n;
        while ((n = in.read(buf)) >= 0) {
          out.write(buf, 0, n);
          out.flush();
        }
      } catch (IOException ignored) {
        // one side closed
      } finally {
        try {
          a.close();
          b.close();
        } catch (IOException ignored) {
          // best effort
        }
      }
    }, "fault-proxy-pipe");
    t.setDaemon(true);
    t.start();
  }

  @Override
  public void close() throws IOException {
    closed = true;
    server.close();
    mode(Mode.RESET);
  }
}
