"""Goroutine-aware context (issue 14): a Go net/http server under concurrency whose handler
makes a call on a pooled http.Client (written by the connection's writeLoop goroutine) and
a fan-out of two calls from new goroutines. Every call is the child of the request that
caused it, and every callee request the child of that call, exactly."""

import concurrent.futures
import time

import pytest

from e2elib import and_, brief, client_to, counters_settled, free_port, go_build, run_curl, server_on, start_app, wait_listening

IN_FLIGHT = 16
LEGS = ("a", "b1", "b2")


@pytest.fixture(scope="module", params=["symbols", "stripped"])
def gofanout_bin(request, tmp_path_factory):
    flags = ["-ldflags=-s -w"] if request.param == "stripped" else []
    return go_build(tmp_path_factory.mktemp("gofanout"), "gofanout", *flags)


def path_startswith(prefix):
    return lambda s: s["attrs"].get("url.path", "").startswith(prefix)


def test_go_calls_are_children_of_their_request(collector, procs, gofanout_bin):
    front, back = free_port(), free_port()
    start_app(procs, back, env_extra={"OTEL_SERVICE_NAME": "backend"})
    p = procs.spawn([gofanout_bin, front], env_extra={"OTEL_SERVICE_NAME": "gofanout"}, name="gofanout")
    wait_listening(front, p, what="gofanout")
    # The receiver probes new Go executables every 3 s and learns the process is Go at its
    # first connection: until then its calls have no parent (never a wrong one).
    deadline, k = time.time() + 20, 0
    while True:
        run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{front}/work/{back}/w{k}")
        leg = collector.spans.wait(and_(client_to(back), path_startswith(f"/users/w{k}-b2")), 1, timeout=3, settle=0)
        if leg and leg[0]["parent_span_id"]:
            break
        assert time.time() < deadline, "the Go program's calls never got a parent"
        k += 1

    unknown = ("go_context_unknown_no_goid", "go_context_unknown_no_request", "go_context_unknown_stale")
    before = {c: collector.ebpf_counter(c) for c in unknown}
    assert None not in before.values(), before
    ids = [f"m{i}" for i in range(IN_FLIGHT)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        list(pool.map(lambda i: run_curl(procs, "-o", "/dev/null", "--fail",
                                         f"http://127.0.0.1:{front}/work/{back}/{i}"), ids))

    mine = path_startswith("/users/m")
    servers = collector.spans.wait(and_(server_on(front), path_startswith(f"/work/{back}/m")), IN_FLIGHT)
    calls = collector.spans.wait(and_(client_to(back), mine), 3 * IN_FLIGHT)
    backs = collector.spans.wait(and_(server_on(back), mine), 3 * IN_FLIGHT)
    assert len(servers) == IN_FLIGHT and len(calls) == len(backs) == 3 * IN_FLIGHT, brief(servers + calls)
    server_of = {s["attrs"]["url.path"].rsplit("/", 1)[1]: s for s in servers}
    call_of = {c["attrs"]["url.path"]: c for c in calls}
    back_of = {b["attrs"]["url.path"]: b for b in backs}
    assert sorted(server_of) == sorted(ids)
    for i in ids:
        server = server_of[i]
        for leg in LEGS:
            path = f"/users/{i}-{leg}"
            call, callee = call_of[path], back_of[path]
            assert call["parent_span_id"] == server["span_id"], brief([server, call])
            assert call["trace_id"] == server["trace_id"], brief([server, call])
            assert callee["parent_span_id"] == call["span_id"], brief([call, callee])
            assert callee["trace_id"] == server["trace_id"], brief([call, callee])
    # Every context was known: none counted as unknown.
    assert counters_settled(collector, before) == before
