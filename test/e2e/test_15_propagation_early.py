"""A keep-alive connection opened before the collector started: the kernel did not see it
connect, so the first request on it goes out exactly as written (counted in
requests_not_injected, still with spans); the collector then adopts the socket
(connections_adopted) and the requests after that carry headers."""

import base64
import json

from e2elib import (
    APPS,
    PYTHON,
    brief,
    by_start,
    client_to,
    counters_settled,
    dump_records,
    free_port,
    quiet_collector,
    server_on,
    start_dump_server,
    traceparent_of,
    wait_output,
)

COUNTERS = ("context_injected", "requests_not_injected", "connections_adopted", "inject_skipped_own_header",
            "inject_skipped_split_head", "inject_failed")


def test_connection_opened_before_the_collector(collectors, procs, tmp_path):
    collectors.stop()
    port, out, gate = free_port(), tmp_path / "dump.jsonl", tmp_path / "gate"
    start_dump_server(procs, port, out)
    sent = [(f"GET /i/{i} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: e2e-sendraw/1\r\n"
             f"Accept: */*\r\n\r\n").encode() for i in (1, 2, 3)]
    client = procs.spawn([PYTHON, APPS / "sendraw.py", port, "each", 3, *(base64.b64encode(x).decode() for x in sent)],
                         env_extra={"SENDRAW_GATE": str(gate)}, name="sendraw")
    wait_output(procs, client, '"connected"')

    c = quiet_collector(collectors, {"context_propagation": "headers"})  # a fresh one, started now
    before = counters_settled(c, dict.fromkeys(COUNTERS, 0))
    assert None not in before.values(), before

    # The first request: sent as written; the request is counted and the socket adopted.
    (tmp_path / "gate.0").write_text("")
    wait_output(procs, client, '{"responses": 1}')
    want = dict(before, requests_not_injected=before["requests_not_injected"] + 1,
                connections_adopted=before["connections_adopted"] + 1)
    assert counters_settled(c, want) == want

    # The next ones carry headers.
    (tmp_path / "gate.1").write_text("")
    (tmp_path / "gate.2").write_text("")
    client.wait(timeout=30)
    res = json.loads(procs.output_of(client).strip().splitlines()[-1])
    assert res["statuses"] == [200, 200, 200], res

    recs = dump_records(out, 1)
    assert len(recs) == 1 and recs[0]["peer_port"] == res["local_port"], recs
    got = recs[0]["requests"]
    assert len(got) == 3 and b"".join(got) == recs[0]["data"], recs
    assert got[0] == sent[0]
    ids = [traceparent_of(got[i], sent[i]) for i in (1, 2)]
    assert [flags for _, _, flags in ids] == ["01", "01"] and ids[0][1] != ids[1][1], ids

    clients = by_start(c.spans.wait(client_to(port), 3))
    servers = by_start(c.spans.wait(server_on(port), 3))
    assert [s["attrs"]["url.path"] for s in clients] == ["/i/1", "/i/2", "/i/3"], brief(clients)
    assert [s["attrs"]["url.path"] for s in servers] == ["/i/1", "/i/2", "/i/3"], brief(servers)
    assert all(s["resource"]["process.pid"] == client.pid for s in clients), brief(clients)
    assert all(s["attrs"]["client.port"] == res["local_port"] for s in servers), brief(servers)
    # Without a header the server span is linked on this node; with one, it follows it.
    assert (servers[0]["trace_id"], servers[0]["parent_span_id"]) == (clients[0]["trace_id"], clients[0]["span_id"]), \
        brief(clients + servers)
    for (trace, span, _), cl, sv in zip(ids, clients[1:], servers[1:]):
        assert (cl["trace_id"], cl["span_id"]) == (trace, span), brief(clients)
        assert (sv["trace_id"], sv["parent_span_id"]) == (trace, span), brief(servers)

    want = dict(want, context_injected=before["context_injected"] + 2)
    assert counters_settled(c, want) == want
