"""PostgreSQL spans: a private PostgreSQL 15, real clients (psql/libpq, psycopg 3 with
server-side prepared statements and pipeline mode), every operation a CLIENT span with the
database conventions' attributes and sanitized text, the server's SERVER span its child,
SQLSTATE errors, and queries made while serving a request children of it."""

import concurrent.futures

from e2elib import APPS, PYTHON, brief, client_to, free_port, run_curl, server_on, start_postgres, wait_listening

CLIENT_KIND, SERVER_KIND = 3, 2


def pg(spans, kind, pid=None):
    return sorted((s for s in spans if s["kind"] == kind and s["attrs"].get("db.system.name") == "postgresql"
                   and (pid is None or s["resource"]["process.pid"] == pid)), key=lambda s: s["start"])


def psql(procs, port, sql, check=True):
    return procs.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres",
                      "-X", "-q", "-c", sql], name="psql", check=check)[0]


def test_psql_simple_queries_and_errors(collector, procs, tmp_path):
    port = start_postgres(procs, tmp_path)
    ok = psql(procs, port, "select 1")
    bad = psql(procs, port, "select 1/0", check=False)

    clients = pg(collector.spans.wait(client_to(port), 2), CLIENT_KIND)
    mine = {s["resource"]["process.pid"]: s for s in clients}
    assert ok.pid in mine and bad.pid in mine, brief(clients)
    s, e = mine[ok.pid], mine[bad.pid]
    for sp in (s, e):
        a = sp["attrs"]
        assert a["db.system.name"] == "postgresql" and a["db.namespace"] == "postgres", a
        assert a["db.operation.name"] == "SELECT" and sp["name"] == "SELECT", brief([sp])
        assert a["server.port"] == port and a["server.address"] == "127.0.0.1"
    # Literals never leave the process: sanitized by default.
    assert s["attrs"]["db.query.text"] == "select ?", brief([s])
    assert e["attrs"]["db.query.text"] == "select ?/?", brief([e])
    assert s["status_code"] == 0 and "error.type" not in s["attrs"]
    assert e["status_code"] == 2, brief([e])
    assert e["attrs"]["db.response.status_code"] == "22012" and e["attrs"]["error.type"] == "22012"

    # The server is traced too: its SERVER spans are the clients' children.
    servers = pg(collector.spans.wait(server_on(port), 2), SERVER_KIND)
    by_parent = {sv["parent_span_id"]: sv for sv in servers}
    for c in (s, e):
        sv = by_parent.get(c["span_id"])
        assert sv is not None and sv["trace_id"] == c["trace_id"], brief(servers + [c])
        assert sv["name"] == c["name"] and sv["attrs"]["db.query.text"] == c["attrs"]["db.query.text"]


PSYCOPG = r"""
import sys, psycopg
port = int(sys.argv[1])
with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as c:
    c.execute("CREATE TABLE users (id int primary key, name text)")
    for i in range(3):   # server-side prepared statement, executed three times
        c.execute("INSERT INTO users VALUES (%s, %s)", (i, f"secret-{i}"), prepare=True)
    with c.pipeline():
        c.execute("SELECT name FROM users WHERE id = %s", (1,))
        c.execute("UPDATE users SET name = %s WHERE id = %s", ("x", 2))
    print("done", flush=True)
"""


def test_psycopg_prepared_statements_and_pipeline(collector, procs, tmp_path):
    port = start_postgres(procs, tmp_path)
    script = tmp_path / "client.py"
    script.write_text(PSYCOPG)
    client, _ = procs.run([PYTHON, script, port], name="psycopg")

    spans = pg(collector.spans.wait(lambda s: s["resource"].get("process.pid") == client.pid
                                    and s["attrs"].get("db.system.name") == "postgresql", 6), CLIENT_KIND, client.pid)
    names = [s["name"] for s in spans]
    assert names == ["CREATE TABLE users", "INSERT users", "INSERT users", "INSERT users", "SELECT users",
                     "UPDATE users"], brief(spans)
    # Parameterized text is kept as is; the values never appear.
    assert spans[1]["attrs"]["db.query.text"] == "INSERT INTO users VALUES ($1, $2)", brief(spans[1:2])
    assert spans[4]["attrs"]["db.collection.name"] == "users"
    assert "secret-" not in collector.spans.raw_text()
    assert all(s["status_code"] == 0 for s in spans), brief(spans)
    assert all(s["start"] <= s["end"] for s in spans)
    assert [s["start"] for s in spans] == sorted(s["start"] for s in spans)


def test_queries_made_while_serving_are_children(collector, procs, tmp_path):
    port, app = start_postgres(procs, tmp_path), free_port()
    psql(procs, port, "CREATE TABLE users (id int primary key, name text); "
                      "INSERT INTO users SELECT g, 'user' || g FROM generate_series(1, 8) g")
    p = procs.spawn([PYTHON, APPS / "db_app.py", app, "-", port], name="db-app")
    wait_listening(app, p, what="db_app.py")
    ids = list(range(1, 9))
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{app}/pg/{i}"), ids))

    servers = collector.spans.wait(server_on(app), len(ids))
    assert len(servers) == len(ids), brief(servers)
    calls = [s for s in pg(collector.spans.wait(client_to(port), len(ids)), CLIENT_KIND, p.pid)
             if s["name"] == "SELECT users"]
    assert len(calls) == len(ids), brief(calls)
    by_id = {s["span_id"]: s for s in servers}
    for call in calls:
        parent = by_id.get(call["parent_span_id"])
        assert parent is not None, brief([call])
        assert parent["trace_id"] == call["trace_id"]
        assert parent["start"] <= call["start"] and call["end"] <= parent["end"]
        assert call["attrs"]["db.query.text"] == "SELECT name FROM users WHERE id = $1"
