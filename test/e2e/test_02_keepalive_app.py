"""The keep-alive thread-per-request app (apps/app.py) with keep-alive, raw and curl
clients, traced with `ebpf: {}`."""

from e2elib import (
    STATUS_ERROR,
    and_,
    brief,
    by_start,
    client_to,
    duration_ms,
    path_is,
    run_client,
    run_curl,
    run_rawclient,
    server_on,
)


def test_twenty_requests_on_one_connection(collector, procs, app):
    srv, port = app
    cli, res = run_client(procs, port, [{"path": f"/users/{i}"} for i in range(1, 21)])
    assert [r.get("status") for r in res["responses"]] == [200] * 20

    servers = collector.spans.wait(server_on(port), 20)
    clients = collector.spans.wait(client_to(port), 20)
    assert len(servers) == 20, brief(servers)
    assert len(clients) == 20, brief(clients)

    for spans in (servers, clients):
        assert {s["name"] for s in spans} == {"GET /users/{id}"}, brief(spans)
        assert {s["attrs"]["http.route"] for s in spans} == {"/users/{id}"}
        assert sorted(s["attrs"]["url.path"] for s in spans) == sorted(f"/users/{i}" for i in range(1, 21))
        assert [s["attrs"]["url.path"] for s in by_start(spans)] == [f"/users/{i}" for i in range(1, 21)]
        assert {s["attrs"]["http.response.status_code"] for s in spans} == {200}
        assert {s["status_code"] for s in spans} == {0}
        assert {s["attrs"]["network.protocol.version"] for s in spans} == {"1.1"}

    # One connection: the client's port never changes.
    assert {s["attrs"]["network.peer.port"] for s in servers} == {res["local_port"]}
    assert {s["attrs"]["client.port"] for s in servers} == {res["local_port"]}
    assert {s["attrs"]["network.local.port"] for s in clients} == {res["local_port"]}
    assert {s["resource"]["process.pid"] for s in servers} == {srv.pid}
    assert {s["resource"]["process.pid"] for s in clients} == {cli.pid}
    # Every request is its own trace.
    assert len({s["trace_id"] for s in servers}) == 20


def test_host_header_names_the_server(collector, procs, app):
    _, port = app
    _, res = run_client(procs, port, [{"path": "/users/9?x=1", "headers": {"Host": "shop.example:8443"}}])
    assert res["responses"][0]["status"] == 200

    servers = collector.spans.wait(server_on(port), 1)
    clients = collector.spans.wait(client_to(port), 1)
    assert len(servers) == 1, brief(servers)
    assert len(clients) == 1, brief(clients)
    for s in servers + clients:
        assert s["attrs"]["server.address"] == "shop.example", s["attrs"]
        assert s["attrs"]["server.port"] == 8443, s["attrs"]
        assert s["attrs"]["url.path"] == "/users/9"
    assert clients[0]["attrs"]["url.full"] == "http://shop.example:8443/users/9?x=1"
    assert servers[0]["attrs"]["network.local.port"] == port  # the socket, not the header


def test_http10_request(collector, procs, app):
    _, port = app
    run_curl(procs, "--http1.0", "-o", "/dev/null", f"http://127.0.0.1:{port}/users/10")
    for pred in (server_on(port), client_to(port)):
        spans = collector.spans.wait(pred, 1)
        assert len(spans) == 1, brief(spans)
        assert spans[0]["attrs"]["network.protocol.version"] == "1.0", spans[0]["attrs"]
        assert spans[0]["attrs"]["http.response.status_code"] == 200


def test_method_outside_the_known_set(collector, procs, app):
    # Semantic conventions: http.request.method is _OTHER, the original apart, name "HTTP ...".
    _, port = app
    run_curl(procs, "-X", "PURGE", "-o", "/dev/null", f"http://127.0.0.1:{port}/users/5", check=False)
    for pred in (server_on(port), client_to(port)):
        spans = collector.spans.wait(pred, 1)
        assert len(spans) == 1, brief(spans)
        a = spans[0]["attrs"]
        assert (a["http.request.method"], a["http.request.method_original"]) == ("_OTHER", "PURGE"), a
        assert spans[0]["name"] == "HTTP /users/{id}", brief(spans)
        assert a["http.response.status_code"] == 501


def test_status_codes(collector, procs, app):
    _, port = app
    _, res = run_client(procs, port, [{"path": "/status/404"}, {"path": "/status/503"}, {"path": "/status/200"}])
    assert [r.get("status") for r in res["responses"]] == [404, 503, 200]

    servers = {s["attrs"]["url.path"]: s for s in collector.spans.wait(server_on(port), 3)}
    clients = {s["attrs"]["url.path"]: s for s in collector.spans.wait(client_to(port), 3)}
    assert sorted(servers) == ["/status/200", "/status/404", "/status/503"], brief(servers.values())
    assert sorted(clients) == ["/status/200", "/status/404", "/status/503"], brief(clients.values())
    for code in (404, 503, 200):
        path = f"/status/{code}"
        assert servers[path]["attrs"]["http.response.status_code"] == code
        assert clients[path]["attrs"]["http.response.status_code"] == code
        assert servers[path]["name"] == "GET /status/{id}"
    # 4xx: the server did its job (unset), the client's request failed (ERROR).
    assert servers["/status/404"]["status_code"] == 0, brief([servers["/status/404"]])
    assert clients["/status/404"]["status_code"] == STATUS_ERROR, brief([clients["/status/404"]])
    # 5xx: an error at both ends.
    assert servers["/status/503"]["status_code"] == STATUS_ERROR, brief([servers["/status/503"]])
    assert clients["/status/503"]["status_code"] == STATUS_ERROR, brief([clients["/status/503"]])
    assert servers["/status/200"]["status_code"] == 0
    assert clients["/status/200"]["status_code"] == 0


def test_request_body_size(collector, procs, app):
    _, port = app
    _, res = run_client(procs, port, [{"method": "POST", "path": "/echo", "body_size": 10000}])
    assert res["responses"][0]["status"] == 200

    for pred in (server_on(port), client_to(port)):
        spans = collector.spans.wait(pred, 1)
        assert len(spans) == 1, brief(spans)
        s = spans[0]
        assert s["name"] == "POST /echo"
        assert s["attrs"]["http.request.method"] == "POST"
        assert s["attrs"]["http.response.status_code"] == 200
        assert s["attrs"].get("http.request.body.size") == 10000, s["attrs"]
        assert s["attrs"].get("http.response.body.size") == len('{"received": 10000}'), s["attrs"]


def test_response_body_size_1mib(collector, procs, app):
    _, port = app
    _, res = run_client(procs, port, [{"path": "/big"}])
    assert res["responses"][0] == {"status": 200, "length": 1 << 20}

    for pred in (server_on(port), client_to(port)):
        spans = collector.spans.wait(pred, 1)
        assert len(spans) == 1, brief(spans)
        assert spans[0]["attrs"]["http.response.status_code"] == 200
        assert spans[0]["attrs"].get("http.response.body.size") == 1048576, spans[0]["attrs"]
        assert "http.request.body.size" not in spans[0]["attrs"]


def check_chunked(collector, procs, port, path):
    _, res = run_client(procs, port, [{"path": path}, {"path": "/users/3"}, {"path": path + "?again=1"},
                                      {"path": "/users/4"}])
    assert [r.get("status") for r in res["responses"]] == [200] * 4

    for pred in (server_on(port), client_to(port)):
        spans = collector.spans.wait(pred, 4)
        assert len(spans) == 4, brief(spans)
        ordered = by_start(spans)
        assert [s["attrs"]["url.path"] for s in ordered] == [path, "/users/3", path, "/users/4"], brief(ordered)
        assert [s["attrs"]["http.response.status_code"] for s in ordered] == [200] * 4
        assert [s["status_code"] for s in ordered] == [0] * 4, brief(ordered)
        assert [s["name"] for s in ordered] == [f"GET {path}", "GET /users/{id}"] * 2


def test_chunked_response_keeps_the_parser_in_sync(collector, procs, app):
    check_chunked(collector, procs, app[1], "/chunked")


def test_large_chunks_keep_the_parser_in_sync(collector, procs, app):
    """Chunks longer than one syscall capture: the parser must skip their uncaptured
    tail by the chunk size and find the next chunk header."""
    check_chunked(collector, procs, app[1], "/chunked-big")


def test_head_then_get_on_one_connection(collector, procs, app):
    _, port = app
    _, res = run_client(procs, port, [{"method": "HEAD", "path": "/users/1"}, {"path": "/users/2"}])
    assert [r.get("status") for r in res["responses"]] == [200, 200]

    for pred in (server_on(port), client_to(port)):
        spans = collector.spans.wait(pred, 2)
        assert len(spans) == 2, brief(spans)
        ordered = by_start(spans)
        assert [(s["attrs"]["http.request.method"], s["attrs"]["url.path"]) for s in ordered] == \
            [("HEAD", "/users/1"), ("GET", "/users/2")], brief(ordered)
        assert [s["name"] for s in ordered] == ["HEAD /users/{id}", "GET /users/{id}"]
        assert [s["attrs"]["http.response.status_code"] for s in ordered] == [200, 200]


def test_slow_response_duration(collector, procs, app):
    _, port = app
    _, res = run_client(procs, port, [{"path": "/slow"}])
    assert res["responses"][0]["status"] == 200

    for pred in (server_on(port), client_to(port)):
        spans = collector.spans.wait(pred, 1)
        assert len(spans) == 1, brief(spans)
        assert duration_ms(spans[0]) >= 200, brief(spans)
        assert duration_ms(spans[0]) < 5000, brief(spans)


def test_pipelined_requests(collector, procs, app):
    _, port = app
    _, res = run_rawclient(procs, port, "pipeline", "/users/1", "/users/2", "/users/3")
    assert res["statuses"] == [200, 200, 200]

    servers = collector.spans.wait(server_on(port), 3)
    assert len(servers) == 3, brief(servers)
    ordered = by_start(servers)
    assert [s["attrs"]["url.path"] for s in ordered] == ["/users/1", "/users/2", "/users/3"], brief(ordered)
    assert [s["attrs"]["http.response.status_code"] for s in ordered] == [200] * 3
    assert {s["attrs"]["client.port"] for s in ordered} == {res["local_port"]}
    assert all(s["end"] >= s["start"] for s in ordered)

    clients = collector.spans.wait(client_to(port), 3)
    assert len(clients) == 3, brief(clients)
    assert sorted(s["attrs"]["url.path"] for s in clients) == ["/users/1", "/users/2", "/users/3"]


def test_request_split_over_five_writes(collector, procs, app):
    _, port = app
    _, res = run_rawclient(procs, port, "split", "/users/42?split=yes")
    assert res["statuses"] == [200]

    servers = collector.spans.wait(server_on(port), 1)
    assert len(servers) == 1, brief(servers)
    s = servers[0]
    assert s["name"] == "GET /users/{id}"
    assert s["attrs"]["url.path"] == "/users/42"
    assert s["attrs"]["http.response.status_code"] == 200
    assert s["attrs"]["user_agent.original"] == "e2e-rawclient/1"
    # The span starts at the request's first byte: the 4 pauses of 20 ms are inside it.
    assert duration_ms(s) >= 70, brief(servers)


def test_expect_100_continue(collector, procs, app, tmp_path):
    _, port = app
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"e" * 2_000_000)
    _, out = run_curl(procs, "-H", "Expect: 100-continue", "--data-binary", f"@{payload}",
                      "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/echo")
    assert out.strip() == "200"

    for pred in (server_on(port), client_to(port)):
        spans = collector.spans.wait(pred, 1)
        assert len(spans) == 1, brief(spans)  # the interim 100 is not a response of its own
        s = spans[0]
        assert s["name"] == "POST /echo"
        assert s["attrs"]["http.response.status_code"] == 200, brief(spans)
        assert s["status_code"] == 0
        assert s["attrs"].get("http.request.body.size") == 2_000_000, s["attrs"]


def test_connection_closed_without_response(collector, procs, app):
    _, port = app
    before = collector.ebpf_counter("requests_without_response")
    assert before is not None, "otelcol_ebpf_requests_without_response is not exported"
    _, res = run_client(procs, port, [{"path": "/close"}])
    assert "error" in res["responses"][0], res

    servers = collector.spans.wait(and_(server_on(port), path_is("/close")), 1)
    assert len(servers) == 1, brief(servers)
    s = servers[0]
    assert s["name"] == "GET /close"
    assert s["status_code"] == STATUS_ERROR, brief(servers)
    assert "http.response.status_code" not in s["attrs"], s["attrs"]
    after = collector.ebpf_counter("requests_without_response")
    assert after >= before + 1, (before, after)
