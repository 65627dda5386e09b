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
  public enum Mode { FORWARD, RESET, HANG }

  private final ServerSocket server;
  private final InetSocketAddress target;
  private final List<Socket> open = new CopyOnWriteArrayList<>();
  private volatile Mode mode = Mode.FORWARD;
  private volatile boolean closed;

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
        switch (mode) {
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
