"""The receiver in the pipelines SREs run, with the shipped config files as they are (only
ports, the traced processes and the output file laid over them):

- config/otelcol-ebpf.yaml (`make run`): RED metrics whose latency buckets carry exemplars
  pointing at exported spans, and a service graph edge between two services;
- config/examples/tail-sampling.yaml: health checks filtered out, every error and slow trace
  kept, a share of the rest;
- config/examples/agent-loadbalancing.yaml → two collectors running
  config/examples/gateway-tail-sampling.yaml: a trace through three services reaches one
  gateway whole, and is kept or dropped whole; error traces are always kept.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections import defaultdict

from e2elib import (
    REPO,
    SERVER,
    STATUS_ERROR,
    Collector,
    brief,
    free_port,
    run_client,
    run_curl,
    start_app,
    wait_until,
)

EXAMPLES = REPO / "config" / "examples"


def overlay(c: Collector, doc: dict) -> None:
    """Lays `doc` over the collector's config (maps merge, lists are replaced)."""
    path = c.workdir / f"overlay-{len(c.overlays)}.yaml"
    path.write_text(json.dumps(doc, indent=2))
    c.overlays.append(path)


def telemetry(c: Collector) -> dict:
    return {"metrics": {"readers": [{"pull": {"exporter": {"prometheus": {
        "host": "127.0.0.1", "port": c.metrics_port}}}}]}}


def file_exporter(c: Collector) -> dict:
    return {"path": str(c.traces_path), "flush_interval": "100ms"}


def traced_ports(*ports: int) -> dict:
    return {"discovery": {"instrument": [{"open_ports": ",".join(map(str, ports))}]}}


def not_curl(span: dict) -> bool:
    return span["resource"].get("service.name") != "curl"


def shipped(config: str, workdir) -> Collector:
    c = Collector(None, workdir)
    c.config_path = REPO / "config" / config
    return c


def otlp_sink(workdir) -> tuple[Collector, int]:
    """A plain collector: OTLP/gRPC in, the file exporter out."""
    c = Collector(None, workdir)
    port = free_port()
    c.write_config(json.dumps({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}"}}}},
        "exporters": {"file": file_exporter(c)},
        "service": {"telemetry": telemetry(c),
                    "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }))
    return c, port


def stop_all(*cs: Collector) -> None:
    for c in cs:
        c.stop()


def scrape_openmetrics(port: int) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                 headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


def exemplar_lines(text: str):
    """(metric name, its labels, the exemplar's labels) of each sample with an exemplar
    (`name{labels} value # {exemplar labels} value [timestamp]`)."""
    for line in text.splitlines():
        sample, sep, exemplar = line.partition(" # {")
        if sep and not line.startswith("#"):
            name, _, rest = sample.partition("{")
            yield name, labels(rest), labels(exemplar)


def labels(text: str) -> dict:
    return dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', text))


def test_example_config_red_metrics_carry_exemplars_and_a_service_graph(collectors, procs, tmp_path):
    collectors.stop()  # never two eBPF collectors at once
    front, back = free_port(), free_port()
    prom = free_port()
    c = shipped("otelcol-ebpf.yaml", tmp_path / "collector")
    overlay(c, {
        "receivers": {"ebpf": traced_ports(front, back)},
        "exporters": {"prometheus": {"endpoint": f"127.0.0.1:{prom}"}, "file": file_exporter(c)},
        "service": {"telemetry": telemetry(c),
                    "pipelines": {"traces": {"exporters": ["debug", "span_metrics", "service_graph", "file"]}}},
    })
    try:
        c.start()
        start_app(procs, front, env_extra={"OTEL_SERVICE_NAME": "shopfront"})
        start_app(procs, back, env_extra={"OTEL_SERVICE_NAME": "stock"})
        n = 12
        for i in range(n):
            run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{front}/proxy/{back}/users/{i}")
        # front SERVER+CLIENT, back SERVER (curl, a local client of a traced server, may
        # have CLIENT spans too: not what this test is about)
        spans = c.spans.wait(not_curl, 3 * n, timeout=20)
        assert len(spans) == 3 * n, brief(spans)
        spans = c.spans.refresh()
        by_id = {(s["trace_id"], s["span_id"]): s for s in spans}

        def exemplars():
            text = scrape_openmetrics(prom)
            found = [(lbl, ex) for name, lbl, ex in exemplar_lines(text)
                     if name.startswith("traces_span_metrics_duration") and name.endswith("_bucket")]
            graph = [labels(lbl) | {"value": v} for lbl, v in re.findall(
                r'^traces_service_graph_request_total\{([^}]*)\} (\S+)', text, re.M)]
            return (found, graph) if found and graph else None

        # span_metrics and service_graph flush every 15 s (the example's interval).
        got = wait_until(exemplars, timeout=45, interval=1)
        assert got, f"no exemplars or service graph in the OpenMetrics output:\n{scrape_openmetrics(prom)[-3000:]}"
        found, graph = got
        pointing = 0
        for lbl, ex in found:
            span = by_id.get((ex.get("trace_id"), ex.get("span_id")))
            assert span is not None, f"exemplar {ex} points at no exported span"
            assert span["resource"]["service.name"] == lbl["service_name"], (lbl, ex)
            assert span["name"] == lbl["span_name"], (lbl, ex)
            pointing += 1
        assert pointing >= 2, found
        assert {x["service_name"] for x, _ in found} >= {"shopfront", "stock"}, found
        edge = [g for g in graph if g.get("client") == "shopfront" and g.get("server") == "stock"]
        assert edge and float(edge[0]["value"]) == n, graph
    finally:
        c.stop()


def test_tail_sampling_example_filters_health_checks_and_keeps_errors(collectors, procs, tmp_path):
    collectors.stop()
    app = free_port()
    sink, sink_port = otlp_sink(tmp_path / "sink")
    agent = shipped("examples/tail-sampling.yaml", tmp_path / "agent")
    agent.env = {"OTLP_ENDPOINT": f"127.0.0.1:{sink_port}", "TAIL_SAMPLING_DECISION_WAIT": "2s"}
    overlay(agent, {"receivers": {"ebpf": traced_ports(app)}, "service": {"telemetry": telemetry(agent)}})
    try:
        sink.start()
        agent.start()
        start_app(procs, app, env_extra={"OTEL_SERVICE_NAME": "shop"})
        plain = 200
        reqs = ([{"path": "/health"}] * 20 + [{"path": "/status/500"}] * 10 + [{"path": "/sleep/700"}] * 5
                + [{"path": f"/users/{i}"} for i in range(plain)])
        statuses = []
        for i in range(0, len(reqs), 50):  # the client's output line stays short
            _, out = run_client(procs, app, reqs[i:i + 50])
            statuses += [r.get("status") for r in out["responses"]]
        assert statuses.count(200) == 20 + 5 + plain and statuses.count(500) == 10, statuses
        # The sleeps come first in the decisions: wait for them, then for the share of the rest.
        spans = sink.spans.wait(lambda s: s["attrs"].get("url.path") == "/sleep/700", 5, timeout=30)
        spans = sink.spans.wait(lambda s: s["attrs"].get("network.local.port") == app, 16, timeout=30, settle=4)
        paths = defaultdict(list)
        for s in spans:
            assert s["kind"] == SERVER, brief([s])
            paths[s["attrs"]["url.path"]].append(s)
        assert "/health" not in paths, "the filter let health checks through"
        errors = paths.pop("/status/500", [])
        assert len(errors) == 10 and all(s["status_code"] == STATUS_ERROR for s in errors), brief(errors)
        assert len(paths.pop("/sleep/700", [])) == 5
        kept = sum(len(v) for v in paths.values())
        assert set(paths) <= {f"/users/{i}" for i in range(plain)}, set(paths)
        # 10% of 200, drawn from random trace ids: 1..60 leaves a one-in-a-billion false alarm.
        assert 1 <= kept <= 60, kept
    finally:
        stop_all(agent, sink)


def test_agent_to_gateway_tier_samples_whole_traces(collectors, procs, tmp_path):
    collectors.stop()
    gateways = []
    for i in range(2):
        g = shipped("examples/gateway-tail-sampling.yaml", tmp_path / f"gateway-{i}")
        g.grpc_port = free_port()  # type: ignore[attr-defined]
        g.env = {"TAIL_SAMPLING_DECISION_WAIT": "3s", "SAMPLING_PERCENTAGE": "50",
                 "OTLP_GRPC_ENDPOINT": f"127.0.0.1:{g.grpc_port}"}  # type: ignore[attr-defined]
        overlay(g, {"exporters": {"file": file_exporter(g)},
                    "service": {"telemetry": telemetry(g), "pipelines": {"traces": {"exporters": ["file"]}}}})
        gateways.append(g)
    front, orders, payments = free_port(), free_port(), free_port()
    agent = shipped("examples/agent-loadbalancing.yaml", tmp_path / "agent")
    overlay(agent, {
        "receivers": {"ebpf": traced_ports(front, orders, payments) | {"context_propagation": "headers"}},
        "exporters": {"loadbalancing": {"resolver": {"static": {
            "hostnames": [f"127.0.0.1:{g.grpc_port}" for g in gateways]}}},  # type: ignore[attr-defined]
            "file": file_exporter(agent)},
        "service": {"telemetry": telemetry(agent),
                    "pipelines": {"traces": {"exporters": ["loadbalancing", "file"]}}},
    })
    try:
        for g in gateways:
            g.start()
        agent.start()
        for port, name in ((front, "frontend"), (orders, "orders"), (payments, "payments")):
            start_app(procs, port, env_extra={"OTEL_SERVICE_NAME": name})
        ok, failing = 40, 10
        for i in range(ok + failing):
            leaf = f"users/{i}" if i < ok else "status/500"
            run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{front}/proxy/{orders}/proxy/{payments}/{leaf}")
        # Every trace: frontend SERVER+CLIENT, orders SERVER+CLIENT, payments SERVER (and
        # curl's CLIENT as a local client of a traced server, left out here).
        seen = agent.spans.wait(not_curl, 5 * (ok + failing), timeout=30)
        traces = defaultdict(list)
        for s in seen:
            traces[s["trace_id"]].append(s)
        assert len(traces) == ok + failing and all(len(v) == 5 for v in traces.values()), brief(seen)
        assert all({x["resource"]["service.name"] for x in v} == {"frontend", "orders", "payments"}
                   for v in traces.values())
        errored = {t for t, v in traces.items() if any(x["status_code"] == STATUS_ERROR for x in v)}
        assert len(errored) == failing

        # Decisions come 3 s after a trace's first span; wait for the error traces, then settle.
        def kept_errors():
            return errored <= {s["trace_id"] for g in gateways for s in g.spans.refresh()}
        assert wait_until(kept_errors, timeout=30), "an error trace was not kept"
        for g in gateways:
            g.spans.wait(lambda s: True, 1, timeout=10, settle=5)
        where = defaultdict(lambda: defaultdict(list))
        for i, g in enumerate(gateways):
            for s in filter(not_curl, g.spans.refresh()):
                where[s["trace_id"]][i].append(s)
        assert set(where) <= set(traces)
        for trace_id, parts in where.items():
            assert len(parts) == 1, f"trace {trace_id} split across gateways: {dict(parts)}"
            (spans,) = parts.values()
            assert sorted(s["span_id"] for s in spans) == sorted(s["span_id"] for s in traces[trace_id]), \
                f"trace {trace_id} kept in part: {brief(spans)}"
        kept_ok = set(where) - errored
        # 50% of 40 whole traces: 1..39 fails once in 10^12 runs.
        assert 1 <= len(kept_ok) <= ok - 1, len(kept_ok)
        assert all(any(where[t][i] for t in where) for i in range(2)), "one gateway got no trace at all"
    finally:
        stop_all(agent, *gateways)
