"""Trace context (traceparent / tracestate), resource attributes, and secrets."""

import os
import secrets
import socket

from e2elib import (
    and_,
    brief,
    client_to,
    is_span_id,
    is_trace_id,
    path_is,
    run_client,
    run_curl,
    server_on,
    start_app,
)


def fresh_ids():
    return secrets.token_hex(16), secrets.token_hex(8)


def test_sampled_traceparent_is_honoured(collector, procs, app):
    _, port = app
    trace_id, parent_id = fresh_ids()
    tracestate = "vendor1=opaque1,vendor2=opaque2"
    curl, _ = run_curl(procs, "-o", "/dev/null", "-H", f"traceparent: 00-{trace_id}-{parent_id}-01",
                       "-H", f"tracestate: {tracestate}", f"http://127.0.0.1:{port}/users/5")

    servers = collector.spans.wait(server_on(port), 1)
    assert len(servers) == 1, brief(servers)
    s = servers[0]
    assert s["trace_id"] == trace_id, brief(servers)
    assert s["parent_span_id"] == parent_id, brief(servers)
    assert is_span_id(s["span_id"]) and s["span_id"] != parent_id
    assert s["trace_state"] == tracestate

    # curl sent the header itself: the header's parent id belongs to the app's span (the
    # callee names it as parent); our CLIENT span is its child, never a second span with
    # that id.
    clients = collector.spans.wait(client_to(port), 1)
    assert len(clients) == 1, brief(clients)
    c = clients[0]
    assert c["resource"]["process.pid"] == curl.pid
    assert c["trace_id"] == trace_id, brief(clients)
    assert c["parent_span_id"] == parent_id and is_span_id(c["span_id"]), brief(clients)
    assert c["span_id"] not in (parent_id, s["span_id"]), brief(clients)


def test_unsampled_traceparent_drops_the_server_span(collector, procs, app):
    _, port = app
    before = collector.ebpf_counter("spans_unsampled")
    assert before is not None, "otelcol_ebpf_spans_unsampled is not exported"
    trace_id, parent_id = fresh_ids()
    run_curl(procs, "-o", "/dev/null", "-H", f"traceparent: 00-{trace_id}-{parent_id}-00",
             f"http://127.0.0.1:{port}/users/6")
    # A sampled request after it on the same server: once its span is out, the first
    # one's would be too.
    run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{port}/users/7")

    marker = collector.spans.wait(and_(server_on(port), path_is("/users/7")), 1)
    assert len(marker) == 1, brief(marker)
    servers = collector.spans.wait(server_on(port), 1)
    assert [s["attrs"]["url.path"] for s in servers] == ["/users/7"], brief(servers)
    assert not [s for s in collector.spans.refresh() if s["trace_id"] == trace_id and s["kind"] == 2], \
        brief([s for s in collector.spans.spans if s["trace_id"] == trace_id])
    assert collector.ebpf_counter("spans_unsampled") >= before + 1


def test_malformed_traceparent_starts_a_new_trace(collector, procs, app):
    _, port = app
    before = collector.ebpf_counter("traceparent_invalid")
    assert before is not None, "otelcol_ebpf_traceparent_invalid is not exported"
    trace_id, parent_id = fresh_ids()
    bad = f"00-{trace_id[:-2]}zz-{parent_id}-01"  # not hex
    run_curl(procs, "-o", "/dev/null", "-H", f"traceparent: {bad}", f"http://127.0.0.1:{port}/users/8")

    servers = collector.spans.wait(server_on(port), 1)
    assert len(servers) == 1, brief(servers)
    s = servers[0]
    assert is_trace_id(s["trace_id"]), brief(servers)
    assert s["trace_id"] != trace_id and not s["trace_id"].startswith(trace_id[:-2]), brief(servers)
    # The header is ignored on both ends: curl's span starts a new trace and the server
    # span is linked to it on this host.
    clients = collector.spans.wait(and_(client_to(port), path_is("/users/8")), 1)
    assert len(clients) == 1 and clients[0]["parent_span_id"] == "", brief(clients)
    assert s["parent_span_id"] == clients[0]["span_id"] and s["trace_id"] == clients[0]["trace_id"], brief(servers + clients)
    assert s["attrs"]["http.response.status_code"] == 200
    after = collector.ebpf_counter("traceparent_invalid")
    assert after >= before + 1, (before, after)


def test_resource_from_the_process_environment(collector, procs, port):
    srv = start_app(procs, port, env_extra={"OTEL_SERVICE_NAME": "orders",
                                            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=e2e,team=core"})
    curl, _ = run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{port}/users/1")

    servers = collector.spans.wait(server_on(port), 1)
    assert len(servers) == 1, brief(servers)
    r = servers[0]["resource"]
    exe = os.path.realpath(f"/proc/{srv.pid}/exe")
    assert r["service.name"] == "orders"
    assert r["deployment.environment"] == "e2e"
    assert r["team"] == "core"
    assert r["process.pid"] == srv.pid
    assert r["process.executable.path"] == exe
    assert r["process.executable.name"] == os.path.basename(exe)
    assert os.path.basename(exe).startswith("python3")
    assert r["host.name"] == socket.gethostname()

    clients = collector.spans.wait(client_to(port), 1)
    assert len(clients) == 1, brief(clients)
    cr = clients[0]["resource"]
    assert cr["service.name"] == "curl"
    assert cr["process.pid"] == curl.pid
    assert "team" not in cr  # the server's environment is not curl's


def test_service_name_from_resource_attributes(collector, procs, port):
    srv = start_app(procs, port, env_extra={"OTEL_RESOURCE_ATTRIBUTES": "service.name=billing,team=payments"})
    run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{port}/users/1")
    servers = collector.spans.wait(server_on(port), 1)
    assert len(servers) == 1, brief(servers)
    r = servers[0]["resource"]
    assert r["service.name"] == "billing"
    assert r["team"] == "payments"
    assert r["process.pid"] == srv.pid


def test_credentials_are_never_exported(collector, procs, app):
    _, port = app
    secret = "s3cr3t-" + secrets.token_hex(12)
    headers = {"Authorization": f"Bearer {secret}", "Cookie": f"session={secret}; theme=dark"}
    _, res = run_client(procs, port, [{"path": "/users/11", "headers": headers}])
    assert res["responses"][0]["status"] == 200
    run_curl(procs, "-o", "/dev/null", "-H", f"Authorization: Basic {secret}", "-H", f"Cookie: id={secret}",
             f"http://127.0.0.1:{port}/users/12")

    servers = collector.spans.wait(server_on(port), 2)
    clients = collector.spans.wait(client_to(port), 2)
    assert len(servers) == 2, brief(servers)
    assert len(clients) == 2, brief(clients)
    assert secret not in collector.spans.raw_text()
    assert secret not in collector.log()
