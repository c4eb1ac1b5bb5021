"""Next to an OpenTelemetry SDK: a Flask service instrumented with the real OpenTelemetry
Python SDK (apps/sdk_app.py) exports its own spans over OTLP/HTTP to the collector's
`otlp` receiver, which shares the traces pipeline (and so the span file) with `ebpf`.

With `skip_sdk_instrumented: true` (the default) a process seen exporting OTLP itself
(OTLP/HTTP requests to /v1/traces, /v1/metrics, /v1/logs, or gRPC
/opentelemetry.proto.collector.*) is SDK-instrumented: from then on the receiver makes no
spans of it (its SDK does), counts it in the gauge `sdk_instrumented_processes` and logs
one line naming it ("SDK-instrumented", with its pid). Its callers and callees without an
SDK are still traced by the receiver, and the traces join up: curl (eBPF CLIENT, header
inserted by the kernel) → SDK SERVER → SDK CLIENT (the SDK's own traceparent) → callee
(eBPF SERVER). With `false`, the receiver traces the SDK process too, and its CLIENT span
for a request that already carries the app's traceparent takes a span id of its own (a
child of the app's span): no span id appears twice in the file either way.

Traffic to the collector's own listening ports (the OTLP export itself, its telemetry
metrics endpoint) never becomes spans.

The test process is traced here (no discovery): every request of the tests is sent by a
curl process.
"""

import collections
import concurrent.futures
import re

import pytest

from e2elib import (
    APPS,
    CLIENT,
    PYTHON,
    SERVER,
    brief,
    client_to,
    counters_settled,
    free_port,
    is_ebpf_span,
    is_sdk_span,
    log_lines,
    run_curl,
    server_on,
    start_app,
    start_collector_with_otlp,
    wait_listening,
    wait_output,
    wait_until,
)

N = 20
SERVICE = "sdk-shop"
EXPORT_PATHS = ("/v1/traces", "/v1/metrics", "/v1/logs")


@pytest.fixture
def start_collector(collectors, tmp_path):
    """start_collector(receiver) → a collector of its own with `ebpf: receiver` and an
    `otlp` receiver in one traces pipeline; stopped at the end of the test."""
    started = []

    def start(receiver: dict):
        c = start_collector_with_otlp(collectors, receiver, tmp_path / f"collector-{len(started) + 1}")
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


def start_sdk_app(procs, port: int, downstream: int, otlp_url: str):
    p = procs.spawn([PYTHON, APPS / "sdk_app.py", port, downstream, otlp_url],
                    env_extra={"OTEL_SERVICE_NAME": SERVICE}, name="sdk_app")
    wait_listening(port, p, what="sdk_app.py (needs the OpenTelemetry SDK and Flask: make deps)")
    wait_output(procs, p, "ready")
    return p


def sdk_server(path_prefix: str):
    return lambda s: is_sdk_span(s) and s["kind"] == SERVER and s["resource"].get("service.name") == SERVICE \
        and str(s["attrs"].get("url.path", "")).startswith(path_prefix)


def export_spans(spans) -> list[dict]:
    """Spans of OTLP export traffic, by whoever made them."""
    def is_export(s):
        a = s["attrs"]
        paths = [a.get("url.path"), a.get("http.target"), str(a.get("url.full", "")).split("?")[0]]
        return any(str(p or "").endswith(e) for p in paths for e in EXPORT_PATHS)
    return [s for s in spans if is_export(s)]


def duplicate_span_ids(spans) -> dict:
    n = collections.Counter(s["span_id"] for s in spans)
    return {k: v for k, v in n.items() if v > 1}


def sdk_log_lines(c, pid: int) -> list[str]:
    """The collector's "SDK-instrumented" log lines naming pid (as a number of its own, not
    inside a uuid or another number)."""
    return [line for line in log_lines(c, "SDK-instrumented") if re.search(rf"(?<![\w-]){pid}(?![\w-])", line)]


def run_checkouts(procs, port: int) -> dict:
    """N requests GET /checkout/<i>, 4 at a time, each by its own curl: {i: curl pid}."""
    def one(i):
        p, out = run_curl(procs, f"http://127.0.0.1:{port}/checkout/{i}")
        assert f'"id": "{i}"' in out, out
        return i, p.pid

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, range(1, N + 1)))


def request_trees(c, sdk_port: int, callee_port: int, callee_pid: int, curl_pids: dict) -> dict:
    """Waits for the N request trees and checks their shape: for each SDK SERVER span of
    /checkout/<i>, its parent is the CLIENT span of the curl that sent it (eBPF), it has
    exactly one SDK CLIENT child, and that child has exactly one child: the callee's SERVER
    span for /users/<i> (eBPF, the callee's pid). Returns {i: {"curl", "server", "client",
    "callee"}}."""
    servers = c.spans.wait(sdk_server("/checkout/"), N, timeout=30)
    callees = c.spans.wait(lambda s: is_ebpf_span(s) and server_on(callee_port)(s), N, timeout=30)
    curls = c.spans.wait(lambda s: is_ebpf_span(s) and client_to(sdk_port)(s)
                         and s["resource"].get("process.pid") in curl_pids.values(), N, timeout=30)
    spans = c.spans.refresh()
    sdk_clients = [s for s in spans if is_sdk_span(s) and s["kind"] == CLIENT]
    assert len(servers) == N, brief(servers)
    assert len(callees) == N, brief(callees)
    assert len(curls) == N, brief(curls)
    assert all(s["resource"]["process.pid"] == callee_pid for s in callees), brief(callees)

    trees = {}
    for srv in servers:
        i = int(srv["attrs"]["url.path"].rsplit("/", 1)[1])
        assert i not in trees, brief(servers)
        curl = [s for s in curls if s["span_id"] == srv["parent_span_id"]]
        assert len(curl) == 1, f"parent of {brief([srv])} is not a curl CLIENT span: " + brief(curls)
        assert curl[0]["trace_id"] == srv["trace_id"]
        assert curl[0]["resource"]["process.pid"] == curl_pids[i], brief([srv, *curl])
        kids = [s for s in sdk_clients if s["parent_span_id"] == srv["span_id"]]
        assert len(kids) == 1, f"SDK CLIENT children of {brief([srv])}: " + brief(kids)
        cli = kids[0]
        assert cli["trace_id"] == srv["trace_id"] and cli["attrs"].get("url.full", "").endswith(f"/users/{i}"), \
            brief([srv, cli])
        callee = [s for s in callees if s["parent_span_id"] == cli["span_id"]]
        assert len(callee) == 1, f"callee SERVER children of {brief([cli])}: " + brief(callees)
        assert callee[0]["trace_id"] == cli["trace_id"], brief([srv, cli, *callee])
        assert callee[0]["attrs"]["url.path"] == f"/users/{i}", brief([srv, cli, *callee])
        trees[i] = {"curl": curl[0], "server": srv, "client": cli, "callee": callee[0]}
    assert sorted(trees) == list(range(1, N + 1))
    assert len({t["server"]["trace_id"] for t in trees.values()}) == N  # one trace per request
    return trees


def test_sdk_instrumented_process_is_left_to_its_sdk(start_collector, procs):
    c = start_collector({})  # skip_sdk_instrumented: true is the default
    sdk_port, callee_port = free_port(), free_port()
    callee = start_app(procs, callee_port)  # no SDK
    sdk = start_sdk_app(procs, sdk_port, callee_port, c.otlp_traces_url)

    # Its first export (the /warmup span, 200 ms later) makes it SDK-instrumented: the
    # contract is "from then on", so the measured requests wait for the detection.
    run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{sdk_port}/warmup")
    warm = c.spans.wait(sdk_server("/warmup"), 1)
    assert len(warm) == 1, brief(warm)
    detected = wait_until(lambda: sdk_log_lines(c, sdk.pid)
                          or (c.ebpf_counter("sdk_instrumented_processes") or 0) >= 1)
    assert detected, f"no 'SDK-instrumented' line for pid {sdk.pid}, gauge " \
                     f"{c.ebpf_counter('sdk_instrumented_processes')}:\n{c.log()[-4000:]}"

    curl_pids = run_checkouts(procs, sdk_port)
    request_trees(c, sdk_port, callee_port, callee.pid, curl_pids)

    spans = c.spans.refresh()
    dups = duplicate_span_ids(spans)
    assert not dups, f"span ids seen more than once: {dups}\n" + brief([s for s in spans if s["span_id"] in dups])
    # Nothing of the SDK process from the receiver once detected: at most the /warmup
    # request, served before its first export.
    mine = [s for s in spans if is_ebpf_span(s) and s["resource"].get("process.pid") == sdk.pid]
    assert all(s["kind"] == SERVER and s["attrs"].get("url.path") == "/warmup" for s in mine), brief(mine)
    exports = export_spans(spans)
    assert exports == [], brief(exports)

    got = counters_settled(c, {"sdk_instrumented_processes": 1})
    assert got["sdk_instrumented_processes"] is not None and got["sdk_instrumented_processes"] >= 1, got
    lines = sdk_log_lines(c, sdk.pid)
    assert len(lines) == 1, f"'SDK-instrumented' lines for pid {sdk.pid} (want one): {lines}"


def test_sdk_process_traced_when_skip_is_off(start_collector, procs):
    c = start_collector({"skip_sdk_instrumented": False})
    sdk_port, callee_port = free_port(), free_port()
    callee = start_app(procs, callee_port)
    sdk = start_sdk_app(procs, sdk_port, callee_port, c.otlp_traces_url)
    run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{sdk_port}/warmup")
    assert len(c.spans.wait(sdk_server("/warmup"), 1)) == 1  # it has exported

    curl_pids = run_checkouts(procs, sdk_port)
    trees = request_trees(c, sdk_port, callee_port, callee.pid, curl_pids)

    # The receiver's spans of the SDK process: one SERVER span a request, continuing the
    # trace curl started, and one CLIENT span a call, a child of the SDK's CLIENT span
    # (whose traceparent the request carried) with a span id of its own.
    def ours(s):
        return is_ebpf_span(s) and s["resource"].get("process.pid") == sdk.pid

    servers = c.spans.wait(lambda s: ours(s) and s["kind"] == SERVER
                           and str(s["attrs"].get("url.path", "")).startswith("/checkout/"), N)
    calls = c.spans.wait(lambda s: ours(s) and client_to(callee_port)(s), N)
    assert len(servers) == N and len(calls) == N, brief(servers + calls)
    for i, t in trees.items():
        srv = [s for s in servers if s["attrs"]["url.path"] == f"/checkout/{i}"]
        assert len(srv) == 1, brief(servers)
        assert (srv[0]["trace_id"], srv[0]["parent_span_id"]) == (t["curl"]["trace_id"], t["curl"]["span_id"]), \
            brief([t["curl"], *srv])
        call = [s for s in calls if s["parent_span_id"] == t["client"]["span_id"]]
        assert len(call) == 1, f"eBPF CLIENT spans under {brief([t['client']])}: " + brief(calls)
        assert call[0]["trace_id"] == t["client"]["trace_id"], brief([t["client"], *call])
        assert call[0]["span_id"] != t["client"]["span_id"], brief([t["client"], *call])
        assert call[0]["attrs"].get("url.path") == f"/users/{i}", brief(call)

    spans = c.spans.refresh()
    dups = duplicate_span_ids(spans)
    assert not dups, f"span ids seen more than once: {dups}\n" + brief([s for s in spans if s["span_id"] in dups])
    exports = export_spans(spans)
    assert exports == [], brief(exports)


def test_traffic_to_the_collectors_own_ports_is_not_traced(start_collector, procs):
    c = start_collector({})
    own = {c.metrics_port, c.otlp_port}
    own_curls = []
    for _ in range(5):
        p, out = run_curl(procs, "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{c.metrics_port}/metrics")
        assert out.strip() == "200", out
        own_curls.append(p.pid)
    for _ in range(2):  # the OTLP/HTTP listener (a GET it refuses: not an export)
        p, _ = run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{c.otlp_port}/")
        own_curls.append(p.pid)
    # Positive control, after them: an app in the same test is traced.
    port = free_port()
    start_app(procs, port)
    curl, _ = run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{port}/users/1")
    assert len(c.spans.wait(server_on(port), 1)) == 1
    clients = c.spans.wait(client_to(port), 1)
    assert len(clients) == 1 and clients[0]["resource"]["process.pid"] == curl.pid, brief(clients)

    spans = c.spans.refresh()
    touching = [s for s in spans if own & {s["attrs"].get(k) for k in
                                           ("server.port", "network.local.port", "network.peer.port")}]
    assert touching == [], f"spans of the collector's own ports {sorted(own)}: " + brief(touching)
    by_own_curls = [s for s in spans if s["resource"].get("process.pid") in own_curls]
    assert by_own_curls == [], brief(by_own_curls)
    collector_spans = [s for s in spans if s["resource"].get("process.pid") == c.pid]
    assert collector_spans == [], brief(collector_spans)
