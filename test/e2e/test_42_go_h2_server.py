"""Goroutine-aware context for HTTP/2 (issue 14): a Go net/http server over TLS (HTTP/2,
Go's default) serving many streams at once on ONE connection, whose handler calls a
backend over HTTP/1 on a pooled http.Client. The kernel gives each stream its ids when the
serve goroutine takes its HEADERS (go_h2server.h): every call is the child of its own
stream's SERVER span, exactly, and every backend request the child of that call. A stream
that came with a traceparent is in that trace, the child of its parent-id. The same for
grpc-go's server (h2c and TLS), whose unary handler calls out."""

import json
import os
import subprocess
import time

import pytest

from e2elib import APPS, and_, brief, client_to, counters_settled, free_port, go_build, path_startswith, server_on, \
    start_app, until_parented, wait_listening

STREAMS = 24
UNKNOWN = ("go_context_unknown_no_goid", "go_context_unknown_no_request", "go_context_unknown_stale",
           "go_context_unknown_h2_no_socket", "go_context_unknown_h2_unread", "context_mismatch")


@pytest.fixture(scope="module", params=["symbols", "stripped"])
def goh2_bin(request, tmp_path_factory):
    flags = ["-ldflags=-s -w"] if request.param == "stripped" else []
    return go_build(tmp_path_factory.mktemp("goh2server"), "goh2server", *flags)


def drive(procs, binary, port, prefix, n):
    _, out = procs.run([binary, "client", port, prefix, n], name="goh2-client")
    return json.loads(out.strip().splitlines()[-1])


def test_go_h2_calls_are_children_of_their_stream(collector, procs, goh2_bin):
    front, back = free_port(), free_port()
    start_app(procs, back, env_extra={"OTEL_SERVICE_NAME": "backend"})
    p = procs.spawn([goh2_bin, "server", front, back], env_extra={"OTEL_SERVICE_NAME": "goh2server"},
                    name="goh2-server")
    wait_listening(front, p, what="goh2server")
    def warm(k):
        drive(procs, goh2_bin, front, f"w{k}-", 2)
        leg = collector.spans.wait(and_(client_to(back), path_startswith(f"/users/w{k}-1")), 1, timeout=3, settle=0)
        return leg and leg[0]["parent_span_id"]
    until_parented(warm, "the Go server's calls never got a parent")

    # Settled first: a warm-up request served while the probes were being attached may
    # still be on its way to the counters (they reach the metrics about once a second).
    before = counters_settled(collector, {c: 0 for c in UNKNOWN})
    assert None not in before.values(), before
    res = drive(procs, goh2_bin, front, "m-", STREAMS)
    assert res["protos"] == ["HTTP/2.0"] and res["connections"] == 1, res
    sent = res["traceparents"]
    ids = [f"m-{i}" for i in range(STREAMS)]
    assert len(sent) == STREAMS // 2, sent

    mine = path_startswith("/users/m-")
    servers = collector.spans.wait(and_(server_on(front), path_startswith("/work/m-")), STREAMS + 1)
    calls = collector.spans.wait(and_(client_to(back), mine), STREAMS + 1)
    backs = collector.spans.wait(and_(server_on(back), mine), STREAMS + 1)
    assert len(servers) == len(calls) == len(backs) == STREAMS + 1, brief(servers + calls + backs)
    server_of = {s["attrs"]["url.path"].rsplit("/", 1)[1]: s for s in servers}
    call_of = {c["attrs"]["url.path"].rsplit("/", 1)[1]: c for c in calls}
    back_of = {b["attrs"]["url.path"].rsplit("/", 1)[1]: b for b in backs}
    assert sorted(server_of) == sorted(call_of) == sorted(back_of) == sorted(ids + ["m-warm"])
    assert all(s["attrs"].get("network.protocol.version") == "2" for s in servers), brief(servers)

    right = 0
    for i in ids:
        server, call, callee = server_of[i], call_of[i], back_of[i]
        ok = call["parent_span_id"] == server["span_id"] and call["trace_id"] == server["trace_id"] \
            and callee["parent_span_id"] == call["span_id"] and callee["trace_id"] == server["trace_id"]
        if i in sent:
            _, trace, parent, _ = sent[i].split("-")
            ok = ok and server["trace_id"] == trace and server["parent_span_id"] == parent
        right += ok
    print(f"right parents: {right} of {STREAMS}")
    for i in ids:
        server, call, callee = server_of[i], call_of[i], back_of[i]
        if i in sent:
            _, trace, parent, _ = sent[i].split("-")
            assert (server["trace_id"], server["parent_span_id"]) == (trace, parent), brief([server])
        assert call["parent_span_id"] == server["span_id"], brief([server, call])
        assert call["trace_id"] == server["trace_id"], brief([server, call])
        assert callee["parent_span_id"] == call["span_id"], brief([call, callee])
        assert callee["trace_id"] == server["trace_id"], brief([call, callee])
    # Every context was known, and the kernel's agreed with the headers userspace read.
    assert counters_settled(collector, before) == before


@pytest.fixture(scope="module")
def gogrpc_bin(tmp_path_factory):
    out = tmp_path_factory.mktemp("gogrpc") / "gogrpc"
    subprocess.run(["go", "build", "-mod=readonly", "-o", out, "."], cwd=APPS / "gogrpc", check=True,
                   capture_output=True, env=dict(os.environ, CGO_ENABLED="0"))
    return out


@pytest.mark.parametrize("transport", ["h2c", "tls"])
def test_grpc_go_calls_are_children_of_their_stream(collector, procs, gogrpc_bin, transport):
    front, back = free_port(), free_port()
    extra = ["tls"] if transport == "tls" else []
    start_app(procs, back, env_extra={"OTEL_SERVICE_NAME": "backend"})
    srv = procs.spawn([gogrpc_bin, "server", front, *extra],
                      env_extra={"OTEL_SERVICE_NAME": "goshop", "GOGRPC_BACKEND": str(back)}, name="gogrpc-server")
    wait_listening(front, srv, what="gogrpc server")
    addr = f"127.0.0.1:{front}"
    deadline = time.time() + 25
    while True:
        procs.run([gogrpc_bin, "client", addr, "0", *extra], name="gogrpc-warm")
        legs = collector.spans.wait(and_(client_to(back), path_startswith("/users/first")), 1, timeout=3, settle=0.3)
        if any(c["parent_span_id"] for c in legs):
            break
        assert time.time() < deadline, "the gRPC server's calls never got a parent"

    # (A warm-up connection the probes joined midway may leave headers undecodable.)
    before = counters_settled(collector, {c: 0 for c in UNKNOWN + ("h2_headers_undecodable",)})
    assert None not in before.values(), before
    _, out = procs.run([gogrpc_bin, "client", addr, STREAMS, *extra], name="gogrpc-client")
    res = json.loads(out.strip().splitlines()[-1])
    assert (res["gets"], res["blobs"]) == (STREAMS + 1, STREAMS), res

    ids = [f"id{i}" for i in range(STREAMS)]
    calls = collector.spans.wait(and_(client_to(back), path_startswith("/users/id")), STREAMS)
    backs = collector.spans.wait(and_(server_on(back), path_startswith("/users/id")), STREAMS)
    parents = {c["parent_span_id"] for c in calls}
    servers = collector.spans.wait(and_(server_on(front), lambda s: s["span_id"] in parents), STREAMS)
    assert len(calls) == len(backs) == len(servers) == STREAMS, brief(calls + backs + servers)
    call_of = {c["attrs"]["url.path"].rsplit("/", 1)[1]: c for c in calls}
    back_of = {b["attrs"]["url.path"].rsplit("/", 1)[1]: b for b in backs}
    server_by_span = {s["span_id"]: s for s in servers}
    assert sorted(call_of) == sorted(back_of) == sorted(ids)
    # This client's Gets, each the parent of one server span (its own stream's).
    mine = collector.spans.wait(and_(client_to(front), lambda s: s["resource"]["process.pid"] == res["pid"]),
                                2 * STREAMS + 3)
    get_calls = {c["span_id"] for c in mine if c["name"] == "demo.Shop/Get"}
    right = 0
    for i in ids:
        call, callee = call_of[i], back_of[i]
        server = server_by_span[call["parent_span_id"]]
        right += server["name"] == "demo.Shop/Get" and server["parent_span_id"] in get_calls \
            and call["trace_id"] == server["trace_id"] == callee["trace_id"] \
            and callee["parent_span_id"] == call["span_id"]
    print(f"right parents ({transport}): {right} of {STREAMS}")
    for i in ids:
        call, callee = call_of[i], back_of[i]
        server = server_by_span[call["parent_span_id"]]
        assert server["name"] == "demo.Shop/Get" and server["parent_span_id"] in get_calls, brief([server, call])
        assert call["trace_id"] == server["trace_id"], brief([server, call])
        assert callee["parent_span_id"] == call["span_id"], brief([call, callee])
        assert callee["trace_id"] == server["trace_id"], brief([call, callee])
    assert counters_settled(collector, before) == before
