"""A private RabbitMQ broker (Debian's rabbitmq-server, 3.10): a temp dir, free ports, no
system service. Used by the e2e tests and by test/golden/capture_tcp.py.

    with RabbitMQ() as broker:      # started, ready; stopped (with its epmd) on exit
        broker.port                 # AMQP 0-9-1 on 127.0.0.1

The server is started from /usr/lib/rabbitmq/bin/rabbitmq-server directly (the /usr/sbin
wrappers switch user); readiness is `rabbitmqctl wait <pidfile>` with a deadline while the
server process is checked alive. Its own epmd (on a private port) outlives the node: it is
stopped by its PID too. Everything is stopped by PID, never by name."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_listening(port: int) -> set[int]:
    """PIDs holding a listening TCP socket on `port` (to find the private epmd)."""
    inodes = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(f).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    pids = set()
    if not inodes:
        return pids
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            for fd in (d / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    pids.add(int(d.name))
                    break
        except OSError:
            continue
    return pids


class RabbitMQ:
    def __init__(self, tmp: Path | None = None, port: int | None = None, free_port=_free_port):
        missing = [str(p) for p in (RABBIT_BIN / "rabbitmq-server", RABBIT_BIN / "rabbitmqctl") if not p.exists()]
        if missing:
            raise RuntimeError(f"missing {', '.join(missing)}: apt-get install rabbitmq-server (scripts/deps.sh)")
        self.own_tmp = tmp is None
        self.dir = Path(tmp or tempfile.mkdtemp(prefix="rabbitmq-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node = f"otel{self.port}@localhost"
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "server.out"
        plugins = self.dir / "enabled_plugins"
        plugins.write_text("[].\n")
        self.env = {
            **os.environ,
            "HOME": str(self.dir),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "rabbit.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
        }
        (self.dir / "rabbitmq.conf").write_text("loopback_users = none\n")

    def start(self, timeout: float = 60) -> "RabbitMQ":
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([str(RABBIT_BIN / "rabbitmq-server")], env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"rabbitmq-server exited with {self.proc.returncode}: {self.output()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"rabbitmq-server not ready after {timeout}s: {self.output()}")
                try:
                    r = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, "wait", "--timeout",
                                        str(max(1, int(min(left, 10)))), self.env["RABBITMQ_PID_FILE"]],
                                       env=self.env, capture_output=True, timeout=min(left, 10) + 5)
                    if r.returncode == 0 and self._port_open():
                        return self
                except subprocess.TimeoutExpired:
                    pass
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise

    def _port_open(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.5).close()
            return True
        except OSError:
            return False

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def ctl(self, *args: str) -> str:
        r = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args], env=self.env,
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {r.stderr}")
        return r.stdout

    def stop(self) -> None:
        """Stops the node's process group and its epmd, by PID."""
        epmd = _pids_listening(self.epmd_port)
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                self.proc.wait(10)
        # The node's other processes (beam, erl_child_setup, inet_gethost) share its group.
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in epmd | _pids_listening(self.epmd_port):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.own_tmp:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "RabbitMQ":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
