"""exclude_paths and exclude_ports."""

import pytest

from e2elib import and_, brief, client_to, free_port, on_port, path_is, run_client, run_curl, server_on, start_app

EXCLUDED_PORT = free_port()


@pytest.fixture(scope="module")
def collector(collectors):
    return collectors.get({"exclude_paths": ["/health", "/internal/*"], "exclude_ports": [EXCLUDED_PORT]})


def test_excluded_paths(collector, procs, app):
    _, port = app
    before = collector.ebpf_counter("spans_excluded")
    assert before is not None, "otelcol_ebpf_spans_excluded is not exported"
    _, res = run_client(procs, port, [{"path": "/health"}, {"path": "/internal/x"}, {"path": "/internal/a/b"},
                                      {"path": "/healthz"}, {"path": "/users/1"}])
    assert [r.get("status") for r in res["responses"]] == [200, 200, 200, 404, 200]

    # /users/1 went last on the same connection: once its spans are out, the others' are too.
    collector.spans.wait(and_(on_port(port), path_is("/users/1")), 2)
    servers = collector.spans.wait(server_on(port), 2)
    clients = collector.spans.wait(client_to(port), 2)
    assert sorted(s["attrs"]["url.path"] for s in servers) == ["/healthz", "/users/1"], brief(servers)
    assert sorted(s["attrs"]["url.path"] for s in clients) == ["/healthz", "/users/1"], brief(clients)
    after = collector.ebpf_counter("spans_excluded")
    assert after >= before + 6, (before, after)  # 3 requests, both ends


def test_excluded_port(collector, procs):
    start_app(procs, EXCLUDED_PORT)
    other = free_port()
    start_app(procs, other)
    run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{EXCLUDED_PORT}/users/1")
    run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{other}/users/2")

    marker = collector.spans.wait(on_port(other), 2)
    assert len(marker) == 2, brief(marker)
    excluded = collector.spans.wait(on_port(EXCLUDED_PORT), 1, timeout=0)
    assert excluded == [], brief(excluded)
    # Nor on the client's side of it, whatever its local port.
    excluded = [s for s in collector.spans.refresh() if s["attrs"].get("server.port") == EXCLUDED_PORT]
    assert excluded == [], brief(excluded)
