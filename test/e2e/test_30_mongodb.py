"""MongoDB spans: a private FerretDB (MongoDB wire protocol over SQLite), pymongo as the
client, every command a CLIENT span with the database conventions' attributes and the
command's sanitized JSON shape as text, handshakes and heartbeats no spans, errors with
their code, and FerretDB's SERVER spans the clients' children."""

from e2elib import PYTHON, brief, server_on, start_ferretdb

CLIENT_KIND, SERVER_KIND = 3, 2

PYMONGO = r"""
import sys, pymongo
from pymongo.errors import DuplicateKeyError, OperationFailure
c = pymongo.MongoClient(f"mongodb://127.0.0.1:{sys.argv[1]}/?directConnection=true", serverSelectionTimeoutMS=10000)
users = c.shop.users
users.insert_one({"_id": 1, "name": "alice-secret", "age": 31})
users.insert_many([{"_id": i, "name": f"u{i}", "age": 20 + i} for i in range(2, 5)])
assert len(list(users.find({"age": {"$gt": 21}}))) == 4
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
c.admin.command("ping")
c.close()
print("done", flush=True)
"""


def mongo(spans, kind, pid=None):
    return sorted((s for s in spans if s["kind"] == kind and s["attrs"].get("db.system.name") == "mongodb"
                   and (pid is None or s["resource"]["process.pid"] == pid)), key=lambda s: s["start"])


def test_pymongo_commands_errors_and_server_spans(collector, procs, tmp_path):
    port = start_ferretdb(procs, tmp_path)
    script = tmp_path / "client.py"
    script.write_text(PYMONGO)
    client, _ = procs.run([PYTHON, script, port], name="pymongo")

    mine = lambda s: s["resource"].get("process.pid") == client.pid and s["attrs"].get("db.system.name") == "mongodb"
    spans = mongo(collector.spans.wait(mine, 8), CLIENT_KIND, client.pid)
    want = [
        ("insert users", "insert", '{"insert":"users","ordered":"?","documents":[{"_id":"?","name":"?","age":"?"}]}'),
        ("insert users", "insert", '{"insert":"users","ordered":"?","documents":[{"_id":"?","name":"?","age":"?"}]}'),
        ("find users", "find", '{"find":"users","filter":{"age":{"$gt":"?"}}}'),
        ("update users", "update",
         '{"update":"users","ordered":"?","updates":[{"q":{"name":"?"},"u":{"$set":{"age":"?"}},"multi":"?","upsert":"?"}]}'),
        ("delete users", "delete", '{"delete":"users","ordered":"?","deletes":[{"q":{"name":"?"},"limit":"?"}]}'),
        ("aggregate users", "aggregate",
         '{"aggregate":"users","pipeline":[{"$match":{"age":{"$gte":"?"}}},{"$group":{"_id":"?","n":{"$sum":"?"}}}],'
         '"cursor":{}}'),
        ("insert users", "insert", '{"insert":"users","ordered":"?","documents":[{"_id":"?","name":"?"}]}'),
        ("noSuchCommand", "noSuchCommand", '{"noSuchCommand":1}'),
    ]
    # hello/isMaster (handshake and monitor), ping and endSessions make no spans.
    assert [s["name"] for s in spans] == [w[0] for w in want], brief(spans)
    for s, (name, op, text) in zip(spans, want):
        a = s["attrs"]
        assert a["db.system.name"] == "mongodb" and a["db.namespace"] == "shop", a
        assert a["db.operation.name"] == op and a["db.query.summary"] == name, a
        assert a["db.query.text"] == text, brief([s])
        if op != "noSuchCommand":
            assert a["db.collection.name"] == "users", a
        else:
            assert "db.collection.name" not in a
        assert a["server.address"] == "127.0.0.1" and a["server.port"] == port, a
        assert s["start"] <= s["end"]
    assert "alice-secret" not in collector.spans.raw_text()
    # insert_many: one command with three documents.
    assert spans[1]["attrs"]["db.operation.batch.size"] == 3, brief(spans[1:2])
    assert all("db.operation.batch.size" not in s["attrs"] for s in spans if s is not spans[1])

    ok = spans[:6]
    assert all(s["status_code"] == 0 and "error.type" not in s["attrs"] for s in ok), brief(ok)
    dup, unknown = spans[6], spans[7]
    assert dup["status_code"] == 2 and dup["attrs"]["db.response.status_code"] == "11000", brief([dup])
    assert dup["attrs"]["error.type"] == "DuplicateKey", brief([dup])
    assert unknown["status_code"] == 2 and unknown["attrs"]["db.response.status_code"] == "59", brief([unknown])
    assert unknown["attrs"]["error.type"] == "CommandNotFound", brief([unknown])

    # FerretDB is traced too: its SERVER span for each command is the client's child.
    servers = mongo(collector.spans.wait(server_on(port), len(spans)), SERVER_KIND)
    by_parent = {sv["parent_span_id"]: sv for sv in servers}
    for c in spans:
        sv = by_parent.get(c["span_id"])
        assert sv is not None and sv["trace_id"] == c["trace_id"], brief(servers + [c])
        assert sv["name"] == c["name"] and sv["attrs"]["db.query.text"] == c["attrs"]["db.query.text"]
        assert sv["attrs"].get("db.response.status_code") == c["attrs"].get("db.response.status_code")
    assert len(servers) == len(spans), brief(servers)
