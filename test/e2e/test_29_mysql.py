"""MySQL/MariaDB spans: a private MariaDB 10.11, real clients (PyMySQL with client-side
interpolation, mysql-connector-python with server-side prepared statements), every
COM_QUERY / COM_STMT_EXECUTE a CLIENT span with the database conventions' attributes and
sanitized text, the server's SERVER span its child, ERR packets as span errors, COM_INIT_DB
and USE changing db.namespace, and queries made while serving a request children of it."""

import concurrent.futures

from e2elib import APPS, PYTHON, brief, client_to, free_port, run_curl, server_on, start_mariadb, wait_listening

CLIENT_KIND, SERVER_KIND = 3, 2


def my(spans, kind, pid=None):
    return sorted((s for s in spans if s["kind"] == kind and s["attrs"].get("db.system.name") == "mariadb"
                   and (pid is None or s["resource"]["process.pid"] == pid)), key=lambda s: s["start"])


def of_pid(pid):
    return lambda s: s["resource"].get("process.pid") == pid and s["attrs"].get("db.system.name") == "mariadb"


PYMYSQL = r"""
import sys, pymysql
port = int(sys.argv[1])
tls = {"ssl": {"ca": sys.argv[2]}} if len(sys.argv) > 2 else {}  # Python's ssl: libssl, probed
c = pymysql.connect(host="127.0.0.1", port=port, user="root", database="shop", autocommit=True, **tls)
cur = c.cursor()
if tls:
    cur.execute("SHOW STATUS LIKE 'Ssl_cipher'")
    print("cipher", cur.fetchall()[0][1], flush=True)
cur.execute("CREATE TABLE users (id int primary key, name text)")
cur.execute("INSERT INTO users VALUES (1, 'secret-1'), (2, 'secret-2')")
cur.execute("SELECT name FROM users WHERE id = %s", (1,))
cur.fetchall()
try:
    cur.execute("SELECT * FROM missing_table")
except pymysql.MySQLError as e:
    print("error", e.args[0], flush=True)
c.select_db("mysql")            # COM_INIT_DB: no span, the namespace changes
cur.execute("SELECT COUNT(*) FROM db")
cur.execute("USE shop")
cur.execute("SELECT COUNT(*) FROM users")
c.close()
print("done", flush=True)
"""


def test_pymysql_queries_errors_and_namespace(collector, procs, tmp_path):
    port = start_mariadb(procs, tmp_path)
    script = tmp_path / "client.py"
    script.write_text(PYMYSQL)
    client, out = procs.run([PYTHON, script, port], name="pymysql")
    assert "error 1146" in out and "done" in out, out
    check_pymysql_spans(collector, client, port)


def test_pymysql_over_tls(collector, procs, tmp_path):
    """SSL request, then TLS: PyMySQL (Python's ssl module, libssl) and mariadbd (libssl
    too) give their plaintext through the OpenSSL probes; the spans are the same as without
    TLS, the server's SERVER spans included (mariadb, from the greeting before TLS)."""
    port = start_mariadb(procs, tmp_path, tls=True)
    script = tmp_path / "client.py"
    script.write_text(PYMYSQL)
    client, out = procs.run([PYTHON, script, port, tmp_path / "mariadb" / "cert.pem"], name="pymysql-tls")
    assert "error 1146" in out and "done" in out, out
    cipher = out.split("cipher ", 1)[1].split()[0]
    assert cipher and cipher != "done", out  # the connection really was TLS
    check_pymysql_spans(collector, client, port, tls=True)


def check_pymysql_spans(collector, client, port, tls=False):
    """The PYMYSQL script's CLIENT spans, and mariadbd's SERVER spans as their children."""
    want = [
        # (name, operation, collection, text, namespace)
        ("SET", "SET", None, "SET NAMES utf8mb4", "shop"),
        ("CREATE TABLE users", "CREATE TABLE", "users", "CREATE TABLE users (id int primary key, name text)", "shop"),
        ("INSERT users", "INSERT", "users", "INSERT INTO users VALUES (?, ?)", "shop"),
        ("SELECT users", "SELECT", "users", "SELECT name FROM users WHERE id = ?", "shop"),
        ("SELECT missing_table", "SELECT", "missing_table", "SELECT * FROM missing_table", "shop"),
        ("SELECT db", "SELECT", "db", "SELECT COUNT(*) FROM db", "mysql"),
        ("USE shop", "USE", None, "USE shop", "mysql"),
        ("SELECT users", "SELECT", "users", "SELECT COUNT(*) FROM users", "shop"),
    ]
    if tls:
        want.insert(1, ("SHOW", "SHOW", None, "SHOW STATUS LIKE ?", "shop"))
    spans = my(collector.spans.wait(of_pid(client.pid), len(want)), CLIENT_KIND, client.pid)
    assert [s["name"] for s in spans] == [w[0] for w in want], brief(spans)
    for sp, (name, op, coll, text, ns) in zip(spans, want):
        a = sp["attrs"]
        assert a["db.system.name"] == "mariadb", brief([sp])
        assert a["db.namespace"] == ns, brief([sp])
        assert a["db.operation.name"] == op, brief([sp])
        assert a.get("db.collection.name") == coll, brief([sp])
        assert a["db.query.summary"] == name, brief([sp])
        assert a["db.query.text"] == text, brief([sp])
        assert a["server.address"] == "127.0.0.1" and a["server.port"] == port, brief([sp])
        assert sp["start"] <= sp["end"]
    e = 5 if tls else 4
    err = spans[e]
    assert err["status_code"] == 2, brief([err])
    assert err["attrs"]["db.response.status_code"] == "1146" and err["attrs"]["error.type"] == "42S02", brief([err])
    for sp in spans[:e] + spans[e + 1:]:
        assert sp["status_code"] == 0 and "error.type" not in sp["attrs"] and "db.response.status_code" not in sp["attrs"]
    assert "secret-" not in collector.spans.raw_text()

    # The server is traced too: its SERVER spans are the clients' children.
    servers = my(collector.spans.wait(server_on(port), len(want)), SERVER_KIND)
    by_parent = {sv["parent_span_id"]: sv for sv in servers}
    for c in spans:
        sv = by_parent.get(c["span_id"])
        assert sv is not None and sv["trace_id"] == c["trace_id"], brief(servers + [c])
        assert sv["name"] == c["name"] and sv["attrs"]["db.query.text"] == c["attrs"]["db.query.text"]
        assert sv["attrs"]["db.namespace"] == c["attrs"]["db.namespace"]
        assert sv["status_code"] == c["status_code"]


CONNECTOR = r"""
import sys, mysql.connector
port = int(sys.argv[1])
c = mysql.connector.connect(host="127.0.0.1", port=port, user="root", database="shop", use_pure=True,
                            ssl_disabled=True, autocommit=True)
plain = c.cursor()
plain.execute("CREATE TABLE items (id int primary key, name text)")
cur = c.cursor(prepared=True)   # COM_STMT_PREPARE once, COM_STMT_EXECUTE per call
for i in range(3):
    cur.execute("INSERT INTO items (id, name) VALUES (%s, %s)", (i, f"secret-{i}"))
cur.execute("SELECT name FROM items WHERE id = %s", (1,))
cur.fetchall()
try:
    cur.execute("INSERT INTO items (id, name) VALUES (%s, %s)", (1, "secret-dup"))
except mysql.connector.Error as e:
    print("error", e.errno, flush=True)
c.close()
print("done", flush=True)
"""


def test_connector_server_side_prepared_statements(collector, procs, tmp_path):
    port = start_mariadb(procs, tmp_path)
    script = tmp_path / "client.py"
    script.write_text(CONNECTOR)
    client, out = procs.run([PYTHON, script, port], name="connector")
    assert "error 1062" in out and "done" in out, out

    insert = "INSERT INTO items (id, name) VALUES (?, ?)"
    spans = [s for s in my(collector.spans.wait(of_pid(client.pid), 8), CLIENT_KIND, client.pid)
             if s["name"] != "SET"]   # the connector's session setup
    assert [s["name"] for s in spans] == ["CREATE TABLE items", "INSERT items", "INSERT items", "INSERT items",
                                          "SELECT items", "INSERT items"], brief(spans)
    # Parameterized text is kept as is; the values never appear.
    for sp in spans[1:4] + spans[5:]:
        assert sp["attrs"]["db.query.text"] == insert, brief([sp])
    assert spans[4]["attrs"]["db.query.text"] == "SELECT name FROM items WHERE id = ?"
    assert all(s["attrs"]["db.namespace"] == "shop" and s["attrs"]["db.collection.name"] == "items"
               for s in spans), brief(spans)
    assert all(s["status_code"] == 0 for s in spans[:5]), brief(spans)
    dup = spans[5]
    assert dup["status_code"] == 2 and dup["attrs"]["db.response.status_code"] == "1062"
    assert dup["attrs"]["error.type"] == "23000", brief([dup])
    assert "secret-" not in collector.spans.raw_text()
    assert [s["start"] for s in spans] == sorted(s["start"] for s in spans)

    servers = my(collector.spans.wait(server_on(port), len(spans)), SERVER_KIND)
    by_parent = {sv["parent_span_id"]: sv for sv in servers}
    for c in spans:
        sv = by_parent.get(c["span_id"])
        assert sv is not None and sv["trace_id"] == c["trace_id"], brief(servers + [c])
        assert sv["name"] == c["name"] and sv["attrs"]["db.query.text"] == c["attrs"]["db.query.text"]


def test_queries_made_while_serving_are_children(collector, procs, tmp_path):
    port, app = start_mariadb(procs, tmp_path), free_port()
    procs.run([PYTHON, "-c", "import sys, pymysql; c = pymysql.connect(host='127.0.0.1', port=int(sys.argv[1]), "
               "user='root', database='shop', autocommit=True); cur = c.cursor(); "
               "cur.execute('CREATE TABLE users (id int primary key, name text)'); "
               "cur.execute('INSERT INTO users SELECT seq, CONCAT(\"user\", seq) FROM seq_1_to_8')", port],
              name="setup")
    p = procs.spawn([PYTHON, APPS / "db_app.py", app, "-", "-", port], name="db-app")
    wait_listening(app, p, what="db_app.py")
    ids = list(range(1, 9))
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{app}/my/{i}"), ids))

    servers = collector.spans.wait(server_on(app), len(ids))
    assert len(servers) == len(ids), brief(servers)
    calls = [s for s in my(collector.spans.wait(client_to(port), len(ids)), CLIENT_KIND, p.pid)
             if s["name"] == "SELECT users"]
    assert len(calls) == len(ids), brief(calls)
    by_id = {s["span_id"]: s for s in servers}
    for call in calls:
        parent = by_id.get(call["parent_span_id"])
        assert parent is not None, brief([call])
        assert parent["trace_id"] == call["trace_id"]
        assert parent["start"] <= call["start"] and call["end"] <= parent["end"]
        assert call["attrs"]["db.query.text"] == "SELECT name FROM users WHERE id = ?"


def test_mariadb_cli_over_tls(collector, procs, tmp_path):
    """The mariadb CLI with --ssl: Debian's libmariadb uses OpenSSL (libssl, probed), as
    mariadbd does; client and server spans as without TLS."""
    port = start_mariadb(procs, tmp_path, tls=True)
    sql = ("SHOW STATUS LIKE 'Ssl_cipher'; SELECT COUNT(*) FROM mysql.db; "
           "SELECT name FROM missing_table WHERE name = 'secret-9'")
    cli, out = procs.run(["mariadb", "-h", "127.0.0.1", "-P", str(port), "-u", "root", "--ssl", "-D", "shop",
                          "--force", "-N", "-e", sql], check=False, name="mariadb-cli")
    assert "Ssl_cipher\tTLS" in out and "1146" in out, out  # the connection really was TLS
    # The failing statement last: in a first try the CLI ran nothing after it, --force or not.

    spans = my(collector.spans.wait(of_pid(cli.pid), 3), CLIENT_KIND, cli.pid)
    assert [s["name"] for s in spans] == ["SHOW", "SELECT mysql.db", "SELECT missing_table"], brief(spans)
    assert [s["attrs"]["db.query.text"] for s in spans] == [
        "SHOW STATUS LIKE ?", "SELECT COUNT(*) FROM mysql.db", "SELECT name FROM missing_table WHERE name = ?"]
    assert all(s["attrs"]["db.namespace"] == "shop" and s["attrs"]["server.port"] == port for s in spans)
    err = spans[2]
    assert err["status_code"] == 2 and err["attrs"]["db.response.status_code"] == "1146", brief([err])
    assert err["attrs"]["error.type"] == "42S02"
    assert spans[0]["status_code"] == spans[1]["status_code"] == 0
    assert "secret-" not in collector.spans.raw_text()

    servers = my(collector.spans.wait(server_on(port), 3), SERVER_KIND)
    by_parent = {sv["parent_span_id"]: sv for sv in servers}
    for c in spans:
        sv = by_parent.get(c["span_id"])
        assert sv is not None and sv["trace_id"] == c["trace_id"] and sv["name"] == c["name"], brief(servers + [c])
