"""Goroutine-aware context (issue 14): a Go net/http server under concurrency whose handler
makes a call on a pooled http.Client (written by the connection's writeLoop goroutine), a
fan-out of two calls from new goroutines, and a grpc-go unary call on a ClientConn all
requests share (one HTTP/2 connection; its writer goroutine sends several requests' HEADERS
at once). Every call is the child of the request that caused it, and every callee request
the child of that call, exactly; with net/http's mux and with Gin as the router."""

import concurrent.futures

import pytest

from e2elib import and_, brief, client_to, counters_settled, free_port, go_build_module, path_is, path_startswith, \
    run_curl, server_on, start_app, until_parented, wait_listening

IN_FLIGHT = 16
LEGS = ("a", "b1", "b2")
UNKNOWN = ("go_context_unknown_no_goid", "go_context_unknown_no_request", "go_context_unknown_stale",
           "go_context_unknown_grpc", "go_context_unknown_h2_client")


@pytest.fixture(scope="module")
def gogrpc_bin(tmp_path_factory):
    return go_build_module(tmp_path_factory.mktemp("gogrpc"), "gogrpc")


# Gin with the unstripped build only: the router changes nothing the kernel follows.
# grpc-tls: the gRPC calls over TLS, where nothing can be inserted: the kernel reports each
# stream's caller (the HEADERS of many streams leave in one record of the connection's
# writer), and the callee's SERVER span is linked on the node.
@pytest.fixture(scope="module", params=[("symbols", "mux", "h2c"), ("stripped", "mux", "h2c"),
                                        ("symbols", "gin", "h2c"), ("symbols", "mux", "grpc-tls")],
                ids=lambda p: "-".join(p[:2]) + ("-grpc-tls" if p[2] == "grpc-tls" else ""))
def gofanout(request, tmp_path_factory):
    build, router, grpc = request.param
    flags = ["-ldflags=-s -w"] if build == "stripped" else []
    return go_build_module(tmp_path_factory.mktemp("gofanout"), "gofanout", *flags), router, grpc == "grpc-tls"


def test_go_calls_are_children_of_their_request(collector, procs, gofanout, gogrpc_bin):
    binary, router, grpc_tls = gofanout
    front, back, rpc, shop_back = free_port(), free_port(), free_port(), free_port()
    start_app(procs, back, env_extra={"OTEL_SERVICE_NAME": "backend"})
    start_app(procs, shop_back, env_extra={"OTEL_SERVICE_NAME": "shopbackend"})
    # goshop's handler calls /users/<the item> on shop_back: the request id, end to end.
    shop = procs.spawn([gogrpc_bin, "server", rpc, *(["tls"] if grpc_tls else [])], name="gogrpc-server",
                       env_extra={"OTEL_SERVICE_NAME": "goshop", "GOGRPC_BACKEND": str(shop_back)})
    wait_listening(rpc, shop, what="gogrpc server")
    p = procs.spawn([binary, front, router], name="gofanout",
                    env_extra={"OTEL_SERVICE_NAME": "gofanout", **({"GOFANOUT_GRPC_TLS": "1"} if grpc_tls else {})})
    wait_listening(front, p, what="gofanout")
    # The receiver also learns the process is Go at its first connection.
    def warm(k):
        run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{front}/work/{back}/{rpc}/w{k}")
        leg = collector.spans.wait(and_(client_to(back), path_startswith(f"/users/w{k}-b2")), 1, timeout=3, settle=0)
        rpcs = collector.spans.wait(and_(client_to(rpc), lambda s: s["parent_span_id"]), 1, timeout=1, settle=0)
        shop_leg = collector.spans.wait(and_(client_to(shop_back), path_is(f"/users/w{k}")), 1, timeout=1, settle=0)
        return leg and leg[0]["parent_span_id"] and rpcs and shop_leg and shop_leg[0]["parent_span_id"]
    until_parented(warm, "the Go program's calls never got a parent", timeout=20)

    before = {c: collector.ebpf_counter(c) for c in UNKNOWN}
    assert None not in before.values(), before
    ids = [f"m{i}" for i in range(IN_FLIGHT)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        list(pool.map(lambda i: run_curl(procs, "-o", "/dev/null", "--fail",
                                         f"http://127.0.0.1:{front}/work/{back}/{rpc}/{i}"), ids))

    mine = path_startswith("/users/m")
    servers = collector.spans.wait(and_(server_on(front), path_startswith(f"/work/{back}/{rpc}/m")), IN_FLIGHT)
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

    # The gRPC calls: one per request, its child, and the server's call its child. (The
    # request id travels in the message, not in the span: the parents say which is whose.)
    by_span = {s["span_id"]: s for s in servers}
    rpc_calls = collector.spans.wait(and_(client_to(rpc), lambda s: s["parent_span_id"] in by_span), IN_FLIGHT)
    rpc_span = {c["span_id"]: c for c in rpc_calls}
    rpc_backs = collector.spans.wait(and_(server_on(rpc), lambda s: s["parent_span_id"] in rpc_span), IN_FLIGHT)
    assert sorted(c["parent_span_id"] for c in rpc_calls) == sorted(by_span), \
        brief(servers + collector.spans.wait(client_to(rpc), 0, timeout=0, settle=0))
    assert len(rpc_backs) == IN_FLIGHT, brief(rpc_calls + rpc_backs)
    for c in rpc_calls:
        assert c["name"] == "demo.Shop/Get" and c["attrs"]["rpc.grpc.status_code"] == 0, brief([c])
        assert c["trace_id"] == by_span[c["parent_span_id"]]["trace_id"], brief([by_span[c["parent_span_id"]], c])
    for b in rpc_backs:
        assert b["name"] == "demo.Shop/Get" and b["resource"]["service.name"] == "goshop", brief([b])
        assert b["trace_id"] == rpc_span[b["parent_span_id"]]["trace_id"], brief([rpc_span[b["parent_span_id"]], b])
    # Whose call is whose (the parents above would also hold with two calls' parents
    # swapped): each request's gRPC call leads to goshop's call for the same id.
    handler_span = {b["span_id"]: b for b in rpc_backs}
    shop_calls = collector.spans.wait(and_(client_to(shop_back), path_startswith("/users/m")), IN_FLIGHT)
    shop_call_of = {c["attrs"]["url.path"].rsplit("/", 1)[1]: c for c in shop_calls}
    assert sorted(shop_call_of) == sorted(ids), brief(shop_calls)
    for i in ids:
        handler = handler_span.get(shop_call_of[i]["parent_span_id"])
        assert handler, brief([shop_call_of[i]])
        call = rpc_span[handler["parent_span_id"]]
        assert call["parent_span_id"] == server_of[i]["span_id"], brief([server_of[i], call, handler, shop_call_of[i]])
    # Every context was known: none counted as unknown.
    assert counters_settled(collector, before) == before
