#!/usr/bin/env python3
"""Turns the tab-separated lines of bench/run.sh's phases (bench/out/results.tsv) into the table
of BENCHMARKS.md. Ratios are "theirs / ours" for times and bytes: above 1 means ours is faster
(or allocates less)."""
import sys
from collections import defaultdict

path = sys.argv[1] if len(sys.argv) > 1 else "bench/out/results.tsv"
res = {}          # (impl, op, n) -> median ns
worst = {}        # (impl, op, n) -> worst ns (latency rows)
info = {}         # n -> series count
wire = {}         # (op, n) -> {"bytes": .., "raw_bytes": ..}
go_v2_bytes = {}  # n -> bytes of Go's 2.0 requests
alloc = {}        # (impl, n) -> bytes
rss = defaultdict(list)  # who -> [(push, kib)]
checks = []
machine = []      # [phase, n, "other_pct=..;steal_pct=..;own_pct=.."]
for line in open(path, encoding="utf-8"):
    f = line.rstrip("\n").split("\t")
    if f[0] == "result":
        impl, op, n, med = f[1], f[2], int(f[3]), float(f[4])
        res[(impl, op, n)] = med
        for kv in f[8].split(";") if len(f) > 8 else []:
            if kv.startswith("series="):
                info[n] = int(kv.split("=")[1])
            if kv.startswith("worst_ns="):
                worst[(impl, op, n)] = float(kv.split("=")[1])
            if impl == "go" and op == "rw_v2_from_series" and kv.startswith("bytes="):
                go_v2_bytes[n] = int(kv.split("=")[1])
            if impl == "rust" and op.startswith("rw_v") and kv.split("=")[0] in ("bytes", "raw_bytes", "requests"):
                wire.setdefault((op[:5], n), {})[kv.split("=")[0]] = int(kv.split("=")[1])
    elif f[0] == "alloc":
        alloc[(f[1], int(f[2]))] = float(f[3])
    elif f[0] == "rss":
        rss[f[1]].append((int(f[3]), int(f[4])))
    elif f[0] == "check":
        checks.append(f)
    elif f[0] == "machine":
        machine.append(f)

sizes = sorted({n for (_, _, n) in res})


def ms(v):
    if v is None:
        return "—"
    return f"{v / 1e6:.2f}" if v < 1e9 else f"{v / 1e6:.0f}"


def ratio(theirs, ours):
    if theirs is None or ours is None or ours == 0:
        return "—"
    return f"{theirs / ours:.2f}×"


def g(impl, op, n):
    return res.get((impl, op, n))


out = []
p = out.append
p("### 1. Remote-write encode + compress, same series (median ms per snapshot; ratio = other / Rust)")
p("")
p("First push: the exporter maps the snapshot and encodes every label. Repeat push: the same metrics with new values, as a "
  "runner reports them every period; the exporter reuses the mapping and the encoded labels (`reuse::MappingCache`).")
p("")
p("#### 1a. From the mapped series (name, sorted labels, value) to the snappy bodies")
p("")
p("| series | Rust, first push | Rust, repeat push | pure Java | Go prompb | Java / Rust first | Java / Rust repeat | Go / Rust first | Go / Rust repeat |")
p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in sizes:
    r, rr, j, go = g("rust", "encode_from_mapped", n), g("rust", "encode_repeat", n), g("java", "encode_from_mapped", n), g("go", "encode_from_mapped", n)
    p(f"| {info.get(n, n):,} | {ms(r)} | {ms(rr)} | {ms(j)} | {ms(go)} | {ratio(j, r)} | {ratio(j, rr)} | {ratio(go, r)} | {ratio(go, rr)} |")
p("")
p("Bodies of 2,000 series each, metadata in the first. Rust: `remote_write::Encoder` (first push: labels written from the "
  "mapped series; repeat: copied from the store `remote_write::SeriesLabels` built on the second push); Java `CodedOutputStream` + snappy-java; Go `prompb` + `Marshal` + golang/snappy.")
p("")
p("#### 1b. From the Beam snapshot to the snappy bodies")
p("")
p("| series | Rust, first push: whole native work (decode, map, labels, bodies) | Rust, first push (map + encode) | Rust, repeat push (split + refresh + encode) | Java (map + encode) | Java / Rust first, whole | Java / Rust first (map + encode) | Java / Rust repeat |")
p("|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in sizes:
    fa, r, rr, j = g("rust", "first_push_all", n), g("rust", "map_encode", n), g("rust", "repeat_all", n), g("java", "map_encode", n)
    p(f"| {info.get(n, n):,} | {ms(fa)} | {ms(r)} | {ms(rr)} | {ms(j)} | {ratio(j, fa)} | {ratio(j, r)} | {ratio(j, rr)} |")
p("")
p("Rust first push, whole: what the exporter does with a snapshot of a new structure, from the contract bytes "
  "(`reuse::MappingCache::update`: `contract::decode`, `naming::map`, the bytes kept for the next snapshot's `contract::split`; then "
  "the bodies, labels written from the series), the mapping dropped after; map + encode: `naming::map` of the decoded `Snapshot`, then 1a; repeat push: from the "
  "contract bytes, `contract::split`, `Mapped::refresh`, then 1a (repeat). Java: the same mapping rules from "
  "`MetricQueryResults`, then 1a.")
p("")
p("#### 1c. Stages")
p("")
p("| series | Rust prost + snap (prebuilt requests) | Go gogo + golang/snappy (prebuilt) | Go / Rust | `naming::map` | … per series | … on one thread | `contract::decode` | Pushgateway text render | Pushgateway protobuf render, first push | … repeat push |")
p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in sizes:
    r, go = g("rust", "encode_prebuilt", n), g("go", "encode_prebuilt", n)
    mp = g('rust', 'map', n)
    per = "—" if mp is None else f"{mp / info.get(n, n) / 1e3:.2f} µs"
    p(f"| {info.get(n, n):,} | {ms(r)} | {ms(go)} | {ratio(go, r)} | {ms(mp)} | {per} | {ms(g('rust', 'map_one_thread', n))} | {ms(g('rust', 'decode', n))} | "
      f"{ms(g('rust', 'pushgateway_render', n))} | {ms(g('rust', 'pushgateway_render_protobuf', n))} | {ms(g('rust', 'pushgateway_protobuf_repeat', n))} |")
p("")
p("### 2. Whole writeMetrics call to local servers (median ms; ratio = other / ours)")
p("")
p("| series | ours → Pushgateway (protobuf, default) | Java client, protobuf (its default) | Java client, text | protobuf / ours | text / ours | ours, text format | Java text / ours text | ours → remote-write | pure Java → remote-write | Java / ours |")
p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in sizes:
    o, t, pb = g("ours_pushgateway", "whole_call", n), g("javaclient_pushgateway_text", "whole_call", n), g("javaclient_pushgateway_protobuf", "whole_call", n)
    ot = g("ours_pushgateway_text", "whole_call", n)
    orw, jrw = g("ours_remote_write", "whole_call", n), g("java_remote_write", "whole_call", n)
    p(f"| {info.get(n, n):,} | {ms(o)} | {ms(pb)} | {ms(t)} | {ratio(pb, o)} | {ratio(t, o)} | {ms(ot)} | {ratio(t, ot)} | {ms(orw)} | {ms(jrw)} | {ratio(jrw, orw)} |")
p("")
p("")
p("| series | the gateway alone: PUT of our protobuf body | the same series as text | text / protobuf | protobuf alone ÷ ours → Pushgateway | ÷ Java client's protobuf push | Java protobuf push ÷ gateway alone |")
p("|---:|---:|---:|---:|---:|---:|---:|")
for n in sizes:
    fl, o, pb = g("gateway_alone_protobuf", "whole_call", n), g("ours_pushgateway", "whole_call", n), g("javaclient_pushgateway_protobuf", "whole_call", n)
    ft = g("gateway_alone_text", "whole_call", n)
    if None in (fl, o, pb):
        continue
    p(f"| {info.get(n, n):,} | {ms(fl)} | {ms(ft)} | {ratio(ft, fl)} | {fl / o * 100:.0f}% | {fl / pb * 100:.0f}% | {ratio(pb, fl)} |")
p("")
p("The gateway alone: a body PUT as it is with `java.net.http`, timed the same way as the pushers. It measures the "
  "gateway's own parsing and storing of the series, which every pusher pays. It is a measured reference, not an exact "
  "bound: it includes its own HTTP client and noise (at small sizes a pusher can come out slightly faster). The last "
  "column is roughly the most any pusher could gain on the Java client's protobuf push.")
p("")
p("Ours: `PrometheusMetricsSink.writeMetrics` + `flush` (until the server answered). Java client: its `PushGateway.push()` (PUT) "
  "after converting the results to its snapshots. Pure Java: map, encode, POST each request with `java.net.http`.")
p("")
states = [st for st in ("up", "down", "hung") if any(k[1] == "write_metrics_" + st for k in res)]
if states:
    p("### 2b. writeMetrics as the runner's thread sees it (ms; median and worst of the calls)")
    p("")
    p("| series | receivers | writeMetrics, median | writeMetrics, worst | Java-side encoding alone, median | … worst |")
    p("|---:|---|---:|---:|---:|---:|")
    for n in sizes:
        for st in states:
            w, e = g("ours", "write_metrics_" + st, n), g("ours", "java_encode_" + st, n)
            if w is None:
                continue
            p(f"| {info.get(n, n):,} | {st} | {w / 1e6:.3f} | {worst.get(('ours', 'write_metrics_' + st, n), 0) / 1e6:.3f} | "
              f"{'—' if e is None else f'{e / 1e6:.3f}'} | {worst.get(('ours', 'java_encode_' + st, n), 0) / 1e6:.3f} |")
    p("")
    p("`PrometheusMetricsSink.writeMetrics` alone (no flush), both ways configured, the exporter's defaults (self-metrics on), "
      "100 calls 25 ms apart after 3 s of calls (JIT-warm); up: the local Prometheus and Pushgateway; down: a closed loopback "
      "port; hung: a loopback socket that accepts and never answers. The encoding alone: `SnapshotEncoder.encode` on the "
      "same schedule, no native call: the noise any code on the runner's thread meets in that state.")
    p("")
p("### 3. The JNI crossing (median; per call and per series)")
p("")
p("| series | snapshot bytes encoded in Java | crossing (call + refusal) | crossing + copy of the snapshot | export call: copy, structure check, hand-over | crossing + copy share of writeMetrics | mapping thread's work, repeat push (split, refresh, encode, queue; Rust bench) |")
p("|---:|---:|---:|---:|---:|---:|---:|")
for n in sizes:
    enc, call, copy, full = g("ours", "java_snapshot_encode", n), g("ours", "jni_export_call", n), g("ours", "jni_export_copy", n), g("ours", "jni_export_full", n)
    s = info.get(n, n)
    if None in (enc, call, copy, full):
        continue
    share = copy / (enc + full) * 100
    bg = g("rust", "exporter_export_bytes", n)
    p(f"| {s:,} | {enc / 1e3:.0f} µs ({enc / s:.0f} ns/series) | {call / 1e3:.1f} µs | {copy / 1e3:.1f} µs ({copy / s:.2f} ns/series) | "
      f"{full / 1e3:.0f} µs ({full / s:.0f} ns/series) | {share:.2f}% | {'—' if bg is None else f'{bg / 1e6:.2f} ms ({bg / s / 1e3:.2f} µs/series)'} |")
stats_call = [g("ours", "jni_stats_call", n) for n in sizes if g("ours", "jni_stats_call", n)]
if stats_call:
    p("")
    p(f"A JNI call without an exception (`NativeExporter.stats`, returning the stats as a `long[]`): {sorted(stats_call)[len(stats_call) // 2]:.0f} ns. "
      "The crossing columns use `export` with a buffer the native side copies and refuses at byte 0, so they include throwing "
      "an `IllegalArgumentException`. The export call copies the snapshot, checks its structure (`contract::split`) and hands "
      "it to the exporter's mapping thread (`src/intake.rs`); that thread's work is the last column (`Exporter::export_bytes` "
      "timed in the Rust bench, a closed port as receiver).")
p("")
p("### 4. Memory")
p("")
p("| series | Java heap allocated per writeMetrics: ours | Java client, text | Java client, protobuf | pure Java remote-write | client (text) / ours |")
p("|---:|---:|---:|---:|---:|---:|")
for n in sizes:
    o, t, pb, j = alloc.get(("ours_pushgateway", n)), alloc.get(("javaclient_pushgateway_text", n)), alloc.get(("javaclient_pushgateway_protobuf", n)), alloc.get(("java_remote_write", n))
    if o is None:
        continue
    mb = lambda v: "—" if v is None else f"{v / 1e6:.2f} MB"
    p(f"| {info.get(n, n):,} | {mb(o)} | {mb(t)} | {mb(pb)} | {mb(j)} | {ratio(t, o)} |")
p("")
for who, label in (("jvm", "JVM running the sink (heap fixed and pre-touched, glibc mmap threshold fixed)"), ("rust", "native process (bench/rust, no JVM)")):
    pts = sorted(rss.get(who, []))
    if pts:
        first, last = pts[0][1], pts[-1][1]
        tail = [k for (i, k) in pts[len(pts) // 2:]]
        second = pts[1][1] if len(pts) > 1 else first
        p(f"- VmRSS, {label}, {max(info.values()):,} series both ways: after push 1 {first / 1024:.0f} MiB, "
          f"push 2 {second / 1024:.0f} MiB, push {pts[-1][0]} {last / 1024:.0f} MiB (last − first {(last - first) / 1024:+.1f} MiB, "
          f"last − push 2 {(last - second) / 1024:+.1f} MiB; range over the second half {(max(tail) - min(tail)) / 1024:.1f} MiB)")
p("")
def span(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "—", False
    lo, hi = min(vals), max(vals)
    return (f"{lo:.2f}×" if abs(hi - lo) < 0.005 else f"{lo:.2f}–{hi:.2f}×"), lo


def div(a, b):
    return None if a is None or b is None or b == 0 else a / b


if wire:
    p("### Remote-write 2.0 against 1.0 (Rust core, same snapshots, requests of 2000 series)")
    p("")
    p("Bytes summed over a snapshot's requests; first push = map + build labels/symbols + encode + compress; "
      "repeat push = encode + compress with them reused (median ms; ratio = 1.0 / 2.0).")
    p("")
    p("| series | bytes 1.0 (snappy) | bytes 2.0 (snappy) | 1.0 / 2.0 | raw 1.0 | raw 2.0 | 1.0 / 2.0 raw | first 1.0 | first 2.0 | 1.0 / 2.0 | repeat 1.0 | repeat 2.0 | 1.0 / 2.0 |")
    p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        a, b = wire.get(("rw_v1", n), {}), wire.get(("rw_v2", n), {})
        if not a or not b:
            continue
        f1, f2, r1, r2 = g("rust", "rw_v1_first", n), g("rust", "rw_v2_first", n), g("rust", "rw_v1_repeat", n), g("rust", "rw_v2_repeat", n)
        p(f"| {info.get(n, n):,} | {a['bytes']:,} | {b['bytes']:,} | {ratio(a['bytes'], b['bytes'])} | {a['raw_bytes']:,} | {b['raw_bytes']:,} | "
          f"{ratio(a['raw_bytes'], b['raw_bytes'])} | {ms(f1)} | {ms(f2)} | {ratio(f1, f2)} | {ms(r1)} | {ms(r2)} | {ratio(r1, r2)} |")
    p("")
    if any(g("go", "rw_v2_from_series", n) for n in sizes):
        p("2.0 against Prometheus' own Go 2.0 encoder (`writev2.SymbolsTable`, gogo Marshal, golang/snappy) building the same "
          "series' requests from series it holds with their metadata (median ms; ratio = Go / Rust). Rust's first push also "
          "maps the Beam snapshot, which the Go side does not do.")
        p("")
        p("| series | Go writev2 | Rust 2.0 first push | Go / Rust first | Rust 2.0 repeat push | Go / Rust repeat | bytes Go 2.0 | bytes Rust 2.0 |")
        p("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in sizes:
            gv, f2, r2 = g("go", "rw_v2_from_series", n), g("rust", "rw_v2_first", n), g("rust", "rw_v2_repeat", n)
            gb = go_v2_bytes.get(n)
            rb = wire.get(("rw_v2", n), {}).get("bytes")
            p(f"| {info.get(n, n):,} | {ms(gv)} | {ms(f2)} | {ratio(gv, f2)} | {ms(r2)} | {ratio(gv, r2)} | "
              f"{'' if gb is None else format(gb, ',')} | {'' if rb is None else format(rb, ',')} |")
        p("")
p("### Targets")
p("")
p("| target | measured (over the sizes) | met |")
p("|---|---|---|")
rows = [
    ("native encode+compress ≥ 3× faster than pure Java, repeat push (from mapped series)", [div(g("java", "encode_from_mapped", n), g("rust", "encode_repeat", n)) for n in sizes], 3.0),
    ("… the same from the Beam snapshot, repeat push", [div(g("java", "map_encode", n), g("rust", "repeat_all", n)) for n in sizes], 3.0),
    ("… first push (from mapped series)", [div(g("java", "encode_from_mapped", n), g("rust", "encode_from_mapped", n)) for n in sizes], 3.0),
    ("… first push, from the Beam snapshot", [div(g("java", "map_encode", n), g("rust", "map_encode", n)) for n in sizes], 3.0),
    ("native encode+compress no slower than Go, repeat push (Go / Rust ≥ 1)", [div(g("go", "encode_from_mapped", n), g("rust", "encode_repeat", n)) for n in sizes], 1.0),
    ("… first push", [div(g("go", "encode_from_mapped", n), g("rust", "encode_from_mapped", n)) for n in sizes], 1.0),
    ("whole call ≥ 2× faster than the Java Pushgateway client (protobuf, its default)", [div(g("javaclient_pushgateway_protobuf", "whole_call", n), g("ours_pushgateway", "whole_call", n)) for n in sizes], 2.0),
    ("whole call ≥ 2× faster than the Java Pushgateway client (text)", [div(g("javaclient_pushgateway_text", "whole_call", n), g("ours_pushgateway", "whole_call", n)) for n in sizes], 2.0),
    ("… both in text format", [div(g("javaclient_pushgateway_text", "whole_call", n), g("ours_pushgateway_text", "whole_call", n)) for n in sizes], 2.0),
    ("Java heap per writeMetrics ≤ 1/3 of the Java client's (client / ours ≥ 3)", [div(alloc.get(("javaclient_pushgateway_protobuf", n)), alloc.get(("ours_pushgateway", n))) for n in sizes], 3.0),
]
big = [n for n in sizes if n >= 10_000]
small = [n for n in sizes if n < 10_000]
rows += [
    ("first push from the Beam snapshot, whole native work, ≥ 3× pure Java at 10k and 100k", [div(g("java", "map_encode", n), g("rust", "first_push_all", n)) for n in big], 3.0),
    ("… ≥ 2× at 1k", [div(g("java", "map_encode", n), g("rust", "first_push_all", n)) for n in small], 2.0),
    ("first push from the mapped series ≥ 1.5× Go prompb", [div(g("go", "encode_from_mapped", n), g("rust", "encode_from_mapped", n)) for n in sizes], 1.5),
    ("Pushgateway push ≥ 90% of the gateway-alone PUT (gateway alone / ours, as a fraction)", [div(g("gateway_alone_protobuf", "whole_call", n), g("ours_pushgateway", "whole_call", n)) for n in sizes], 0.9),
]
for label, vals, goal in rows:
    text, lo = span(vals)
    met = "—" if text == "—" else ("yes" if lo >= goal else ("partly" if max(v for v in vals if v is not None) >= goal else "no"))
    p(f"| {label} | {text} | {met} |")
def at_most(label, value, limit, unit, fmt="{:.2f}"):
    if value is None:
        return
    p(f"| {label} | {fmt.format(value)} {unit} | {'yes' if value <= limit else 'no'} |")


if sizes:
    top = max(sizes)
    mp = g("rust", "map", top)
    at_most(f"`naming::map` ≤ 0.4 µs per series at {info.get(top, top):,}", None if mp is None else mp / info.get(top, top) / 1e3, 0.4, "µs")
    fa = g("rust", "first_push_all", top)
    at_most(f"whole native work of a first push at {info.get(top, top):,} < 60 ms", None if fa is None else fa / 1e6, 60, "ms", "{:.0f}")
    for n in sizes:
        for st in states:
            w = g("ours", "write_metrics_" + st, n)
            if w is None:
                continue
            at_most(f"writeMetrics median ≤ 0.3 ms at {info.get(n, n):,}, receivers {st}", w / 1e6, 0.3, "ms", "{:.3f}")
            at_most(f"writeMetrics worst of 100 ≤ 2 ms at {info.get(n, n):,}, receivers {st}", worst.get(("ours", "write_metrics_" + st, n), 0) / 1e6, 2, "ms", "{:.3f}")
for who in ("jvm", "rust"):
    pts = sorted(rss.get(who, []))
    if len(pts) > 2:
        tail = [k for (i, k) in pts[len(pts) // 2:]]
        first_half_max = max(k for (i, k) in pts[: len(pts) // 2])
        flat = max(tail) <= first_half_max + 1024  # no growth beyond the first half's peak (1 MiB slack)
        p(f"| native memory flat over {pts[-1][0]} pushes ({'JVM, glibc mmap threshold fixed' if who == 'jvm' else 'native-only process'}) | "
          f"first {pts[0][1] / 1024:.0f} MiB, last {pts[-1][1] / 1024:.0f} MiB, peak of first half {first_half_max / 1024:.0f} MiB, of second half {max(tail) / 1024:.0f} MiB | {'yes' if flat else 'no'} |")
p("")
p("### The machine during the Rust encode phase")
p("")
p("Shares of both cores' time while each size's figures of tables 1a–1c were taken (/proc/stat): "
  "the bench itself, other processes, and time the hypervisor took (steal). The two-thread figures "
  "(from 4,096 metrics or series) need the second core. Then, right after: the same fixed work (reads "
  "through a random cycle over 2 MiB) on two threads against one (1.00: each thread had a core and its "
  "caches), with a plain thread and with the exporter's helper (`parallel::join`, which gives way).")
p("")
p("| series | this bench | other processes | steal | two threads ÷ one | … with `parallel::join` |")
p("|---:|---:|---:|---:|---:|---:|")
for m in machine:
    kv = dict(x.split("=") for x in m[3].split(";") if "=" in x)
    if kv:
        p(f"| {int(m[2]):,} | {kv.get('own_pct', '?')}% | {kv.get('other_pct', '?')}% | {kv.get('steal_pct', '?')}% | "
          f"{kv.get('two_threads_x', '?')}× | {kv.get('join_x', '?')}× |")
p("")
p("### Equivalence checks")
p("")
for c in checks:
    p(f"- {c[1]} {c[2]}: {c[3]} ({c[4] if len(c) > 4 else ''})")
print("\n".join(out))
