#!/usr/bin/env python3
"""make bench: overhead of tracing nginx under wrk (untraced and traced runs alternated in
one run), the collector's CPU per request and spans per request; then the core's criterion
benchmark. Prints a markdown report and writes it to docs/benchmarks.md."""
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "bin/otelcol-ebpf")
PAIRS = int(os.environ.get("BENCH_PAIRS", "5"))
SECS = int(os.environ.get("BENCH_SECS", "5"))
CLK = os.sysconf("SC_CLK_TCK")
NOTES_MARK = "<!-- notes: kept by make bench -->"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")


def cpu_us(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) * 1e6 / CLK


def metric(port, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wrk(port):
    out = subprocess.run(["wrk", "-t1", "-c32", f"-d{SECS}s", f"http://127.0.0.1:{port}/index.html"],
                         capture_output=True, text=True, check=True).stdout
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return reqs, rps


def main():
    d = tempfile.mkdtemp()
    port, mport = free_port(), free_port()
    os.makedirs(f"{d}/www")
    with open(f"{d}/www/index.html", "w") as f:
        f.write("x" * 612)
    with open(f"{d}/nginx.conf", "w") as f:
        f.write(f"""worker_processes 1; daemon off; master_process off; user root;
pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{ access_log off; sendfile on; keepalive_timeout 60; keepalive_requests 1000000;
  client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
  server {{ listen 127.0.0.1:{port}; root {d}/www; }} }}
""")
    with open(f"{d}/otel.yaml", "w") as f:
        f.write(f"""receivers:
  ebpf: {{}}
exporters:
  debug: {{verbosity: basic}}
service:
  telemetry:
    logs: {{level: warn}}
    metrics:
      readers:
        - pull: {{exporter: {{prometheus: {{host: 127.0.0.1, port: {mport}, without_type_suffix: true, without_units: true, without_scope_info: true}}}}}}
  pipelines:
    traces: {{receivers: [ebpf], exporters: [debug]}}
""")
    nginx = subprocess.Popen(["nginx", "-c", f"{d}/nginx.conf"])
    wait_port(port)
    rows = []
    try:
        wrk(port)  # warm-up
        for i in range(PAIRS):
            _, base = wrk(port)
            col = subprocess.Popen([BIN, "--config", f"{d}/otel.yaml"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            wait_port(mport)
            time.sleep(1)
            c0, s0, l0 = cpu_us(col.pid), metric(mport, "otelcol_receiver_accepted_spans"), metric(mport, "otelcol_ebpf_events_lost")
            reqs, traced = wrk(port)
            time.sleep(1.5)  # let the last batches drain
            c1, s1, l1 = cpu_us(col.pid), metric(mport, "otelcol_receiver_accepted_spans"), metric(mport, "otelcol_ebpf_events_lost")
            col.terminate()
            col.wait(30)
            rows.append((base, traced, (c1 - c0) / reqs, (s1 - s0) / reqs, l1 - l0))
            print(f"pair {i + 1}: untraced {base:.0f} req/s, traced {traced:.0f} req/s, "
                  f"ratio {traced / base:.2f}, collector {(c1 - c0) / reqs:.1f} us/req, "
                  f"spans/req {(s1 - s0) / reqs:.2f}, events lost {l1 - l0:.0f}", flush=True)
    finally:
        nginx.terminate()
        nginx.wait()

    ratios = sorted(r[1] / r[0] for r in rows)
    med = lambda xs: sorted(xs)[len(xs) // 2]
    core = subprocess.run(["cargo", "bench", "--quiet", "-p", "otelcol-ebpf-core", "--bench", "assemble", "--", "--noplot"],
                          cwd=ROOT, capture_output=True, text=True)
    core_lines = [l for l in core.stdout.splitlines() if "thrpt" in l or "time:" in l or l.startswith("assemble")]
    report = f"""# Benchmarks

Produced by `make bench` ({time.strftime('%Y-%m-%d')}, kernel {os.uname().release}, {os.cpu_count()} cores).

## Overhead: nginx under wrk, traced vs untraced

nginx 1 worker, 612-byte page, `wrk -t1 -c32 -d{SECS}s` on loopback; {PAIRS} pairs, untraced and
traced (collector running with `ebpf: {{}}`, i.e. nginx AND wrk traced: two spans per request)
alternated in one run. The collector's CPU is utime+stime of its process during the traced run.

| pair | untraced req/s | traced req/s | ratio | collector CPU µs/req | spans exported/req | events lost |
|---|---|---|---|---|---|---|
""" + "\n".join(f"| {i + 1} | {b:.0f} | {t:.0f} | {t / b:.2f} | {c:.1f} | {s:.2f} | {l:.0f} |" for i, (b, t, c, s, l) in enumerate(rows)) + f"""

Median ratio traced/untraced: **{med(ratios):.2f}**; median collector CPU: **{med([r[2] for r in rows]):.1f} µs per request**
(two spans); median spans exported per request: **{med([r[3] for r in rows]):.2f}**.

## Core: events → spans → OTLP bytes (criterion)

`cargo bench -p otelcol-ebpf-core --bench assemble` replays recorded streams (test/golden) through
the assembler and the OTLP encoder on one core:

```
""" + "\n".join(core_lines) + "\n```\n"
    print(report)
    # Hand-written analysis below the marker survives a re-run.
    path = os.path.join(ROOT, "docs/benchmarks.md")
    notes = ""
    if os.path.exists(path):
        old = open(path).read()
        if NOTES_MARK in old:
            notes = old[old.index(NOTES_MARK):]
    with open(path, "w") as f:
        f.write(report + ("\n" + notes if notes else ""))


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("make bench needs root (the collector loads eBPF programs)")
    main()
