"""Goroutine-aware context and Go TLS on other Go releases than the local one: the first
release of Go's register ABI (1.18), the last with the old function epilogue
(`MOVQ n(SP), BP; ADDQ $n, SP; RET`, 1.20) and the newest (1.27). Each toolchain comes from
the module proxy (`GOTOOLCHAIN=<release> go ...`; scripts/deps.sh fetches them ahead).
The gofanoutstd app (a pooled call and a fan-out of two goroutines per request) built by each:
every call is the child of its request, every callee request the child of its call; and
HTTPS over crypto/tls built by each: spans on both ends, linked."""

import concurrent.futures
import json
import os
import subprocess
import time

import pytest

from e2elib import (APPS, and_, brief, client_to, counters_settled, free_port, path_is, path_startswith, run_curl,
                    server_on, start_app, until_parented, wait_listening)

RELEASES = ("go1.18.10", "go1.20.14", "go1.27.3")
IN_FLIGHT = 16
LEGS = ("a", "b1", "b2")


def go_build_release(release, out_dir, app, *flags):
    """test/e2e/apps/<app>/main.go built by Go `release` (fetched by `go` if missing)."""
    env = dict(os.environ, GOTOOLCHAIN=release)
    root = subprocess.run(["go", "env", "GOROOT"], check=True, capture_output=True, text=True, env=env,
                          timeout=600).stdout.strip()
    out = out_dir / app
    subprocess.run([f"{root}/bin/go", "build", *flags, "-o", out, APPS / app / "main.go"], check=True,
                   capture_output=True, env=dict(env, GOTOOLCHAIN="local", GO111MODULE="off", CGO_ENABLED="0"))
    version = subprocess.run(["go", "version", out], check=True, capture_output=True, text=True).stdout
    assert version.strip().endswith(release), version
    return out


@pytest.fixture(scope="module", params=RELEASES)
def release(request):
    return request.param


def test_go_calls_are_children_of_their_request(collector, procs, release, tmp_path):
    # Stripped (no symbol table): the functions come from .gopclntab in every release.
    fanout = go_build_release(release, tmp_path, "gofanoutstd", "-ldflags=-s -w")
    front, back = free_port(), free_port()
    start_app(procs, back, env_extra={"OTEL_SERVICE_NAME": "backend"})
    p = procs.spawn([fanout, front], env_extra={"OTEL_SERVICE_NAME": "gofanout"}, name="gofanout")
    wait_listening(front, p, what="gofanout")
    def warm(k):
        run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{front}/work/{back}/w{k}")
        leg = collector.spans.wait(and_(client_to(back), path_startswith(f"/users/w{k}-b2")), 1, timeout=3, settle=0)
        return leg and leg[0]["parent_span_id"]
    until_parented(warm, f"{release}: the Go program's calls never got a parent", timeout=20)

    unknown = ("go_context_unknown_no_goid", "go_context_unknown_no_request", "go_context_unknown_stale",
               "go_context_unprobed")
    before = {c: collector.ebpf_counter(c) for c in unknown}
    assert None not in before.values(), before
    ids = [f"m{i}" for i in range(IN_FLIGHT)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        list(pool.map(lambda i: run_curl(procs, "-o", "/dev/null", "--fail",
                                         f"http://127.0.0.1:{front}/work/{back}/{i}"), ids))

    mine = path_startswith("/users/m")
    servers = collector.spans.wait(and_(server_on(front), path_startswith(f"/work/{back}/m")), IN_FLIGHT)
    calls = collector.spans.wait(and_(client_to(back), mine), 3 * IN_FLIGHT)
    backs = collector.spans.wait(and_(server_on(back), mine), 3 * IN_FLIGHT)
    assert len(servers) == IN_FLIGHT and len(calls) == len(backs) == 3 * IN_FLIGHT, brief(servers + calls)
    server_of = {s["attrs"]["url.path"].rsplit("/", 1)[1]: s for s in servers}
    call_of = {c["attrs"]["url.path"]: c for c in calls}
    back_of = {b["attrs"]["url.path"]: b for b in backs}
    assert sorted(server_of) == sorted(ids)
    for i in ids:
        server = server_of[i]
        for leg in LEGS:
            path = f"/users/{i}-{leg}"
            call, callee = call_of[path], back_of[path]
            assert call["parent_span_id"] == server["span_id"], (release, brief([server, call]))
            assert call["trace_id"] == server["trace_id"], brief([server, call])
            assert callee["parent_span_id"] == call["span_id"], (release, brief([call, callee]))
            assert callee["trace_id"] == server["trace_id"], brief([call, callee])
    assert counters_settled(collector, before) == before


def test_go_https_http1(collector, procs, release, tmp_path):
    gotls = go_build_release(release, tmp_path, "gotls")
    port = free_port()
    p = procs.spawn([gotls, "server", port], env_extra={"OTEL_SERVICE_NAME": "gosrv"}, name="gotls-server")
    wait_listening(port, p, what="gotls server")

    def client(*paths):
        _, out = procs.run([gotls, "client1", f"https://127.0.0.1:{port}", *paths], name="gotls-client")
        return json.loads(out.strip().splitlines()[-1])

    deadline = time.time() + 20
    while not collector.spans.wait(and_(server_on(port), path_is("/users/0")), 1, timeout=1, settle=0):
        assert time.time() < deadline, f"{release}: the Go executable was never probed"
        client("/users/0")
    res = client("/users/7", "/status/503")
    assert res["proto"] == "HTTP/1.1" and res["codes"] == [200, 503], res
    real = lambda s: s["attrs"].get("url.path") in ("/users/7", "/status/503")  # noqa: E731
    servers = collector.spans.wait(and_(server_on(port), real), 2)
    clients = collector.spans.wait(and_(client_to(port), real), 2)
    assert len(servers) == 2 and len(clients) == 2, brief(servers + clients)
    for s in servers + clients:
        assert s["attrs"]["url.scheme"] == "https", brief([s])
        want = 200 if s["attrs"]["url.path"] == "/users/7" else 503
        assert s["attrs"]["http.response.status_code"] == want, brief([s])
    by_id = {c["span_id"]: c for c in clients}
    for s in servers:
        c = by_id.get(s["parent_span_id"])
        assert c is not None and c["attrs"]["url.path"] == s["attrs"]["url.path"], brief([s])
