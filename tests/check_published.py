#!/usr/bin/env python3
"""Checks of the published artifact and of the example's run, for tests/examples.sh.

Each subcommand exits 0 when its check holds and prints what it found either way:
  versions VERSION           gradle.properties, Cargo.toml and CHANGELOG.md's newest entry agree
  pom FILE                   the POM a Maven user gets
  jars DIR VERSION           main, sources and javadoc jars (with .sha1) and what they hold
  natives JAR                both Linux libraries inside, each needing at most GLIBC_2.17 and no static TLS
  input FILE                 writes the example's input; prints the metrics it must produce (JSON)
  promql URL JOB EXPECTED    Prometheus answers those values for the job
"""
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
import zipfile

GLIBC_FLOOR = (2, 17)
LIBS = ["native/linux-x86_64/libbeam_prometheus.so", "native/linux-aarch64/libbeam_prometheus.so"]
MACHINES = {"native/linux-x86_64/libbeam_prometheus.so": "Advanced Micro Devices X86-64",
            "native/linux-aarch64/libbeam_prometheus.so": "AArch64"}


def fail(msg):
    print("  " + msg)
    return 1


def versions(version):
    cargo = re.search(r'^version = "([^"]+)"', open("Cargo.toml").read(), re.M).group(1)
    changelog = re.search(r"^## \[?([0-9][^\]\s]*)", open("CHANGELOG.md").read(), re.M).group(1)
    print(f"  gradle.properties {version}, Cargo.toml {cargo}, CHANGELOG.md newest {changelog}")
    return 0 if version == cargo == changelog else 1


def pom(path):
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(path).getroot()
    t = lambda p: (root.findtext(p, namespaces=ns) or "").strip()
    bad = []
    for field in ["m:groupId", "m:artifactId", "m:version", "m:name", "m:description", "m:url",
                  "m:licenses/m:license/m:name", "m:licenses/m:license/m:url", "m:scm/m:url",
                  "m:scm/m:connection", "m:developers/m:developer/m:name"]:
        if not t(field):
            bad.append("missing " + field)
    if (t("m:groupId"), t("m:artifactId")) != ("io.beamprometheus", "beam-prometheus"):
        bad.append(f"coordinates {t('m:groupId')}:{t('m:artifactId')}")
    deps = [(d.findtext("m:groupId", namespaces=ns), d.findtext("m:artifactId", namespaces=ns),
             d.findtext("m:scope", namespaces=ns) or "compile")
            for d in root.findall("m:dependencies/m:dependency", ns)]
    print(f"  {t('m:groupId')}:{t('m:artifactId')}:{t('m:version')} license={t('m:licenses/m:license/m:name')!r} "
          f"scm={t('m:scm/m:url')} dependencies={deps}")
    runtime = [d for d in deps if d[2] in ("compile", "runtime")]
    if [(g, a) for g, a, _ in runtime] != [("org.slf4j", "slf4j-api")]:
        bad.append(f"runtime dependencies {runtime}, want only org.slf4j:slf4j-api")
    if ("org.apache.beam", "beam-sdks-java-core", "provided") not in deps:
        bad.append("Beam is not provided")
    for b in bad:
        print("  " + b)
    return 1 if bad else 0


def jars(directory, version):
    bad = 0
    for suffix, must in [("", "io/beamprometheus/PrometheusMetricsSink.class"),
                         ("-sources", "io/beamprometheus/PrometheusMetricsSink.java"),
                         ("-javadoc", "io/beamprometheus/PrometheusMetricsSink.html")]:
        jar = os.path.join(directory, f"beam-prometheus-{version}{suffix}.jar")
        if not os.path.exists(jar) or not os.path.exists(jar + ".sha1"):
            bad += fail(f"missing {jar} or its .sha1")
            continue
        names = zipfile.ZipFile(jar).namelist()
        print(f"  {os.path.basename(jar)}: {os.path.getsize(jar)} bytes, {len(names)} entries, has {must}: {must in names}")
        bad += 0 if must in names else 1
    return 1 if bad else 0


def glibc_versions(lib):
    out = subprocess.run(["objdump", "-T", lib], capture_output=True, text=True, check=True).stdout
    return sorted({tuple(int(x) for x in v.split(".")) for v in re.findall(r"GLIBC_([0-9.]+)", out)})


def natives(jar):
    z = zipfile.ZipFile(jar)
    listed = [i for i in z.infolist() if i.filename.startswith("native/")]
    print("  jar listing (native/):")
    for i in listed:
        print(f"    {i.file_size:>9}  {i.filename}")
    bad = 0
    with tempfile.TemporaryDirectory() as d:
        for name in LIBS:
            if name not in z.namelist():
                bad += fail(f"{name} missing")
                continue
            lib = z.extract(name, d)
            machine = re.search(r"Machine:\s+(.*)", subprocess.run(["readelf", "-h", lib], capture_output=True, text=True).stdout).group(1).strip()
            vs = glibc_versions(lib)
            top = ".".join(map(str, vs[-1])) if vs else "none"
            print(f"  {name}: {machine}, highest GLIBC_ symbol version {top}")
            if machine != MACHINES[name]:
                bad += fail(f"{name} is built for {machine}")
            if not vs or vs[-1] > GLIBC_FLOOR:
                bad += fail(f"{name} needs GLIBC_{top}, above the 2.17 floor")
            # The JVM dlopens the library (a copy per class loader where no hard link can be
            # made): static TLS would draw on glibc's small reserve for it and fail after a few.
            dynamic = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True, check=True).stdout
            if "STATIC_TLS" in dynamic:
                bad += fail(f"{name} needs static TLS (FLAGS STATIC_TLS): dlopen may fail with 'cannot allocate memory in static TLS block'")
            else:
                print(f"  {name}: no static TLS")
    return 1 if bad else 0


def make_input(path):
    rnd = random.Random(17)
    vocab = ["beam", "prometheus", "metrics", "pipeline", "runner", "counter", "gauge", "flink", "wörter"]
    lines = []
    for _ in range(3000):
        n = rnd.choice([0, 0, 1, 3, 5, 8])
        lines.append(" ".join(rnd.choice(vocab) for _ in range(n)) if n else rnd.choice(["", "   "]))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    words = sum(len(re.findall(r"[^\W\d_]+", l)) for l in lines)  # letter runs, as the pipeline splits
    expected = {
        "beam_words_total": words,
        "beam_empty_lines_total": sum(1 for l in lines if not l.strip()),
        "beam_line_length_distribution_count": len(lines),
        "beam_line_length_distribution_sum": sum(len(l) for l in lines),
    }
    print(json.dumps(expected))
    return 0


def promql(base, job, expected_file):
    expected = json.load(open(expected_file))
    deadline = time.time() + 60
    got = {}
    while True:
        for name in expected:
            expr = f'sum({name}{{job="{job}",result="attempted"}})'
            url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            res = json.load(urllib.request.urlopen(url, timeout=10))["data"]["result"]
            got[name] = float(res[0]["value"][1]) if res else None
        if all(got[n] == v for n, v in expected.items()) or time.time() > deadline:
            break
        time.sleep(0.5)
    for n, v in expected.items():
        print(f"  {n}{{job=\"{job}\"}} = {got[n]} (input holds {v})")
    return 0 if all(got[n] == v for n, v in expected.items()) else 1


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    sys.exit({"versions": versions, "pom": pom, "jars": jars, "natives": natives, "input": make_input,
              "promql": promql}[cmd](*args))
