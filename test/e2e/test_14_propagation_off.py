"""`context_propagation: off`: requests leave exactly as the apps wrote them, and spans
are still made (and joined on this node by same-node linking and in-process parenting)."""

import json

import pytest

from e2elib import (
    APPS,
    PYTHON,
    wait_listening,
    brief,
    client_to,
    counters_settled,
    dump_records,
    free_port,
    run_curl,
    run_sendraw,
    server_on,
    start_app,
    start_dump_server,
)


@pytest.fixture(scope="module")
def collector(collectors):
    return collectors.get({"context_propagation": "off"})


def test_requests_are_not_modified(collector, procs, tmp_path):
    port, out = free_port(), tmp_path / "dump.jsonl"
    start_dump_server(procs, port, out)
    sent = (f"GET /h/1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: e2e-sendraw/1\r\n"
            f"X-Test: off\r\nAccept: */*\r\n\r\n").encode()
    client, res = run_sendraw(procs, port, "one", 1, sent)
    assert res["statuses"] == [200], res

    recs = dump_records(out, 1)
    assert len(recs) == 1 and recs[0]["peer_port"] == res["local_port"], recs
    assert recs[0]["data"] == sent

    clients = collector.spans.wait(client_to(port), 1)
    servers = collector.spans.wait(server_on(port), 1)
    assert len(clients) == 1 and len(servers) == 1, brief(clients + servers)
    c, s = clients[0], servers[0]
    assert c["resource"]["process.pid"] == client.pid
    assert c["attrs"]["url.path"] == s["attrs"]["url.path"] == "/h/1"
    assert (s["trace_id"], s["parent_span_id"]) == (c["trace_id"], c["span_id"]), brief(clients + servers)

    got = counters_settled(collector, {"context_injected": 0, "inject_failed": 0})
    assert got == {"context_injected": 0, "inject_failed": 0}


def test_chain_through_a_service_is_joined_without_headers(collector, procs, tmp_path):
    app, dport, out = free_port(), free_port(), tmp_path / "dump.jsonl"
    start_app(procs, app, env_extra={"OTEL_SERVICE_NAME": "svc"})
    start_dump_server(procs, dport, out)
    curl, body = run_curl(procs, f"http://127.0.0.1:{app}/proxy/{dport}/z")
    assert body == "dumped\n"

    recs = dump_records(out, 1)
    assert len(recs) == 1, recs
    assert recs[0]["data"] == f"GET /z HTTP/1.1\r\nHost: 127.0.0.1:{dport}\r\nAccept-Encoding: identity\r\n\r\n".encode()

    curls = collector.spans.wait(client_to(app), 1)
    srvs = collector.spans.wait(server_on(app), 1)
    calls = collector.spans.wait(client_to(dport), 1)
    dumps = collector.spans.wait(server_on(dport), 1)
    spans = curls + srvs + calls + dumps
    assert [len(x) for x in (curls, srvs, calls, dumps)] == [1, 1, 1, 1], brief(spans)
    assert len({x["trace_id"] for x in spans}) == 1, brief(spans)
    assert curls[0]["resource"]["process.pid"] == curl.pid
    assert srvs[0]["parent_span_id"] == curls[0]["span_id"], brief(spans)
    assert calls[0]["parent_span_id"] == srvs[0]["span_id"], brief(spans)
    assert dumps[0]["parent_span_id"] == calls[0]["span_id"], brief(spans)
    assert counters_settled(collector, {"context_injected": 0}) == {"context_injected": 0}


def test_grpc_calls_are_not_modified(collector, procs):
    """HTTP/2 too: the server's gRPC stack sees no traceparent; the spans are still linked."""
    port = free_port()
    srv = procs.spawn([PYTHON, APPS / "grpc_app.py", "server", port], name="grpc-server")
    wait_listening(port, srv, what="grpc server")
    _, out = procs.run([PYTHON, APPS / "grpc_app.py", "echo", port, 2], name="grpc-echo")
    res = json.loads(out.strip().splitlines()[-1])
    assert res["seen"] == [""] * 4, res
    clients = collector.spans.wait(client_to(port), 4)
    servers = collector.spans.wait(server_on(port), 4)
    assert len(clients) == 4 and len(servers) == 4, brief(clients + servers)
    by_id = {c["span_id"]: c for c in clients}
    assert all(s["parent_span_id"] in by_id for s in servers), brief(clients + servers)
    assert counters_settled(collector, {"context_injected": 0}) == {"context_injected": 0}
