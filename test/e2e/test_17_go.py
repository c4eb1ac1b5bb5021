"""A Go server: goroutines move between threads, so the thread that makes a call may be
serving another request. Its calls are children of their own request (the context follows
the goroutine, test_40) or, before the program is probed, get no parent: never a wrong one.
The header inserted into them makes the callee the call's child."""

import concurrent.futures

import pytest

from e2elib import and_, brief, client_to, free_port, go_build, run_curl, server_on, start_app, wait_listening


@pytest.fixture(scope="module")
def goproxy_bin(tmp_path_factory):
    return go_build(tmp_path_factory.mktemp("goproxy"), "goproxy")


def test_go_calls_get_no_wrong_parent(collector, procs, goproxy_bin):
    front, back = free_port(), free_port()
    p = procs.spawn([goproxy_bin, front], env_extra={"OTEL_SERVICE_NAME": "goproxy"}, name="goproxy")
    wait_listening(front, p, what="goproxy")
    start_app(procs, back, env_extra={"OTEL_SERVICE_NAME": "backend"})
    n = 24

    def call(i):
        run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{front}/proxy/{back}/users/{i}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(call, range(n)))

    servers = collector.spans.wait(server_on(front), n)
    calls = collector.spans.wait(and_(client_to(back), lambda s: s["resource"]["service.name"] == "goproxy"), n)
    backs = collector.spans.wait(server_on(back), n)
    assert len(servers) == len(calls) == len(backs) == n, brief(servers + calls)
    by_id = {s["span_id"]: s for s in servers}
    for c in calls:
        # Never a parent from another request.
        if c["parent_span_id"]:
            parent = by_id.get(c["parent_span_id"])
            assert parent is not None, brief([c])
            assert parent["attrs"]["url.path"] == f"/proxy/{back}" + c["attrs"]["url.path"], brief([parent, c])
            assert parent["trace_id"] == c["trace_id"]
    # The inserted header still links each backend request to the Go call that made it.
    by_call = {c["span_id"]: c for c in calls}
    for b in backs:
        c = by_call.get(b["parent_span_id"])
        assert c is not None, brief([b])
        assert c["trace_id"] == b["trace_id"]
        assert c["attrs"]["url.path"] == b["attrs"]["url.path"]
