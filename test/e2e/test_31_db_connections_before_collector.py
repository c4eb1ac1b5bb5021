"""Database connections opened before the collector (long-lived pools): their next
operations still become spans. The connection is detected mid-stream on the protocol's
usual port (5432, 6379: the only hint there is without the handshake); a PostgreSQL
statement prepared before the collector has no text to show, so its span is named by
the server's CommandComplete tag and counted in db_statement_unknown."""

import uuid

from e2elib import PYTHON, brief, client_to, ebpf_counters, listening_ports, start_postgres, start_redis, wait_output

CLIENT_KIND, SERVER_KIND = 3, 2
PG_PORT, REDIS_PORT = 5432, 6379

EARLY_DB_CLIENT = r"""
import os, sys, time, psycopg, redis
pg_port, redis_port, flag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = psycopg.connect(f"host=127.0.0.1 port={pg_port} user=postgres dbname=postgres", autocommit=True)
c.execute("CREATE TABLE items (id int primary key, name text)")
c.execute("INSERT INTO items VALUES (%s, %s)", (1, "secret-1"), prepare=True)  # Parse of _pg3_0
r = redis.Redis(host="127.0.0.1", port=redis_port, db=3)
r.set("k:1", "secret-value")
print("first", flush=True)
while not os.path.exists(flag):
    time.sleep(0.05)
c.execute("INSERT INTO items VALUES (%s, %s)", (2, "secret-2"), prepare=True)  # Bind/Execute _pg3_0
c.execute("SELECT name FROM items WHERE id = 7")
with c.cursor().copy("COPY items (id, name) FROM STDIN") as cp:
    cp.write_row((3, "secret-3"))
r.get("k:1")
r.hset("h:1", "f", "secret-field")
print("done", flush=True)
"""


def test_pool_connections_opened_before_the_collector(collectors, procs, tmp_path):
    busy = {PG_PORT, REDIS_PORT} & listening_ports()
    assert not busy, f"ports {busy} are taken: this test needs the databases' usual ports (stop the services)"
    collectors.stop()
    start_postgres(procs, tmp_path, port=PG_PORT)
    start_redis(procs, tmp_path, port=REDIS_PORT)
    flag = tmp_path / "go"
    script = tmp_path / "early_db_client.py"
    script.write_text(EARLY_DB_CLIENT)
    early = procs.spawn([PYTHON, script, PG_PORT, REDIS_PORT, flag], name="early-db-client")
    wait_output(procs, early, "first")

    c = collectors.get({"exclude_paths": [f"/never-{uuid.uuid4().hex}"]})  # a collector of its own
    flag.write_text("")
    wait_output(procs, early, "done")
    mine = lambda s: s["resource"].get("process.pid") == early.pid and s["kind"] == CLIENT_KIND  # noqa: E731

    pg = sorted((s for s in c.spans.wait(lambda s: mine(s) and s["attrs"].get("db.system.name") == "postgresql", 3)
                 if mine(s) and s["attrs"].get("db.system.name") == "postgresql"), key=lambda s: s["start"])
    assert [s["name"] for s in pg] == ["INSERT", "SELECT items", "COPY items"], brief(pg)
    prepared, simple, copy = pg
    # Prepared before the collector: the operation from the server's tag, no text.
    assert prepared["attrs"]["db.operation.name"] == "INSERT" and "db.query.text" not in prepared["attrs"]
    assert simple["attrs"]["db.query.text"] == "SELECT name FROM items WHERE id = ?", brief([simple])
    assert copy["attrs"]["db.query.text"] == "COPY items (id, name) FROM STDIN", brief([copy])
    for s in pg:
        assert s["status_code"] == 0 and s["attrs"]["server.port"] == PG_PORT, brief([s])
        assert "db.namespace" not in s["attrs"]  # the startup message was before the collector
    assert (ebpf_counters(c, ["db_statement_unknown"])["db_statement_unknown"] or 0) >= 1

    rs = sorted((s for s in c.spans.wait(lambda s: mine(s) and s["attrs"].get("db.system.name") == "redis", 2)
                 if mine(s) and s["attrs"].get("db.system.name") == "redis"), key=lambda s: s["start"])
    assert [(s["name"], s["attrs"]["db.query.text"]) for s in rs] == [("GET", "GET k:1"), ("HSET", "HSET h:1 ? ?")], \
        brief(rs)
    assert all(s["attrs"]["server.port"] == REDIS_PORT and s["status_code"] == 0 for s in rs)
    assert "secret-" not in c.spans.raw_text()
    # The servers' processes were running before the collector too: their SERVER spans.
    servers = [s for s in c.spans.wait(lambda s: s["kind"] == SERVER_KIND and s["attrs"].get("db.system.name"), 5)
               if s["kind"] == SERVER_KIND]
    by_parent = {s["parent_span_id"]: s for s in servers}
    for cl in pg + rs:
        sv = by_parent.get(cl["span_id"])
        assert sv is not None and sv["name"] == cl["name"], brief(servers + [cl])
