#!/usr/bin/env python3
"""Records real Redis conversations into test/golden/redis_*.bin, the streams the Redis
parser's replay tests (rust-core/src/protocols/redis/tests.rs) feed to a RedisSession.

Starts a private redis-server (Debian `redis-server`: --port <free> --save "" --appendonly
no --dir <tmp>) and a small TCP proxy in front of it; real clients (redis-cli and redis-py)
talk to the proxy, which records what crossed each client connection, one record per
recv() on either side:

    flow u8 (0 = toward the server, 1 = toward the client), ts_ns u64 LE, len u32 LE, bytes

Needs: redis-server and redis-cli (apt-get install redis-server), redis-py (pip install
redis). No root. Run from anywhere:  python3 test/golden/capture_redis.py
The output is deterministic in content (not in timestamps or chunking); the replay tests
assert on the operations, not on the exact bytes.
"""
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import redis

OUT = os.path.dirname(os.path.abspath(__file__))


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
    raise RuntimeError(f"port {port} never opened")


class Proxy:
    """Accepts client connections on `port`, relays each to the server, records both
    directions of every connection (the records of all connections, in accept order,
    go to the file given to `start`)."""

    def __init__(self, server_port):
        self.server_port = server_port
        self.port = free_port()
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(16)
        self.lock = threading.Lock()
        self.conns = []  # per accepted connection: list of records
        self.threads = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            s = socket.create_connection(("127.0.0.1", self.server_port))
            recs = []
            with self.lock:
                self.conns.append(recs)
            for src, dst, flow in ((c, s, 0), (s, c, 1)):
                t = threading.Thread(target=self._pump, args=(src, dst, flow, recs), daemon=True)
                t.start()
                self.threads.append(t)

    def _pump(self, src, dst, flow, recs):
        while True:
            try:
                b = src.recv(65536)
            except OSError:
                b = b""
            if not b:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            with self.lock:
                recs.append((flow, time.monotonic_ns(), b))
            dst.sendall(b)

    def take(self):
        """Waits for the relays to end (clients closed), returns the recorded connections."""
        deadline = time.time() + 10
        for t in self.threads:
            t.join(max(0.1, deadline - time.time()))
        with self.lock:
            conns, self.conns, self.threads = self.conns, [], []
        return conns


def drop_command_docs(recs):
    """redis-cli's REPL starts with COMMAND DOCS (a ~170 KB reply, for its hints): the
    exchange is cut out of the recording to keep the captures small."""
    out, skipping = [], False
    for flow, ts, b in recs:
        if flow == 0:
            skipping = b == b"*2\r\n$7\r\nCOMMAND\r\n$4\r\nDOCS\r\n"
        if not skipping:
            out.append((flow, ts, b))
    return out


def write(name, conns, which=0):
    """Writes the records of one connection (the `which`-th accepted)."""
    path = os.path.join(OUT, f"redis_{name}.bin")
    recs = conns[which]
    with open(path, "wb") as f:
        for flow, ts, b in recs:
            f.write(struct.pack("<BQI", flow, ts, len(b)))
            f.write(b)
    print(f"{path}: {len(recs)} records, {os.path.getsize(path)} bytes")


def cli(port, lines, *extra):
    """redis-cli reading commands from stdin: one connection, one command at a time."""
    subprocess.run(
        ["redis-cli", "-p", str(port), *extra],
        input="".join(l + "\n" for l in lines).encode(),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def scenario_cli(p):
    cli(
        p.port,
        [
            "PING",
            "SELECT 2",
            "SET user:1 alice",
            "GET user:1",
            "HSET h:1 name bob age 42",
            "HGETALL h:1",
            "RPUSH list:1 a b c",
            "LRANGE list:1 0 -1",
            "INCR h:1",
            "MULTI",
            "SET counter 10",
            "INCRBY counter 5",
            "EXEC",
            "NOSUCHCMD x",
            "CLIENT SETNAME golden",
            "DEL user:1 h:1 list:1 counter",
        ],
    )
    write("cli", [drop_command_docs(c) for c in p.take()])


def scenario_cli_resp3(p):
    cli(
        p.port,
        [
            "HSET h:3 f1 v1 f2 v2",
            "HGETALL h:3",
            "SADD s:3 x y z",
            "SMEMBERS s:3",
            "ZADD z:3 1.5 m",
            "ZSCORE z:3 m",
            "EXISTS h:3",
            "GET missing",
            "CONFIG GET maxmemory",
            "LPOP h:3",
            "DEL h:3 s:3 z:3",
        ],
        "-3",
    )
    write("cli_resp3", [drop_command_docs(c) for c in p.take()])


def scenario_pipe(p):
    """redis-cli --pipe: inline commands written as one pipeline (it appends an ECHO of
    20 random bytes to see the end)."""
    cmds = [
        "PING",
        "SET \"key with space\" 'v 1'",
        "HSET h:p f v",
        "HGETALL h:p",
        "INCR h:p",
        "GET nokey",
        "SELECT 5",
        "SET k5 x",
        "DEL \"key with space\" h:p k5",
    ]
    subprocess.run(
        ["redis-cli", "-p", str(p.port), "--pipe"],
        input="".join(c + "\r\n" for c in cmds).encode(),
        check=False,  # exits 1: the INCR's error is on purpose
        stdout=subprocess.DEVNULL,
    )
    write("pipe", p.take())


def scenario_py(p):
    r = redis.Redis(port=p.port, db=3)
    r.set("user:1", "alice")
    assert r.get("user:1") == b"alice"
    r.hset("h:1", mapping={"a": "1", "b": "2"})
    r.hgetall("h:1")
    try:
        r.lpush("h:1", "x")
    except redis.ResponseError:
        pass
    pipe = r.pipeline(transaction=False)
    for i in range(20):
        pipe.set(f"k:{i}", i)
    for i in range(20):
        pipe.get(f"k:{i}")
    pipe.execute()
    tx = r.pipeline(transaction=True)
    tx.incr("tx:counter")
    tx.hset("tx:h", "f", "v")
    tx.lpush("h:1", "x")  # WRONGTYPE at EXEC
    try:
        tx.execute()
    except redis.ResponseError:
        pass
    r.set("big", b"v" * 20_000)
    r.get("big")
    r.delete("big", "user:1", "h:1", "tx:counter", "tx:h", *[f"k:{i}" for i in range(20)])
    r.close()
    write("py", p.take())


def scenario_py_resp3(p):
    r = redis.Redis(port=p.port, protocol=3, password=None)
    r.hset("h:r3", mapping={"a": "1", "b": "2"})
    r.hgetall("h:r3")
    r.sadd("s:r3", "x", "y")
    r.smembers("s:r3")
    pipe = r.pipeline(transaction=True)
    pipe.hgetall("h:r3")
    pipe.smembers("s:r3")
    pipe.execute()
    r.delete("h:r3", "s:r3")
    r.close()
    write("py_resp3", p.take())


def pubsub(p, protocol):
    r = redis.Redis(port=p.port, protocol=protocol)
    direct = redis.Redis(port=p.server_port)
    ps = r.pubsub()
    ps.subscribe("news", "sport")
    ps.psubscribe("log.*")
    for _ in range(3):
        ps.get_message(timeout=1)
    direct.publish("news", "hello")
    direct.publish("log.app", "line")
    direct.publish("sport", "goal")
    got = 0
    deadline = time.time() + 5
    while got < 3 and time.time() < deadline:
        m = ps.get_message(timeout=1)
        if m and m["type"] in ("message", "pmessage"):
            got += 1
    ps.ping()
    ps.get_message(timeout=1)
    ps.unsubscribe("news", "sport")
    ps.punsubscribe()
    for _ in range(3):
        ps.get_message(timeout=1)
    # Back to normal mode: a command on the same connection.
    ps.connection.send_command("GET", "after")
    ps.connection.read_response()
    ps.close()
    r.close()
    direct.close()
    return p.take()


def scenario_pubsub(p):
    write("pubsub", pubsub(p, 2))


def scenario_pubsub_resp3(p):
    write("pubsub_resp3", pubsub(p, 3))


def main():
    for tool in ("redis-server", "redis-cli"):
        if not shutil.which(tool):
            sys.exit(f"{tool} missing: apt-get install redis-server")
    tmp = tempfile.mkdtemp(prefix="redis-golden-")
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", tmp,
         "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        p = Proxy(port)
        for name in sys.argv[1:] or ["cli", "cli_resp3", "pipe", "py", "py_resp3", "pubsub", "pubsub_resp3"]:
            globals()[f"scenario_{name}"](p)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
