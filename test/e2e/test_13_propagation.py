"""Trace context propagation (`context_propagation: headers`, the default): the kernel
inserts `traceparent` (and `tracestate`) right after the request line of the HTTP/1
requests traced processes send, and the spans carry exactly the ids it inserted.

What the servers received is compared byte for byte (apps/dump_server.py records it).
The collector here has its own metrics port in exclude_ports, so reading its counters
(an HTTP request from this traced process) does not move them: counter deltas are exact.
"""

import secrets

import pytest

from e2elib import (
    TRACEPARENT_LINE,
    and_,
    brief,
    by_start,
    client_to,
    counters_settled,
    dump_records,
    free_port,
    inserted,
    is_span_id,
    is_trace_id,
    path_is,
    quiet_collector,
    run_curl,
    run_sendraw,
    server_on,
    start_app,
    start_dump_server,
    traceparent_of,
)

COUNTERS = ("context_injected", "inject_skipped_own_header", "inject_skipped_split_head", "inject_failed",
            "requests_not_injected", "server_head_split", "context_mismatch", "tracestate_dropped", "links_made",
            "parents_ambiguous")
TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


@pytest.fixture(scope="module")
def collector(collectors):
    return quiet_collector(collectors, {})


@pytest.fixture
def dump(procs, tmp_path):
    """A dump server on a fresh port: (port, its record file)."""
    port = free_port()
    out = tmp_path / "dump.jsonl"
    start_dump_server(procs, port, out)
    return port, out


def baseline(collector) -> dict:
    before = counters_settled(collector, {k: 0 for k in COUNTERS})
    assert None not in before.values(), f"counters not exported: {before}"
    return before


def grown(collector, before: dict, **delta) -> tuple[dict, dict]:
    """(counters read once they reached before + delta and settled, before + delta)."""
    want = {k: v + delta.get(k, 0) for k, v in before.items()}
    return counters_settled(collector, want), want


def get_request(port: int, path: str, *headers: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: e2e-sendraw/1\r\n"
            + "".join(f"{h}\r\n" for h in headers) + "Accept: */*\r\n\r\n").encode()


def one_record(out, peer_port: int | None = None) -> dict:
    recs = dump_records(out, 1)
    assert len(recs) == 1, recs
    if peer_port is not None:
        assert recs[0]["peer_port"] == peer_port, recs
    return recs[0]


def fresh_ids():
    return secrets.token_hex(16), secrets.token_hex(8)


def test_traceparent_is_inserted_after_the_request_line(collector, procs, dump):
    port, out = dump
    before = baseline(collector)
    sent = get_request(port, "/a/1", "X-Test: abc", "X-Other: def")
    client, res = run_sendraw(procs, port, "one", 1, sent)
    assert res["statuses"] == [200], res

    rec = one_record(out, res["local_port"])
    trace, span, flags = traceparent_of(rec["data"], sent)
    assert flags == "01" and is_trace_id(trace) and is_span_id(span), rec["data"]
    assert rec["requests"] == [rec["data"]]

    clients = collector.spans.wait(client_to(port), 1)
    assert len(clients) == 1, brief(clients)
    c = clients[0]
    assert c["resource"]["process.pid"] == client.pid
    assert (c["trace_id"], c["span_id"], c["parent_span_id"]) == (trace, span, ""), brief(clients)
    servers = collector.spans.wait(server_on(port), 1)
    assert len(servers) == 1, brief(servers)
    s = servers[0]
    assert (s["trace_id"], s["parent_span_id"]) == (trace, span), brief(servers)
    assert is_span_id(s["span_id"]) and s["span_id"] != span
    assert s["attrs"]["client.port"] == res["local_port"]

    after, want = grown(collector, before, context_injected=1)
    assert after == want


def test_each_request_stays_one_segment(collector, procs, dump):
    """An insertion must not cut a request into pieces on the wire: with Nagle on (most
    clients leave it on) the rest of a cut request waits for the server's delayed ACK,
    40 ms a request, once a connection is past TCP's initial quick ACKs."""
    port, out = dump
    n = 60
    reqs = [get_request(port, f"/seg/{i}") for i in range(n)]
    _, res = run_sendraw(procs, port, "each", n, *reqs, env_extra={"SENDRAW_NAGLE": "1"})
    assert res["statuses"] == [200] * n, res
    rec = one_record(out, res["local_port"])
    assert len(rec["requests"]) == n
    assert all(TRACEPARENT_LINE.search(r) for r in rec["requests"])
    # One send, one read at the server: every request arrived whole.
    assert rec["chunks"] == [len(r) for r in rec["requests"]], rec["chunks"]


def test_own_traceparent_and_tracestate_are_left_untouched(collector, procs, dump):
    port, out = dump
    before = baseline(collector)
    trace, parent = fresh_ids()
    sent = get_request(port, "/b/1", f"traceparent: 00-{trace}-{parent}-01", "tracestate: k1=v1,k2=v2")
    client, res = run_sendraw(procs, port, "one", 1, sent)
    assert res["statuses"] == [200], res

    rec = one_record(out, res["local_port"])
    assert rec["data"] == sent

    clients = collector.spans.wait(client_to(port), 1)
    assert len(clients) == 1, brief(clients)
    c = clients[0]
    assert c["resource"]["process.pid"] == client.pid
    # The header's id is the app's span's; ours is its child with an id of its own.
    assert (c["trace_id"], c["parent_span_id"]) == (trace, parent) and c["span_id"] != parent, brief(clients)
    servers = collector.spans.wait(server_on(port), 1)
    assert len(servers) == 1, brief(servers)
    assert (servers[0]["trace_id"], servers[0]["parent_span_id"]) == (trace, parent), brief(servers)
    assert servers[0]["trace_state"] == "k1=v1,k2=v2"

    after, want = grown(collector, before, inject_skipped_own_header=1)
    assert after == want


def test_post_body_and_content_length_are_intact(collector, procs, dump):
    port, out = dump
    before = baseline(collector)
    body = ('{"order": 17, "items": ["' + "x" * 300 + '"], "note": "GET / HTTP/1.1\\r\\n"}').encode()
    sent = (f"POST /c/orders HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nUser-Agent: e2e-sendraw/1\r\n\r\n").encode() + body
    client, res = run_sendraw(procs, port, "one", 1, sent)
    assert res["statuses"] == [200] and res["bodies"] == ["dumped\n"], res

    rec = one_record(out, res["local_port"])
    trace, span, _ = traceparent_of(rec["data"], sent)  # everything but the inserted line is as sent
    head, _, got_body = rec["data"].partition(b"\r\n\r\n")
    assert f"\r\nContent-Length: {len(body)}\r\n".encode() in head + b"\r\n", head
    assert got_body == body
    assert rec["requests"] == [rec["data"]]

    clients = collector.spans.wait(client_to(port), 1)
    servers = collector.spans.wait(server_on(port), 1)
    assert len(clients) == 1 and len(servers) == 1, brief(clients + servers)
    assert (clients[0]["trace_id"], clients[0]["span_id"]) == (trace, span), brief(clients)
    assert (servers[0]["trace_id"], servers[0]["parent_span_id"]) == (trace, span), brief(servers)
    for s in clients + servers:
        assert s["attrs"]["http.request.method"] == "POST"
        assert s["attrs"]["http.request.body.size"] == len(body), brief([s])
        assert s["attrs"]["http.response.status_code"] == 200

    after, want = grown(collector, before, context_injected=1)
    assert after == want


def test_pipelined_requests_each_get_their_own_traceparent(collector, procs, dump):
    port, out = dump
    before = baseline(collector)
    sent = [get_request(port, f"/d/{i}", f"X-Seq: {i}") for i in (1, 2, 3)]
    client, res = run_sendraw(procs, port, "one", 3, b"".join(sent))
    assert res["statuses"] == [200, 200, 200], res

    rec = one_record(out, res["local_port"])
    assert len(rec["requests"]) == 3, rec
    assert b"".join(rec["requests"]) == rec["data"]
    ids = [traceparent_of(got, want) for got, want in zip(rec["requests"], sent)]
    assert all(flags == "01" for _, _, flags in ids), ids
    assert len({span for _, span, _ in ids}) == 3, ids

    clients = by_start(collector.spans.wait(client_to(port), 3))
    assert len(clients) == 3, brief(clients)
    assert all(c["resource"]["process.pid"] == client.pid for c in clients)
    assert [c["attrs"]["url.path"] for c in clients] == ["/d/1", "/d/2", "/d/3"], brief(clients)
    assert [(c["trace_id"], c["span_id"]) for c in clients] == [(t, s) for t, s, _ in ids], brief(clients)
    servers = collector.spans.wait(server_on(port), 3)
    assert len(servers) == 3, brief(servers)
    by_path = {s["attrs"]["url.path"]: s for s in servers}
    for i, (t, s, _) in enumerate(ids, 1):
        assert (by_path[f"/d/{i}"]["trace_id"], by_path[f"/d/{i}"]["parent_span_id"]) == (t, s), brief(servers)

    after, want = grown(collector, before, context_injected=3)
    assert after == want


def test_header_block_split_over_sends_is_left_untouched(collector, procs, dump):
    port, out = dump
    before = baseline(collector)
    sent = get_request(port, "/e/1", "X-Split: yes")
    at = sent.index(b"\r\n") + 2
    pieces = [sent[:at], sent[at:at + 25], sent[at + 25:]]  # the request line alone first
    client, res = run_sendraw(procs, port, "pieces:30", 1, *pieces)
    assert res["statuses"] == [200], res

    rec = one_record(out, res["local_port"])
    assert rec["data"] == sent

    clients = collector.spans.wait(client_to(port), 1)
    servers = collector.spans.wait(server_on(port), 1)
    assert len(clients) == 1 and len(servers) == 1, brief(clients + servers)
    c, s = clients[0], servers[0]
    assert c["resource"]["process.pid"] == client.pid
    assert c["attrs"]["url.path"] == s["attrs"]["url.path"] == "/e/1"
    # No header: same-node linking still joins them.
    assert (s["trace_id"], s["parent_span_id"]) == (c["trace_id"], c["span_id"]), brief(clients + servers)

    # The server read the request line alone too (server_head_split); the request went
    # out without a header (requests_not_injected) and was linked on this node.
    after, want = grown(collector, before, inject_skipped_split_head=1, requests_not_injected=1,
                        server_head_split=1, links_made=1)
    assert after == want


def proxy_setup(procs):
    app, dport = free_port(), free_port()
    start_app(procs, app, env_extra={"OTEL_SERVICE_NAME": "svc"})
    return app, dport


def python_get(dport: int, path: str) -> bytes:
    """What app.py's http.client sends for GET path."""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{dport}\r\nAccept-Encoding: identity\r\n\r\n".encode()


def test_context_flows_through_a_service(collector, procs, tmp_path):
    app, dport = proxy_setup(procs)
    out = tmp_path / "dump.jsonl"
    start_dump_server(procs, dport, out)
    before = baseline(collector)
    trace, parent = fresh_ids()
    curl, body = run_curl(procs, "-H", f"traceparent: 00-{trace}-{parent}-01", "-H", f"tracestate: {TRACESTATE}",
                          f"http://127.0.0.1:{app}/proxy/{dport}/x")
    assert body == "dumped\n"

    rec = one_record(out)
    line = inserted(rec["data"], python_get(dport, "/x"))
    assert line is not None, rec["data"]
    tp, _, ts = line.partition(b"\r\n")
    m = TRACEPARENT_LINE.fullmatch(tp + b"\r\n")
    assert m and m.group(1).decode() == trace and m.group(3) == b"01", line
    call_id = m.group(2).decode()
    assert ts == f"tracestate: {TRACESTATE}\r\n".encode(), line

    curls = collector.spans.wait(client_to(app), 1)
    svc_servers = collector.spans.wait(server_on(app), 1)
    svc_calls = collector.spans.wait(client_to(dport), 1)
    dumps = collector.spans.wait(server_on(dport), 1)
    spans = curls + svc_servers + svc_calls + dumps
    assert [len(x) for x in (curls, svc_servers, svc_calls, dumps)] == [1, 1, 1, 1], brief(spans)
    assert (curls[0]["trace_id"], curls[0]["parent_span_id"]) == (trace, parent), brief(spans)
    assert curls[0]["span_id"] != parent, brief(spans)
    srv, call, d = svc_servers[0], svc_calls[0], dumps[0]
    assert srv["resource"]["service.name"] == call["resource"]["service.name"] == "svc"
    assert (srv["trace_id"], srv["parent_span_id"]) == (trace, parent), brief(spans)
    assert (call["trace_id"], call["span_id"], call["parent_span_id"]) == (trace, call_id, srv["span_id"]), brief(spans)
    assert (d["trace_id"], d["parent_span_id"]) == (trace, call_id), brief(spans)
    assert srv["trace_state"] == call["trace_state"] == d["trace_state"] == TRACESTATE, brief(spans)

    after, want = grown(collector, before, context_injected=1, inject_skipped_own_header=1)
    assert after == want


def test_context_flows_from_an_uninstrumented_caller(collector, procs, tmp_path):
    app, dport = proxy_setup(procs)
    out = tmp_path / "dump.jsonl"
    start_dump_server(procs, dport, out)
    before = baseline(collector)
    curl, body = run_curl(procs, f"http://127.0.0.1:{app}/proxy/{dport}/y")
    assert body == "dumped\n"

    rec = one_record(out)
    trace, call_id, flags = traceparent_of(rec["data"], python_get(dport, "/y"))  # no tracestate line
    assert flags == "01"

    curls = collector.spans.wait(client_to(app), 1)
    svc_servers = collector.spans.wait(server_on(app), 1)
    svc_calls = collector.spans.wait(client_to(dport), 1)
    dumps = collector.spans.wait(server_on(dport), 1)
    spans = curls + svc_servers + svc_calls + dumps
    assert [len(x) for x in (curls, svc_servers, svc_calls, dumps)] == [1, 1, 1, 1], brief(spans)
    cu, srv, call, d = curls[0], svc_servers[0], svc_calls[0], dumps[0]
    assert cu["resource"]["process.pid"] == curl.pid and cu["parent_span_id"] == "", brief(spans)
    assert {x["trace_id"] for x in spans} == {trace}, brief(spans)
    assert srv["parent_span_id"] == cu["span_id"], brief(spans)
    assert (call["span_id"], call["parent_span_id"]) == (call_id, srv["span_id"]), brief(spans)
    assert d["parent_span_id"] == call_id, brief(spans)
    assert all(x["trace_state"] == "" for x in spans), brief(spans)

    # Both hops carried a header: nothing was left to same-node linking.
    after, want = grown(collector, before, context_injected=2)
    assert after == want


def test_unsampled_flag_is_passed_on_and_nothing_exported(collector, procs, tmp_path):
    app, dport = proxy_setup(procs)
    out = tmp_path / "dump.jsonl"
    start_dump_server(procs, dport, out)
    trace, parent = fresh_ids()
    run_curl(procs, "-o", "/dev/null", "-H", f"traceparent: 00-{trace}-{parent}-00",
             f"http://127.0.0.1:{app}/proxy/{dport}/unsampled")
    # A sampled request afterwards: once its spans are out, the first one's would be too.
    run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{app}/proxy/{dport}/sampled")

    recs = dump_records(out, 2)
    assert len(recs) == 2, recs
    by_path = {r["data"].split(b" ")[1]: r for r in recs}
    assert sorted(by_path) == [b"/sampled", b"/unsampled"], recs
    t0, _, flags0 = traceparent_of(by_path[b"/unsampled"]["data"], python_get(dport, "/unsampled"))
    assert (t0, flags0) == (trace, "00")
    t1, _, flags1 = traceparent_of(by_path[b"/sampled"]["data"], python_get(dport, "/sampled"))
    assert flags1 == "01" and t1 != trace

    marker = collector.spans.wait(and_(server_on(dport), path_is("/sampled")), 1)
    assert len(marker) == 1 and marker[0]["trace_id"] == t1, brief(marker)
    svc_servers = collector.spans.wait(server_on(app), 1)
    assert [s["attrs"]["url.path"] for s in svc_servers] == [f"/proxy/{dport}/sampled"], brief(svc_servers)
    svc_calls = collector.spans.wait(client_to(dport), 1)
    assert [s["attrs"]["url.path"] for s in svc_calls] == ["/sampled"], brief(svc_calls)
    dumps = collector.spans.wait(server_on(dport), 1)
    assert [s["attrs"]["url.path"] for s in dumps] == ["/sampled"], brief(dumps)
    assert [s for s in collector.spans.refresh() if s["trace_id"] == trace] == []
