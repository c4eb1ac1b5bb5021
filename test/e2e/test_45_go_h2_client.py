"""Goroutine-aware context for Go's HTTP/2 client (issue 14): a net/http HTTP/1 server whose
handler calls an HTTP/2 server over TLS on one shared http.Client (Go's default for https:
the calls in flight are streams of ONE TLS connection). No header can be put into TLS, so
the parent is what is at stake: net/http writes each stream's HEADERS from a goroutine of
the stream's own, started by the handler, and the kernel reports that goroutine's request
just before the record (CTX_CALLER). Every HTTP/2 CLIENT span is the child of exactly the
request that made it, and no context is counted unknown."""

import concurrent.futures
import json

import pytest

from e2elib import and_, brief, client_to, counters_settled, free_port, go_build, path_startswith, run_curl, \
    server_on, until_parented, wait_listening

IN_FLIGHT = 16
UNKNOWN = ("go_context_unknown_no_goid", "go_context_unknown_no_request", "go_context_unknown_stale",
           "go_context_unknown_h2_client", "context_mismatch")


@pytest.fixture(scope="module", params=["symbols", "stripped"])
def goh2_bin(request, tmp_path_factory):
    flags = ["-ldflags=-s -w"] if request.param == "stripped" else []
    return go_build(tmp_path_factory.mktemp("goh2server"), "goh2server", *flags)


def test_go_h2_client_streams_are_children_of_their_request(collector, procs, goh2_bin):
    app, h2 = free_port(), free_port()
    s = procs.spawn([goh2_bin, "server", h2, "1"], env_extra={"OTEL_SERVICE_NAME": "goh2server"},
                    name="goh2-server")
    wait_listening(h2, s, what="goh2server")
    p = procs.spawn([goh2_bin, "front", app, h2], env_extra={"OTEL_SERVICE_NAME": "goh2front"}, name="goh2-front")
    wait_listening(app, p, what="goh2 front")
    # The warm-up also opens the one TLS connection.
    def warm(k):
        run_curl(procs, "-o", "/dev/null", "--fail", f"http://127.0.0.1:{app}/front/w{k}")
        got = collector.spans.wait(and_(client_to(h2), path_startswith(f"/echo/w{k}")), 1, timeout=3, settle=0)
        return got and got[0]["parent_span_id"]
    until_parented(warm, "the Go program's HTTP/2 calls never got a parent")

    # Settled first: a warm-up call may still be on its way to the counters.
    before = counters_settled(collector, {c: 0 for c in UNKNOWN})
    assert None not in before.values(), before
    ids = [f"m{i}" for i in range(IN_FLIGHT)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        outs = list(pool.map(lambda i: run_curl(procs, "--fail", f"http://127.0.0.1:{app}/front/{i}")[1], ids))
    assert all(o.strip() == "HTTP/2.0" for o in outs), outs
    _, stats = run_curl(procs, "--fail", f"http://127.0.0.1:{app}/stats")
    assert json.loads(stats) == {"protos": ["HTTP/2.0"], "connections": 1}, stats

    servers = collector.spans.wait(and_(server_on(app), path_startswith("/front/m")), IN_FLIGHT)
    calls = collector.spans.wait(and_(client_to(h2), path_startswith("/echo/m")), IN_FLIGHT)
    server_of = {s["attrs"]["url.path"].rsplit("/", 1)[1]: s for s in servers}
    call_of = {c["attrs"]["url.path"].rsplit("/", 1)[1]: c for c in calls}
    assert len(servers) == len(calls) == IN_FLIGHT, brief(servers + calls)
    assert sorted(server_of) == sorted(call_of) == sorted(ids), brief(servers + calls)
    assert all(c["attrs"].get("network.protocol.version") == "2" and c["attrs"].get("url.scheme") == "https"
               for c in calls), brief(calls)

    right, wrong = 0, []
    for i in ids:
        server, call = server_of[i], call_of[i]
        if call["parent_span_id"] == server["span_id"] and call["trace_id"] == server["trace_id"]:
            right += 1
        else:
            wrong.append((i, brief([server, call])))
    print(f"right parents: {right}/{IN_FLIGHT}")
    assert right == IN_FLIGHT, wrong
    # Every context was known: none counted as unknown.
    assert counters_settled(collector, before) == before
