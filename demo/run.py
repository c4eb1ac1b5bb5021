"""`make demo`: a small shop under light load, traced by the collector, shown in Zipkin.

Starts, each privately (a temp dir, its own ports, stopped by pid at the end):
PostgreSQL and Redis, the shop (frontend -> checkout -> inventory, demo/shop.py), Zipkin's
server (its jar from Maven Central, fetched by scripts/jars.sh), the collector with
config/demo.yaml (ebpf receiver -> batch -> zipkin exporter) and a load generator (curl,
a few requests a second, ~5% of them for the item that is out of stock). Prints the URL to
open and runs until Ctrl-C.

  python3 demo/run.py [--zipkin-port 9411] [--rate 3]
  python3 demo/run.py --screenshot docs/images/demo-trace.png   # one trace's waterfall, then exit

test/e2e/test_38_demo_viewer.py drives the same functions.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE_DIR = Path(os.environ.get("CACHE_DIR", Path.home() / ".cache" / "otelcol-ebpf"))
ZIPKIN_JAR = CACHE_DIR / "jars" / "zipkin-server-3.5.1-exec.jar"
COLLECTOR_BIN = Path(os.environ.get("OTELCOL_EBPF_BIN", REPO / "bin" / "otelcol-ebpf"))
CONFIG = REPO / "config" / "demo.yaml"
SHOP = Path(__file__).resolve().parent / "shop.py"
PYTHON = sys.executable
SERVICES = ("frontend", "checkout", "inventory")
ITEMS = 20  # item ITEMS is out of stock: 1 request in 20 fails
READY_MARK = "Everything is ready"


_taken: set[int] = set()


def free_port() -> int:
    """A port nobody listens on, never the same twice, below the ephemeral range: the
    receiver selects processes by these ports, and a client's local port must not be one."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(500):
        port = random.randrange(21000, min(low, 32000))
        if port not in _taken and port_free(port):
            _taken.add(port)
            return port
    raise RuntimeError("no free port found")


def port_free(port: int) -> bool:
    for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        with socket.socket(family) as s:
            try:
                s.bind((addr, port))
            except OSError:
                return False
    return True


def wait_for(what: str, cond, proc: subprocess.Popen | None, timeout: float, log: Path | None = None):
    """Polls cond() until it is truthy; fails when proc has exited or the deadline passed."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f}s:\n{tail}")
        time.sleep(0.2)


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def http_get(url: str, timeout: float = 5) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read()
    except OSError:
        return None


class Demo:
    """Every part of the demo; stop() ends what was started and removes the temp dir."""

    def __init__(self, workdir: Path | None = None, zipkin_port: int | None = None):
        self.own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="otelcol-demo-"))
        # PostgreSQL runs as its own user: it must traverse the directory.
        os.chmod(self.workdir, 0o711)
        self.procs: list[subprocess.Popen] = []
        self.zipkin_port = zipkin_port or free_port()
        self.ports: dict[str, int] = {}
        self.collector: subprocess.Popen | None = None
        self.loadgen: LoadGenerator | None = None

    # ------------------------------------------------------------------ processes

    def spawn(self, name: str, args, env_extra: dict | None = None, cwd=None) -> subprocess.Popen:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as f:
            p = subprocess.Popen([str(a) for a in args], stdout=f, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=cwd or self.workdir,
                                 env={**os.environ, **(env_extra or {})}, start_new_session=True)
        p.log = log  # type: ignore[attr-defined]
        p.name = name  # type: ignore[attr-defined]
        self.procs.append(p)
        return p

    def stop(self) -> None:
        if self.loadgen:
            self.loadgen.stop()
        # Collector first: it flushes its last spans to Zipkin while Zipkin still runs.
        for p in sorted(reversed(self.procs), key=lambda p: p is not self.collector):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(timeout=20)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
            try:
                os.killpg(p.pid, signal.SIGKILL)  # what is left of its group (postgres backends)
            except (ProcessLookupError, PermissionError):
                pass
            p.wait()
        self.procs.clear()
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------ databases

    def start_postgres(self) -> int:
        pg_bin = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not pg_bin:
            raise RuntimeError("PostgreSQL is missing (make deps installs postgresql)")
        pg_bin = pg_bin[-1]
        d = self.workdir / "pg"
        d.mkdir()
        shutil.chown(d, "postgres", "postgres")
        subprocess.run(["runuser", "-u", "postgres", "--", pg_bin / "initdb", "-D", d / "data", "-A", "trust",
                        "-U", "postgres"], check=True, capture_output=True, timeout=120)
        port = free_port()
        p = self.spawn("postgres", ["runuser", "-u", "postgres", "--", pg_bin / "postgres", "-D", d / "data",
                                    "-p", port, "-h", "127.0.0.1", "-k", d, "-c", "fsync=off"])
        wait_for("postgres", lambda: listening(port), p, 30, p.log)
        import psycopg
        # The server accepts TCP a moment before it accepts logins.
        def connect():
            try:
                return psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True)
            except psycopg.OperationalError:
                return None
        with wait_for("postgres login", connect, p, 30, p.log) as c:
            c.execute("CREATE DATABASE shop")
        with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=shop", autocommit=True) as c:
            c.execute("CREATE TABLE items (id int PRIMARY KEY, name text, stock int, sold int DEFAULT 0)")
            for i in range(1, ITEMS + 1):
                c.execute("INSERT INTO items (id, name, stock) VALUES (%s, %s, %s)",
                          (i, f"item {i}", 0 if i == ITEMS else 1000))
        self.ports["postgres"] = port
        return port

    def start_redis(self) -> int:
        port = free_port()
        (self.workdir / "redis").mkdir()
        p = self.spawn("redis", ["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", self.workdir / "redis"])
        wait_for("redis", lambda: listening(port), p, 15, p.log)
        import redis
        r = redis.Redis(host="127.0.0.1", port=port)
        for i in range(1, ITEMS + 1):
            r.set(f"price:{i}", f"{i * 3 + 0.99:.2f}")
        r.close()
        self.ports["redis"] = port
        return port

    # ------------------------------------------------------------------ the shop

    def start_shop(self) -> None:
        for name in SERVICES:
            self.ports[name] = free_port()
        deps = {"frontend": [self.ports["checkout"]],
                "checkout": [self.ports["inventory"], self.ports["redis"]],
                "inventory": [self.ports["postgres"]]}
        for name in reversed(SERVICES):
            p = self.spawn(name, [PYTHON, SHOP, name, self.ports[name], *deps[name]],
                           env_extra={"OTEL_SERVICE_NAME": name})
            wait_for(name, lambda port=self.ports[name]: listening(port), p, 15, p.log)

    def shop_url(self, item: int) -> str:
        return f"http://127.0.0.1:{self.ports['frontend']}/buy/{item}"

    # ------------------------------------------------------------------ Zipkin

    @property
    def zipkin_url(self) -> str:
        return f"http://127.0.0.1:{self.zipkin_port}"

    def launch_zipkin(self) -> subprocess.Popen:
        """Starts Zipkin's server (in-memory storage); wait_zipkin() waits for it (~23 s)."""
        if not ZIPKIN_JAR.exists():
            raise RuntimeError(f"{ZIPKIN_JAR} is missing (make deps fetches it: scripts/jars.sh)")
        self.zipkin = self.spawn("zipkin", ["java", "-Xmx256m", "-jar", ZIPKIN_JAR,
                                            f"--server.port={self.zipkin_port}"])
        self.zipkin.started = time.monotonic()  # type: ignore[attr-defined]
        return self.zipkin

    def wait_zipkin(self, timeout: float = 120) -> None:
        wait_for("zipkin", lambda: http_get(f"{self.zipkin_url}/zipkin/") is not None
                 and http_get(f"{self.zipkin_url}/health") is not None, self.zipkin, timeout, self.zipkin.log)

    def traces(self, service: str = "frontend", limit: int = 100, settled: float = 3) -> list[list[dict]]:
        """Traces of `service` that began at least `settled` seconds ago (so every span of
        them has been through the collector's 1 s batch), newest first."""
        end_ms = int((time.time() - settled) * 1000)
        raw = http_get(f"{self.zipkin_url}/zipkin/api/v2/traces?serviceName={service}&limit={limit}"
                       f"&lookback=3600000&endTs={end_ms}")
        return json.loads(raw) if raw else []

    # ------------------------------------------------------------------ the collector

    def start_collector(self, config: Path = CONFIG, timeout: float = 60) -> subprocess.Popen:
        if not COLLECTOR_BIN.exists():
            raise RuntimeError(f"{COLLECTOR_BIN} is missing: make build")
        shop_ports = ",".join(str(self.ports[n]) for n in (*SERVICES, "postgres", "redis"))
        self.metrics_port = free_port()
        p = self.spawn("collector", [COLLECTOR_BIN, "--config", config], env_extra={
            "DEMO_SHOP_PORTS": shop_ports,
            "DEMO_ZIPKIN_ENDPOINT": f"{self.zipkin_url}/api/v2/spans",
            "DEMO_METRICS_PORT": str(self.metrics_port),
        })
        self.collector = p
        wait_for("collector", lambda: READY_MARK in p.log.read_text(errors="replace"), p, timeout, p.log)
        return p

    # ------------------------------------------------------------------ load

    def start_load(self, rate: float = 3.0) -> "LoadGenerator":
        self.loadgen = LoadGenerator(self, rate)
        self.loadgen.start()
        return self.loadgen

    def start_all(self, rate: float = 3.0, say=lambda msg: None) -> None:
        """Everything, Zipkin's slow start overlapping the rest."""
        self.launch_zipkin()
        say("starting PostgreSQL and Redis")
        self.start_postgres()
        self.start_redis()
        say("starting the shop: frontend -> checkout -> inventory")
        self.start_shop()
        say("waiting for Zipkin (about 25 s)")
        self.wait_zipkin()
        say(f"Zipkin is up, {time.monotonic() - self.zipkin.started:.0f} s after its start")
        say("starting the collector (config/demo.yaml)")
        self.start_collector()
        say(f"load: {rate:g} requests/s to the frontend")
        self.start_load(rate)


class LoadGenerator(threading.Thread):
    """curl requests to the frontend at `rate` per second. curl is excluded in
    config/demo.yaml, so each request's trace starts at the frontend's server span."""

    def __init__(self, demo: Demo, rate: float):
        super().__init__(daemon=True)
        self.demo, self.rate = demo, rate
        self.done = threading.Event()
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.rng = random.Random(13)

    def one(self, item: int) -> None:
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-m", "10", "-w", "%{http_code}",
                              self.demo.shop_url(item)], capture_output=True, text=True)
        with self.lock:
            self.counts[out.stdout or "failed"] = self.counts.get(out.stdout or "failed", 0) + 1

    def run(self) -> None:
        while not self.done.wait(1 / self.rate):
            threading.Thread(target=self.one, args=(self.rng.randint(1, ITEMS),), daemon=True).start()

    def stop(self) -> None:
        self.done.set()


# ---------------------------------------------------------------------- traces


def services_of(trace: list[dict]) -> set[str]:
    return {s.get("localEndpoint", {}).get("serviceName") for s in trace}


def complete_trace(demo: Demo, ok: bool = True) -> list[dict] | None:
    """The newest trace in Zipkin holding every service of the shop and both databases;
    with ok, a successful one (no error tag), else a failed one."""
    want = {*SERVICES, "postgres", "redis-server"}
    newest_first = sorted(demo.traces(), key=lambda t: -min(s.get("timestamp", 0) for s in t))
    for t in newest_first:
        if want <= services_of(t) and ok == all("error" not in s.get("tags", {}) for s in t):
            return t
    return None


def chromium(args: list, timeout: float = 60) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    if exe is None:
        raise RuntimeError("chromium is missing (make deps installs it)")
    with tempfile.TemporaryDirectory(prefix="demo-chromium-") as profile:
        return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               f"--user-data-dir={profile}", "--virtual-time-budget=15000", *args],
                              capture_output=True, text=True, timeout=timeout)


def screenshot(url: str, out: Path, size: str = "1400,900") -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    r = chromium([f"--window-size={size}", f"--screenshot={out}", url])
    if not out.exists():
        raise RuntimeError(f"chromium made no screenshot: {r.stderr[-2000:]}")


def dump_dom(url: str, size: str = "1400,1400") -> str:
    r = chromium([f"--window-size={size}", "--dump-dom", url])
    return r.stdout


# ---------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zipkin-port", type=int, default=9411, help="Zipkin's port (a free one if taken)")
    ap.add_argument("--rate", type=float, default=3.0, help="requests per second to the frontend")
    ap.add_argument("--screenshot", type=Path, help="write one trace's waterfall to this PNG, then exit")
    args = ap.parse_args()

    port = args.zipkin_port if port_free(args.zipkin_port) else None
    demo = Demo(zipkin_port=port)
    # SIGTERM ends the demo as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    say = lambda msg: print(f"[demo] {msg}", flush=True)  # noqa: E731
    try:
        demo.start_all(args.rate, say)
        if args.screenshot:
            # Not the first purchase: it also opens the database connections.
            wait_for("20 requests", lambda: sum(demo.loadgen.counts.values()) >= 20, demo.zipkin, 60)
        say("waiting for a trace through every service")
        trace = wait_for("a complete trace in Zipkin", lambda: complete_trace(demo), demo.zipkin, 60)
        trace_url = f"{demo.zipkin_url}/zipkin/traces/{trace[0]['traceId']}"
        if args.screenshot:
            screenshot(trace_url, args.screenshot)
            say(f"wrote {args.screenshot} ({trace_url})")
            return 0
        host = socket.gethostname()
        print(f"""
  Zipkin is up: open  http://{host}:{demo.zipkin_port}/zipkin/   (or {demo.zipkin_url}/zipkin/ here)
  pick serviceName "frontend", press RUN QUERY, click a trace; red ones are the out-of-stock 500s.
  A trace through every service: {trace_url}
  Logs of every part: {demo.workdir}   Ctrl-C stops everything.
""", flush=True)
        while True:
            time.sleep(10)
            for p in demo.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.name} exited with {p.returncode}: see {p.log}")
            with demo.loadgen.lock:
                counts = dict(sorted(demo.loadgen.counts.items()))
            say(f"requests so far by status: {counts}")
    except KeyboardInterrupt:
        print()
        return 0
    except RuntimeError as e:
        say(f"failed: {e}")
        return 1
    finally:
        say("stopping everything")
        demo.stop()


if __name__ == "__main__":
    sys.exit(main())
