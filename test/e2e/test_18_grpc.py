"""gRPC over HTTP/2 (grpcio server and client, prior-knowledge h2c): one span per call on
each end with concurrent calls multiplexed on ONE channel, server-streaming calls ending at
the end of the stream, gRPC status codes and error rules, one trace per call."""

import json
import subprocess
import time

from e2elib import APPS, PYTHON, brief, client_to, duration_ms, free_port, server_on, wait_listening

N = 10  # concurrent unary calls on one channel


def test_grpc_calls(collector, procs):
    port = free_port()
    srv = procs.spawn([PYTHON, APPS / "grpc_app.py", "server", port], env_extra={"OTEL_SERVICE_NAME": "shop"},
                      name="grpc-server")
    wait_listening(port, srv, what="grpc server")
    _, out = procs.run([PYTHON, APPS / "grpc_app.py", "client", port, N], env_extra={"OTEL_SERVICE_NAME": "buyer"},
                       name="grpc-client")
    res = json.loads(out.strip().splitlines()[-1])
    assert res == {"pid": res["pid"], "unary": N, "parts": 5, "codes": [5, 13]}, res

    total = N + 3  # N Get, one List, two failing Get
    servers = collector.spans.wait(server_on(port), total)
    clients = collector.spans.wait(client_to(port), total)
    assert len(servers) == total and len(clients) == total, brief(servers + clients)
    for s in servers + clients:
        assert s["attrs"]["rpc.system"] == "grpc", brief([s])
        assert s["attrs"]["rpc.service"] == "demo.Shop"
        assert s["name"] == f"demo.Shop/{s['attrs']['rpc.method']}"
        assert s["attrs"]["network.protocol.version"] == "2"
    for side, spans in (("server", servers), ("client", clients)):
        names = sorted(s["name"] for s in spans)
        assert names == sorted(["demo.Shop/Get"] * (N + 2) + ["demo.Shop/List"]), (side, names)
        codes = sorted(s["attrs"]["rpc.grpc.status_code"] for s in spans)
        assert codes == sorted([0] * (N + 1) + [5, 13]), (side, codes)
        for s in spans:
            code = s["attrs"]["rpc.grpc.status_code"]
            # Server: NOT_FOUND is the caller's problem, INTERNAL is an error; client: any non-OK.
            want_error = code == 13 or (side == "client" and code != 0)
            assert (s["status_code"] == 2) == want_error, brief([s])
        # The streaming call ends when its stream ends (5 messages 50 ms apart), not at its
        # first response headers.
        lst = next(s for s in spans if s["name"] == "demo.Shop/List")
        assert duration_ms(lst) >= 200, brief([lst])
    assert {s["resource"]["service.name"] for s in servers} == {"shop"}
    assert {s["resource"]["service.name"] for s in clients} == {"buyer"}
    # Both ends on this node: every server span is the child of its client span.
    by_id = {c["span_id"]: c for c in clients}
    for s in servers:
        c = by_id.get(s["parent_span_id"])
        assert c is not None and c["trace_id"] == s["trace_id"], brief([s])
        assert c["name"] == s["name"]
        assert c["attrs"]["rpc.grpc.status_code"] == s["attrs"]["rpc.grpc.status_code"]


def test_large_messages_keep_every_header_block(collector, procs):
    """Replies of 256 KiB: grpcio writes and reads them in calls of tens of KiB, with the
    next streams' HEADERS and the trailers after the DATA frames. The kernel walks the
    frames of such calls (ebpf-programs/h2.h), so every span ends at its trailers with
    its status, and no header block is lost."""
    port = free_port()
    srv = procs.spawn([PYTHON, APPS / "grpc_app.py", "server", port], env_extra={"OTEL_SERVICE_NAME": "shop"},
                      name="grpc-server")
    wait_listening(port, srv, what="grpc server")
    n, size = 6, 256 * 1024
    before = collector.ebpf_counter("h2_headers_undecodable")
    _, out = procs.run([PYTHON, APPS / "grpc_app.py", "blobs", port, n, size], name="grpc-blobs")
    res = json.loads(out.strip().splitlines()[-1])
    assert sorted(res["sizes"]) == sorted([size] * n + [len(b"item:small0")] * n), res

    for pred in (server_on(port), client_to(port)):
        spans = collector.spans.wait(pred, 2 * n)
        assert len(spans) == 2 * n, brief(spans)
        assert sorted(s["name"] for s in spans) == sorted(["demo.Shop/Blob", "demo.Shop/Get"] * n), brief(spans)
        for s in spans:
            assert s["attrs"]["rpc.grpc.status_code"] == 0, brief([s])
            assert s["status_code"] != 2, brief([s])
    assert collector.ebpf_counter("h2_headers_undecodable") == before


def test_traceparent_in_grpc_metadata_is_honoured(collector, procs):
    port = free_port()
    srv = procs.spawn([PYTHON, APPS / "grpc_app.py", "server", port], env_extra={"OTEL_SERVICE_NAME": "shop"},
                      name="grpc-server")
    wait_listening(port, srv, what="grpc server")
    trace, parent = "5bf92f3577b34da6a3ce929d0e0e4736", "10f067aa0ba902b7"
    procs.run([PYTHON, APPS / "grpc_app.py", "meta", port, f"00-{trace}-{parent}-01"], name="grpc-meta")
    servers = collector.spans.wait(server_on(port), 1)
    assert len(servers) == 1, brief(servers)
    s = servers[0]
    assert s["name"] == "demo.Shop/Get" and s["attrs"]["rpc.grpc.status_code"] == 0
    assert (s["trace_id"], s["parent_span_id"]) == (trace, parent), brief([s])
    # The client sent its own header: the span it names is the app's; ours is its child.
    clients = collector.spans.wait(client_to(port), 1)
    assert len(clients) == 1 and (clients[0]["trace_id"], clients[0]["parent_span_id"]) == (trace, parent), brief(clients)
    assert clients[0]["span_id"] != parent, brief(clients)


def test_tls_the_receiver_cannot_read_is_counted(collector, procs, tmp_path):
    """grpcio encrypts with its own BoringSSL, which is not probed: no spans can come from
    that traffic, and the connections say so in tls_not_decrypted (warned in the log)."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", tmp_path / "key.pem",
                    "-out", tmp_path / "cert.pem", "-days", "2", "-subj", "/CN=localhost"], check=True,
                   capture_output=True)
    port = free_port()
    srv = procs.spawn([PYTHON, APPS / "grpc_app.py", "server", port, tmp_path / "cert.pem", tmp_path / "key.pem"],
                      name="grpc-tls-server")
    wait_listening(port, srv, what="grpc TLS server")
    before = collector.ebpf_counter("tls_not_decrypted") or 0
    _, out = procs.run([PYTHON, APPS / "grpc_app.py", "tlsget", port, tmp_path / "cert.pem"], name="grpc-tls-client")
    assert json.loads(out.strip().splitlines()[-1])["reply"] == "item:tls", out
    procs.cleanup()  # the server goes: both ends of the connection close
    deadline = time.monotonic() + 15
    while (collector.ebpf_counter("tls_not_decrypted") or 0) < before + 2:
        assert time.monotonic() < deadline, collector.ebpf_counter("tls_not_decrypted")
        time.sleep(0.2)
    assert collector.spans.wait(lambda s: server_on(port)(s) or client_to(port)(s), 1, timeout=1) == []
