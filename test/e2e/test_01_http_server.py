"""python3 -m http.server (an HTTP/1.0 server) and curl, traced with `ebpf: {}`."""

import os
import socket

from e2elib import (
    SERVER,
    CLIENT,
    brief,
    client_to,
    is_span_id,
    is_trace_id,
    run_curl,
    server_on,
    start_http_server,
)


def test_http_server_and_curl(collector, procs, port, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    body = b"<html><body>hello from the e2e suite</body></html>\n"
    (www / "index.html").write_bytes(body)
    srv = start_http_server(procs, port, www)

    curl, out = run_curl(procs, "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/")
    assert out.strip() == "200"

    servers = collector.spans.wait(server_on(port), 1)
    clients = collector.spans.wait(client_to(port), 1)
    assert len(servers) == 1, brief(servers)
    assert len(clients) == 1, brief(clients)
    s, c = servers[0], clients[0]

    # The server span, in the python process.
    assert s["kind"] == SERVER
    assert s["resource"]["service.name"].startswith("python3"), s["resource"]
    assert s["resource"]["process.pid"] == srv.pid
    assert s["resource"]["process.executable.path"] == os.path.realpath(f"/proc/{srv.pid}/exe")
    assert s["resource"]["process.executable.name"] == os.path.basename(os.path.realpath(f"/proc/{srv.pid}/exe"))
    assert s["resource"]["host.name"] == socket.gethostname()
    assert s["name"] == "GET /"
    sa = s["attrs"]
    assert sa["http.request.method"] == "GET"
    assert sa["url.path"] == "/"
    assert sa["url.scheme"] == "http"
    assert sa["http.route"] == "/"
    assert sa["http.response.status_code"] == 200
    assert sa["http.response.body.size"] == len(body)
    assert sa["server.address"] == "127.0.0.1"
    assert sa["server.port"] == port
    assert sa["client.address"] == "127.0.0.1"
    assert sa["network.peer.address"] == "127.0.0.1"
    assert sa["network.local.port"] == port
    assert sa["user_agent.original"].startswith("curl/")
    assert "http.request.body.size" not in sa  # no body sent
    assert s["status_code"] == 0
    # No traceparent came in, but curl is traced on this host too: same-node linking
    # makes the server span the child of curl's client span (checked below).
    assert is_trace_id(s["trace_id"]), s["trace_id"]
    assert is_span_id(s["span_id"]), s["span_id"]

    # The client span, in curl.
    assert c["kind"] == CLIENT
    assert c["resource"]["service.name"] == "curl"
    assert c["resource"]["process.pid"] == curl.pid
    assert c["resource"]["process.executable.name"] == "curl"
    ca = c["attrs"]
    assert ca["http.request.method"] == sa["http.request.method"]
    assert ca["url.path"] == sa["url.path"]
    assert ca["url.full"] == f"http://127.0.0.1:{port}/"
    assert ca["user_agent.original"].startswith("curl/")
    assert ca["http.response.status_code"] == 200
    assert ca["server.address"] == "127.0.0.1"
    assert ca["server.port"] == port
    assert ca["network.peer.port"] == port
    assert c["status_code"] == 0
    assert is_trace_id(c["trace_id"]) and is_span_id(c["span_id"])
    assert c["parent_span_id"] == "", "curl starts the trace"
    assert s["trace_id"] == c["trace_id"] and s["parent_span_id"] == c["span_id"], brief([c, s])

    # Both ends of one connection.
    assert sa["client.port"] == ca["network.local.port"]
    assert sa["network.peer.port"] == ca["network.local.port"]

    # Timing: the server saw the request after curl sent it and answered before curl had
    # read the answer (one clock).
    assert s["end"] >= s["start"] > 0 and c["end"] >= c["start"] > 0
    assert s["start"] >= c["start"], brief([s, c])
    assert s["end"] <= c["end"], brief([s, c])

    # http.server answers HTTP/1.0 whatever the request said.
    assert sa["network.protocol.version"] == "1.0", brief([s])
