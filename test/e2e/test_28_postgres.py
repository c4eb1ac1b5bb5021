"""PostgreSQL spans: a private PostgreSQL 15, real clients (psql/libpq, also over TLS,
psycopg 3 with server-side prepared statements and pipeline mode, pgx v5, the JDBC
driver), every operation a CLIENT span with the
database conventions' attributes and sanitized text, the server's SERVER span its child,
SQLSTATE errors, and queries made while serving a request children of it."""

import concurrent.futures

from e2elib import (APPS, JARS, PYTHON, brief, client_to, free_port, go_build_module, run_curl, server_on,
                    start_postgres, wait_listening)

CLIENT_KIND, SERVER_KIND = 3, 2


def pg(spans, kind, pid=None):
    return sorted((s for s in spans if s["kind"] == kind and s["attrs"].get("db.system.name") == "postgresql"
                   and (pid is None or s["resource"]["process.pid"] == pid)), key=lambda s: s["start"])


def psql(procs, port, sql, check=True, sslmode="prefer"):
    return procs.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres",
                      "-X", "-q", "-c", sql], name="psql", check=check, env_extra={"PGSSLMODE": sslmode})[0]


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


def test_pgx_statement_cache_and_batches(collector, procs, tmp_path):
    """pgx v5: its statement cache prepares each text once as a named statement (no span
    for the prepare) and executes it by name; a batch is one pipeline before one Sync; an
    error in a batch aborts the rest of it, as the server does."""
    port = start_postgres(procs, tmp_path)
    godb = go_build_module(tmp_path, "godb")
    client, _ = procs.run([godb, "pgx", port], name="godb-pgx")

    spans = pg(collector.spans.wait(lambda s: s["resource"].get("process.pid") == client.pid
                                    and s["attrs"].get("db.system.name") == "postgresql", 10), CLIENT_KIND, client.pid)
    assert [s["name"] for s in spans] == [
        "CREATE TABLE items", "INSERT items", "INSERT items", "INSERT items", "SELECT items",
        "SELECT items", "UPDATE items", "DELETE items", "SELECT", "SELECT items"], brief(spans)
    texts = [s["attrs"]["db.query.text"] for s in spans]
    assert texts[1:4] == ["INSERT INTO items VALUES ($1, $2)"] * 3
    assert texts[4:8] == ["SELECT name FROM items WHERE id = $1", "SELECT count(*) FROM items",
                          "UPDATE items SET name = $1 WHERE id = $2", "DELETE FROM items WHERE id = $1"]
    assert texts[8:] == ["SELECT ?/?", "SELECT name FROM items WHERE id = $1"]
    assert "secret-" not in collector.spans.raw_text()
    for s in spans:
        a = s["attrs"]
        assert a["db.namespace"] == "postgres" and a["server.port"] == port and a["server.address"] == "127.0.0.1", a
        assert s["start"] <= s["end"]
    assert all(s["status_code"] == 0 and "error.type" not in s["attrs"] for s in spans[:8]), brief(spans)
    failed, skipped = spans[8:]
    assert failed["status_code"] == 2 and failed["attrs"]["error.type"] == "22012", brief([failed])
    assert failed["attrs"]["db.response.status_code"] == "22012"
    # The server skipped the statement after the error: an error span of its own kind.
    assert skipped["status_code"] == 2 and skipped["attrs"]["error.type"] == "pipeline_aborted", brief([skipped])
    assert [s["start"] for s in spans] == sorted(s["start"] for s in spans)


def test_postgres_over_tls(collector, procs, tmp_path):
    """SSLRequest, then TLS: the plaintext comes through the OpenSSL probes (libpq and the
    server both use libssl), and the spans are the same as without TLS."""
    port = start_postgres(procs, tmp_path, tls=True)
    ok = psql(procs, port, "select 1", sslmode="require")
    bad = psql(procs, port, "select 1/0", check=False, sslmode="require")
    out = procs.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres", "-X", "-A",
                     "-t", "-c", "select ssl from pg_stat_ssl where pid = pg_backend_pid()"],
                    env_extra={"PGSSLMODE": "require"}, name="psql")[1]
    assert out.strip() == "t", out  # the connection really was TLS

    clients = {s["resource"]["process.pid"]: s for s in pg(collector.spans.wait(client_to(port), 3), CLIENT_KIND)}
    assert ok.pid in clients and bad.pid in clients, brief(list(clients.values()))
    s, e = clients[ok.pid], clients[bad.pid]
    assert s["name"] == e["name"] == "SELECT", brief([s, e])
    assert s["attrs"]["db.query.text"] == "select ?" and e["attrs"]["db.query.text"] == "select ?/?"
    assert s["attrs"]["db.namespace"] == "postgres" and s["attrs"]["server.port"] == port
    assert s["status_code"] == 0 and e["status_code"] == 2 and e["attrs"]["error.type"] == "22012", brief([s, e])
    servers = pg(collector.spans.wait(server_on(port), 3), SERVER_KIND)
    by_parent = {sv["parent_span_id"]: sv for sv in servers}
    for c in (s, e):
        sv = by_parent.get(c["span_id"])
        assert sv is not None and sv["trace_id"] == c["trace_id"] and sv["name"] == c["name"], brief(servers + [c])


def test_jdbc_named_statements_after_prepare_threshold(collector, procs, tmp_path):
    """The PostgreSQL JDBC driver: unnamed statements at first, named ones (S_1...) after
    its prepareThreshold (5 executions), then only Bind/Execute by name; a batch of
    inserts; a missing table (42P01)."""
    port = start_postgres(procs, tmp_path)
    jar = JARS / "postgresql-42.7.14.jar"
    assert jar.exists(), f"{jar} is missing (make deps fetches it)"
    client, out = procs.run(["java", "-cp", jar, APPS / "jdbc" / "JdbcClient.java", port], name="jdbc", timeout=60)
    assert "done" in out, out
    mine = lambda s: s["resource"].get("process.pid") == client.pid  # noqa: E731
    spans = pg(collector.spans.wait(lambda s: mine(s) and s["attrs"].get("db.system.name") == "postgresql", 13),
               CLIENT_KIND, client.pid)
    assert [s["name"] for s in spans] == ["SET", "CREATE TABLE accounts"] + ["INSERT accounts"] * 3 + \
        ["SELECT accounts"] * 7 + ["SELECT missing_table"], brief(spans)
    assert spans[0]["attrs"]["db.query.text"] == "SET application_name = ?"  # the driver's own, at connect
    assert {s["attrs"]["db.query.text"] for s in spans[2:5]} == {"INSERT INTO accounts VALUES ($1, $2)"}
    # The same text whether the driver used the unnamed statement or S_1 by name.
    assert {s["attrs"]["db.query.text"] for s in spans[5:12]} == {"SELECT owner FROM accounts WHERE id = $1"}
    assert all(s["status_code"] == 0 for s in spans[:12]), brief(spans)
    assert "secret-" not in collector.spans.raw_text()
    bad = spans[12]
    assert bad["status_code"] == 2 and bad["attrs"]["db.response.status_code"] == "42P01", brief([bad])
    assert bad["attrs"]["error.type"] == "42P01" and bad["attrs"]["db.collection.name"] == "missing_table"
