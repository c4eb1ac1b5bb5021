"""W3C trace context into HTTP/2 requests (`context_propagation: headers`, the default):
the kernel appends a `traceparent` field to the HEADERS frame that opens each stream of a
traced client's h2c connection (gRPC here), and the server's own gRPC stack sees it as
metadata, equal to the ids of the client span the collector exports. A call that carries
its own traceparent is left as the app wrote it. (`off`: test_14.)"""

import json
import re

from e2elib import APPS, PYTHON, brief, client_to, counters_settled, ebpf_counters, free_port, server_on, \
    wait_listening

N = 4  # concurrent calls on one channel, then as many one at a time
COUNTERS = ["context_injected", "inject_skipped_own_header", "h2_requests_not_injected", "h2_inject_lost",
            "h2_headers_undecodable"]


def start_server(procs):
    port = free_port()
    srv = procs.spawn([PYTHON, APPS / "grpc_app.py", "server", port], env_extra={"OTEL_SERVICE_NAME": "shop"},
                      name="grpc-server")
    wait_listening(port, srv, what="grpc server")
    return port


def echo(procs, port, *tp):
    _, out = procs.run([PYTHON, APPS / "grpc_app.py", "echo", port, N, *tp], name="grpc-echo",
                       env_extra={"OTEL_SERVICE_NAME": "buyer"})
    return json.loads(out.strip().splitlines()[-1])


def test_grpc_calls_carry_the_client_span_as_traceparent(collector, procs):
    port = start_server(procs)
    before = ebpf_counters(collector, COUNTERS)
    res = echo(procs, port)
    seen = res["seen"]
    # One value per call.
    assert len(seen) == 2 * N and all(re.fullmatch("00-[0-9a-f]{32}-[0-9a-f]{16}-01", s) for s in seen), res

    clients = collector.spans.wait(client_to(port), 2 * N)
    servers = collector.spans.wait(server_on(port), 2 * N)
    assert len(clients) == 2 * N and len(servers) == 2 * N, brief(clients + servers)
    # What the server's gRPC stack received is exactly each client span's context.
    assert sorted(seen) == sorted(f"00-{c['trace_id']}-{c['span_id']}-01" for c in clients), \
        (seen, brief(clients))
    by_id = {c["span_id"]: c for c in clients}
    for s in servers:
        c = by_id.get(s["parent_span_id"])
        assert c is not None and c["trace_id"] == s["trace_id"], brief([s])
        assert s["name"] == c["name"] == "demo.Shop/Echo"
        assert s["attrs"]["rpc.grpc.status_code"] == 0

    # (The count also has the HTTP/1 requests other traced processes make meanwhile.)
    counters_settled(collector, {"context_injected": before["context_injected"] + 2 * N})
    after = ebpf_counters(collector, COUNTERS)
    for k in ("h2_requests_not_injected", "h2_inject_lost", "h2_headers_undecodable"):
        assert after[k] == before[k], (k, before, after)


def test_a_call_with_its_own_traceparent_is_left_alone(collector, procs):
    port = start_server(procs)
    before = ebpf_counters(collector, COUNTERS)
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    res = echo(procs, port, tp)
    # One value per call, the app's: nothing appended (the connection is left alone once
    # the app is seen sending the name).
    assert res["seen"] == [tp] * (2 * N), res

    servers = collector.spans.wait(server_on(port), 2 * N)
    assert len(servers) == 2 * N, brief(servers)
    assert all(s["trace_id"] == tp[3:35] and s["parent_span_id"] == tp[36:52] for s in servers), brief(servers)
    after = counters_settled(collector, {"inject_skipped_own_header": before["inject_skipped_own_header"] + 1})
    assert after["inject_skipped_own_header"] > before["inject_skipped_own_header"], (before, after)
