"""discovery: which processes are traced. Each test runs its own collector config; no
test connects from the test process itself to a selected port (children inherit being
traced)."""

from e2elib import and_, brief, client_to, free_port, on_port, path_is, run_client, run_curl, server_on, start_app


def test_discovery_by_open_ports(collectors, procs):
    p1, p2 = free_port(), free_port()
    c = collectors.get({"discovery": {"instrument": [{"open_ports": str(p1)}]}})
    start_app(procs, p1)
    start_app(procs, p2)
    run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{p2}/users/1")
    curl, _ = run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{p1}/users/2")

    servers = c.spans.wait(server_on(p1), 1)
    clients = c.spans.wait(client_to(p1), 1)
    assert len(servers) == 1 and servers[0]["attrs"]["url.path"] == "/users/2", brief(servers)
    assert len(clients) == 1 and clients[0]["resource"]["process.pid"] == curl.pid, brief(clients)
    assert clients[0]["resource"]["service.name"] == "curl"
    # p2's exchange happened before p1's: nothing of it.
    untraced = c.spans.wait(on_port(p2), 1, timeout=0)
    assert untraced == [], brief(untraced)


def test_discovery_by_exe_path(collectors, procs):
    port = free_port()
    c = collectors.get({"discovery": {"instrument": [{"exe_path": "*/curl"}]}})
    srv = start_app(procs, port)
    py, _ = run_client(procs, port, [{"path": "/users/1"}])
    curl, _ = run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{port}/users/2")

    clients = c.spans.wait(client_to(port), 1)
    assert len(clients) == 1, brief(clients)
    assert clients[0]["resource"]["process.pid"] == curl.pid
    assert clients[0]["resource"]["service.name"] == "curl"
    assert clients[0]["attrs"]["url.path"] == "/users/2"
    servers = c.spans.wait(server_on(port), 1, timeout=0)
    assert servers == [], brief(servers)
    python = [s for s in c.spans.refresh() if s["resource"].get("process.pid") in (srv.pid, py.pid)]
    assert python == [], brief(python)


def test_discovery_exclude_wins(collectors, procs):
    port = free_port()
    c = collectors.get({"discovery": {"instrument": [{"open_ports": str(port)}],
                                      "exclude": [{"exe_path": "*/curl"}]}})
    start_app(procs, port)
    curl, _ = run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{port}/users/1")
    py, _ = run_client(procs, port, [{"path": "/users/2"}])

    # The python client connects to the selected port and is not excluded: traced.
    mine = c.spans.wait(and_(client_to(port), path_is("/users/2")), 1)
    assert len(mine) == 1 and mine[0]["resource"]["process.pid"] == py.pid, brief(mine)
    servers = c.spans.wait(server_on(port), 2)
    assert sorted(s["attrs"]["url.path"] for s in servers) == ["/users/1", "/users/2"], brief(servers)
    # curl matched instrument (its port) and exclude (its exe): exclude wins.
    curl_spans = [s for s in c.spans.refresh() if s["resource"].get("process.pid") == curl.pid]
    assert curl_spans == [], brief(curl_spans)
    clients = c.spans.wait(client_to(port), 1, timeout=0)
    assert [s["attrs"]["url.path"] for s in clients] == ["/users/2"], brief(clients)
