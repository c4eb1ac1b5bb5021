"""Helpers for the end-to-end tests: the collector under test, its span file, its
metrics, the processes a test starts, free ports and listening checks.

Nothing here sleeps to make an assertion true: waits poll for a condition and give up
after a timeout, leaving the assertion to the test.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COLLECTOR_BIN = Path(os.environ.get("OTELCOL_EBPF_BIN", REPO / "bin" / "otelcol-ebpf"))
APPS = Path(__file__).resolve().parent / "apps"
# Jars from Maven Central, fetched by scripts/jars.sh (make deps).
JARS = Path(os.environ.get("CACHE_DIR", Path.home() / ".cache" / "otelcol-ebpf")) / "jars"
PYTHON = sys.executable  # the real interpreter, not a pyenv shim script
READY_MARK = "Everything is ready"

SERVER = 2
CLIENT = 3
STATUS_ERROR = 2

# Our programs, as `bpftool prog list` names them (names are cut to 15 characters).
BPF_PROG_NAMES = {n[:15] for n in ("on_sys_exit", "on_fork", "on_exec", "on_exit")}


# --------------------------------------------------------------------------- ports

_used_ports: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port nobody listens on, below the ephemeral range (so no client's local port
    can equal it) and away from common service ports; never the same twice in a run."""
    hi = min(_ephemeral_low(), 32000)
    for _ in range(500):
        port = random.randrange(21000, hi)
        if port in _used_ports:
            continue
        try:
            for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
                with socket.socket(fam, socket.SOCK_STREAM) as s:
                    s.bind((addr, port))
        except OSError:
            continue
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port found")


def listening_ports() -> set[int]:
    """Ports with a TCP socket in LISTEN state, read from /proc (no connection made: a
    probe connection would make the prober look like a client of the port)."""
    ports = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(f).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 3 and parts[3] == "0A":
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def wait_listening(port: int, proc: subprocess.Popen | None = None, timeout: float = 15, what: str = "server") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port in listening_ports():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode} before listening on {port}: {Procs.output_of(proc)}")
        time.sleep(0.05)
    raise AssertionError(f"{what} is not listening on port {port} after {timeout}s: {Procs.output_of(proc) if proc else ''}")


# ----------------------------------------------------------------------- processes


class Procs:
    """Processes started by one test (or fixture); all killed, with their process
    groups, by cleanup(), whatever happened."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.procs: list[subprocess.Popen] = []
        self._n = 0

    def spawn(self, args, *, env_extra: dict | None = None, cwd=None, name: str | None = None) -> subprocess.Popen:
        self._n += 1
        name = name or Path(str(args[0])).name
        out = self.workdir / f"{self._n:02d}-{name}.out"
        env = dict(os.environ)
        if env_extra:
            env.update(env_extra)
        f = open(out, "wb")
        try:
            p = subprocess.Popen([str(a) for a in args], stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=cwd, env=env, start_new_session=True)
        finally:
            f.close()
        p.out_path = out  # type: ignore[attr-defined]
        self.procs.append(p)
        return p

    def run(self, args, *, timeout: float = 30, env_extra: dict | None = None, cwd=None, check: bool = True,
            name: str | None = None) -> tuple[subprocess.Popen, str]:
        """Runs a client to completion; returns (process, its output)."""
        p = self.spawn(args, env_extra=env_extra, cwd=cwd, name=name)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill(p)
            raise AssertionError(f"{args} did not finish in {timeout}s: {self.output_of(p)}")
        out = self.output_of(p)
        if check and p.returncode != 0:
            raise AssertionError(f"{args} exited with {p.returncode}: {out}")
        return p, out

    @staticmethod
    def output_of(p: subprocess.Popen | None) -> str:
        path = getattr(p, "out_path", None)
        if path is None:
            return ""
        try:
            return Path(path).read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    @staticmethod
    def _kill(p: subprocess.Popen) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # The group may outlive its leader (nginx workers): end what is left of it.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def cleanup(self) -> None:
        for p in reversed(self.procs):
            self._kill(p)
        self.procs.clear()


def children_of(pid: int) -> set[int]:
    """Pids of the direct children of pid."""
    kids = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids.update(int(x) for x in (task / "children").read_text().split())
        except OSError:
            pass
    return kids


# --------------------------------------------------------------------------- spans


def _value(v: dict):
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "arrayValue" in v:
        return [_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return _attrs(v["kvlistValue"].get("values", []))
    if "bytesValue" in v:
        return v["bytesValue"]
    return None


def _attrs(kvs) -> dict:
    return {kv["key"]: _value(kv.get("value", {})) for kv in kvs or []}


def flatten(doc: dict) -> list[dict]:
    """One OTLP/JSON export request → flat span dicts."""
    out = []
    for rs in doc.get("resourceSpans", []):
        resource = _attrs(rs.get("resource", {}).get("attributes"))
        for ss in rs.get("scopeSpans", []):
            scope = ss.get("scope", {}).get("name", "")
            for sp in ss.get("spans", []):
                status = sp.get("status") or {}
                out.append({
                    "resource": resource,
                    "scope": scope,
                    "name": sp.get("name", ""),
                    "kind": int(sp.get("kind", 0)),
                    "trace_id": sp.get("traceId", ""),
                    "span_id": sp.get("spanId", ""),
                    "parent_span_id": sp.get("parentSpanId", ""),
                    "trace_state": sp.get("traceState", ""),
                    "flags": int(sp.get("flags", 0)),
                    "start": int(sp.get("startTimeUnixNano", 0)),
                    "end": int(sp.get("endTimeUnixNano", 0)),
                    "attrs": _attrs(sp.get("attributes")),
                    "links": [(l.get("traceId", ""), l.get("spanId", "")) for l in sp.get("links", [])],
                    "status_code": int(status.get("code", 0)),
                    "status_message": status.get("message", ""),
                })
    return out


class SpanFile:
    """Incremental reader of the file exporter's output (one JSON document a line)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._offset = 0
        self._partial = b""
        self.spans: list[dict] = []

    def refresh(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return self.spans
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an unfinished last line waits for the next read
        for line in lines:
            if line.strip():
                self.spans.extend(flatten(json.loads(line)))
        return self.spans

    def raw_text(self) -> str:
        try:
            return self.path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait(self, pred, count: int = 1, timeout: float = 15, settle: float = 1.0) -> list[dict]:
        """Spans matching pred, once at least `count` are there and no new one came for
        `settle` seconds (so a test can assert an exact count); on timeout, what is there."""
        deadline = time.monotonic() + timeout
        while True:
            got = [s for s in self.refresh() if pred(s)]
            if len(got) >= count:
                break
            if time.monotonic() >= deadline:
                return got
            time.sleep(0.1)
        quiet_until = time.monotonic() + settle
        while time.monotonic() < quiet_until:
            time.sleep(0.1)
            now = [s for s in self.refresh() if pred(s)]
            if len(now) != len(got):
                got = now
                quiet_until = time.monotonic() + settle
        return got


# Predicates on flat spans: everything a test asserts is filtered by a port it chose.

def server_on(port: int):
    return lambda s: s["kind"] == SERVER and s["attrs"].get("network.local.port") == port


def client_to(port: int):
    return lambda s: s["kind"] == CLIENT and s["attrs"].get("network.peer.port") == port


def on_port(port: int):
    a, b = server_on(port), client_to(port)
    return lambda s: a(s) or b(s)


def and_(*preds):
    return lambda s: all(p(s) for p in preds)


def path_is(path: str):
    return lambda s: s["attrs"].get("url.path") == path


def path_startswith(prefix: str):
    return lambda s: s["attrs"].get("url.path", "").startswith(prefix)


def brief(spans) -> str:
    """Short text of spans for assertion messages."""
    rows = []
    for s in spans:
        a = s["attrs"]
        rows.append(
            f"{'SERVER' if s['kind'] == SERVER else 'CLIENT' if s['kind'] == CLIENT else s['kind']} "
            f"{s['name']!r} svc={s['resource'].get('service.name')} pid={s['resource'].get('process.pid')} "
            f"path={a.get('url.path')} status={a.get('http.response.status_code')} code={s['status_code']} "
            f"local={a.get('network.local.port')} peer={a.get('network.peer.port')} "
            f"dur_ms={(s['end'] - s['start']) / 1e6:.1f} trace={s['trace_id']} span={s['span_id']} parent={s['parent_span_id']}"
        )
    return f"{len(spans)} span(s):\n  " + "\n  ".join(rows) if rows else "no spans"


# -------------------------------------------------------------------------- metrics

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> list[tuple[str, dict, float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(3) or ""))
        try:
            out.append((m.group(1), labels, float(m.group(4))))
        except ValueError:
            pass
    return out


# -------------------------------------------------------------------------- collector


def collector_config(receiver: dict, traces_path: Path, metrics_port: int) -> dict:
    """The whole collector config; JSON is valid YAML, so no YAML library is needed."""
    return {
        "receivers": {"ebpf": receiver},
        "exporters": {"file": {"path": str(traces_path), "flush_interval": "100ms"}},
        "service": {
            "telemetry": {
                "metrics": {
                    "level": "detailed",
                    "readers": [{"pull": {"exporter": {"prometheus": {"host": "127.0.0.1", "port": metrics_port}}}}],
                },
            },
            "pipelines": {"traces": {"receivers": ["ebpf"], "exporters": ["file"]}},
        },
    }


def prog_ids_held_by(pid: int) -> set[int]:
    """Ids of the BPF programs that process pid holds through its fds (programs and
    links), read from /proc/<pid>/fdinfo: bpftool here does not show owner pids."""
    ids = set()
    for fdinfo in Path(f"/proc/{pid}/fdinfo").glob("*"):
        try:
            text = fdinfo.read_text()
        except OSError:
            continue
        for m in re.finditer(r"^prog_id:\s*(\d+)", text, re.M):
            ids.add(int(m.group(1)))
    return ids


def bpf_progs() -> list[dict]:
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"bpftool prog show failed: {out.stderr}"
    return json.loads(out.stdout or "[]")


class Collector:
    def __init__(self, receiver: dict | None = None, workdir: Path | None = None):
        self.receiver = copy.deepcopy(receiver if receiver is not None else {})
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="otelcol-e2e-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.traces_path = self.workdir / "traces.jsonl"
        self.log_path = self.workdir / "collector.log"
        self.config_path = self.workdir / "config.yaml"
        self.metrics_port = free_port()
        self.spans = SpanFile(self.traces_path)
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        # Files merged over config_path in order (the collector merges maps, replaces lists).
        self.overlays: list[Path] = []
        self.env: dict[str, str] = {}

    def write_config(self, raw: str | None = None) -> None:
        text = raw if raw is not None else json.dumps(
            collector_config(self.receiver, self.traces_path, self.metrics_port), indent=2)
        self.config_path.write_text(text)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def launch(self) -> subprocess.Popen:
        assert COLLECTOR_BIN.exists(), f"{COLLECTOR_BIN} is missing: build it first (make build)"
        if not self.config_path.exists():
            self.write_config()
        log = open(self.log_path, "wb")
        try:
            configs = [a for c in [self.config_path, *self.overlays] for a in ("--config", str(c))]
            self.proc = subprocess.Popen([str(COLLECTOR_BIN), *configs], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
                                         env={**os.environ, **self.env}, start_new_session=True)
        finally:
            log.close()
        return self.proc

    def start(self, timeout: float = 60) -> "Collector":
        self.launch()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY_MARK in self.log():
                # otelcol's Run installs its SIGTERM handler only after logging that mark:
                # a SIGTERM sent at once would kill it (-15) instead of shutting it down.
                time.sleep(0.5)
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited with {self.proc.returncode} during start-up:\n{self.log()[-6000:]}")
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"collector not ready after {timeout}s (no {READY_MARK!r}):\n{self.log()[-6000:]}")

    def wait_exit(self, timeout: float = 60) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 120) -> int | None:
        """SIGTERM, wait for exit (SIGKILL past the timeout); returns the exit code, or
        None when it had to be killed. The wait is long because the kernel removes each
        uprobe with its own grace period (~0.1 s here, 2-3 s per Go program using net/http),
        even from a killed process: the collector the Go tests share probes dozens."""
        p = self.proc
        if p is None:
            return self.returncode
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                self.returncode = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=60)
                self.returncode = None
        else:
            self.returncode = p.returncode
        self.proc = None
        return self.returncode

    @property
    def pid(self) -> int:
        return self.proc.pid

    def metrics(self) -> list[tuple[str, dict, float]]:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            return parse_prometheus(r.read().decode())

    def metric(self, name: str, **labels) -> float | None:
        """Sum of the samples of `name` (with or without the exporter's `_total`
        suffix) whose labels include `labels`; None when there is no such sample."""
        total, seen = 0.0, False
        for n, lb, v in self.metrics():
            if n in (name, name + "_total") and all(lb.get(k) == w for k, w in labels.items()):
                total += v
                seen = True
        return total if seen else None

    def ebpf_counter(self, name: str) -> float | None:
        return self.metric(f"otelcol_ebpf_{name}")


class CollectorManager:
    """Keeps one collector running at a time, restarting only when a module asks for a
    different receiver config (so modules sharing a config share the collector, and two
    collectors never trace each other)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.current: Collector | None = None
        self._n = 0

    def get(self, receiver: dict | None = None) -> Collector:
        receiver = receiver if receiver is not None else {}
        if self.current is not None and self.current.receiver == receiver and self.current.proc is not None \
                and self.current.proc.poll() is None:
            return self.current
        self.stop()
        self._n += 1
        c = Collector(receiver, self.root / f"collector-{self._n}")
        c.start()
        self.current = c
        return c

    def stop(self) -> int | None:
        c, self.current = self.current, None
        return c.stop() if c is not None else None


def start_app(procs: Procs, port: int, env_extra: dict | None = None):
    """The keep-alive thread-per-request test app on 127.0.0.1:port."""
    p = procs.spawn([PYTHON, APPS / "app.py", port], env_extra=env_extra, name="app")
    wait_listening(port, p, what="app.py")
    return p


def start_http_server(procs: Procs, port: int, root: Path):
    p = procs.spawn([PYTHON, "-m", "http.server", port, "--bind", "127.0.0.1"], cwd=root, name="http.server")
    wait_listening(port, p, what="http.server")
    return p


def require_tools(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


# --------------------------------------------------------------------------- clients


def run_client(procs: Procs, port: int, reqs: list[dict], env_extra: dict | None = None) -> tuple[subprocess.Popen, dict]:
    """apps/client.py: every request on one keep-alive connection."""
    p, out = procs.run([PYTHON, APPS / "client.py", port, json.dumps(reqs)], env_extra=env_extra, name="client")
    return p, json.loads(out.strip().splitlines()[-1])


def run_rawclient(procs: Procs, port: int, mode: str, *paths: str) -> tuple[subprocess.Popen, dict]:
    p, out = procs.run([PYTHON, APPS / "rawclient.py", port, mode, *paths], name="rawclient")
    return p, json.loads(out.strip().splitlines()[-1])


def run_curl(procs: Procs, *args, check: bool = True) -> tuple[subprocess.Popen, str]:
    return procs.run(["curl", "-sS", *args], check=check, name="curl")


def is_trace_id(t: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]{32}", t or "")) and set(t) != {"0"}


def is_span_id(t: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]{16}", t or "")) and set(t) != {"0"}


def duration_ms(span: dict) -> float:
    return (span["end"] - span["start"]) / 1e6


def by_start(spans: list[dict]) -> list[dict]:
    return sorted(spans, key=lambda s: (s["start"], s["end"]))


def chain_up(span: dict, by_id: dict) -> list[dict]:
    """The span and its ancestors among by_id (span id → span), root first."""
    chain = [span]
    while chain[-1]["parent_span_id"] in by_id:
        chain.append(by_id[chain[-1]["parent_span_id"]])
    return list(reversed(chain))


CHAIN_SHAPE = [("curl", 3), ("gateway", 2), ("gateway", 3), ("orders", 2), ("orders", 3), ("payments", 2)]


def shape(chain: list[dict]) -> list[tuple[str, int]]:
    return [(x["resource"]["service.name"], x["kind"]) for x in chain]


def touches(ports) -> "callable":
    """Spans of a server on one of `ports`, or of a client calling one."""
    def pred(s):
        a = s["attrs"]
        return (a.get("network.local.port") if s["kind"] == 2 else a.get("network.peer.port")) in ports
    return pred


def payment_chains(spans: list[dict]) -> list[list[dict]]:
    """For each payments SERVER span, its chain of ancestors among `spans`, root first."""
    by_id = {s["span_id"]: s for s in spans}
    return [chain_up(s, by_id) for s in spans if s["kind"] == 2 and s["resource"]["service.name"] == "payments"]


# ------------------------------------------------------------- context propagation

import base64  # noqa: E402

TRACEPARENT_LINE = re.compile(rb"traceparent: 00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\r\n")


def quiet_collector(collectors: CollectorManager, receiver: dict) -> Collector:
    """Like collectors.get(receiver), with the collector's own metrics port added to
    `exclude_ports`: every counter read is an HTTP request from this (traced) process,
    which would otherwise count in context_injected and give client spans."""
    cur = collectors.current
    if cur is not None and getattr(cur, "quiet_base", None) == receiver and cur.proc is not None \
            and cur.proc.poll() is None:
        return cur
    collectors.stop()
    collectors._n += 1
    c = Collector(receiver, collectors.root / f"collector-{collectors._n}")
    c.receiver["exclude_ports"] = [*c.receiver.get("exclude_ports", []), c.metrics_port]
    c.quiet_base = copy.deepcopy(receiver)  # type: ignore[attr-defined]
    c.start()
    collectors.current = c
    return c


def ebpf_counters(collector: Collector, names) -> dict:
    """The named otelcol_ebpf_* counters from one scrape (None for a missing one)."""
    samples = collector.metrics()
    out = {}
    for name in names:
        full = f"otelcol_ebpf_{name}"
        vals = [v for n, _, v in samples if n in (full, full + "_total")]
        out[name] = sum(vals) if vals else None
    return out


def counters_settled(collector: Collector, at_least: dict, timeout: float = 8, settle: float = 1.5) -> dict:
    """Reads the counters named in `at_least` until each is at least its value (or the
    timeout passes), then until none changed for `settle` seconds (kernel counters reach
    the metrics about once a second); returns the last values."""
    deadline = time.monotonic() + timeout
    names = list(at_least)
    got = ebpf_counters(collector, names)
    while time.monotonic() < deadline and not all(
            got[k] is not None and got[k] >= v for k, v in at_least.items()):
        time.sleep(0.2)
        got = ebpf_counters(collector, names)
    quiet_until = time.monotonic() + settle
    give_up = time.monotonic() + timeout + settle
    while time.monotonic() < min(quiet_until, give_up):
        time.sleep(0.2)
        now = ebpf_counters(collector, names)
        if now != got:
            got = now
            quiet_until = time.monotonic() + settle
    return got


def start_dump_server(procs: Procs, port: int, outfile: Path, bind: str = "127.0.0.1"):
    """apps/dump_server.py: records every byte received, one JSON line a connection."""
    p = procs.spawn([PYTHON, APPS / "dump_server.py", port, outfile, bind], name="dump_server")
    wait_listening(port, p, what="dump_server.py")
    return p


def dump_records(outfile: Path, count: int, timeout: float = 10) -> list[dict]:
    """The dump server's connection records once there are at least `count` (what there
    is on timeout), with `data` and `requests` decoded to bytes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            lines = [json.loads(x) for x in Path(outfile).read_text().splitlines() if x.strip()]
        except FileNotFoundError:
            lines = []
        if len(lines) >= count or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    for r in lines:
        r["data"] = base64.b64decode(r["data"])
        r["requests"] = [base64.b64decode(x) for x in r["requests"]]
    return lines


def run_sendraw(procs: Procs, port: int, mode: str, nresp: int, *pieces: bytes,
                env_extra: dict | None = None) -> tuple[subprocess.Popen, dict]:
    """apps/sendraw.py: sends exactly `pieces` (see its docstring for the modes)."""
    p, out = procs.run([PYTHON, APPS / "sendraw.py", port, mode, nresp,
                        *(base64.b64encode(x).decode() for x in pieces)], env_extra=env_extra, name="sendraw")
    return p, json.loads(out.strip().splitlines()[-1])


def propagation_before(collector: Collector) -> dict:
    got = ebpf_counters(collector, ("context_injected", "links_made"))
    assert None not in got.values(), f"counters not exported: {got}"
    return got


def check_propagation_counters(collector: Collector, mode: str, before: dict, n: int) -> None:
    """After n requests through the three-service chain. headers: each of the 3 hops got
    an inserted header (counter reads, HTTP requests themselves, may add a few) and none
    was left to same-node linking; off: nothing inserted, linking joined the hops."""
    if mode == "headers":
        got = counters_settled(collector, {"context_injected": before["context_injected"] + 3 * n, "links_made": 0},
                               settle=0)
        assert got["context_injected"] >= before["context_injected"] + 3 * n, (before, got)
        assert got["links_made"] == before["links_made"], (before, got)
    else:
        got = counters_settled(collector, {"context_injected": 0, "links_made": before["links_made"] + 2 * n})
        assert got["context_injected"] == 0, (before, got)
        assert got["links_made"] >= before["links_made"] + 2 * n, (before, got)


def inserted(received: bytes, sent: bytes) -> bytes | None:
    """The bytes inserted right after the request line of `sent`, when `received` is
    `sent` with something inserted there and nothing else changed; else None."""
    at = sent.index(b"\r\n") + 2
    extra = len(received) - len(sent)
    if extra <= 0 or received[:at] != sent[:at] or received[at + extra:] != sent[at:]:
        return None
    return received[at:at + extra]


def traceparent_of(received: bytes, sent: bytes) -> tuple[str, str, str]:
    """(trace id, span id, flags) of the one traceparent line inserted into `sent`."""
    line = inserted(received, sent)
    m = TRACEPARENT_LINE.fullmatch(line or b"")
    assert m, f"not exactly one traceparent line inserted after the request line:\nsent     {sent!r}\nreceived {received!r}"
    return tuple(g.decode() for g in m.groups())


def go_build(out_dir: Path, app: str, *flags: str) -> Path:
    """Builds test/e2e/apps/<app>/main.go (standard library only) into out_dir/<app>."""
    out = out_dir / app
    subprocess.run(["go", "build", *flags, "-o", out, APPS / app / "main.go"], check=True, capture_output=True,
                   env=dict(os.environ, GO111MODULE="off", CGO_ENABLED="0"))
    return out


def go_build_module(out_dir: Path, app: str, *flags: str) -> Path:
    """Builds the Go module test/e2e/apps/<app> (its go.mod names versions from the module
    proxy; the Go build cache makes a second build fast) into out_dir/<app>."""
    out = out_dir / app
    subprocess.run(["go", "build", *flags, "-o", out, "."], check=True, capture_output=True, cwd=APPS / app,
                   env=dict(os.environ, CGO_ENABLED="0"), timeout=600)
    return out


def nginx_conf(d: Path, http_body: str) -> str:
    """An nginx.conf keeping every file under d (one worker, root user), with http_body
    (server blocks, directives) inside its http block."""
    return f"""
user root;
worker_processes 1;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    default_type application/octet-stream;
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{http_body}
}}
"""


def wait_output(procs: Procs, p: subprocess.Popen, text: str, timeout: float = 15) -> None:
    """Until the running process p has printed text."""
    deadline = time.monotonic() + timeout
    while text not in procs.output_of(p):
        assert time.monotonic() < deadline and p.poll() is None, procs.output_of(p)
        time.sleep(0.02)


# ------------------------------------------------- a collector with an otlp receiver too


def collector_config_with_otlp(receiver: dict, traces_path: Path, metrics_port: int, otlp_port: int) -> dict:
    """collector_config with an `otlp` receiver (OTLP/HTTP on 127.0.0.1:otlp_port) next to
    `ebpf` in the traces pipeline: SDK spans and eBPF spans end up in one span file."""
    cfg = collector_config(receiver, traces_path, metrics_port)
    cfg["receivers"]["otlp"] = {"protocols": {"http": {"endpoint": f"127.0.0.1:{otlp_port}"}}}
    cfg["service"]["pipelines"]["traces"]["receivers"] = ["ebpf", "otlp"]
    return cfg


def start_collector_with_otlp(collectors: CollectorManager, receiver: dict, workdir: Path) -> Collector:
    """A collector of its own with collector_config_with_otlp (its OTLP/HTTP port in
    `.otlp_port`, traces URL in `.otlp_traces_url`). The manager's collector is stopped
    first (never two collectors at once); the caller stops this one."""
    collectors.stop()
    c = Collector(receiver, workdir)
    c.otlp_port = free_port()  # type: ignore[attr-defined]
    c.otlp_traces_url = f"http://127.0.0.1:{c.otlp_port}/v1/traces"  # type: ignore[attr-defined]
    c.write_config(raw=json.dumps(collector_config_with_otlp(c.receiver, c.traces_path, c.metrics_port, c.otlp_port),
                                  indent=2))
    c.start()
    return c


def wait_until(cond, timeout: float = 15, interval: float = 0.1):
    """Polls cond() until it returns something truthy (returned) or the timeout passes
    (the last falsy value is returned); never an assertion by itself."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got or time.monotonic() >= deadline:
            return got
        time.sleep(interval)


def until_parented(attempt, what: str, timeout: float = 25) -> None:
    """Calls attempt(k) for k = 0, 1, ... until it returns true, failing with `what` after
    `timeout` s. The receiver probes a new Go executable at its exec or at the next 3 s
    scan: until then the program's calls have no parent (never a wrong one)."""
    deadline, k = time.time() + timeout, 0
    while not attempt(k):
        assert time.time() < deadline, what
        k += 1


def log_lines(collector: Collector, *needles: str) -> list[str]:
    """The collector's log lines that contain every one of `needles`."""
    return [line for line in collector.log().splitlines() if all(n in line for n in needles)]


def is_ebpf_span(span: dict) -> bool:
    """A span made by the ebpf receiver (scope otelcol-ebpf), not one an SDK sent in."""
    return span["scope"] == "otelcol-ebpf"


def is_sdk_span(span: dict) -> bool:
    """A span an OpenTelemetry SDK exported (its resource has telemetry.sdk.*)."""
    return "telemetry.sdk.name" in span["resource"] and not is_ebpf_span(span)


# ------------------------------------------------- servers and clients older than the collector

EARLY_CLIENT = r"""
import http.client, os, sys, time
port, flag = int(sys.argv[1]), sys.argv[2]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
c.request("GET", "/users/0"); c.getresponse().read()
print("first", flush=True)
while not os.path.exists(flag):
    time.sleep(0.05)
for i in (1, 2, 3):
    c.request("GET", f"/users/{i}"); c.getresponse().read()
print("done", c.sock.getsockname()[1], flush=True)
"""


def start_early_client(procs: Procs, tmp_path: Path, port: int) -> tuple[subprocess.Popen, Path]:
    """A python client that sends GET /users/0 on a keep-alive connection and waits; once
    the returned flag file exists it sends /users/1..3 on the same connection and prints
    "done <its local port>". Returns once the first request is answered."""
    flag = tmp_path / "go"
    script = tmp_path / "early_client.py"
    script.write_text(EARLY_CLIENT)
    p = procs.spawn([PYTHON, script, port, flag], name="early-client")
    wait_output(procs, p, "first")
    return p, flag


def start_nginx(procs: Procs, tmp_path: Path, port: int, extra: str = "") -> subprocess.Popen:
    """An nginx of its own (prefix under tmp_path, daemon off) serving /index.html on
    127.0.0.1:port; `extra`: more http-block directives."""
    d = tmp_path / "nginx"
    (d / "www").mkdir(parents=True)
    (d / "www" / "index.html").write_text("hello\n")
    conf = d / "nginx.conf"
    conf.write_text(nginx_conf(d, f"{extra}    server {{ listen 127.0.0.1:{port}; root {d}/www; }}"))
    p = procs.spawn(["nginx", "-p", d, "-e", d / "error.log", "-c", conf, "-g", "daemon off;"], name="nginx")
    wait_listening(port, p, what="nginx")
    return p


# ------------------------------------------------- database servers, private to a test


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    assert found, f"PostgreSQL's {name} is missing (make deps installs postgresql)"
    return str(found[-1])


def start_postgres(procs: Procs, tmp_path: Path, tls: bool = False, port: int | None = None) -> int:
    """A PostgreSQL server of its own (initdb in tmp_path, run as the postgres user, TCP
    on 127.0.0.1 and a free port, trust auth); returns the port. Database `postgres`,
    user `postgres`. With tls, it also accepts TLS (a self-signed certificate)."""
    d = tmp_path / "pg"
    d.mkdir(parents=True)
    shutil.chown(d, "postgres", "postgres")
    # The postgres user must reach it: pytest's directories are root's alone.
    for up in [tmp_path, *tmp_path.parents]:
        if up == Path("/") or up == Path(tempfile.gettempdir()):
            break
        os.chmod(up, os.stat(up).st_mode | 0o011)
    data = d / "data"
    subprocess.run(["runuser", "-u", "postgres", "--", _pg_bin("initdb"), "-D", str(data), "-A", "trust",
                    "-U", "postgres"], check=True, capture_output=True, timeout=120)
    port = port or free_port()
    extra = []
    if tls:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "key.pem",
                        "-out", d / "cert.pem", "-days", "2", "-subj", "/CN=localhost"], check=True,
                       capture_output=True)
        for f in ("key.pem", "cert.pem"):
            shutil.chown(d / f, "postgres", "postgres")
        os.chmod(d / "key.pem", 0o600)
        extra = ["-c", "ssl=on", "-c", f"ssl_cert_file={d / 'cert.pem'}", "-c", f"ssl_key_file={d / 'key.pem'}"]
    p = procs.spawn(["runuser", "-u", "postgres", "--", _pg_bin("postgres"), "-D", str(data), "-p", str(port),
                     "-h", "127.0.0.1", "-k", str(d), "-c", "fsync=off", "-c", "max_connections=20", *extra],
                    name="postgres")
    wait_listening(port, p, what="postgres")
    return port


def start_mariadb(procs: Procs, tmp_path: Path, tls: bool = False) -> int:
    """A MariaDB server of its own (mariadb-install-db in tmp_path, mariadbd dropping to
    the mysql user, TCP on 127.0.0.1 and a free port, LOCAL INFILE allowed); returns the
    port. User `root` without password over TCP; database `shop` created (by a client in
    this process: filter spans by pid). With tls, it also accepts TLS: a self-signed
    certificate for 127.0.0.1 / localhost in tmp_path/mariadb/cert.pem (the clients' CA)."""
    d = tmp_path / "mariadb"
    data = d / "data"
    data.mkdir(parents=True)
    shutil.chown(d, "mysql", "mysql")
    shutil.chown(data, "mysql", "mysql")
    # The mysql user must reach it: pytest's directories are root's alone.
    for up in [tmp_path, *tmp_path.parents]:
        if up == Path("/") or up == Path(tempfile.gettempdir()):
            break
        os.chmod(up, os.stat(up).st_mode | 0o011)
    subprocess.run(["mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={data}",
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    extra = []
    if tls:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "key.pem",
                        "-out", d / "cert.pem", "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
        for f in ("key.pem", "cert.pem"):
            shutil.chown(d / f, "mysql", "mysql")
        os.chmod(d / "key.pem", 0o600)
        extra = [f"--ssl-cert={d / 'cert.pem'}", f"--ssl-key={d / 'key.pem'}"]
    p = procs.spawn(["mariadbd", "--no-defaults", "--user=mysql", f"--datadir={data}", f"--port={port}",
                     "--bind-address=127.0.0.1", f"--socket={d}/mysqld.sock", f"--pid-file={d}/mysqld.pid",
                     "--skip-log-bin", "--innodb-buffer-pool-size=32M", "--max-connections=30",
                     "--local-infile=1", *extra], name="mariadbd")
    wait_listening(port, p, what="mariadbd")
    import pymysql
    conn = pymysql.connect(host="127.0.0.1", port=port, user="root", connect_timeout=10)
    try:
        conn.cursor().execute("CREATE DATABASE shop")
    finally:
        conn.close()
    return port


def start_redis(procs: Procs, tmp_path: Path, port: int | None = None) -> int:
    """A redis-server of its own (no persistence, dir in tmp_path); returns its port."""
    d = tmp_path / "redis"
    d.mkdir(parents=True)
    port = port or free_port()
    p = procs.spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                     "--dir", str(d)], name="redis")
    wait_listening(port, p, what="redis")
    return port


FERRETDB_BIN = Path(os.environ.get("CACHE_DIR", Path.home() / ".cache" / "otelcol-ebpf")) / "bin" / "ferretdb"


def start_ferretdb(procs: Procs, tmp_path: Path) -> int:
    """A FerretDB of its own (MongoDB wire protocol over SQLite in tmp_path, built by
    scripts/ferretdb.sh); returns its port."""
    d = tmp_path / "ferretdb"
    (d / "data").mkdir(parents=True)
    (d / "state").mkdir()
    port, debug = free_port(), free_port()
    p = procs.spawn([str(FERRETDB_BIN), "--handler=sqlite", f"--sqlite-url=file:{d / 'data'}/",
                     f"--listen-addr=127.0.0.1:{port}", f"--state-dir={d / 'state'}",
                     f"--debug-addr=127.0.0.1:{debug}", "--telemetry=disable", "--log-level=warn"], name="ferretdb")
    wait_listening(port, p, what="ferretdb")
    return port
