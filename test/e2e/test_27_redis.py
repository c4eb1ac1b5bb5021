"""Redis spans: real redis-server (private), real clients (redis-cli, redis-py, go-redis), every
command a CLIENT span with the database conventions' attributes and sanitized text, the
server's SERVER span its child, and queries made while serving a request children of it."""

import concurrent.futures

from e2elib import (APPS, PYTHON, brief, client_to, free_port, go_build_module, run_curl, server_on, start_redis,
                    wait_listening)

CLIENT_KIND, SERVER_KIND = 3, 2


def redis_spans(spans, kind):
    return sorted((s for s in spans if s["kind"] == kind and s["attrs"].get("db.system.name") == "redis"),
                  key=lambda s: s["start"])


def test_redis_cli_commands(collector, procs, tmp_path):
    port = start_redis(procs, tmp_path)
    clis = [procs.run(["redis-cli", "-p", str(port), *cmd], name="redis-cli")[0]
            for cmd in (["SET", "user:1", "alice"], ["GET", "user:1"], ["LPUSH", "user:1", "x"])]

    clients = redis_spans(collector.spans.wait(client_to(port), 3), CLIENT_KIND)
    clients = [c for c in clients if c["resource"]["process.pid"] in {p.pid for p in clis}]
    assert [c["name"] for c in clients] == ["SET", "GET", "LPUSH"], brief(clients)
    for c in clients:
        a = c["attrs"]
        assert a["db.system.name"] == "redis" and a["server.port"] == port and a["server.address"] == "127.0.0.1", a
        assert a["db.operation.name"] == a["db.query.summary"] == c["name"], a
        assert c["start"] <= c["end"]
        assert "http.request.method" not in a
    # Sanitized text keeps the command and the key; the value never leaves the process.
    assert [c["attrs"]["db.query.text"] for c in clients] == ["SET user:1 ?", "GET user:1", "LPUSH user:1 ?"]
    assert "alice" not in collector.spans.raw_text()
    ok, ok2, wrong = clients
    assert ok["status_code"] == ok2["status_code"] == 0 and "error.type" not in ok["attrs"]
    assert wrong["status_code"] == 2 and wrong["attrs"]["error.type"] == "WRONGTYPE", brief([wrong])
    assert wrong["attrs"]["db.response.status_code"] == "WRONGTYPE"

    # redis-server is traced too: its SERVER span for each command is the client's child.
    servers = redis_spans(collector.spans.wait(server_on(port), 3), SERVER_KIND)
    by_parent = {s["parent_span_id"]: s for s in servers}
    for c in clients:
        s = by_parent.get(c["span_id"])
        assert s is not None, brief(servers + [c])
        assert s["trace_id"] == c["trace_id"] and s["name"] == c["name"]
        assert s["attrs"]["db.query.text"] == c["attrs"]["db.query.text"]
        # redis-server is a link to redis-check-rdb: the service is named as started.
        assert s["resource"]["service.name"] == "redis-server", s["resource"]
        assert s["resource"]["process.executable.name"] == "redis-check-rdb"


PIPELINE = r"""
import sys, redis
r = redis.Redis(port=int(sys.argv[1]))
p = r.pipeline(transaction=False)
for i in range(5):
    p.set(f"k:{i}", i)
p.execute()
with r.pipeline() as t:          # MULTI ... EXEC
    t.incr("counter")
    t.get("k:0")
    t.execute()
r.execute_command("SELECT", 2)
r.get("in-db-2")
print("done", flush=True)
"""


def test_redis_py_pipeline_transaction_and_select(collector, procs, tmp_path):
    port = start_redis(procs, tmp_path)
    script = tmp_path / "pipeline.py"
    script.write_text(PIPELINE)
    client, _ = procs.run([PYTHON, script, port], name="redis-py")

    mine = lambda s: s["resource"]["process.pid"] == client.pid and s["attrs"].get("db.system.name") == "redis"
    spans = [s for s in collector.spans.wait(lambda s: mine(s), 11) if mine(s)]
    spans.sort(key=lambda s: s["start"])
    assert [s["name"] for s in spans] == ["SET"] * 5 + ["MULTI", "INCRBY", "GET", "EXEC", "SELECT", "GET"], brief(spans)
    assert [s["attrs"]["db.query.text"] for s in spans[:5]] == [f"SET k:{i} ?" for i in range(5)]
    # The 5 SETs went out in one write: they start together; replies are paired in order.
    assert len({s["start"] for s in spans[:5]}) == 1
    assert all(s["status_code"] == 0 for s in spans), brief(spans)
    # SELECT 2 names the namespace of what follows.
    assert spans[-1]["attrs"].get("db.namespace") == "2", brief(spans[-1:])
    assert "db.namespace" not in spans[0]["attrs"]


def test_queries_made_while_serving_are_children(collector, procs, tmp_path):
    rport, app = start_redis(procs, tmp_path), free_port()
    p = procs.spawn([PYTHON, APPS / "db_app.py", app, rport, "-"], name="db-app")
    wait_listening(app, p, what="db_app.py")
    keys = [f"item{i}" for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda k: run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{app}/redis/{k}"), keys))

    servers = collector.spans.wait(server_on(app), len(keys))
    assert len(servers) == len(keys), brief(servers)
    calls = [s for s in collector.spans.wait(client_to(rport), 2 * len(keys)) if s["resource"]["process.pid"] == p.pid]
    assert len(calls) == 2 * len(keys), brief(calls)
    by_id = {s["span_id"]: s for s in servers}
    for call in calls:
        parent = by_id.get(call["parent_span_id"])
        assert parent is not None, brief([call])
        assert parent["trace_id"] == call["trace_id"]
        # The query is for the key of the request being served.
        key = parent["attrs"]["url.path"].rsplit("/", 1)[1]
        text = call["attrs"]["db.query.text"]
        assert text == f"GET {key}" or text.startswith("HINCRBY hits "), brief([parent, call])
        assert parent["start"] <= call["start"] and call["end"] <= parent["end"]
    assert sorted(c["name"] for c in calls) == sorted(["GET", "HINCRBY"] * len(keys))


def test_go_redis_pipeline_and_transaction(collector, procs, tmp_path):
    """go-redis v9 over RESP3 (HELLO 3, CLIENT SETINFO: handshakes, no spans) with a pool of
    connections: db.namespace from its SELECT, a pipeline and a MULTI/EXEC transaction are
    one span per command, paired in order."""
    port = start_redis(procs, tmp_path)
    godb = go_build_module(tmp_path, "godb")
    client, _ = procs.run([godb, "goredis", port], name="godb-goredis")
    mine = lambda s: s["resource"].get("process.pid") == client.pid  # noqa: E731
    spans = [s for s in redis_spans(collector.spans.wait(mine, 15), CLIENT_KIND) if mine(s)]
    by_conn = {}
    for s in spans:
        by_conn.setdefault(s["attrs"]["network.local.port"], []).append(s)
    first, second = sorted(by_conn.values(), key=lambda ss: ss[0]["start"])
    assert [s["name"] for s in first] == ["SELECT", "SET", "GET", "HSET", "HGETALL", "LPUSH"], brief(first)
    assert [s["name"] for s in second] == ["SELECT", "INCR", "INCR", "GET", "MULTI", "SET", "SET", "EXEC"], \
        brief(second)
    assert [s["attrs"]["db.query.text"] for s in first] == [
        "SELECT 2", "SET user:1 ?", "GET user:1", "HSET h:1 ? ?", "HGETALL h:1", "LPUSH user:1 ?"]
    assert [s["attrs"]["db.query.text"] for s in second[4:]] == ["MULTI", "SET tx:a ?", "SET tx:b ?", "EXEC"]
    assert "secret-" not in collector.spans.raw_text()
    for conn in (first, second):
        assert "db.namespace" not in conn[0]["attrs"], brief(conn)  # before its SELECT: not known
        assert all(s["attrs"]["db.namespace"] == "2" for s in conn[1:]), brief(conn)
        assert all(s["attrs"]["server.port"] == port and s["attrs"]["db.operation.name"] == s["name"] for s in conn)
    assert all(s["status_code"] == 0 for s in first[:-1] + second), brief(spans)
    wrong = first[-1]
    assert wrong["status_code"] == 2 and wrong["attrs"]["error.type"] == "WRONGTYPE", brief([wrong])
    assert len(spans) == 14, brief(spans)  # HELLO and CLIENT SETINFO are not spans
