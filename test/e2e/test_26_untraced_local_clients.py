"""A traced server and local clients that are not traced. Same-node linking waits (up to
200 ms) for the CLIENT span of a request coming from an address of this host; when the
client process is one the collector does not trace, there is nothing to wait for: its
server spans are exported at once, as roots (unless the request carried a traceparent),
and `links_timed_out` does not move. A traced local client still gets every server span
linked as its child (`context_propagation: off`, so the link is made on the node, not by an
inserted header).

The server is nginx, selected by `exe_path`, the client curl (an `open_ports` selector
would select the clients of that port as well; an exe_path on the python interpreter
would select python clients and this test process).
"""

import secrets

from e2elib import (
    start_nginx,
    brief,
    client_to,
    counters_settled,
    free_port,
    run_curl,
    server_on,
)

COUNTERS = ("links_timed_out", "links_made")


def settled_counters(c) -> dict:
    """The link counters once they stopped moving (kernel and core counters reach the
    metrics about once a second)."""
    got = counters_settled(c, {k: 0 for k in COUNTERS})
    assert None not in got.values(), f"counters not exported: {got}"
    return got


def test_untraced_local_client_does_not_delay_server_spans(collectors, procs, tmp_path):
    port = free_port()
    c = collectors.get({"discovery": {"instrument": [{"exe_path": "*/nginx"}]}})
    start_nginx(procs, tmp_path, port, extra="    keepalive_timeout 30;\n")
    before = settled_counters(c)

    n = 30
    curls = [run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{port}/index.html?i={i}")[0] for i in range(n)]
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    run_curl(procs, "-o", "/dev/null", "-H", f"traceparent: 00-{trace_id}-{parent_id}-01",
             f"http://127.0.0.1:{port}/index.html?i=traceparent")

    servers = c.spans.wait(server_on(port), n + 1)
    assert len(servers) == n + 1, brief(servers)
    assert {s["resource"]["service.name"] for s in servers} == {"nginx"}, brief(servers)
    continued = [s for s in servers if s["trace_id"] == trace_id]
    assert len(continued) == 1 and continued[0]["parent_span_id"] == parent_id, brief(servers)
    roots = [s for s in servers if s is not continued[0]]
    assert all(s["parent_span_id"] == "" for s in roots), brief(roots)
    assert len({s["trace_id"] for s in roots}) == n, brief(roots)  # one trace each
    # curl is not traced: no client spans.
    clients = c.spans.wait(client_to(port), 1, timeout=0)
    assert clients == [], brief(clients)
    assert not [s for s in c.spans.refresh() if s["resource"].get("process.pid") in {p.pid for p in curls}]

    after = settled_counters(c)
    assert after["links_timed_out"] == before["links_timed_out"], (before, after)
    assert after["links_made"] == before["links_made"], (before, after)


def test_traced_local_client_links_every_server_span(collectors, procs, tmp_path):
    port = free_port()
    c = collectors.get({"discovery": {"instrument": [{"exe_path": "*/nginx"}, {"exe_path": "*/curl"}]},
                        "context_propagation": "off"})
    start_nginx(procs, tmp_path, port, extra="    keepalive_timeout 30;\n")
    before = settled_counters(c)

    n = 20
    curls = {run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{port}/index.html?i={i}")[0].pid: i
             for i in range(n)}

    clients = c.spans.wait(client_to(port), n)
    servers = c.spans.wait(server_on(port), n)
    assert len(clients) == n and len(servers) == n, brief(clients + servers)
    assert {s["resource"]["process.pid"] for s in clients} == set(curls), brief(clients)
    by_id = {s["span_id"]: s for s in clients}
    for s in servers:
        parent = by_id.get(s["parent_span_id"])
        assert parent is not None, f"not linked to a curl CLIENT span: {brief([s])}\n" + brief(clients)
        assert parent["trace_id"] == s["trace_id"], brief([parent, s])
        assert parent["attrs"]["network.local.port"] == s["attrs"]["client.port"], brief([parent, s])
    assert len({s["parent_span_id"] for s in servers}) == n, brief(servers)  # one server span per client span

    after = settled_counters(c)
    assert after["links_timed_out"] == before["links_timed_out"], (before, after)
    assert after["links_made"] >= before["links_made"] + n, (before, after)
