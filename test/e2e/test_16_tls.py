"""HTTPS through OpenSSL: the receiver probes libssl's SSL_read/SSL_write (curl) and
SSL_read_ex/SSL_write_ex (Python's ssl module) and makes the same spans as for plaintext,
with url.scheme https; a traceparent inside TLS is honoured; a TLS server's plaintext
calls are its children (with the header the kernel inserted)."""

import subprocess

import pytest

from e2elib import (
    APPS,
    PYTHON,
    and_,
    brief,
    client_to,
    free_port,
    path_is,
    run_curl,
    server_on,
    start_app,
    wait_listening,
)


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "key.pem",
                    "-out", d / "cert.pem", "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


@pytest.fixture
def https_app(procs, cert):
    port = free_port()
    p = procs.spawn([PYTHON, APPS / "https_app.py", port, *cert], env_extra={"OTEL_SERVICE_NAME": "tlsapp"},
                    name="https_app")
    wait_listening(port, p, what="https_app.py")
    return port


def test_https_spans_on_both_ends(collector, procs, https_app):
    port = https_app
    curl, _ = run_curl(procs, "-k", "-o", "/dev/null", f"https://127.0.0.1:{port}/users/42")
    run_curl(procs, "-k", "-o", "/dev/null", f"https://127.0.0.1:{port}/status/503")

    servers = collector.spans.wait(server_on(port), 2)
    assert len(servers) == 2, brief(servers)
    by_path = {s["attrs"]["url.path"]: s for s in servers}
    ok, err = by_path["/users/42"], by_path["/status/503"]
    assert ok["resource"]["service.name"] == "tlsapp"
    assert ok["attrs"]["url.scheme"] == "https"
    assert ok["attrs"]["http.route"] == "/users/{id}"
    assert ok["attrs"]["http.response.status_code"] == 200
    assert err["attrs"]["http.response.status_code"] == 503
    assert err["status_code"] == 2, err

    clients = collector.spans.wait(and_(client_to(port), path_is("/users/42")), 1)
    assert len(clients) == 1, brief(clients)
    c = clients[0]
    assert c["resource"]["process.pid"] == curl.pid
    assert c["attrs"]["url.full"] == f"https://127.0.0.1:{port}/users/42"
    assert c["attrs"]["url.scheme"] == "https"
    assert c["attrs"]["http.response.status_code"] == 200
    # Both ends traced here: one trace, the server span the child of curl's.
    assert (ok["trace_id"], ok["parent_span_id"]) == (c["trace_id"], c["span_id"]), brief([c, ok])
    # The handshake is not counted as an unknown protocol.
    assert collector.ebpf_counter("tls_without_socket") == 0


def test_traceparent_inside_tls_is_honoured(collector, procs, https_app):
    port = https_app
    trace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    run_curl(procs, "-k", "-o", "/dev/null", "-H", f"traceparent: 00-{trace}-{parent}-01",
             f"https://127.0.0.1:{port}/users/7")
    servers = collector.spans.wait(and_(server_on(port), path_is("/users/7")), 1)
    assert len(servers) == 1, brief(servers)
    assert (servers[0]["trace_id"], servers[0]["parent_span_id"]) == (trace, parent)


def test_a_tls_servers_plaintext_calls_are_its_children(collector, procs, https_app):
    port = https_app
    backend = free_port()
    start_app(procs, backend, env_extra={"OTEL_SERVICE_NAME": "backend"})
    run_curl(procs, "-k", "-o", "/dev/null", f"https://127.0.0.1:{port}/proxy/{backend}/users/9")

    front = collector.spans.wait(and_(server_on(port), path_is(f"/proxy/{backend}/users/9")), 1)
    call = collector.spans.wait(and_(client_to(backend), path_is("/users/9")), 1)
    back = collector.spans.wait(and_(server_on(backend), path_is("/users/9")), 1)
    assert len(front) == len(call) == len(back) == 1, brief(front + call + back)
    f, c, b = front[0], call[0], back[0]
    assert c["resource"]["service.name"] == "tlsapp"
    assert c["attrs"]["url.scheme"] == "http"
    assert (c["trace_id"], c["parent_span_id"]) == (f["trace_id"], f["span_id"]), brief([f, c])
    assert (b["trace_id"], b["parent_span_id"]) == (c["trace_id"], c["span_id"]), brief([c, b])
