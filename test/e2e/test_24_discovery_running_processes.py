"""discovery with `exe_path` selectors for processes that were already running when the
collector started: the receiver scans /proc at start-up, decides each process against the
selectors (instrument, exclude, and the exe half of an exe_path + open_ports selector) and
writes the decisions into the kernel before it reports ready. So a server started before
the collector is traced (or not) exactly as if it had been exec'd afterwards, from the next
request on, including on a keep-alive connection opened before the collector.

Each test stops the running collector, starts its servers, then starts a collector of its
own (a config no other test uses: `collectors.get` would reuse a running collector with the
same config, which would have started before the servers). The selectors name the python
interpreter's real executable (what /proc/<pid>/exe shows), so this test process matches
them too: it never talks to a selected port itself. No start-up timing is asserted.
"""

import os
import uuid

from e2elib import (
    start_early_client,
    start_nginx,
    PYTHON,
    and_,
    brief,
    client_to,
    free_port,
    path_is,
    run_curl,
    server_on,
    start_app,
)

# /proc/<pid>/exe of the python apps: the interpreter with its symlinks resolved
# (e.g. /usr/bin/python3 -> python3.11).
PYTHON_EXE_GLOB = "*/" + os.path.basename(os.path.realpath(PYTHON))



def unique(receiver: dict) -> dict:
    """receiver with an exclude_paths entry no request uses: a config no other test has."""
    return {**receiver, "exclude_paths": [f"/never-{uuid.uuid4().hex}"]}


def pid_spans(c, pid: int) -> list[dict]:
    return [s for s in c.spans.refresh() if s["resource"].get("process.pid") == pid]


def test_running_server_selected_by_exe_path(collectors, procs, tmp_path):
    port, nginx_port = free_port(), free_port()
    collectors.stop()
    # Before the collector: the python server, a keep-alive connection to it that already
    # carried one request, and an nginx (its exe does not match the selector, its parent
    # - this test - does).
    srv = start_app(procs, port)
    start_nginx(procs, tmp_path, nginx_port)
    early, flag = start_early_client(procs, tmp_path, port)

    c = collectors.get(unique({"discovery": {"instrument": [{"exe_path": PYTHON_EXE_GLOB}]}}))
    # Ready: the decisions for srv and the early client are in the kernel already.
    curl, _ = run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{port}/users/42")
    run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{nginx_port}/index.html")
    flag.write_text("")
    early.wait(timeout=30)
    assert early.returncode == 0, procs.output_of(early)
    early_port = int(procs.output_of(early).split()[-1])

    servers = c.spans.wait(server_on(port), 4)
    assert len(servers) == 4, brief(servers)
    assert all(s["resource"]["process.pid"] == srv.pid for s in servers), f"server pid {srv.pid}: " + brief(servers)
    # curl's request on a new connection.
    mine = [s for s in servers if s["attrs"].get("url.path") == "/users/42"]
    assert len(mine) == 1, brief(servers)
    assert mine[0]["attrs"]["client.port"] != early_port
    # The connection opened before the collector: its next requests give spans (its
    # first one, before the collector, does not).
    old = sorted((s for s in servers if s["attrs"].get("client.port") == early_port), key=lambda s: s["start"])
    assert [s["attrs"]["url.path"] for s in old] == ["/users/1", "/users/2", "/users/3"], brief(servers)
    # The early client is python too: selected, so its side of those requests as well.
    clients = [s for s in c.spans.wait(client_to(port), 4) if s["resource"]["process.pid"] == early.pid]
    assert [s["attrs"]["url.path"] for s in sorted(clients, key=lambda s: s["start"])] == \
        ["/users/1", "/users/2", "/users/3"], brief(clients)
    # curl is a child of this test process (python, running before the collector, so
    # selected by the scan too): traced as children of traced processes are.
    assert [s["attrs"]["url.path"] for s in pid_spans(c, curl.pid)] == ["/users/42"]
    # So is the nginx this test started before the collector: the scan gives a running
    # process its parent's state when its own path matches nothing, as fork would have.
    assert len(c.spans.wait(and_(server_on(nginx_port), path_is("/index.html")), 1)) == 1


def test_running_server_excluded_by_exe_path(collectors, procs):
    port = free_port()
    collectors.stop()
    srv = start_app(procs, port)

    # open_ports would select the server at its next accept; exclude (checked on the
    # running process at start-up) wins. curl is selected by its exe: the positive span.
    c = collectors.get(unique({"discovery": {
        "instrument": [{"open_ports": str(port)}, {"exe_path": "*/curl"}],
        "exclude": [{"exe_path": PYTHON_EXE_GLOB}]}}))
    curls = [run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{port}/users/{i}")[0] for i in (1, 2, 3)]

    last = c.spans.wait(and_(client_to(port), path_is("/users/3")), 1)
    assert len(last) == 1 and last[0]["resource"]["process.pid"] == curls[-1].pid, brief(last)
    clients = c.spans.wait(client_to(port), 3)
    assert sorted((s["resource"]["process.pid"], s["attrs"]["url.path"]) for s in clients) == \
        sorted((p.pid, f"/users/{i}") for p, i in zip(curls, (1, 2, 3))), brief(clients)
    servers = c.spans.wait(server_on(port), 1, timeout=0)
    assert servers == [], brief(servers)
    assert pid_spans(c, srv.pid) == [], brief(pid_spans(c, srv.pid))


def test_running_servers_with_exe_path_and_open_ports(collectors, procs):
    p1, p2 = free_port(), free_port()
    collectors.stop()
    s1 = start_app(procs, p1)
    s2 = start_app(procs, p2)  # the same executable, on a port the selector does not name

    c = collectors.get(unique({"discovery": {"instrument": [{"exe_path": PYTHON_EXE_GLOB, "open_ports": str(p1)}]}}))
    run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{p2}/users/1")
    run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{p1}/users/2")
    run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{p2}/users/3")

    servers = c.spans.wait(server_on(p1), 1)
    assert len(servers) == 1, brief(servers)
    assert servers[0]["resource"]["process.pid"] == s1.pid
    assert servers[0]["attrs"]["url.path"] == "/users/2"
    other = c.spans.wait(server_on(p2), 1, timeout=0)
    assert other == [], brief(other)
    assert pid_spans(c, s2.pid) == [], brief(pid_spans(c, s2.pid))
    # curl's exe does not match: no client spans to either port.
    curls = c.spans.wait(client_to(p1), 1, timeout=0) + c.spans.wait(client_to(p2), 1, timeout=0)
    assert curls == [], brief(curls)
