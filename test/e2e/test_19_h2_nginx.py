"""Plain HTTP/2 (not gRPC) against nginx: h2 over TLS (ALPN, nginx and curl through
OpenSSL) and prior-knowledge h2c. Over TLS curl multiplexes the requests on ONE connection,
large bodies between small ones (frames after the first 4 KiB of a call are kept): one span per stream on each end, HTTP attributes with
network.protocol.version 2, url.scheme from the transport, incoming traceparent honoured."""

import subprocess

import pytest

from e2elib import and_, brief, client_to, free_port, nginx_conf, path_is, run_curl, server_on, wait_listening

HTTP = """
    keepalive_timeout 30;
    server {{
        listen 127.0.0.1:{tls} ssl http2;
        listen 127.0.0.1:{h2c} http2;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        root {d}/www;
    }}"""

BIG = 300 * 1024
# Served in this order on one connection, all in flight at once.
PATHS = ["/big.bin", "/small.txt", "/big.bin", "/missing", "/small.txt", "/big.bin"]
STATUS = {"/big.bin": 200, "/small.txt": 200, "/missing": 404}


@pytest.fixture(scope="module")
def nginx_h2(tmp_path_factory):
    d = tmp_path_factory.mktemp("nginx_h2")
    (d / "www").mkdir()
    (d / "www" / "big.bin").write_bytes(bytes(range(256)) * (BIG // 256))
    (d / "www" / "small.txt").write_bytes(b"small\n")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "key.pem",
                    "-out", d / "cert.pem", "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True)
    tls, h2c = free_port(), free_port()
    conf = d / "nginx.conf"
    conf.write_text(nginx_conf(d, HTTP.format(d=d, tls=tls, h2c=h2c)))
    p = subprocess.Popen(["nginx", "-p", d, "-e", d / "error.log", "-c", conf, "-g", "daemon off;"],
                         start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_listening(tls, p, what="nginx")
        wait_listening(h2c, p, what="nginx")
        yield {"tls": tls, "h2c": h2c}
    finally:
        subprocess.run(["nginx", "-p", d, "-c", conf, "-s", "stop"], capture_output=True)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def fetch(procs, base, *extra, parallel=True):
    """All PATHS; multiplexed on one connection, or one connection each."""
    # Without --parallel-immediate curl waits for the first connection and multiplexes on
    # it. curl 7.88 fails every transfer after the first on a prior-knowledge h2c
    # connection (parallel or not, traced or not): there, a connection per request.
    w = ["-w", "%{http_version} %{local_port}\\n"]
    if parallel:
        args = ["-Z", "--parallel-max", "10", *w]
        for path in PATHS:
            args += ["-o", "/dev/null", base + path]
        outs = [run_curl(procs, *extra, *args)[1]]
    else:
        outs = [run_curl(procs, *extra, *w, "-o", "/dev/null", base + path)[1] for path in PATHS]
    lines = " ".join(ln for out in outs for ln in out.splitlines() if ln[:2] == "2 ").split()
    assert lines[0::2] == ["2"] * len(PATHS), outs
    assert len(set(lines[1::2])) == (1 if parallel else len(PATHS)), outs


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_multiplexed_streams_on_both_ends(collector, procs, nginx_h2, scheme):
    # From this test's start: a module run before on the same collector may count some.
    undecodable = collector.ebpf_counter("h2_headers_undecodable")
    if scheme == "https":
        port = nginx_h2["tls"]
        fetch(procs, f"https://127.0.0.1:{port}", "-k", "--http2")
    else:
        port = nginx_h2["h2c"]
        fetch(procs, f"http://127.0.0.1:{port}", "--http2-prior-knowledge", parallel=False)

    n = len(PATHS)
    servers = collector.spans.wait(server_on(port), n)
    clients = collector.spans.wait(client_to(port), n)
    assert len(servers) == n and len(clients) == n, brief(servers + clients)
    for side, spans in (("server", servers), ("client", clients)):
        assert sorted(s["attrs"]["url.path"] for s in spans) == sorted(PATHS), (side, brief(spans))
        for s in spans:
            a = s["attrs"]
            assert s["name"] == f"GET {a['url.path']}", brief([s])
            assert a["http.request.method"] == "GET"
            assert a["network.protocol.version"] == "2"
            assert a["url.scheme"] == scheme
            assert a["http.response.status_code"] == STATUS[a["url.path"]], brief([s])
            assert "rpc.system" not in a
            # nginx answers 404 with a body: an error only for the client.
            assert (s["status_code"] == 2) == (side == "client" and a["url.path"] == "/missing"), brief([s])
        ports = {s["attrs"]["network.local.port" if side == "client" else "client.port"] for s in spans}
        assert len(ports) == (1 if scheme == "https" else n), (side, brief(spans))
    for c in clients:
        assert c["attrs"]["url.full"] == f"{scheme}://127.0.0.1:{port}{c['attrs']['url.path']}"
        assert c["resource"]["process.executable.name"] == "curl"
    assert {s["resource"]["process.executable.name"] for s in servers} == {"nginx"}
    # Each stream's server span is the child of the client span of the same stream.
    by_id = {c["span_id"]: c for c in clients}
    for s in servers:
        c = by_id.get(s["parent_span_id"])
        assert c is not None and c["trace_id"] == s["trace_id"], brief([s])
        assert c["attrs"]["url.path"] == s["attrs"]["url.path"]
    assert len({s["trace_id"] for s in servers}) == n
    assert collector.ebpf_counter("h2_headers_undecodable") == undecodable


def test_traceparent_in_h2_headers_is_honoured(collector, procs, nginx_h2):
    port = nginx_h2["tls"]
    trace, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    run_curl(procs, "-k", "--http2", "-o", "/dev/null", "-H", f"traceparent: 00-{trace}-{parent}-01",
             f"https://127.0.0.1:{port}/small.txt")
    servers = collector.spans.wait(and_(server_on(port), lambda s: s["trace_id"] == trace), 1)
    assert len(servers) == 1, brief(servers)
    assert (servers[0]["trace_id"], servers[0]["parent_span_id"]) == (trace, parent)
    clients = collector.spans.wait(and_(client_to(port), path_is("/small.txt"),
                                        lambda s: s["trace_id"] == trace), 1)
    # curl's own header names the app's span: ours is its child, with an id of its own.
    assert len(clients) == 1 and clients[0]["parent_span_id"] == parent, brief(clients)
    assert clients[0]["span_id"] != parent, brief(clients)
