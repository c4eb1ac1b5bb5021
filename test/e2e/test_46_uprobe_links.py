"""Uprobes are attached as uprobe_multi links (Linux 6.6+): one link per program and file
for all its offsets. The kernel removes a perf-event uprobe with a grace period of its own,
one after another (2.5 s per Go program using net/http, measured), so a collector probing
many Go programs took minutes to exit; a multi link waits once. Read from the kernel: the
collector's own descriptors (/proc/<pid>/fdinfo) and the programs' names (bpftool).
The probes of an executable deleted and run by no process any more are removed (a program
built, run and deleted, as `go test` does, would keep them for the collector's life); one
still on disk keeps them. Older kernels get perf-event uprobes: that path is forced here with
OTELCOL_EBPF_PERF_UPROBES=1 and must trace the same."""

import os
import re
import time
from pathlib import Path

from e2elib import Collector, and_, bpf_progs, counters_settled, free_port, go_build, path_is, run_curl, \
    server_on, until_parented, wait_listening, wait_until

LIBSSL = "/usr/lib/x86_64-linux-gnu/libssl.so.3"


def links_held_by(pid: int) -> list[dict]:
    """Every BPF link process pid holds: link_type, prog_id, path and offsets when it has them."""
    out = []
    for fdinfo in Path(f"/proc/{pid}/fdinfo").glob("*"):
        try:
            text = fdinfo.read_text()
        except OSError:
            continue
        m = re.search(r"^link_type:\s*(\S+)", text, re.M)
        if not m:
            continue
        link = {"type": m.group(1), "prog_id": int(re.search(r"^prog_id:\s*(\d+)", text, re.M).group(1))}
        path = re.search(r"^path:\s*(.+)$", text, re.M)
        if path:
            link["path"] = path.group(1)
            link["offsets"] = [int(o, 16) for o in re.findall(r"^\d+\s+(0x[0-9a-f]+)\s+0x", text, re.M)]
            link["cnt"] = int(re.search(r"^uprobe_cnt:\s*(\d+)", text, re.M).group(1))
        out.append(link)
    return out


def go_tls_server_traced(collector, procs, tmp_path, gotls=None):
    """Starts a Go HTTPS server (built unless given), waits for its SERVER span (https);
    returns its executable and process."""
    gotls = gotls or go_build(tmp_path, "gotls")
    port = free_port()
    p = procs.spawn([gotls, "server", port], env_extra={"OTEL_SERVICE_NAME": "gosrv"}, name="gotls-server")
    wait_listening(port, p, what="gotls server")

    def warm(k):
        run_curl(procs, "-k", "-o", "/dev/null", f"https://127.0.0.1:{port}/users/w{k}", check=False)
        got = collector.spans.wait(and_(server_on(port), path_is(f"/users/w{k}")), 1, timeout=2, settle=0)
        return got and got[0]["attrs"].get("url.scheme") == "https"
    until_parented(warm, "the Go program was never probed", timeout=20)
    return gotls, p


def started_line(collector) -> str:
    return next(line for line in collector.log().splitlines() if "eBPF receiver started" in line)


def test_go_and_libssl_probes_are_multi_links(collector, procs, tmp_path):
    gotls, _ = go_tls_server_traced(collector, procs, tmp_path)
    info = started_line(collector)
    assert "(uprobe_multi links)" in info, info
    links = links_held_by(collector.proc.pid)
    # No perf-event uprobe anywhere: libssl's probes are multi links too.
    assert not [x for x in links if x["type"] == "perf"], links
    names = {p["id"]: p.get("name", "") for p in bpf_progs()}

    exe = os.path.realpath(gotls)
    mine = [x for x in links if x.get("path") == exe]
    by_name = {names[x["prog_id"]]: x for x in mine}
    # One link per program (named from their BTF, whole), each with its offsets.
    assert len(by_name) == len(mine), mine
    assert {"on_go_tls_write", "on_go_tls_read", "on_go_tls_read_ret", "on_go_newproc"} <= set(by_name), \
        sorted(by_name)
    assert all(x["type"] == "uprobe_multi" and x["cnt"] == len(x["offsets"]) >= 1 for x in mine), mine
    assert by_name["on_go_tls_write"]["cnt"] == by_name["on_go_tls_read"]["cnt"] == 1, by_name
    assert by_name["on_go_tls_read_ret"]["cnt"] >= 1, by_name  # (*Conn).Read's RETs

    # libssl: an entry link per function, and one return link on all of them.
    ssl = [x for x in links if x.get("path") == os.path.realpath(LIBSSL)]
    ret = [x for x in ssl if x["type"] == "uretprobe_multi"]
    entries = [x for x in ssl if x["type"] == "uprobe_multi"]
    assert len(ret) == 1 and len(entries) == 4, ssl
    assert sorted(ret[0]["offsets"]) == sorted(x["offsets"][0] for x in entries), ssl


def test_probes_of_a_deleted_program_no_process_runs_are_removed(collector, procs, tmp_path):
    gotls, p = go_tls_server_traced(collector, procs, tmp_path)
    exe = os.path.realpath(gotls)
    mine = lambda: [x for x in links_held_by(collector.proc.pid) if x.get("path") == exe]  # noqa: E731
    assert len(mine()) >= 4, mine()
    scans = 7  # seconds: two of the receiver's 3 s scans

    # Stopped but still on disk: kept, since it may run again (and does).
    p.kill()
    p.wait()
    time.sleep(scans)
    assert len(mine()) >= 4, mine()
    _, p = go_tls_server_traced(collector, procs, tmp_path, gotls)

    # Deleted while it runs: kept while it runs.
    os.unlink(gotls)
    time.sleep(scans)
    kept = [x for x in links_held_by(collector.proc.pid) if x.get("path") == exe + " (deleted)"]
    assert len(kept) >= 4, links_held_by(collector.proc.pid)
    before = counters_settled(collector, {"go_programs_released": 0})["go_programs_released"]

    # Deleted and stopped: removed at the next scan, the links closed on a thread of their own.
    p.kill()
    p.wait()
    assert wait_until(lambda: not [x for x in links_held_by(collector.proc.pid)
                                   if x.get("path", "").startswith(exe)], timeout=15), links_held_by(collector.proc.pid)
    # (Other tests' programs may go in the same scan.)
    assert counters_settled(collector, {"go_programs_released": before + 1})["go_programs_released"] >= before + 1


def test_perf_event_uprobes_trace_the_same(collectors, procs, tmp_path):
    collectors.stop()  # one collector at a time: two would both insert headers
    c = Collector({}, tmp_path / "collector")
    c.env["OTELCOL_EBPF_PERF_UPROBES"] = "1"
    c.start()
    try:
        assert "(perf-event uprobes (no uprobe_multi: OTELCOL_EBPF_PERF_UPROBES is set))" in started_line(c)
        go_tls_server_traced(c, procs, tmp_path)
        links = links_held_by(c.proc.pid)
        assert not [x for x in links if x["type"].endswith("uprobe_multi")], links
        # libssl's 8 and the Go program's (at least 3 for TLS and 3 for its goroutines).
        assert len([x for x in links if x["type"] == "perf"]) >= 14, links
    finally:
        assert c.stop() == 0, c.log()[-3000:]
