"""net/http watches a keep-alive connection while a handler runs with a 1-byte background
read, which takes the first byte of the client's next request when it comes before the
handler returns; the serving goroutine's read then starts in the request's second byte.
The kernel keeps a Go program's 1-byte read per socket and sees the next read, prefixed
with it, as the request start: the calls of that request keep their parent (under wrk,
3.3% of requests lost it before, docs/benchmarks.md)."""

import http.client

from e2elib import and_, brief, client_to, free_port, go_build, server_on, start_app, wait_listening

REQUESTS = 12


def test_request_after_a_background_read_keeps_its_context(collector, procs, tmp_path):
    fanout = go_build(tmp_path, "gofanoutstd")
    front, back = free_port(), free_port()
    start_app(procs, back, env_extra={"OTEL_SERVICE_NAME": "backend"})
    p = procs.spawn([fanout, front], env_extra={"OTEL_SERVICE_NAME": "gofanout"}, name="gofanout")
    wait_listening(front, p, what="gofanout")

    # One keep-alive connection; each request is sent as soon as the previous response
    # is read, while its handler still lingers.
    c = http.client.HTTPConnection("127.0.0.1", front, timeout=10)
    for i in range(REQUESTS):
        c.request("GET", f"/work/{back}/k{i}?linger=30")
        r = c.getresponse()
        assert r.status == 200 and r.read() == b"ok\n"
    c.close()

    mine = lambda s: "/k" in s["attrs"].get("url.path", "")  # noqa: E731
    servers = collector.spans.wait(and_(server_on(front), mine), REQUESTS)
    calls = collector.spans.wait(and_(client_to(back), mine), 3 * REQUESTS)
    assert len(servers) == REQUESTS and len(calls) == 3 * REQUESTS, brief(servers + calls)
    server_of = {s["attrs"]["url.path"].rsplit("/", 1)[1]: s for s in servers}
    for call in calls:
        req = call["attrs"]["url.path"].rsplit("/", 1)[1].rsplit("-", 1)[0]
        server = server_of[req]
        assert call["parent_span_id"] == server["span_id"], brief([server, call])
        assert call["trace_id"] == server["trace_id"], brief([server, call])
