#!/usr/bin/env python3
"""Where the collector's CPU goes, per span: nginx (1 worker) saturated by wrk on loopback,
nginx traced (selected by exe_path), wrk not (one SERVER span per request), `perf record`
(cpu-clock, 999 Hz) on an unstripped build of the collector for the length of one wrk run.
Prints the top symbols by self time and the split between the Go side (pdata, pipeline,
GC), the Rust core and libc/kernel, per request. Run as root after `make build`:

    python3 scripts/cpu_profile.py [seconds] [--both]

(--both: nginx and wrk traced, two spans per request.)
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

ROOT = bench.ROOT
PROF_BIN = os.path.join(ROOT, "bin", "otelcol-ebpf-prof")


def build_unstripped():
    """The collector ocb generated (build/otelcol-ebpf), linked without -s -w."""
    lib = os.path.join(ROOT, "build/lib/libotelcol_ebpf_core.a")
    h = subprocess.run(["sha256sum", lib], capture_output=True, text=True, check=True).stdout[:16]
    subprocess.run(["go", "build", "-trimpath=false", f"-ldflags=-X main.rustCoreHash={h}", "-o", PROF_BIN, "."],
                   cwd=os.path.join(ROOT, "build/otelcol-ebpf"), check=True, env=dict(os.environ, CGO_ENABLED="1"))


def side(sym, dso):
    if "otelcol_ebpf_core" in sym or sym.startswith("_ZN") or "::" in sym or sym.startswith("<"):
        return "rust"
    if dso.startswith("[kernel") or dso == "[unknown]":
        return "kernel"
    if "libc" in dso or sym in ("memmove", "memcpy", "malloc", "free", "__memmove_avx_unaligned_erms"):
        return "libc"
    return "go"


def profile(secs: int, both: bool = False) -> dict:
    """One profiled wrk run: requests, rate, spans, collector µs per request, the share of
    each side (percent of samples) and the top symbols [(percent, side, symbol)]."""
    bench.SECS = secs
    build_unstripped()
    d = tempfile.mkdtemp(prefix="profile-")
    port, mport = bench.free_port(), bench.free_port()
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
    # both: nginx and wrk traced (two spans per request, a header inserted into each).
    receiver = "{}" if both else '{discovery: {instrument: [{exe_path: "*/nginx"}]}}'
    bench.write_config(f"{d}/otel.yaml", "debug: {verbosity: basic}", mport, receiver=receiver)
    nginx = subprocess.Popen(["nginx", "-c", f"{d}/nginx.conf"])
    col = None
    try:
        bench.wait_port(port)
        col = subprocess.Popen([PROF_BIN, "--config", f"{d}/otel.yaml"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        bench.wait_ready(mport)
        time.sleep(1)
        bench.wrk(port)  # warm-up
        perf = subprocess.Popen(["perf", "record", "-q", "-F", "999", "-o", f"{d}/perf.data", "-p", str(col.pid),
                                 "--", "sleep", str(secs)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0, spans0 = bench.cpu_us(col.pid), bench.metric(mport, "otelcol_receiver_accepted_spans")
        reqs, rps = bench.wrk(port)
        cpu = bench.cpu_us(col.pid) - cpu0
        perf.wait()
        time.sleep(1.5)  # the last batches reach the counters
        spans = bench.metric(mport, "otelcol_receiver_accepted_spans") - spans0
        status = open(f"/proc/{col.pid}/status").read()
        rss_mb = int(re.search(r"VmRSS:\s+(\d+)", status)[1]) / 1024
        hwm_mb = int(re.search(r"VmHWM:\s+(\d+)", status)[1]) / 1024
    finally:
        if col is not None:
            col.terminate()
            col.wait(30)
        nginx.terminate()
        nginx.wait()
    rep = subprocess.run(["perf", "report", "-i", f"{d}/perf.data", "--stdio", "--no-children", "--sort", "dso,sym",
                          "--percent-limit", "0.01"], capture_output=True, text=True).stdout
    shutil.rmtree(d, ignore_errors=True)
    rows = []
    for line in rep.splitlines():
        m = re.match(r"^\s+([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)$", line)
        if m:
            rows.append((float(m[1]), side(m[3].strip(), m[2]), m[3].strip()))
    sides = {}
    for pct, sd, _ in rows:
        sides[sd] = sides.get(sd, 0) + pct
    return {"reqs": reqs, "rps": rps, "spans": spans, "us": cpu / max(reqs, 1), "sides": sides, "top": rows[:30],
            "rss_mb": rss_mb, "hwm_mb": hwm_mb}


def main():
    args = [a for a in sys.argv[1:] if a != "--both"]
    p = profile(int(args[0]) if args else 10, both="--both" in sys.argv)
    print(f"{p['reqs']} requests at {p['rps']:.0f}/s, {p['spans']:.0f} spans; collector {p['us']:.1f} us CPU per request, "
          f"RSS {p['rss_mb']:.0f} MB (peak {p['hwm_mb']:.0f} MB)")
    print("split: " + ", ".join(f"{k} {v:.0f}% ({v * p['us'] / 100:.1f} us/req)"
                                for k, v in sorted(p["sides"].items(), key=lambda kv: -kv[1])))
    print("top symbols (self time):")
    for pct, sd, sym in p["top"]:
        print(f"  {pct:5.1f}%  {sd:6}  {sym[:110]}")


if __name__ == "__main__":
    main()
