"""A private Apache Kafka broker (4.4.0, KRaft, one node acting as broker and controller)
for the tests and the golden recordings: its jars come from Maven Central through
scripts/jars.sh ($CACHE_DIR/jars/kafka-4.4.0), its data and config live in a directory of
the caller's, its ports are chosen free. Started with the measured recipe (small heap, serial
GC, a small log-cleaner buffer or a 128 MB heap dies at start, replication factors 1, no
initial rebalance delay); ready when its log says the server started, with the process
checked alive meanwhile and a deadline; stopped by PID.

    with KafkaBroker(tmpdir) as b:          # or b = KafkaBroker(...); b.start(); ...; b.stop()
        bootstrap = f"127.0.0.1:{b.port}"

`advertised_port`: the port the broker tells clients to connect to (a recording proxy's, so
that the clients' later connections go through it too). `spawn(args, log_path)`: how the
server process is started (the e2e tests pass their process tracker), default Popen in a
new session.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

KAFKA_VERSION = "4.4.0"
CACHE_DIR = Path(os.environ.get("CACHE_DIR", Path.home() / ".cache" / "otelcol-ebpf"))
JARS_DIR = CACHE_DIR / "jars" / f"kafka-{KAFKA_VERSION}"
READY_LINE = "Kafka Server started"
JAVA_OPTS = ["-Xmx128m", "-Xms64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss512k",
             "-Djava.awt.headless=true"]

LOG4J2 = """\
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KafkaBroker:
    def __init__(self, workdir, port: int | None = None, advertised_port: int | None = None,
                 auto_create_topics: bool = False, num_partitions: int = 1, spawn=None, extra: dict | None = None):
        self.dir = Path(workdir)
        self.port = port or free_port()
        self.controller_port = free_port()
        self.advertised_port = advertised_port or self.port
        self.auto_create = auto_create_topics
        self.num_partitions = num_partitions
        self.extra = extra or {}
        self.spawn = spawn
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "kafka.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    def _classpath(self) -> str:
        if not (JARS_DIR / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
            raise RuntimeError(f"{JARS_DIR} holds no Kafka jars: run scripts/jars.sh (make deps)")
        return str(JARS_DIR / "*")

    def _java(self, main: str, *args: str) -> list[str]:
        return ["java", *JAVA_OPTS, f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
                "-cp", self._classpath(), main, *args]

    def _write_config(self) -> Path:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.advertised_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.dir / "data"),
            "num.partitions": str(self.num_partitions),
            "auto.create.topics.enable": "true" if self.auto_create else "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "share.coordinator.state.topic.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.dedupe.buffer.size": "8388608",
            "num.network.threads": "1",
            "num.io.threads": "2",
            "background.threads": "2",
            # The controller writes a no-op record every 500 ms by default: quieter.
            "metadata.max.idle.interval.ms": "30000",
            **self.extra,
        }
        path = self.dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.dir / "log4j2.properties").write_text(LOG4J2)
        return path

    def start(self, deadline: float = 90) -> "KafkaBroker":
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self._write_config()
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        fmt = subprocess.run(self._java("kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(conf)),
                             capture_output=True, text=True, timeout=deadline)
        if fmt.returncode != 0:
            raise RuntimeError(f"kafka storage format failed ({fmt.returncode}): {fmt.stdout[-2000:]} {fmt.stderr[-2000:]}")
        args = self._java("kafka.Kafka", str(conf))
        if self.spawn is not None:
            self.proc = self.spawn(args, self.log_path)
            # A process tracker may keep the output elsewhere.
            self.log_path = Path(getattr(self.proc, "out_path", self.log_path))
        else:
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kafka exited with {self.proc.returncode} before it was ready: {self.log()}")
            if READY_LINE in self.log():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"kafka not ready after {deadline}s: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kafka-") as d:
        t0 = time.monotonic()
        with KafkaBroker(d) as b:
            print(f"kafka ready on {b.bootstrap} after {time.monotonic() - t0:.1f}s (pid {b.proc.pid})", file=sys.stderr)
            if len(sys.argv) > 1:
                time.sleep(float(sys.argv[1]))
