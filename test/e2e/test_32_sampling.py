"""Head sampling (`sampling: {ratio, parent_based}`): a new trace is kept when its trace
id says so, as OpenTelemetry's TraceIdRatioBased sampler decides (the top 63 bits of the
id's last 8 bytes below ratio × 2^63), and the decision travels in the inserted
`traceparent` (flag 00: not sampled), so every service of a trace agrees. An incoming
flag decides when `parent_based` (the default). Nothing of an unsampled trace is exported.

The server side of an unsampled request is left out in the kernel (its bytes never reach
userspace): `requests_unsampled_in_kernel` counts those, `spans_unsampled` the spans
userspace dropped.
"""

import base64
import concurrent.futures
import json
import secrets
from collections import defaultdict
from pathlib import Path

import pytest

from e2elib import (
    APPS,
    CHAIN_SHAPE,
    PYTHON,
    brief,
    chain_up,
    client_to,
    counters_settled,
    dump_records,
    free_port,
    nginx_conf,
    quiet_collector,
    run_curl,
    server_on,
    shape,
    start_app,
    start_dump_server,
    touches,
    traceparent_of,
    wait_listening,
)

N = 400
COUNTERS = ("spans_unsampled", "requests_unsampled_in_kernel", "spans_sampled_by_ratio",
            "spans_sampled_by_parent", "spans_emitted")


def get_request(port: int, path: str, *headers: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            + "".join(f"{h}\r\n" for h in headers) + "Accept: */*\r\n\r\n").encode()


def send_each(procs, port: int, reqs: list[bytes]) -> dict:
    """apps/sendraw.py `each`: the requests in turn on one keep-alive connection; its
    result line (read from its whole output: 400 bodies outgrow the usual excerpt)."""
    p, _ = run_sendraw_raw(procs, port, reqs)
    return json.loads(Path(p.out_path).read_text().strip().splitlines()[-1])


def run_sendraw_raw(procs, port: int, reqs: list[bytes]):
    return procs.run([PYTHON, APPS / "sendraw.py", port, "each", len(reqs),
                      *(base64.b64encode(x).decode() for x in reqs)], name="sendraw")


def kept_by_ratio(trace_id: str, ratio: float) -> bool:
    """Go SDK's TraceIdRatioBased: BigEndian.Uint64(id[8:16]) >> 1 < uint64(ratio * 2^63)."""
    return (int(trace_id[16:], 16) >> 1) < int(ratio * (1 << 63))


def binomial_999(n: int, p: float) -> tuple[float, float]:
    """The 99.9% interval of a binomial count (normal approximation)."""
    mean, sd = n * p, (n * p * (1 - p)) ** 0.5
    return mean - 3.29 * sd, mean + 3.29 * sd


def counters(collector, at_least: dict | None = None) -> dict:
    got = counters_settled(collector, {k: 0 for k in COUNTERS} | (at_least or {}))
    assert None not in got.values(), f"counters not exported: {got}"
    return got


@pytest.mark.parametrize("ratio", [0.0, 0.5, 1.0])
def test_ratio_decides_by_trace_id_and_the_header_carries_it(collectors, procs, tmp_path, ratio):
    collector = quiet_collector(collectors, {"sampling": {"ratio": ratio}})
    port, out = free_port(), tmp_path / "dump.jsonl"
    start_dump_server(procs, port, out)
    before = counters(collector)

    sent = [get_request(port, f"/s/{i}") for i in range(N)]
    res = send_each(procs, port, sent)
    assert res["statuses"] == [200] * N, res

    recs = dump_records(out, 1)
    assert len(recs) == 1 and len(recs[0]["requests"]) == N, recs
    # Every request left with a header; its flag is the ratio's decision on its trace id.
    flags = {}
    for got, want in zip(recs[0]["requests"], sent):
        trace, _, flag = traceparent_of(got, want)
        assert flag == ("01" if kept_by_ratio(trace, ratio) else "00"), (trace, flag, ratio)
        flags[trace] = flag
    sampled = {t for t, f in flags.items() if f == "01"}
    lo, hi = binomial_999(N, ratio)
    assert lo <= len(sampled) <= hi, (len(sampled), lo, hi)

    # Each request is a client span (sendraw) and a server span (dump_server), kept or
    # dropped together; the unsampled server requests never left the kernel.
    dropped = N - len(sampled)
    after = counters(collector, {"spans_unsampled": before["spans_unsampled"] + dropped,
                                 "requests_unsampled_in_kernel": before["requests_unsampled_in_kernel"] + dropped,
                                 "spans_emitted": before["spans_emitted"] + 2 * len(sampled)})
    clients = collector.spans.wait(client_to(port), len(sampled), timeout=20 if sampled else 2)
    servers = collector.spans.wait(server_on(port), len(sampled), timeout=20 if sampled else 2)
    assert {s["trace_id"] for s in clients} == sampled, brief(clients[:5])
    assert {s["trace_id"] for s in servers} == sampled, brief(servers[:5])
    assert len(clients) == len(servers) == len(sampled)
    assert after["requests_unsampled_in_kernel"] - before["requests_unsampled_in_kernel"] == dropped, (before, after)
    assert after["spans_unsampled"] - before["spans_unsampled"] == dropped, (before, after)
    # The client spans start their traces (the ratio kept them); the server spans follow.
    assert after["spans_sampled_by_ratio"] - before["spans_sampled_by_ratio"] == len(sampled), (before, after)
    assert after["spans_sampled_by_parent"] - before["spans_sampled_by_parent"] == len(sampled), (before, after)


def test_an_incoming_flag_decides_when_parent_based(collectors, procs, tmp_path):
    # Ratio 0 keeps no trace started here: whatever is exported was kept by its parent.
    collector = quiet_collector(collectors, {"sampling": {"ratio": 0.0, "parent_based": True}})
    port, out = free_port(), tmp_path / "dump.jsonl"
    start_dump_server(procs, port, out)
    before = counters(collector)
    n = 20
    on, off = [secrets.token_hex(16) for _ in range(n)], [secrets.token_hex(16) for _ in range(n)]
    sent = [get_request(port, f"/p/{i}", f"traceparent: 00-{t}-{secrets.token_hex(8)}-{f}")
            for i, (t, f) in enumerate([(t, "01") for t in on] + [(t, "00") for t in off])]
    res = send_each(procs, port, sent)
    assert res["statuses"] == [200] * len(sent), res
    # The app's own headers are left as they are.
    assert dump_records(out, 1)[0]["requests"] == sent

    after = counters(collector, {"spans_unsampled": before["spans_unsampled"] + n,
                                 "requests_unsampled_in_kernel": before["requests_unsampled_in_kernel"] + n,
                                 "spans_emitted": before["spans_emitted"] + 2 * n})
    clients = collector.spans.wait(client_to(port), n)
    servers = collector.spans.wait(server_on(port), n)
    assert sorted(s["trace_id"] for s in clients) == sorted(on), brief(clients[:5])
    assert sorted(s["trace_id"] for s in servers) == sorted(on), brief(servers[:5])
    assert after["spans_sampled_by_parent"] - before["spans_sampled_by_parent"] == 2 * n, (before, after)
    assert after["spans_sampled_by_ratio"] == before["spans_sampled_by_ratio"], (before, after)


@pytest.mark.parametrize("propagation", ["headers", "off"])
def test_every_span_of_a_three_service_chain_agrees(collectors, procs, propagation):
    """gateway → orders → payments, 60 requests from curl at ratio 0.5: each trace is
    exported whole (curl's span and two spans per hop) or not at all. With `off` the
    kernel inserts nothing and same-node linking carries the decision."""
    collector = quiet_collector(collectors, {"context_propagation": propagation, "sampling": {"ratio": 0.5}})
    gateway, orders, payments = free_port(), free_port(), free_port()
    for port, name in ((gateway, "gateway"), (orders, "orders"), (payments, "payments")):
        start_app(procs, port, env_extra={"OTEL_SERVICE_NAME": name})
    before = counters(collector)
    n = 60

    def call(i):
        run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{gateway}/proxy/{orders}/proxy/{payments}/users/{i}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(call, range(n)))

    # Six spans a request, each exported or counted as not sampled (in userspace or,
    # for server requests, in the kernel).
    decided = ("spans_emitted", "spans_unsampled", "requests_unsampled_in_kernel")
    want = sum(before[k] for k in decided) + 6 * n
    for _ in range(20):
        after = counters(collector)
        if sum(after[k] for k in decided) >= want:
            break
    assert sum(after[k] for k in decided) == want, (before, after)
    spans = collector.spans.wait(touches({gateway, orders, payments}), 6, timeout=5)
    traces = defaultdict(list)
    for s in spans:
        traces[s["trace_id"]].append(s)
    for t, group in traces.items():
        assert len(group) == 6, brief(group)
        payments_server = [s for s in group if s["kind"] == 2 and s["resource"]["service.name"] == "payments"]
        assert len(payments_server) == 1, brief(group)
        chain = chain_up(payments_server[0], {s["span_id"]: s for s in group})
        assert shape(chain) == CHAIN_SHAPE, brief(chain)
    lo, hi = binomial_999(n, 0.5)
    assert lo <= len(traces) <= hi, (len(traces), lo, hi)
    assert after["spans_emitted"] - before["spans_emitted"] == 6 * len(traces), (before, after)


def test_responses_sent_with_sendfile_are_left_out_too(collectors, procs, tmp_path):
    """nginx sends a file's bytes with sendfile(2): while an unsampled exchange is left
    out, those must be too, or the next sampled response would be misread."""
    collector = quiet_collector(collectors, {"sampling": {"ratio": 0.5}})
    port = free_port()
    d = tmp_path / "nginx"
    (d / "www").mkdir(parents=True)
    (d / "www" / "f.bin").write_bytes(bytes(range(256)) * 40)
    conf = d / "nginx.conf"
    conf.write_text(nginx_conf(d, f"""
    sendfile on;
    keepalive_timeout 30;
    server {{ listen 127.0.0.1:{port}; root {d}/www; }}"""))
    nginx = procs.spawn(["nginx", "-p", d, "-e", d / "error.log", "-c", conf, "-g", "daemon off;"], name="nginx")
    wait_listening(port, nginx, what="nginx")
    odd = ("responses_framing_lost", "responses_without_request", "streams_unparsable", "requests_without_response")
    before = counters(collector, {k: 0 for k in odd})
    n = 100
    res = send_each(procs, port, [get_request(port, "/f.bin") for _ in range(n)])
    assert res["statuses"] == [200] * n, res
    clients = collector.spans.wait(client_to(port), 1, timeout=20)
    servers = collector.spans.wait(server_on(port), len(clients), timeout=10)
    after = counters(collector, {k: 0 for k in odd})
    assert 0 < len(clients) < n, len(clients)
    assert sorted(s["trace_id"] for s in servers) == sorted(s["trace_id"] for s in clients), brief(servers[:5])
    assert all(s["attrs"].get("http.response.body.size") == 10240 for s in servers + clients), brief(servers[:5])
    assert {k: after[k] - before[k] for k in odd} == {k: 0 for k in odd}, (before, after)
    assert after["requests_unsampled_in_kernel"] - before["requests_unsampled_in_kernel"] == n - len(servers)
