"""gRPC with grpc-go, the most common gRPC stack, over prior-knowledge h2c and over TLS
(Go's crypto/tls, probed in the Go executable): concurrent unary calls and 256 KiB replies
multiplexed on ONE connection (grpc-go writes up to 32 KiB per call: the kernel walks the
frames), a server-streaming call, a NOT_FOUND; one span per call on each end, linked."""

import json
import os
import subprocess
import time

import pytest

from e2elib import APPS, and_, brief, client_to, counters_settled, duration_ms, ebpf_counters, free_port, \
    server_on, wait_listening

N = 6


@pytest.fixture(scope="module")
def gogrpc_bin(tmp_path_factory):
    # A module build (grpc-go v1.84.0, the version the collector is built with, so the
    # module cache has it after `make build`).
    out = tmp_path_factory.mktemp("gogrpc") / "gogrpc"
    subprocess.run(["go", "build", "-mod=readonly", "-o", out, "."], cwd=APPS / "gogrpc", check=True,
                   capture_output=True, env=dict(os.environ, CGO_ENABLED="0"))
    return out


@pytest.mark.parametrize("transport", ["h2c", "tls"])
def test_grpc_go_calls(collector, procs, gogrpc_bin, transport):
    port = free_port()
    extra = ["tls"] if transport == "tls" else []
    srv = procs.spawn([gogrpc_bin, "server", port, *extra], env_extra={"OTEL_SERVICE_NAME": "goshop"},
                      name="gogrpc-server")
    wait_listening(port, srv, what="gogrpc server")
    if transport == "tls":
        # The receiver looks for new Go executables every 3 s: wait until this one is
        # probed (a first call shows up as a span) before counting.
        deadline = time.time() + 20
        while not collector.spans.wait(server_on(port), 1, timeout=1, settle=0):
            assert time.time() < deadline, "the Go executable was never probed"
            procs.run([gogrpc_bin, "client", f"127.0.0.1:{port}", "0", *extra], name="gogrpc-warm")
    counters = ["context_injected", "h2_requests_not_injected", "h2_inject_lost", "h2_headers_undecodable"]
    before = ebpf_counters(collector, counters)
    _, out = procs.run([gogrpc_bin, "client", f"127.0.0.1:{port}", N, *extra],
                       env_extra={"OTEL_SERVICE_NAME": "gobuyer"}, name="gogrpc-client")
    res = json.loads(out.strip().splitlines()[-1])
    assert res == {"pid": res["pid"], "gets": N + 1, "blobs": N, "parts": 3, "failed": 5}, res

    total = 2 * N + 3  # first Get, N Get, N Blob, List, failing Get
    # This client's calls, and the server spans in their traces (not the warm-up's).
    clients = collector.spans.wait(and_(client_to(port), lambda s: s["resource"]["process.pid"] == res["pid"]), total)
    traces = {c["trace_id"] for c in clients}
    servers = collector.spans.wait(and_(server_on(port), lambda s: s["trace_id"] in traces), total)
    assert len(servers) == total and len(clients) == total, brief(servers + clients)
    for side, spans in (("server", servers), ("client", clients)):
        names = sorted(s["name"] for s in spans)
        assert names == sorted(["demo.Shop/Get"] * (N + 2) + ["demo.Shop/Blob"] * N + ["demo.Shop/List"]), \
            (side, names)
        for s in spans:
            a = s["attrs"]
            assert a["rpc.system"] == "grpc" and a["network.protocol.version"] == "2", brief([s])
            code = a["rpc.grpc.status_code"]
            assert code in (0, 5), brief([s])
            assert (s["status_code"] == 2) == (side == "client" and code == 5), brief([s])
        assert sorted(s["attrs"]["rpc.grpc.status_code"] for s in spans) == [0] * (total - 1) + [5]
        lst = next(s for s in spans if s["name"] == "demo.Shop/List")
        assert duration_ms(lst) >= 100, brief([lst])
    assert {s["resource"]["service.name"] for s in servers} == {"goshop"}
    by_id = {c["span_id"]: c for c in clients}
    for s in servers:
        c = by_id.get(s["parent_span_id"])
        assert c is not None and c["trace_id"] == s["trace_id"], brief([s])
        assert c["name"] == s["name"]
    # (Counted since this test began: the collector is shared with other tests.)
    assert collector.ebpf_counter("h2_headers_undecodable") == (before["h2_headers_undecodable"] or 0)
    if transport == "h2c":
        # grpc-go sends the preface alone, then batches many streams' HEADERS in one write:
        # the kernel put a traceparent into every call.
        after = counters_settled(collector, {"context_injected": before["context_injected"] + total})
        assert after["context_injected"] >= before["context_injected"] + total, (before, after)
        after = ebpf_counters(collector, counters)
        assert (after["h2_requests_not_injected"], after["h2_inject_lost"]) == \
            (before["h2_requests_not_injected"], before["h2_inject_lost"]), (before, after)
