#!/usr/bin/env python3
"""Records a TCP conversation through a tiny proxy, for the protocol parsers' golden tests.

Every chunk read from either side is forwarded and appended to the output file as one record:
u8 flow (0 toward the server, 1 toward the client), u64 ts in ns (LE), u32 len (LE), bytes.
A chunk is what one recv() returned, so message boundaries fall anywhere, as in the kernel's
captures. Records are written in the order the proxy read them (a reply is never read before
the request that caused it was forwarded).

  capture_tcp.py proxy --listen PORT --target HOST:PORT --out FILE [--connections N]
      forward and record until N connections (default 1) have closed.
  capture_tcp.py postgres [--outdir DIR]
      as root: start a private PostgreSQL 15 (initdb in a temp dir, run as the postgres user,
      SCRAM for TCP, no TLS), record psql, psycopg 3 and psycopg2 into DIR/postgresql_*.bin
      (default: this script's directory), stop the server.
      Needs `apt-get install postgresql` and `pip install 'psycopg[binary]' psycopg2-binary`.
  capture_tcp.py mariadb [--outdir DIR]
      as root: start a private MariaDB (mariadb-install-db in a temp dir, run as the mysql
      user, root without password over TCP), record the mariadb command-line client,
      PyMySQL and mysql-connector-python (server-side prepared statements) into
      DIR/mysql_*.bin, stop the server.
      Needs `apt-get install mariadb-server` and `pip install PyMySQL mysql-connector-python`.
  capture_tcp.py mongodb [--outdir DIR]
      start a private FerretDB (scripts/ferretdb.sh builds it; SQLite in a temp dir), record
      pymongo's monitor and application connections (one file, records interleaved as read)
      into DIR/mongodb_pymongo.bin, stop the server. Needs `pip install pymongo`.
  capture_tcp.py redis [--outdir DIR] [SCENARIO ...]
      start a private redis-server (no persistence, temp dir), record redis-cli (RESP2 and
      RESP3, --pipe), redis-py (pipelines, transactions, RESP3) and pub/sub connections
      into DIR/redis_<scenario>.bin, stop the server. Needs `apt-get install redis-server`
      and `pip install redis`.
  capture_tcp.py kafka [--outdir DIR] [SCENARIO ...]
      start a private Kafka 4.4.0 broker (KRaft, test/e2e/kafka_server.py; jars from
      scripts/jars.sh) advertising a recording proxy's port, so that every connection of the
      clients goes through the proxy; record each connection of a scenario into its own file
      DIR/kafka_<scenario>_<n>.bin (n: the order the connections were accepted; a replay
      merges them by time): confluent-kafka producers (a `traceparent` record header, each
      compression codec), a consumer in a group, a produce to a deleted topic, kafka-python
      (older API versions). Needs `pip install confluent-kafka kafka-python`.
  capture_tcp.py rabbitmq [--outdir DIR] [SCENARIO ...]
      start a private RabbitMQ (test/e2e/rabbitmq_server.py: temp dir, free ports), record
      pika conversations into DIR/amqp_<scenario>.bin: `publish` (default and named
      exchanges, with and without headers and message-id, publisher confirms, an
      unroutable mandatory publish, a publish to a missing exchange: channel.close 404),
      `consume` (basic.consume with manual ack/nack/reject and multiple acks, an auto-ack
      consumer with its own tag), `get` (basic.get, get-empty), `bigbody` (a 135 KB body
      in several frames, published and consumed), stop the broker.
      Needs `apt-get install rabbitmq-server` and `pip install pika`.
"""
import argparse
import glob
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


class Recorder:
    """`keep(flow, data)`, if given, decides per chunk whether it is written."""

    def __init__(self, path, keep=None):
        self.f = open(path, "wb")
        self.lock = threading.Lock()
        self.keep = keep

    def write(self, flow, data):
        with self.lock:
            if self.keep is not None and not self.keep(flow, data):
                return
            self.f.write(struct.pack("<BQI", flow, time.time_ns(), len(data)))
            self.f.write(data)

    def close(self):
        with self.lock:
            self.f.close()


def pump(src, dst, flow, rec):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            rec.write(flow, data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class Proxy:
    """Listens on 127.0.0.1:port (0: any free port) and forwards to target, recording."""

    def __init__(self, target, out, port=0, connections=1, keep=None):
        self.target = target
        self.rec = Recorder(out, keep)
        self.connections = connections
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", port))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        workers = []
        for _ in range(self.connections):
            client, _ = self.srv.accept()
            server = socket.create_connection(self.target)
            for src, dst, flow in ((client, server, 0), (server, client, 1)):
                t = threading.Thread(target=pump, args=(src, dst, flow, self.rec), daemon=True)
                t.start()
                workers.append(t)
        for t in workers:
            t.join()
        self.srv.close()
        self.rec.close()

    def wait(self, timeout=30):
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise RuntimeError("proxied connection did not close")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, deadline=20):
    end = time.time() + deadline
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


# ---------------------------------------------------------------------------------------------
# PostgreSQL scenarios
# ---------------------------------------------------------------------------------------------

PG_BIN = "/usr/lib/postgresql/15/bin"
USER, PASSWORD, DB = "app", "secret", "shop"


def as_postgres(*cmd, **kw):
    return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, **kw)


def start_postgres(tmp):
    data = os.path.join(tmp, "data")
    os.chmod(tmp, 0o755)
    shutil.chown(tmp, "postgres", "postgres")
    as_postgres(
        f"{PG_BIN}/initdb", "-D", data, "--auth-local=trust", "--auth-host=scram-sha-256",
        "-U", "postgres", stdout=subprocess.DEVNULL,
    )
    port = free_port()
    proc = subprocess.Popen(
        ["runuser", "-u", "postgres", "--", f"{PG_BIN}/postgres", "-D", data, "-k", tmp,
         "-p", str(port), "-c", "listen_addresses=127.0.0.1", "-c", "ssl=off"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "server.log"), "wb"),
    )
    wait_port(port, proc)
    sql = (f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'; "
           f"CREATE DATABASE {DB} OWNER {USER};")
    for stmt in sql.split("; "):
        as_postgres(f"{PG_BIN}/psql", "-X", "-q", "-h", tmp, "-p", str(port), "-U", "postgres",
                    "-d", "postgres", "-c", stmt)
    return proc, port


def record(port, out, client, keep=None):
    proxy = Proxy(("127.0.0.1", port), out, keep=keep)
    client(proxy.port)
    proxy.wait()
    print(f"{out}: {os.path.getsize(out)} bytes", file=sys.stderr)


def dsn(port):
    return f"host=127.0.0.1 port={port} user={USER} password={PASSWORD} dbname={DB}"


def psql(port):
    env = dict(os.environ, PGPASSWORD=PASSWORD)
    subprocess.run(
        ["psql", "-X", "-h", "127.0.0.1", "-p", str(port), "-U", USER, "-d", DB,
         "-c", "select 1",
         "-c", "select 1/0",
         "-c", "create table if not exists items (id int primary key, name text)",
         "-c", "insert into items values (1, 'one') on conflict do nothing; select * from items"],
        env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def psycopg3(port):
    import psycopg

    with psycopg.connect(dsn(port), autocommit=True) as conn:
        cur = conn.cursor()
        # prepare=True: a named server-side statement, parsed once, executed three times.
        for i in (1, 2, 3):
            cur.execute("SELECT id, name FROM items WHERE id = %s", (i,), prepare=True)
            cur.fetchall()
        # Pipeline mode: many Parse/Bind/Execute before one Sync; the division fails and
        # the server skips the two statements after it.
        try:
            with conn.pipeline():
                for i in (10, 11, 12):
                    cur.execute("INSERT INTO items (id, name) VALUES (%s, %s)", (i, f"n{i}"))
                cur.execute("SELECT 1 / %s", (0,))
                cur.execute("SELECT %s::int", (2,))
                cur.execute("SELECT %s::int", (3,))
        except psycopg.Error:
            pass


def psycopg2_client(port):
    import psycopg2

    conn = psycopg2.connect(dsn(port))
    cur = conn.cursor()
    cur.execute("SELECT name FROM items WHERE id = %s", (1,))
    cur.fetchall()
    try:
        cur.execute("SELECT * FROM missing_table")
    except psycopg2.Error:
        conn.rollback()
    cur.execute("UPDATE items SET name = %s WHERE id = %s", ("uno", 1))
    conn.commit()
    conn.close()


def postgres(outdir):
    tmp = tempfile.mkdtemp(prefix="pgcap-")
    proc = None
    try:
        proc, port = start_postgres(tmp)
        record(port, os.path.join(outdir, "postgresql_psql.bin"), psql)
        record(port, os.path.join(outdir, "postgresql_psycopg.bin"), psycopg3)
        record(port, os.path.join(outdir, "postgresql_psycopg2.bin"), psycopg2_client)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# MariaDB scenarios
# ---------------------------------------------------------------------------------------------


def start_mariadb(tmp):
    os.chmod(tmp, 0o755)
    data = os.path.join(tmp, "data")
    os.mkdir(data)
    shutil.chown(tmp, "mysql", "mysql")
    shutil.chown(data, "mysql", "mysql")
    subprocess.run(["mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={data}",
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port()
    proc = subprocess.Popen(
        ["mariadbd", "--no-defaults", "--user=mysql", f"--datadir={data}", f"--port={port}",
         "--bind-address=127.0.0.1", f"--socket={tmp}/mysqld.sock", "--skip-log-bin",
         "--innodb-buffer-pool-size=32M", "--local-infile=1", f"--pid-file={tmp}/mysqld.pid"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "server.log"), "wb"),
    )
    wait_port(port, proc)
    import pymysql
    conn = pymysql.connect(host="127.0.0.1", port=port, user="root")
    conn.cursor().execute(f"CREATE DATABASE {DB}")
    conn.close()
    return proc, port


def mariadb_cli(port):
    subprocess.run(
        ["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(port), "-u", "root", DB, "--skip-ssl",
         "-e", "select 1; create table if not exists items (id int primary key, name text); "
               "insert into items values (1, 'one'), (2, 'two'); select * from items where id > 0; "
               "select * from missing_table; "],
        check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def pymysql_client(port):
    import pymysql
    from pymysql.constants import CLIENT

    tmp = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False)
    tmp.write("".join(f"{i},name{i}\n" for i in range(100, 110)))
    tmp.close()
    conn = pymysql.connect(host="127.0.0.1", port=port, user="root", database=DB, local_infile=True,
                           client_flag=CLIENT.MULTI_STATEMENTS, autocommit=True)
    cur = conn.cursor()
    cur.execute("SELECT id, name FROM items WHERE id = %s", (1,))
    cur.fetchall()
    try:
        cur.execute("SELECT * FROM missing_table")
    except pymysql.MySQLError:
        pass
    cur.execute("SELECT 1; SELECT name FROM items WHERE id = 2")
    while cur.nextset():
        pass
    cur.execute(f"LOAD DATA LOCAL INFILE '{tmp.name}' INTO TABLE items FIELDS TERMINATED BY ','")
    conn.ping()
    conn.select_db("mysql")
    cur.execute("SELECT COUNT(*) FROM user")
    cur.execute("USE shop")
    cur.execute("SELECT REPEAT('x', 70000) AS big FROM items LIMIT 1")
    cur.fetchall()
    conn.close()
    os.unlink(tmp.name)


def connector_client(port):
    import mysql.connector

    conn = mysql.connector.connect(host="127.0.0.1", port=port, user="root", database=DB, use_pure=True,
                                   ssl_disabled=True, autocommit=True)
    cur = conn.cursor(prepared=True)
    for i in (1, 2, 3):
        cur.execute("SELECT id, name FROM items WHERE id = %s", (i,))
        cur.fetchall()
    cur.execute("INSERT INTO items (id, name) VALUES (%s, %s)", (50, "secret"))
    try:
        cur.execute("INSERT INTO items (id, name) VALUES (%s, %s)", (50, "dup"))
    except mysql.connector.Error:
        pass
    cur.close()
    plain = conn.cursor()
    plain.execute("SELECT name FROM items WHERE id = 50")
    plain.fetchall()
    conn.close()


def mariadb(outdir):
    tmp = tempfile.mkdtemp(prefix="mycap-")
    proc = None
    try:
        proc, port = start_mariadb(tmp)
        record(port, os.path.join(outdir, "mysql_cli.bin"), mariadb_cli)
        record(port, os.path.join(outdir, "mysql_pymysql.bin"), pymysql_client)
        record(port, os.path.join(outdir, "mysql_connector.bin"), connector_client)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# MongoDB (FerretDB) scenario
# ---------------------------------------------------------------------------------------------

FERRETDB = os.path.join(os.environ.get("CACHE_DIR", os.path.expanduser("~/.cache/otelcol-ebpf")), "bin", "ferretdb")


def pymongo_client(port):
    import pymongo
    from pymongo.errors import DuplicateKeyError, OperationFailure

    # maxPoolSize=1: one application connection next to the monitor's.
    c = pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true&maxPoolSize=1",
                            serverSelectionTimeoutMS=5000, heartbeatFrequencyMS=600000)
    users = c.shop.users
    users.insert_one({"_id": 1, "name": "alice", "age": 31})
    users.insert_many([{"_id": i, "name": f"u{i}", "age": 20 + i} for i in range(2, 5)])
    list(users.find({"age": {"$gt": 21}}))
    users.update_one({"name": "u2"}, {"$set": {"age": 40}})
    users.delete_one({"name": "u3"})
    list(users.aggregate([{"$match": {"age": {"$gte": 18}}}, {"$group": {"_id": None, "n": {"$sum": 1}}}]))
    try:
        users.insert_one({"_id": 1, "name": "dup"})
    except DuplicateKeyError:
        pass
    try:
        c.shop.command("noSuchCommand")
    except OperationFailure:
        pass
    c.close()


def mongodb(outdir):
    tmp = tempfile.mkdtemp(prefix="ferretcap-")
    proc = None
    try:
        os.makedirs(os.path.join(tmp, "data"))
        os.makedirs(os.path.join(tmp, "state"))
        port = free_port()
        proc = subprocess.Popen(
            [FERRETDB, "--handler=sqlite", f"--sqlite-url=file:{tmp}/data/", f"--listen-addr=127.0.0.1:{port}",
             f"--state-dir={tmp}/state", f"--debug-addr=127.0.0.1:{free_port()}", "--telemetry=disable",
             "--log-level=warn"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "server.log"), "wb"),
        )
        wait_port(port, proc)
        out = os.path.join(outdir, "mongodb_pymongo.bin")
        proxy = Proxy(("127.0.0.1", port), out, connections=2)
        pymongo_client(proxy.port)
        proxy.wait()
        print(f"{out}: {os.path.getsize(out)} bytes", file=sys.stderr)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Redis scenarios
# ---------------------------------------------------------------------------------------------


def drop_command_docs():
    """redis-cli's REPL starts with COMMAND DOCS (a ~170 KB reply, for its hints): that
    exchange is left out of the recording to keep the captures small."""
    state = {"skip": False}

    def keep(flow, data):
        if flow == 0:
            state["skip"] = data == b"*2\r\n$7\r\nCOMMAND\r\n$4\r\nDOCS\r\n"
        return not state["skip"]
    return keep


def redis_cli(lines, *extra):
    """redis-cli reading commands from stdin: one connection, one command at a time."""
    def client(port):
        subprocess.run(["redis-cli", "-p", str(port), *extra], input="".join(l + "\n" for l in lines).encode(),
                       check=True, stdout=subprocess.DEVNULL)
    return client


REDIS_CLI = redis_cli([
    "PING", "SELECT 2", "SET user:1 alice", "GET user:1", "HSET h:1 name bob age 42", "HGETALL h:1",
    "RPUSH list:1 a b c", "LRANGE list:1 0 -1", "INCR h:1", "MULTI", "SET counter 10", "INCRBY counter 5", "EXEC",
    "NOSUCHCMD x", "CLIENT SETNAME golden", "DEL user:1 h:1 list:1 counter"])
REDIS_CLI_RESP3 = redis_cli([
    "HSET h:3 f1 v1 f2 v2", "HGETALL h:3", "SADD s:3 x y z", "SMEMBERS s:3", "ZADD z:3 1.5 m", "ZSCORE z:3 m",
    "EXISTS h:3", "GET missing", "CONFIG GET maxmemory", "LPOP h:3", "DEL h:3 s:3 z:3"], "-3")


def redis_pipe(port):
    """redis-cli --pipe: inline commands written as one pipeline (it appends an ECHO of
    20 random bytes to see the end)."""
    cmds = ["PING", "SET \"key with space\" 'v 1'", "HSET h:p f v", "HGETALL h:p", "INCR h:p", "GET nokey",
            "SELECT 5", "SET k5 x", "DEL \"key with space\" h:p k5"]
    subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input="".join(c + "\r\n" for c in cmds).encode(),
                   check=False, stdout=subprocess.DEVNULL)  # exits 1: the INCR's error is on purpose


def redis_py(port):
    import redis
    r = redis.Redis(port=port, db=3)
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


def redis_py_resp3(port):
    import redis
    r = redis.Redis(port=port, protocol=3, password=None)
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


def redis_pubsub(server_port, protocol):
    """A subscriber through the proxy; messages published on a direct connection."""
    def client(port):
        import redis
        r = redis.Redis(port=port, protocol=protocol)
        direct = redis.Redis(port=server_port)
        ps = r.pubsub()
        ps.subscribe("news", "sport")
        ps.psubscribe("log.*")
        for _ in range(3):
            ps.get_message(timeout=1)
        direct.publish("news", "hello")
        direct.publish("log.app", "line")
        direct.publish("sport", "goal")
        got, deadline = 0, time.time() + 5
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
    return client


def redis_scenarios(outdir, names):
    for tool in ("redis-server", "redis-cli"):
        if not shutil.which(tool):
            sys.exit(f"{tool} missing: apt-get install redis-server")
    tmp = tempfile.mkdtemp(prefix="redis-golden-")
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", tmp,
                               "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL)
    scenarios = {
        "cli": (REDIS_CLI, drop_command_docs), "cli_resp3": (REDIS_CLI_RESP3, drop_command_docs),
        "pipe": (redis_pipe, None), "py": (redis_py, None), "py_resp3": (redis_py_resp3, None),
        "pubsub": (redis_pubsub(port, 2), None), "pubsub_resp3": (redis_pubsub(port, 3), None),
    }
    try:
        wait_port(port, server)
        for name in names or scenarios:
            client, keep = scenarios[name]
            record(port, os.path.join(outdir, f"redis_{name}.bin"), client, keep() if keep else None)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Kafka scenarios
# ---------------------------------------------------------------------------------------------

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class ConnProxy:
    """A proxy accepting any number of connections, each recorded into its own file
    `<prefix>_<n>.bin` while `prefix` is set (connections made while it is None are
    forwarded unrecorded: the test's own administration)."""

    def __init__(self, target):
        self.target = target
        self.prefix = None
        self.n = 0
        self.open = []  # (recorder, threads) of connections not finished
        self.lock = threading.Lock()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                client, _ = self.srv.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self.lock:
                if self.prefix is not None:
                    path = f"{self.prefix}_{self.n}.bin"
                    self.n += 1
                    rec = Recorder(path)
                else:
                    path, rec = None, Recorder(os.devnull)
                threads = []
                for src, dst, flow in ((client, server, 0), (server, client, 1)):
                    t = threading.Thread(target=pump, args=(src, dst, flow, rec), daemon=True)
                    t.start()
                    threads.append(t)
                self.open.append((path, rec, threads))

    def record(self, prefix):
        self.finish()
        for old in glob.glob(f"{prefix}_*.bin"):
            os.unlink(old)
        with self.lock:
            self.prefix, self.n = prefix, 0

    def finish(self, timeout=30):
        """Waits for the connections opened so far to close (the client closed them)."""
        with self.lock:
            conns, self.open = self.open, []
            self.prefix = None
        for path, rec, threads in conns:
            for t in threads:
                t.join(timeout)
                if t.is_alive():
                    raise RuntimeError(f"{path}: a proxied connection did not close")
            rec.close()
            if path:
                print(f"{path}: {os.path.getsize(path)} bytes", file=sys.stderr)

    def close(self):
        self.srv.close()


def confluent_produce(bootstrap, topic, codec, client_id, count=3, key_prefix="k"):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "client.id": client_id, "compression.type": codec,
                  "linger.ms": 50, "acks": "all", "enable.idempotence": False})
    errors = []
    for i in range(count):
        # Partition chosen explicitly: the replay tests assert it.
        p.produce(topic, value=f"order {i} " * 8, key=f"{key_prefix}{i}", partition=i % 2,
                  headers=[("traceparent", TRACEPARENT), ("app", b"golden")],
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    p.flush(30)
    return errors


def kafka_admin(bootstrap):
    from confluent_kafka.admin import AdminClient, NewTopic

    return AdminClient({"bootstrap.servers": bootstrap})


def create_topics(bootstrap, *names, partitions=2):
    from confluent_kafka.admin import NewTopic

    admin = kafka_admin(bootstrap)  # kept referenced until the results came
    futs = admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    for f in futs.values():
        f.result(30)


def kafka_scenarios(outdir, names):
    sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
    from kafka_server import KafkaBroker

    tmp = tempfile.mkdtemp(prefix="kafka-golden-")
    target_port = free_port()
    proxy = ConnProxy(("127.0.0.1", target_port))
    broker = KafkaBroker(tmp, port=target_port, advertised_port=proxy.port)
    bootstrap = f"127.0.0.1:{proxy.port}"

    def produce(p):
        # One producer per codec, each its own client id; 3 records over 2 partitions.
        for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
            errs = confluent_produce(bootstrap, "orders", codec, f"golden-{codec}")
            assert not errs, errs

    def consume(p):
        from confluent_kafka import Consumer

        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "billing", "client.id": "golden-consumer",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False,
                      "fetch.wait.max.ms": 100})
        c.subscribe(["orders"])
        got, deadline = 0, time.time() + 30
        while got < 15 and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got += 1
        assert got == 15, got
        c.commit(asynchronous=False)
        # A few empty polls at the end of the partitions.
        end = time.time() + 0.6
        while time.time() < end:
            c.poll(0.2)
        c.close()

    def deleted(p):
        # A producer whose cached metadata still names a topic deleted under it: its next
        # Produce is answered UNKNOWN_TOPIC_OR_PARTITION (auto-creation is off).
        from confluent_kafka import Producer

        create_topics(bootstrap, "doomed", partitions=1)
        prod = Producer({"bootstrap.servers": bootstrap, "client.id": "golden-doomed", "linger.ms": 0,
                         "message.send.max.retries": 0, "topic.metadata.refresh.interval.ms": 600000,
                         "message.timeout.ms": 1500,
                         "enable.idempotence": False})
        prod.produce("doomed", value=b"first")
        prod.flush(30)
        admin = kafka_admin(bootstrap)
        futs = admin.delete_topics(["doomed"])
        for f in futs.values():
            f.result(30)
        time.sleep(1)
        errs = []
        prod.produce("doomed", value=b"second", on_delivery=lambda err, msg: errs.append(err))
        prod.flush(30)
        print(f"doomed: {errs}", file=sys.stderr)

    def kafka_python(p):
        from kafka import KafkaConsumer, KafkaProducer

        prod = KafkaProducer(bootstrap_servers=bootstrap, client_id="golden-kpy", linger_ms=20)
        for i in range(3):
            prod.send("payments", value=f"kpy {i}".encode(), key=b"kp", partition=1,
                      headers=[("traceparent", TRACEPARENT.encode())])
        prod.flush(30)
        prod.close()
        # Its own topic: kafka-python decodes no snappy without an extra library.
        cons = KafkaConsumer("payments", bootstrap_servers=bootstrap, client_id="golden-kpy-consumer",
                             group_id="audit", auto_offset_reset="earliest", enable_auto_commit=False,
                             fetch_max_wait_ms=100, consumer_timeout_ms=3000)
        got = 0
        for _ in cons:
            got += 1
            if got == 3:
                break
        cons.commit()
        cons.close()
        assert got == 3, got

    scenarios = {"produce": produce, "consume": consume, "deleted": deleted, "kafka_python": kafka_python}
    try:
        broker.start()
        create_topics(bootstrap, "orders", "payments", partitions=2)
        for name in names or scenarios:
            proxy.record(os.path.join(outdir, f"kafka_{name}"))
            scenarios[name](proxy)
            proxy.finish()
    finally:
        broker.stop()
        proxy.close()
        shutil.rmtree(tmp, ignore_errors=True)
# RabbitMQ scenarios (pika, AMQP 0-9-1)
# ---------------------------------------------------------------------------------------------

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
# Every field-table type pika writes, nested.
APP_HEADERS = {"traceparent": TRACEPARENT, "n": 7, "big": 1 << 40, "ok": True, "none": None,
               "list": [1, "two", {"x": b"\x00\x01"}], "nested": {"a": {"b": "c"}}, "dec": __import__("decimal").Decimal("3.14")}


def amqp_setup(port):
    """Queues and exchanges of the scenarios, on a direct (unrecorded) connection."""
    import pika
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = c.channel()
    for q in ("tasks", "orders.eu", "acks", "auto", "multi", "polled", "big"):
        ch.queue_declare(q)
        ch.queue_purge(q)
    ch.exchange_declare("orders", "direct")
    ch.queue_bind("orders.eu", "orders", "eu")
    return c, ch


def amqp_publish(port):
    import pika
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = c.channel()
    ch.basic_publish("", "tasks", b"plain body")
    ch.basic_publish("", "tasks", b"with headers", pika.BasicProperties(
        content_type="text/plain", headers=APP_HEADERS, message_id="msg-1", delivery_mode=2))
    ch.basic_publish("orders", "eu", b"x" * 3000, pika.BasicProperties(message_id="order-42"))
    conf = c.channel()
    conf.confirm_delivery()
    conf.basic_publish("orders", "eu", b"confirmed 1")
    conf.basic_publish("", "tasks", b"confirmed 2", pika.BasicProperties(headers={"k": "v"}))
    try:
        conf.basic_publish("orders", "nowhere", b"unroutable", mandatory=True)
    except pika.exceptions.UnroutableError:
        pass
    try:
        conf.basic_publish("missing-exchange", "rk", b"lost")
    except pika.exceptions.ChannelClosedByBroker:
        pass
    c.close()


def amqp_consume(server_port):
    def client(port):
        import pika
        direct, dch = amqp_setup(server_port)
        props = pika.BasicProperties(headers={"traceparent": TRACEPARENT, "app": "x"}, message_id="m-1")
        for i in range(3):
            dch.basic_publish("", "acks", f"ack me {i}".encode(), props if i == 0 else None)
        for i in range(2):
            dch.basic_publish("", "auto", f"auto {i}".encode())
        for i in range(3):
            dch.basic_publish("", "multi", f"multi {i}".encode())
        c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
        ch = c.channel()
        ch.basic_qos(prefetch_count=10)
        got = []

        def on_ack(chan, method, properties, body):
            got.append(method.delivery_tag)
            n = len(got)
            if n == 1:
                chan.basic_ack(method.delivery_tag)
            elif n == 2:
                chan.basic_nack(method.delivery_tag, requeue=False)
            else:
                chan.basic_reject(method.delivery_tag, requeue=False)
                chan.stop_consuming()
        ch.basic_consume("acks", on_ack)
        ch.start_consuming()
        auto = []

        def on_auto(chan, method, properties, body):
            auto.append(body)
            if len(auto) == 2:
                chan.stop_consuming()
        ch.basic_consume("auto", on_auto, auto_ack=True, consumer_tag="my-auto")
        ch.start_consuming()
        multi = []

        def on_multi(chan, method, properties, body):
            multi.append(method.delivery_tag)
            if len(multi) == 3:
                chan.basic_ack(method.delivery_tag, multiple=True)
                chan.stop_consuming()
        ch.basic_consume("multi", on_multi)
        ch.start_consuming()
        c.close()
        direct.close()
    return client


def amqp_get(server_port):
    def client(port):
        import pika
        direct, dch = amqp_setup(server_port)
        dch.basic_publish("", "polled", b"poll me", pika.BasicProperties(
            message_id="p-1", headers={"traceparent": TRACEPARENT}))
        dch.basic_publish("", "polled", b"auto polled")
        c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
        ch = c.channel()
        method, _, _ = ch.basic_get("polled")
        ch.basic_ack(method.delivery_tag)
        ch.basic_get("polled", auto_ack=True)
        ch.basic_get("polled")  # get-empty
        c.close()
        direct.close()
    return client


def amqp_bigbody(server_port):
    def client(port):
        import pika
        direct, _ = amqp_setup(server_port)
        c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
        ch = c.channel()
        ch.basic_publish("", "big", b"b" * 135_000, pika.BasicProperties(message_id="big-1"))
        ch.basic_publish("", "big", b"small after")
        for _ in range(2):
            method, _, body = None, None, None
            for _ in range(50):
                method, _, body = ch.basic_get("big", auto_ack=True)
                if method:
                    break
                time.sleep(0.05)
        c.close()
        direct.close()
    return client


def rabbitmq_scenarios(outdir, names):
    sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
    from rabbitmq_server import RabbitMQ
    with RabbitMQ() as broker:
        port = broker.port
        c, _ = amqp_setup(port)
        c.close()
        scenarios = {"publish": amqp_publish, "consume": amqp_consume(port), "get": amqp_get(port),
                     "bigbody": amqp_bigbody(port)}
        for name in names or scenarios:
            record(port, os.path.join(outdir, f"amqp_{name}.bin"), scenarios[name])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("proxy")
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--connections", type=int, default=1)
    g = sub.add_parser("postgres")
    g.add_argument("--outdir", default=HERE)
    m = sub.add_parser("mariadb")
    m.add_argument("--outdir", default=HERE)
    m = sub.add_parser("mongodb")
    m.add_argument("--outdir", default=HERE)
    r = sub.add_parser("redis")
    r.add_argument("--outdir", default=HERE)
    r.add_argument("scenarios", nargs="*")
    k = sub.add_parser("kafka")
    k.add_argument("--outdir", default=HERE)
    k.add_argument("scenarios", nargs="*")
    q = sub.add_parser("rabbitmq")
    q.add_argument("--outdir", default=HERE)
    q.add_argument("scenarios", nargs="*")
    a = ap.parse_args()
    if a.cmd == "proxy":
        host, port = a.target.rsplit(":", 1)
        proxy = Proxy((host, int(port)), a.out, a.listen, a.connections)
        proxy.thread.join()
    elif a.cmd == "mariadb":
        mariadb(a.outdir)
    elif a.cmd == "mongodb":
        mongodb(a.outdir)
    elif a.cmd == "kafka":
        kafka_scenarios(a.outdir, a.scenarios)
    elif a.cmd == "redis":
        redis_scenarios(a.outdir, a.scenarios)
    elif a.cmd == "rabbitmq":
        rabbitmq_scenarios(a.outdir, a.scenarios)
    else:
        postgres(a.outdir)


if __name__ == "__main__":
    main()
