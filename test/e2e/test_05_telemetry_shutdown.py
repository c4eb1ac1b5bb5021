"""The collector's own telemetry, then a clean shutdown that leaves no eBPF program
behind. Runs last among the modules that use the `ebpf: {}` collector: it stops it."""

import time

from e2elib import BPF_PROG_NAMES, SERVER, bpf_progs, brief, prog_ids_held_by, run_client, server_on


def test_telemetry_metrics(collector, procs, app):
    _, port = app
    run_client(procs, port, [{"path": "/users/1"}, {"path": "/users/2"}])
    spans = collector.spans.wait(server_on(port), 2)
    assert len(spans) == 2, brief(spans)

    names = {n for n, _, _ in collector.metrics()}
    ebpf = sorted(n for n in names if n.startswith("otelcol_ebpf_"))
    emitted = collector.ebpf_counter("spans_emitted")
    assert emitted is not None and emitted > 0, ebpf
    read = collector.ebpf_counter("events_read")
    assert read is not None and read > 0, ebpf
    assert collector.ebpf_counter("events_lost") is not None, ebpf
    accepted = collector.metric("otelcol_receiver_accepted_spans", receiver="ebpf")
    assert accepted is not None and accepted > 0, sorted(n for n in names if n.startswith("otelcol_receiver"))
    # Every span the file holds went through the receiver's accounting.
    assert accepted >= len([s for s in collector.spans.refresh() if s["kind"] == SERVER and s["attrs"].get("network.local.port") == port])


def test_exited_processes_are_forgotten(collector, procs, app):
    # 40 short-lived clients: each is traced while it lives and forgotten when it exits
    # (the gauge would only grow if exits were not reported).
    _, port = app
    before = collector.ebpf_counter("processes_traced")
    for i in range(40):
        run_client(procs, port, [{"path": f"/users/{i}"}])
    assert len(collector.spans.wait(server_on(port), 40)) >= 40
    time.sleep(2.5)  # the gauge is refreshed every second
    after = collector.ebpf_counter("processes_traced")
    assert after is not None and after < before + 20, (before, after)


def test_shutdown_leaves_no_programs(collectors):
    c = collectors.get({})
    held = prog_ids_held_by(c.pid)
    running = {p["id"]: p.get("name") for p in bpf_progs() if p["id"] in held}
    assert BPF_PROG_NAMES <= set(running.values()), f"our programs are not loaded while running: {running}"

    rc = collectors.stop()
    assert rc == 0, f"collector exit code after SIGTERM: {rc}\n{c.log()[-4000:]}"

    # The kernel frees programs asynchronously after the last fd is gone: allow it a moment.
    deadline = time.monotonic() + 10
    left = [p for p in bpf_progs() if p["id"] in held]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in bpf_progs() if p["id"] in held]
    assert not left, f"programs left after shutdown: {left}"
    assert "panic" not in c.log().lower(), c.log()[-4000:]
