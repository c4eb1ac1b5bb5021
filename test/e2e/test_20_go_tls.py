"""HTTPS through Go's crypto/tls (linked into the program: no libssl). The receiver probes
(*Conn).Write at entry and (*Conn).Read at entry and at its RET instructions in each Go
executable, found as processes start, stripped or not. HTTP/2 (Go negotiates it by ALPN)
with concurrent streams on one connection, and HTTP/1.1: spans on both ends with
url.scheme https, linked."""

import json
import time

import pytest

from e2elib import and_, brief, client_to, free_port, go_build, path_is, server_on, wait_listening, wait_until


@pytest.fixture(scope="module", params=["symbols", "stripped"])
def gotls_bin(request, tmp_path_factory):
    # Stripped (`-s -w`: no symbol table, no DWARF), as container images usually ship Go
    # programs: the functions are found in Go's own function table (.gopclntab).
    flags = ["-ldflags=-s -w"] if request.param == "stripped" else []
    return go_build(tmp_path_factory.mktemp("gotls"), "gotls", *flags)


WARM = "/users/0"


@pytest.fixture
def go_server(collector, procs, gotls_bin):
    port = free_port()
    p = procs.spawn([gotls_bin, "server", port], env_extra={"OTEL_SERVICE_NAME": "gosrv"}, name="gotls-server")
    wait_listening(port, p, what="gotls server")
    # The receiver looks for new Go executables every 3 s; once this one is probed, every
    # process running it is (the clients below are the same file). Until a request shows.
    deadline = time.time() + 20
    while not collector.spans.wait(and_(server_on(port), path_is(WARM)), 1, timeout=1, settle=0):
        assert time.time() < deadline, "the Go executable was never probed"
        run_client(procs, gotls_bin, ["client1", f"https://127.0.0.1:{port}", WARM])
    # A gauge (programs probed now), reaching the metrics about once a second.
    assert wait_until(lambda: (collector.ebpf_counter("go_tls_programs") or 0) >= 1, timeout=10)
    return port


def run_client(procs, gotls_bin, args):
    _, out = procs.run([gotls_bin, *args], env_extra={"OTEL_SERVICE_NAME": "gocli"}, name="gotls-client")
    return json.loads(out.strip().splitlines()[-1])


def spans_both_ends(collector, port, n):
    real = lambda s: s["attrs"].get("url.path") != WARM  # noqa: E731
    servers = collector.spans.wait(and_(server_on(port), real), n)
    clients = collector.spans.wait(and_(client_to(port), real), n)
    assert len(servers) == n and len(clients) == n, brief(servers + clients)
    return servers, clients


def test_go_https_http2_concurrent_streams(collector, procs, gotls_bin, go_server):
    port = go_server
    res = run_client(procs, gotls_bin, ["client", f"https://127.0.0.1:{port}", "3", "/users/1", "/users/2",
                                        "/status/404"])
    assert res["proto"] == "HTTP/2.0" and sorted(res["codes"]) == [200] * 6 + [404] * 3, res
    servers, clients = spans_both_ends(collector, port, 9)
    for side, spans in (("server", servers), ("client", clients)):
        assert sorted(s["attrs"]["url.path"] for s in spans) == sorted(["/users/1", "/users/2", "/status/404"] * 3)
        for s in spans:
            a = s["attrs"]
            assert a["url.scheme"] == "https", brief([s])
            assert a["network.protocol.version"] == "2"
            assert a["http.request.method"] == "GET"
            assert a["http.response.status_code"] == (404 if a["url.path"] == "/status/404" else 200)
        ports = {s["attrs"]["network.local.port" if side == "client" else "client.port"] for s in spans}
        assert len(ports) == 1, (side, brief(spans))  # one connection, streams multiplexed
    assert {s["resource"]["service.name"] for s in servers} == {"gosrv"}
    assert {s["resource"]["process.pid"] for s in clients} == {res["pid"]}
    by_id = {c["span_id"]: c for c in clients}
    for s in servers:
        c = by_id.get(s["parent_span_id"])
        assert c is not None and c["trace_id"] == s["trace_id"], brief([s])
        assert c["attrs"]["url.path"] == s["attrs"]["url.path"]


def test_go_https_http1(collector, procs, gotls_bin, go_server):
    port = go_server
    res = run_client(procs, gotls_bin, ["client1", f"https://127.0.0.1:{port}", "/users/7", "/status/503"])
    assert res["proto"] == "HTTP/1.1" and res["codes"] == [200, 503], res
    servers, clients = spans_both_ends(collector, port, 2)
    for spans in (servers, clients):
        by_path = {s["attrs"]["url.path"]: s for s in spans}
        assert set(by_path) == {"/users/7", "/status/503"}, brief(spans)
        assert by_path["/users/7"]["attrs"]["http.response.status_code"] == 200
        assert by_path["/status/503"]["attrs"]["http.response.status_code"] == 503
        assert by_path["/status/503"]["status_code"] == 2
        for s in spans:
            assert s["attrs"]["url.scheme"] == "https"
            assert s["attrs"]["network.protocol.version"] == "1.1"
    by_id = {c["span_id"]: c for c in clients}
    for s in servers:
        assert s["parent_span_id"] in by_id, brief([s])
