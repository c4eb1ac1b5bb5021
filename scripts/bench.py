#!/usr/bin/env python3
"""make bench: overhead of tracing nginx under wrk, a grpcio service under a gRPC load and a
Go net/http service with goroutine fan-out under wrk (untraced and traced runs alternated in one run), the collector's CPU per request and spans
per request; injection latency; connected traces; then the core's criterion benchmark. Prints a markdown report and writes it to docs/benchmarks.md."""
import glob
import json
import os
import re
import shutil
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
# The collector runs as `make run` starts it (and as the deployment units will).
os.environ.setdefault("GOGC", "200")
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


def write_config(path, exporter, metrics_port, propagation="headers", receiver=None):
    """A collector config: the ebpf receiver (every process), one exporter, own metrics."""
    name = exporter.split(":", 1)[0]
    receiver = receiver or f"{{context_propagation: {propagation}}}"
    with open(path, "w") as f:
        f.write(f"""receivers:
  ebpf: {receiver}
exporters:
  {exporter}
service:
  telemetry:
    logs: {{level: warn}}
    metrics:
      readers:
        - pull: {{exporter: {{prometheus: {{host: 127.0.0.1, port: {metrics_port}, without_type_suffix: true, without_units: true, without_scope_info: true}}}}}}
  pipelines:
    traces: {{receivers: [ebpf], exporters: [{name}]}}
""")


def wait_ready(mport):
    """Until the ebpf receiver has started (its counters appear among the collector's
    metrics; the metrics endpoint itself opens earlier)."""
    wait_port(mport)
    for _ in range(300):
        try:
            if "otelcol_ebpf_events_read" in urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("the ebpf receiver never started")


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


def wrk(port, conns=32, latency=False):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{SECS}s", f"http://127.0.0.1:{port}/index.html"],
                         capture_output=True, text=True, check=True).stdout
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    if latency:
        # One connection, one request at a time: the mean time per request. (wrk's own
        # latency mean is dominated by a few scheduling outliers on a small VM.)
        return 1e6 / rps
    return reqs, rps


# Sends N requests one at a time on one keep-alive connection, timing only the send(2)
# call (where sk_msg inserts the header); prints the median and mean in ns.
SEND_TIMER = r"""
import socket, statistics, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
req = f"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: sendtimer\r\nAccept: */*\r\n\r\n".encode()
ts = []
for _ in range(n):
    t0 = time.perf_counter_ns()
    s.send(req)
    ts.append(time.perf_counter_ns() - t0)
    buf = b""
    while not (b"\r\n\r\n" in buf and len(buf.split(b"\r\n\r\n", 1)[1]) >= 612):
        buf += s.recv(65536)
print(statistics.median(ts), statistics.fmean(ts))
"""
SENDS = 20000


def send_time(port):
    out = subprocess.run([sys.executable, "-c", SEND_TIMER, str(port), str(SENDS)], capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]) / 1000, float(out[1]) / 1000


def measure_injection(d, port):
    """Time of the send(2) carrying a request, by a client sending one request at a time
    to nginx: untraced, traced without and with header injection, interleaved. sk_msg runs
    inside that send, so the difference of the last two is what injection adds."""
    rounds = []
    for i in range(PAIRS):
        row = {"untraced": send_time(port)}
        for mode in ("off", "headers"):
            mport = free_port()
            write_config(f"{d}/inj-{mode}.yaml", "debug: {verbosity: basic}", mport, mode)
            col = subprocess.Popen([BIN, "--config", f"{d}/inj-{mode}.yaml"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_ready(mport)
            row[mode] = send_time(port)
            time.sleep(1.2)
            row[f"{mode}_injected"] = metric(mport, "otelcol_ebpf_context_injected")
            col.terminate()
            col.wait(30)
        print(f"injection round {i + 1}: send(2) median untraced {row['untraced'][0]:.2f} us, traced {row['off'][0]:.2f} us, "
              f"traced+headers {row['headers'][0]:.2f} us, headers inserted {row['headers_injected']:.0f}", flush=True)
        rounds.append(row)
    return rounds


# A gRPC load: one client process keeps GRPC_CONC unary calls in flight on ONE channel
# (HTTP/2 streams multiplexed on one connection) for SECS seconds; prints calls completed.
GRPC_LOAD = r"""
import sys, time, grpc
port, secs, conc = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
ch = grpc.insecure_channel(f"127.0.0.1:{port}")
blob = ch.unary_unary("/demo.Shop/Blob")
blob(b"64")
stop = time.time() + secs
pending = [blob.future(b"64") for _ in range(conc)]
done = 0
while time.time() < stop:
    for i, f in enumerate(pending):
        f.result()
        done += 1
        pending[i] = blob.future(b"64")
for f in pending:
    f.result()
    done += 1
print(done)
"""
GRPC_CONC = 16


def grpc_load(port):
    out = subprocess.run([sys.executable, "-c", GRPC_LOAD, str(port), str(SECS), str(GRPC_CONC)],
                         capture_output=True, text=True, check=True).stdout
    calls = int(out.split()[-1])
    return calls, calls / SECS


def db_round(d, mport, load):
    """One untraced run of `load()` (returns operations, ops/s), then one with a collector
    tracing every process (client and server: two spans per operation)."""
    ops0, base = load()
    col = subprocess.Popen([BIN, "--config", f"{d}/db.yaml"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_ready(mport)
    time.sleep(1)
    names = ("otelcol_receiver_accepted_spans", "otelcol_ebpf_events_lost", "otelcol_ebpf_db_messages_malformed")
    c0, m0 = cpu_us(col.pid), [metric(mport, n) for n in names]
    ops, traced = load()
    time.sleep(1.5)
    c1, m1 = cpu_us(col.pid), [metric(mport, n) for n in names]
    col.terminate()
    col.wait(30)
    spans, lost, malformed = (b - a for a, b in zip(m0, m1))
    return {"base": base, "traced": traced, "cpu": (c1 - c0) / ops, "spans": spans / ops, "lost": lost,
            "malformed": malformed}


def parser_rows() -> list[dict]:
    """The db_parsers criterion benchmark: per protocol, its captures and the median time
    of one replay of all of them."""
    out = subprocess.run(["cargo", "bench", "--quiet", "-p", "otelcol-ebpf-core", "--bench", "db_parsers", "--",
                          "--noplot"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    rows, head = [], None
    units = {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3, "s": 1e6}
    for line in out.splitlines():
        m = re.match(r"^(\S+) \((\d+) captures, (\d+) bytes, (\d+) operations\)/replay", line)
        if m:
            head = m
            continue
        t = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+)", line)
        if t and head:
            rows.append({"name": head[1], "captures": int(head[2]), "bytes": int(head[3]), "ops": int(head[4]),
                         "us": float(t[1]) * units[t[2]]})
            head = None
    return rows


def measure_db(d, rounds=3):
    """pgbench (prepared and simple protocol, select-only) against a private PostgreSQL and
    redis-benchmark -P 16 against a private Redis, traced vs untraced interleaved."""
    mport = free_port()
    write_config(f"{d}/db.yaml", "debug: {verbosity: basic}", mport, receiver="{}")
    pg = tempfile.mkdtemp(prefix="bench-pg-")
    os.chmod(pg, 0o755)
    subprocess.run(["chown", "postgres", pg], check=True)
    bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
    subprocess.run(["runuser", "-u", "postgres", "--", f"{bindir}/initdb", "-D", f"{pg}/data", "-A", "trust", "-U",
                    "postgres"], check=True, capture_output=True)
    pport, rport = free_port(), free_port()
    server = subprocess.Popen(["runuser", "-u", "postgres", "--", f"{bindir}/postgres", "-D", f"{pg}/data", "-p",
                               str(pport), "-h", "127.0.0.1", "-k", pg, "-c", "fsync=off"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", pg], stdout=subprocess.DEVNULL)
    wait_port(pport)
    wait_port(rport)
    pgb = [f"{bindir}/pgbench", "-h", "127.0.0.1", "-p", str(pport), "-U", "postgres"]
    subprocess.run([*pgb, "-i", "-s", "1", "-q", "postgres"], check=True, capture_output=True)

    def pgbench(mode):
        def run():
            out = subprocess.run([*pgb, "-M", mode, "-S", "-c", "4", "-j", "1", "-T", str(SECS), "postgres"],
                                 capture_output=True, text=True, check=True).stdout
            n = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
            return n, n / SECS
        return run

    def redis_bench():
        t0 = time.monotonic()
        n = 200000
        subprocess.run(["redis-benchmark", "-p", str(rport), "-P", "16", "-t", "set,get", "-n", str(n), "-q"],
                       capture_output=True, check=True)
        return 2 * n, 2 * n / (time.monotonic() - t0)

    out = {}
    try:
        for name, load in (("pgbench -M prepared -S", pgbench("prepared")), ("pgbench -M simple -S", pgbench("simple")),
                           ("redis-benchmark -P 16 (SET, GET)", redis_bench)):
            out[name] = []
            for i in range(rounds):
                r = db_round(d, mport, load)
                out[name].append(r)
                print(f"{name} round {i + 1}: untraced {r['base']:.0f} ops/s, traced {r['traced']:.0f} ops/s, "
                      f"ratio {r['traced'] / r['base']:.2f}, collector {r['cpu']:.1f} us/op, spans/op {r['spans']:.2f}, "
                      f"events lost {r['lost']:.0f}, malformed {r['malformed']:.0f}", flush=True)
    finally:
        for p in (server, redis):
            p.terminate()
            p.wait(30)
        shutil.rmtree(pg, ignore_errors=True)
    return out


def measure_grpc(d):
    """Overhead on a grpcio server and client (both traced: two spans per call): untraced,
    idle collector and traced runs alternated. The idle collector (running, tracing no
    process) is the fairer baseline on a small VM: a busy CPU alone changes how fast the
    client's threads hand work to each other."""
    port, mport, iport = free_port(), free_port(), free_port()
    write_config(f"{d}/grpc.yaml", "debug: {verbosity: basic}", mport)
    write_config(f"{d}/grpc-idle.yaml", "debug: {verbosity: basic}", iport,
                 receiver="{discovery: {instrument: [{open_ports: '1'}]}}")
    srv = subprocess.Popen(app_cmd("grpc_app.py", "server") + [str(port)])
    rows = []
    try:
        wait_port(port)
        grpc_load(port)  # warm-up
        for i in range(PAIRS):
            _, base = grpc_load(port)
            idle_col = subprocess.Popen([BIN, "--config", f"{d}/grpc-idle.yaml"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
            wait_ready(iport)
            time.sleep(1)
            _, idle = grpc_load(port)
            idle_col.terminate()
            idle_col.wait(30)
            col = subprocess.Popen([BIN, "--config", f"{d}/grpc.yaml"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_ready(mport)
            time.sleep(1)
            names = ("otelcol_receiver_accepted_spans", "otelcol_ebpf_events_lost", "otelcol_ebpf_h2_headers_undecodable")
            c0, (s0, l0, u0) = cpu_us(col.pid), [metric(mport, n) for n in names]
            calls, traced = grpc_load(port)
            time.sleep(1.5)
            c1, (s1, l1, u1) = cpu_us(col.pid), [metric(mport, n) for n in names]
            col.terminate()
            col.wait(30)
            rows.append((base, idle, traced, (c1 - c0) / calls, (s1 - s0) / calls, l1 - l0, u1 - u0))
            print(f"grpc round {i + 1}: untraced {base:.0f} calls/s, idle collector {idle:.0f}, traced {traced:.0f} calls/s, "
                  f"ratio {traced / base:.2f} (vs idle {traced / idle:.2f}), "
                  f"collector {(c1 - c0) / calls:.1f} us/call, spans/call {(s1 - s0) / calls:.2f}, events lost {l1 - l0:.0f}, "
                  f"undecodable header blocks {u1 - u0:.0f}", flush=True)
    finally:
        srv.terminate()
        srv.wait()
    return rows


CHAIN_N, CHAIN_CONC = 400, 16


def app_cmd(name, port):
    return [sys.executable, os.path.join(ROOT, "test/e2e/apps", name), str(port)]


COUNTERS = ("links_made", "links_server_first", "links_timed_out", "context_injected", "requests_not_injected",
            "parents_ambiguous", "inject_skipped_split_head", "inject_failed", "inject_skipped_own_header", "connections_adopted", "server_head_split", "context_mismatch")


def traced_run(d, tag, apps, drive, requests, propagation):
    """Starts a collector (file exporter) and the apps [(cmd, env, port)], sends `requests`
    calls of drive(i), CHAIN_CONC at a time; returns (spans, counters): spans as
    (service.name, span dict, attributes) from the exported file."""
    import concurrent.futures
    import json
    mport = free_port()
    traces = f"{d}/{tag}-{propagation}.jsonl"
    write_config(f"{d}/{tag}.yaml", f"file: {{path: {traces}, flush_interval: 100ms}}", mport, propagation)
    col = subprocess.Popen([BIN, "--config", f"{d}/{tag}.yaml"], stdout=subprocess.DEVNULL, stderr=open(f"{d}/{tag}-{propagation}.log", "w"))
    procs = []
    try:
        wait_ready(mport)
        for cmd, env, port in apps:
            procs.append(subprocess.Popen(cmd, env=dict(os.environ, **env)))
            wait_port(port)  # this process is traced anyway (ebpf: {})
        with concurrent.futures.ThreadPoolExecutor(max_workers=CHAIN_CONC) as pool:
            list(pool.map(drive, range(requests)))
        time.sleep(2)
        counters = {k: metric(mport, f"otelcol_ebpf_{k}") for k in COUNTERS}
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        col.terminate()
        col.wait(30)
    spans = []
    for line in open(traces):
        for rs in json.loads(line)["resourceSpans"]:
            svc = next(a["value"]["stringValue"] for a in rs["resource"]["attributes"] if a["key"] == "service.name")
            for ss in rs["scopeSpans"]:
                for sp in ss["spans"]:
                    spans.append((svc, sp, {a["key"]: a["value"] for a in sp.get("attributes", [])}))
    return spans, counters


def get(port, path):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path)
    c.getresponse().read()
    c.close()


def port_of(attrs, key):
    return int(attrs.get(key, {}).get("intValue", 0))


def measure_chain(d, propagation):
    """Share of requests through three local services that end up as one connected trace."""
    ports = [free_port() for _ in range(3)]
    apps = [(app_cmd("app.py", p), {"OTEL_SERVICE_NAME": n}, p) for p, n in zip(ports, ("gateway", "orders", "payments"))]
    got, counters = traced_run(d, "chain", apps, lambda i: get(ports[0], f"/proxy/{ports[1]}/proxy/{ports[2]}/users/{i}"),
                               CHAIN_N, propagation)
    spans = {}
    for svc, sp, attrs in got:
        if port_of(attrs, "network.local.port" if sp["kind"] == 2 else "network.peer.port") in ports:
            spans[sp["spanId"]] = (svc, sp["kind"], sp.get("parentSpanId", ""), sp["traceId"])
    connected = 0
    want = [("gateway", 2), ("gateway", 3), ("orders", 2), ("orders", 3), ("payments", 2)]
    for sid, (svc, kind, parent, trace) in spans.items():
        if (svc, kind) != ("payments", 2):
            continue
        chain, cur = [], sid
        while cur in spans:
            chain.append(spans[cur])
            cur = spans[cur][2]
        chain.reverse()
        # The root is the driver's CLIENT span (python), then the five service spans.
        if len(chain) == 6 and chain[0][1] == 3 and [(c[0], c[1]) for c in chain[1:]] == want \
                and len({c[3] for c in chain}) == 1:
            connected += 1
    return dict(mode=propagation, requests=CHAIN_N, connected=connected, **counters)


def measure_event_loop(d, propagation):
    """Share of an asyncio proxy's calls that get the right parent under concurrency."""
    front, back = free_port(), free_port()
    apps = [(app_cmd("async_app.py", front), {}, front), (app_cmd("app.py", back), {}, back)]
    got, _ = traced_run(d, "loop", apps, lambda i: get(front, f"/proxy/{back}/users/{i}"), CHAIN_N // 2, propagation)
    servers, calls = {}, []
    for _, sp, attrs in got:
        path = attrs.get("url.path", {}).get("stringValue", "")
        if sp["kind"] == 2 and port_of(attrs, "network.local.port") == front:
            servers[sp["spanId"]] = path
        elif sp["kind"] == 3 and port_of(attrs, "network.peer.port") == back:
            calls.append((sp.get("parentSpanId", ""), path))
    # Right: the call's parent is the proxy request for the same user.
    right = sum(1 for parent, path in calls if parent in servers and servers[parent].endswith(path))
    wrong = sum(1 for parent, path in calls if parent in servers and not servers[parent].endswith(path))
    return dict(mode=propagation, requests=CHAIN_N // 2, right=right, wrong=wrong, none=len(calls) - right - wrong)


def measure_server_only(d, port, rounds=3):
    """nginx traced (selected by exe_path), wrk not: one span per request, each from an
    untraced local client. Spans must go out without waiting for a client span that
    cannot come: links_timed_out must stay 0. Each round runs wrk four times: untraced,
    with an idle collector (its receiver selecting no process that runs), traced, and
    traced with `sampling: {ratio: 0.1}` (the unsampled requests left out in the kernel)."""
    mport = free_port()
    nginx_only = '{discovery: {instrument: [{exe_path: "*/nginx"}]}%s}'
    configs = {
        "idle": '{discovery: {instrument: [{exe_path: "/nonexistent/*"}]}}',
        "traced": nginx_only % "",
        "sampled": nginx_only % ", sampling: {ratio: 0.1}",
    }
    for tag, receiver in configs.items():
        write_config(f"{d}/server_only_{tag}.yaml", "debug: {verbosity: basic}", mport, receiver=receiver)
    names = ("otelcol_receiver_accepted_spans", "otelcol_ebpf_links_timed_out", "otelcol_ebpf_events_lost",
             "otelcol_ebpf_requests_unsampled_in_kernel", "otelcol_ebpf_responses_framing_lost",
             "otelcol_ebpf_responses_without_request", "otelcol_ebpf_streams_unparsable")
    out = []
    for i in range(rounds):
        _, base = wrk(port)
        row = {"base": base}
        for tag in configs:
            col = subprocess.Popen([BIN, "--config", f"{d}/server_only_{tag}.yaml"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
            wait_ready(mport)
            time.sleep(1)
            c0, m0 = cpu_us(col.pid), [metric(mport, n) for n in names]
            reqs, rate = wrk(port)
            time.sleep(1.5)
            c1, m1 = cpu_us(col.pid), [metric(mport, n) for n in names]
            col.terminate()
            col.wait(30)
            spans, timed_out, lost, skipped, *odd = (b - a for a, b in zip(m0, m1))
            # Framing lost, responses without request, unparsable streams: all must stay 0.
            row[tag] = {"rate": rate, "cpu": (c1 - c0) / reqs, "spans": spans / reqs, "timed_out": timed_out,
                        "lost": lost + sum(odd), "skipped": skipped / reqs}
            if lost + sum(odd):
                print(f"  {tag}: events lost {lost:.0f}, framing lost / orphan responses / unparsable {odd}",
                      flush=True)
        out.append(row)
        t, smp = row["traced"], row["sampled"]
        print(f"server only {i + 1}: untraced {base:.0f} req/s, idle {row['idle']['rate']:.0f}, "
              f"traced {t['rate']:.0f} ({t['cpu']:.1f} us/req, spans/req {t['spans']:.3f}), "
              f"ratio 0.1 {smp['rate']:.0f} ({smp['cpu']:.1f} us/req, spans/req {smp['spans']:.3f}), "
              f"links timed out {t['timed_out']:.0f}, events lost or misparsed {t['lost']:.0f}/{smp['lost']:.0f}",
              flush=True)
    return out


def bpf_prog_stats(pid):
    """{program name: (run_cnt, run_time_ns)} of the eBPF programs process `pid` holds
    (kernel.bpf_stats_enabled must be 1)."""
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            for line in open(f"/proc/{pid}/fdinfo/{fd}"):
                if line.startswith("prog_id:"):
                    ids.add(int(line.split()[1]))
        except OSError:
            pass
    progs = json.loads(subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True, text=True,
                                      check=True).stdout)
    out = {}
    for p in progs:
        if p["id"] in ids:
            cnt, ns = out.get(p["name"], (0, 0))
            out[p["name"]] = (cnt + p.get("run_cnt", 0), ns + p.get("run_time_ns", 0))
    return out


def measure_kernel_hooks(d, port, extra=""):
    """Time spent in the eBPF programs themselves (kernel.bpf_stats_enabled) during one wrk
    run against nginx, nginx traced and wrk not: per program, runs per request and ns per
    run; the sum is the kernel's share of a span, paid inside nginx's syscalls."""
    mport = free_port()
    write_config(f"{d}/hooks.yaml", "debug: {verbosity: basic}", mport,
                 receiver='{discovery: {instrument: [{exe_path: "*/nginx"}]}%s}' % extra)
    subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=1"], check=True)
    col = subprocess.Popen([BIN, "--config", f"{d}/hooks.yaml"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(mport)
        time.sleep(1)
        s0 = bpf_prog_stats(col.pid)
        reqs, _ = wrk(port)
        s1 = bpf_prog_stats(col.pid)
    finally:
        col.terminate()
        col.wait(30)
        subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=0"], check=True)
    rows = []
    for name, (c1, t1) in sorted(s1.items()):
        c0, t0 = s0.get(name, (0, 0))
        if c1 > c0:
            rows.append((name, (c1 - c0) / reqs, (t1 - t0) / (c1 - c0), (t1 - t0) / reqs / 1000))
    print("kernel hooks: " + ", ".join(f"{n} {r:.2f}/req x {ns:.0f} ns" for n, r, ns, _ in rows), flush=True)
    return rows


def rss_mb(pid):
    """(RSS, anonymous RSS) of a process in MB."""
    st = open(f"/proc/{pid}/status").read()
    field = lambda k: int(st.split(k + ":")[1].split()[0]) // 1024
    return field("VmRSS"), field("RssAnon")


def measure_connections(d, port, n=10_000, churn=100_000):
    """RSS of the collector idle, with n keep-alive connections open at nginx, after they
    closed, and along a churn of short connections."""
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    mport = free_port()
    write_config(f"{d}/conns.yaml", "debug: {verbosity: basic}", mport, receiver="{}")
    col = subprocess.Popen([BIN, "--config", f"{d}/conns.yaml"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    rows = []

    def row(state):
        time.sleep(12)  # idle connections are compacted after 2 s, freed memory returned every 10 s
        rss, anon = rss_mb(col.pid)
        rows.append({"state": state, "rss": rss, "anon": anon,
                     "tracked": metric(mport, "otelcol_ebpf_connections_tracked")})
        print(f"memory: {state}: RSS {rss} MB ({anon} MB anonymous)", flush=True)

    req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    try:
        wait_ready(mport)
        row("idle")
        socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(req)
            socks.append(s)
        for s in socks:
            got = b""
            while b"\r\n\r\n" not in got or len(got) < 800:
                got += s.recv(4096)
        row(f"{n:,} keep-alive connections open")
        for s in socks:
            s.close()
        row("after they closed")
        for i in range(churn):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(req)
            s.recv(4096)
            s.close()
            if (i + 1) % (churn // 4) == 0:
                row(f"churn: {i + 1:,} short connections")
    finally:
        col.terminate()
        col.wait(30)
    return rows


def measure_startup(d, extra=1000, rounds=3):
    """Start-up with discovery selectors, with and without `extra` more processes running
    (each with a listening socket, so the port selectors read their descriptors too): the
    time from exec until the receiver's metrics show, and the running-process scan's own
    time from the start-up line."""
    mport = free_port()
    cfg = f"{d}/startup.yaml"
    with open(cfg, "w") as f:
        f.write(f"""receivers:
  ebpf:
    discovery:
      instrument: [{{exe_path: "*/nginx"}}, {{open_ports: "{free_port()}"}}, {{exe_path: "*/python3*", open_ports: "{free_port()}"}}]
      exclude: [{{exe_path: "*/sshd"}}]
exporters:
  debug: {{verbosity: basic}}
service:
  telemetry:
    logs: {{level: info}}
    metrics:
      readers:
        - pull: {{exporter: {{prometheus: {{host: 127.0.0.1, port: {mport}, without_type_suffix: true, without_units: true, without_scope_info: true}}}}}}
  pipelines:
    traces: {{receivers: [ebpf], exporters: [debug]}}
""")
    listen = "use IO::Socket::INET; my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1:0') or die; sleep 600"
    out = []
    for n in (0, extra):
        procs = [subprocess.Popen(["perl", "-e", listen], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(n)]
        time.sleep(1 + n / 500)
        running = len([p for p in os.listdir("/proc") if p.isdigit()])
        for _ in range(rounds):
            t0 = time.monotonic()
            col = subprocess.Popen([BIN, "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            wait_ready(mport)
            ready = time.monotonic() - t0
            col.terminate()
            _, err = col.communicate(timeout=30)
            m = re.search(r"\((\d+) running processes decided in (\d+) ms", err)
            out.append({"running": running, "ready_s": ready,
                        "scanned": int(m.group(1)) if m else -1, "scan_ms": int(m.group(2)) if m else -1})
            print(f"start-up: {running} processes running, ready in {ready:.2f} s, "
                  f"scan {out[-1]['scan_ms']} ms over {out[-1]['scanned']}", flush=True)
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
    return out


def main():
    d = tempfile.mkdtemp()
    port, mport = free_port(), free_port()
    os.makedirs(f"{d}/www")
    with open(f"{d}/www/index.html", "w") as f:
        f.write("x" * 612)
    with open(f"{d}/nginx.conf", "w") as f:
        f.write(f"""worker_processes 1; daemon off; master_process off; user root; worker_rlimit_nofile 20000;
pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 16384; }}
http {{ access_log off; sendfile on; keepalive_timeout 60; keepalive_requests 1000000;
  client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
  server {{ listen 127.0.0.1:{port}; root {d}/www; }} }}
""")
    write_config(f"{d}/otel.yaml", "debug: {verbosity: basic}", mport)
    nginx = subprocess.Popen(["nginx", "-c", f"{d}/nginx.conf"])
    wait_port(port)
    rows = []
    try:
        wrk(port)  # warm-up
        for i in range(PAIRS):
            _, base = wrk(port)
            col = subprocess.Popen([BIN, "--config", f"{d}/otel.yaml"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            wait_ready(mport)
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
        server_only = measure_server_only(d, port)
        hooks = measure_kernel_hooks(d, port)
        conns = measure_connections(d, port)
        inj = measure_injection(d, port)
    finally:
        nginx.terminate()
        nginx.wait()

    startup = measure_startup(d)
    dbs = measure_db(d)
    grpc_rows = measure_grpc(d)
    chains = [measure_chain(d, m) for m in ("headers", "off")]
    loops = [measure_event_loop(d, m) for m in ("headers", "off")]
    import bench_messaging  # scripts/bench_messaging.py
    msgs = bench_messaging.measure_messaging(d)
    import bench_go  # scripts/bench_go.py
    go_fanout = bench_go.measure_go_fanout(d)

    ratios = sorted(r[1] / r[0] for r in rows)
    med = lambda xs: sorted(xs)[len(xs) // 2]
    core = subprocess.run(["cargo", "bench", "--quiet", "-p", "otelcol-ebpf-core", "--bench", "assemble", "--", "--noplot"],
                          cwd=ROOT, capture_output=True, text=True)
    core_lines = [l for l in core.stdout.splitlines() if "thrpt" in l or "time:" in l or l.startswith("assemble")]
    parsers = parser_rows()
    import cpu_profile  # scripts/cpu_profile.py
    prof = cpu_profile.profile(SECS)
    report = f"""# Benchmarks

Produced by `make bench` ({time.strftime('%Y-%m-%d')}, kernel {os.uname().release}, {os.cpu_count()} cores).

## Overhead: nginx under wrk, traced vs untraced

nginx 1 worker, 612-byte page, `wrk -t1 -c32 -d{SECS}s` on loopback; {PAIRS} pairs, untraced and
traced (collector running with `ebpf: {{}}`, i.e. nginx AND wrk traced: two spans per request,
and a traceparent inserted into every request wrk sends) alternated in one run. The collector's CPU is utime+stime of its process during the traced run.

| pair | untraced req/s | traced req/s | ratio | collector CPU µs/req | spans exported/req | events lost |
|---|---|---|---|---|---|---|
""" + "\n".join(f"| {i + 1} | {b:.0f} | {t:.0f} | {t / b:.2f} | {c:.1f} | {s:.2f} | {l:.0f} |" for i, (b, t, c, s, l) in enumerate(rows)) + f"""

Median ratio traced/untraced: **{med(ratios):.2f}**; median collector CPU: **{med([r[2] for r in rows]):.1f} µs per request**
(two spans); median spans exported per request: **{med([r[3] for r in rows]):.2f}**.

## Overhead: nginx traced, its load generator not

The same nginx and wrk, with the receiver selecting nginx only (`exe_path: "*/nginx"`): one
SERVER span per request, each request from a local client the receiver does not trace. Such
spans go out at once (no wait for a client span that cannot come), so `links_timed_out` stays 0.
Each round: untraced, idle collector (running, its receiver selecting no process that runs),
traced, and traced with head sampling at `ratio: 0.1` (unsampled requests are left out in the
kernel: `requests_unsampled_in_kernel` per request). "Lost or misparsed" adds `events_lost`,
`responses_framing_lost`, `responses_without_request` and `streams_unparsable` (a few
responses without request per run, sampled or not: see the notes).

| round | untraced req/s | idle req/s | traced req/s | traced/untraced | idle/untraced | collector CPU µs/req | spans/req | links timed out | events lost or misparsed | ratio 0.1: req/s | ratio 0.1: traced/untraced | ratio 0.1: CPU µs/req | ratio 0.1: spans/req | ratio 0.1: left out in kernel/req | ratio 0.1: lost or misparsed |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(f"| {i + 1} | {r['base']:.0f} | {r['idle']['rate']:.0f} | {r['traced']['rate']:.0f} | {r['traced']['rate'] / r['base']:.2f} | {r['idle']['rate'] / r['base']:.2f} | {r['traced']['cpu']:.1f} | {r['traced']['spans']:.3f} | {r['traced']['timed_out']:.0f} | {r['traced']['lost']:.0f} | {r['sampled']['rate']:.0f} | {r['sampled']['rate'] / r['base']:.2f} | {r['sampled']['cpu']:.2f} | {r['sampled']['spans']:.3f} | {r['sampled']['skipped']:.3f} | {r['sampled']['lost']:.0f} |" for i, r in enumerate(server_only)) + f"""

Median collector CPU per request: **{med([r['traced']['cpu'] for r in server_only]):.1f} µs** traced,
**{med([r['sampled']['cpu'] for r in server_only]):.2f} µs** at ratio 0.1
(**{med([r['sampled']['cpu'] / r['traced']['cpu'] for r in server_only]):.2f}** of it); traced/untraced
**{med([r['traced']['rate'] / r['base'] for r in server_only]):.2f}**, idle/untraced **{med([r['idle']['rate'] / r['base'] for r in server_only]):.2f}**.

## Overhead: gRPC (HTTP/2) under load, traced vs untraced

A grpcio server (`test/e2e/apps/grpc_app.py`, unary `Blob` returning 64 bytes, 16 worker
threads) and one grpcio client process keeping {GRPC_CONC} calls in flight on ONE channel (streams
multiplexed on one HTTP/2 connection) for {SECS}s; {PAIRS} rounds of three runs in one run: untraced
(no collector), idle collector (running, its receiver selecting no process), traced (`ebpf: {{}}`:
server and client traced, two spans per call). Python's grpc hands each call between threads,
so on this 2-core VM its speed depends on whether the CPUs are kept busy at all: the idle
collector column shows that part, and traced/idle is the cost of tracing itself.

| round | untraced calls/s | idle collector calls/s | traced calls/s | traced/untraced | traced/idle | collector CPU µs/call | spans exported/call | events lost | undecodable header blocks |
|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(f"| {i + 1} | {b:.0f} | {idl:.0f} | {t:.0f} | {t / b:.2f} | {t / idl:.2f} | {c:.1f} | {s:.2f} | {l:.0f} | {u:.0f} |" for i, (b, idl, t, c, s, l, u) in enumerate(grpc_rows)) + f"""

Median ratio traced/untraced: **{med([r[2] / r[0] for r in grpc_rows]):.2f}**, traced/idle collector: **{med([r[2] / r[1] for r in grpc_rows]):.2f}**;
median collector CPU: **{med([r[3] for r in grpc_rows]):.1f} µs per call** (two spans); median spans exported per call: **{med([r[4] for r in grpc_rows]):.2f}**.

## Added latency of header injection

A client sends {SENDS} requests to the same nginx, one at a time on one keep-alive connection,
and times each `send(2)` carrying a request (sk_msg inserts the header inside that call):
untraced, traced with `context_propagation: off`, traced with `context_propagation: headers`,
interleaved, {PAIRS} rounds. Median (mean) µs per send.

| round | untraced | traced, off | traced, headers | headers inserted |
|---|---|---|---|---|
""" + "\n".join(f"| {i + 1} | {r['untraced'][0]:.2f} ({r['untraced'][1]:.2f}) | {r['off'][0]:.2f} ({r['off'][1]:.2f}) | {r['headers'][0]:.2f} ({r['headers'][1]:.2f}) | {r['headers_injected']:.0f} |" for i, r in enumerate(inj)) + f"""

Added time per injected request, median over rounds of (headers − off): **{med([r['headers'][1] - r['off'][1] for r in inj]):.2f} µs** on
the means, {med([r['headers'][0] - r['off'][0] for r in inj]):.2f} µs on the medians. On this VM a send(2) is faster while any
process keeps the CPUs busy (the collector polls), so `off` can beat `untraced`; compare the two traced columns.
The whole-service cost of injection shows in the nginx/wrk table above (wrk's requests carry it).

## Connected traces: three services on one node

{CHAIN_N} requests, {CHAIN_CONC} at a time, from a Python client through gateway → orders → payments
(thread-per-request apps on loopback), once per `context_propagation` mode: `headers` (ids carried
in inserted `traceparent` headers) and `off` (same-node linking and in-process parenting only).

| mode | requests | fully connected traces (6 spans, one trace id) | share | headers inserted | client requests not injected | links made | server read first | links timed out |
|---|---|---|---|---|---|---|---|---|
""" + "\n".join(f"| {c['mode']} | {c['requests']} | {c['connected']} | {c['connected'] / c['requests']:.1%} | {c['context_injected']:.0f} | {c['requests_not_injected']:.0f} | {c['links_made']:.0f} | {c['links_server_first']:.0f} | {c['links_timed_out']:.0f} |" for c in chains) + f"""

## In-process parenting on an event loop

{loops[0]['requests']} requests, {CHAIN_CONC} at a time, through an asyncio proxy (one thread serving all of them)
to a backend. A call made while its thread has exactly one request in flight is that
request's child; while it has several (overlapping requests on the loop) the call gets no
parent rather than a possibly wrong one (`parents_ambiguous`). Thread-per-request servers
are exact (the chain above, and the e2e tests).

| mode | requests | calls with the right parent | with a wrong parent | without parent |
|---|---|---|---|---|
""" + "\n".join(f"| {l['mode']} | {l['requests']} | {l['right']} ({l['right'] / l['requests']:.0%}) | {l['wrong']} | {l['none']} |" for l in loops) + f"""

## Databases under load, traced vs untraced

A private PostgreSQL (`pgbench -S`: one primary-key SELECT per transaction, 4 clients) and a
private Redis (`redis-benchmark -P 16`, SET and GET); the collector traces every process, so
each operation gives a CLIENT span (pgbench, redis-benchmark) and a SERVER span (the
server). {len(next(iter(dbs.values())))} untraced/traced pairs each, interleaved in one run.

| load | round | untraced ops/s | traced ops/s | ratio | collector CPU µs/op | spans/op | events lost | malformed |
|---|---|---|---|---|---|---|---|---|
""" + "\n".join(f"| {name} | {i + 1} | {r['base']:.0f} | {r['traced']:.0f} | {r['traced'] / r['base']:.2f} | {r['cpu']:.1f} | {r['spans']:.2f} | {r['lost']:.0f} | {r['malformed']:.0f} |" for name, rows in dbs.items() for i, r in enumerate(rows)) + f"""

## Start-up with many processes running

With `discovery` selectors (`exe_path` and `open_ports`), the receiver decides every process
already running before it reports ready (its executable, its parent's state, and the ports
its sockets listen on or connect to). Time from the collector's exec until its receiver's
metrics show (eBPF load and attach included), and the scan's own time from the start-up
line; {len(startup) // 2} starts each without and with 1,000 more processes (perl, one
listening socket each).

| processes running | ready after (s) | scan (ms) | processes scanned |
|---|---|---|---|
""" + "\n".join(f"| {s['running']} | {s['ready_s']:.2f} | {s['scan_ms']} | {s['scanned']} |" for s in startup) + """

## Core: events → spans → OTLP bytes (criterion)

`cargo bench -p otelcol-ebpf-core --bench assemble` replays recorded streams (test/golden) through
the assembler and the OTLP encoder on one core:

```
""" + "\n".join(core_lines) + f"""
```

## Where the collector's CPU goes (perf)

`scripts/cpu_profile.py` on an unstripped build: nginx traced, wrk not (one span per request),
`perf record -F 999` on the collector for one {SECS} s wrk run: {prof['reqs'] / SECS:.0f} requests/s,
{prof['spans'] / max(prof['reqs'], 1):.3f} spans per request, **{prof['us']:.1f} µs of collector CPU per request**,
collector RSS {prof['rss_mb']:.0f} MB at the end of the run (peak {prof['hwm_mb']:.0f} MB).

| side | share of samples | µs per request |
|---|---|---|
""" + "\n".join(f"| {k} | {v:.0f}% | {v * prof['us'] / 100:.1f} |" for k, v in sorted(prof["sides"].items(), key=lambda kv: -kv[1])) + """

Top symbols by self time:

```
""" + "\n".join(f"{pct:5.1f}%  {sd:6}  {sym[:100]}" for pct, sd, sym in prof["top"][:15]) + f"""
```

## The kernel's share: time in the eBPF programs

The same nginx and wrk (nginx traced, wrk not), `kernel.bpf_stats_enabled=1` for one {SECS} s
run: how often each program ran per request (every syscall of every process passes
`on_sys_exit`; most leave at the first checks) and its mean time. This is paid inside the
apps' syscalls, not by the collector.

| program | runs per request | ns per run | µs per request |
|---|---|---|---|
""" + "\n".join(f"| {n} | {r:.2f} | {ns:.0f} | {us:.2f} |" for n, r, ns, us in hooks) + f"""

Total: **{sum(h[3] for h in hooks):.2f} µs per request** in the kernel hooks.

## Memory: idle, 10,000 keep-alive connections, churn

The collector with `ebpf: {{}}` (nginx and the client both traced, so each connection is
tracked twice), nginx keeping connections alive: RSS idle, with 10,000 connections open
(one request each, then idle), after they closed, and during a churn of short connections
(one request each, as fast as one Python client goes).

| state | collector RSS (MB) | of which anonymous (MB) | connections tracked |
|---|---|---|---|
""" + "\n".join(f"| {r['state']} | {r['rss']} | {r['anon']} | {r['tracked']:.0f} |" for r in conns) + f"""

## Core: protocol parsers (criterion)

`cargo bench -p otelcol-ebpf-core --bench db_parsers` replays each protocol's recorded
conversations (test/golden/<protocol>_*.bin, both directions) through a fresh session per
conversation, sanitizing and summarising query text as by default, on one core:

| protocol | captures | bytes | operations | time per replay (µs) | operations/s | MiB/s |
|---|---|---|---|---|---|---|
""" + "\n".join(f"| {r['name']} | {r['captures']} | {r['bytes']} | {r['ops']} | {r['us']:.1f} | {r['ops'] / r['us'] * 1e6:,.0f} | {r['bytes'] / r['us'] * 1e6 / 2**20:.0f} |" for r in parsers) + "\n"
    report += "\n" + bench_messaging.report(msgs)
    report += "\n" + bench_go.report(go_fanout)
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
