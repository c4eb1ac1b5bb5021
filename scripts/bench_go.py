#!/usr/bin/env python3
"""A Go net/http service with goroutine fan-out under wrk, traced vs untraced, in one run
(part of `make bench`; alone: `python3 scripts/bench_go.py`, which also replaces its section
of docs/benchmarks.md). test/e2e/apps/gofanoutstd: each request makes one call on a pooled
http.Client and two from new goroutines, to a Go backend (apps/goback); both built by the
local Go, not stripped. The collector selects the two Go programs (wrk is not traced).
Reports req/s, the apps' CPU per request, the collector's, the eBPF programs' run time,
and how many calls got the right parent under that load (from the exported spans); then
how long the collector takes to exit with 10 Go programs probed, uprobe_multi links vs
perf-event uprobes (OTELCOL_EBPF_PERF_UPROBES=1, the older kernels' way), alternated.
`python3 scripts/bench_go.py --profile`: where the traced app's CPU goes (perf)."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (scripts/bench.py: collector config, metrics, CPU)

CONNS = 16
LEGS = ("a", "b1", "b2")
SECTION = "## Go net/http with goroutine fan-out, traced vs untraced"
SELECT = '{discovery: {instrument: [{exe_path: "*/gofanoutstd"}, {exe_path: "*/goback"}]}}'
UNKNOWN = ("go_context_unknown_no_goid", "go_context_unknown_no_request", "go_context_unknown_stale",
           "go_context_unprobed", "events_lost")
# Each request its own id, so that every call can be matched to its request.
WRK_LUA = """n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/work/%d/%s" .. n)
end
"""


def build(d, app):
    out = f"{d}/{app}"
    subprocess.run(["go", "build", "-o", out, os.path.join(bench.ROOT, "test/e2e/apps", app, "main.go")], check=True,
                   env=dict(os.environ, GO111MODULE="off", CGO_ENABLED="0"))
    return out


def wrk(d, front, back, tag):
    lua = f"{d}/{tag}.lua"
    with open(lua, "w") as f:
        f.write(WRK_LUA % (back, tag))
    out = subprocess.run(["wrk", "-t1", f"-c{CONNS}", f"-d{bench.SECS}s", "-s", lua, f"http://127.0.0.1:{front}/"],
                         capture_output=True, text=True, check=True).stdout
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return reqs, rps, int(bad.group(1)) if bad else 0


def spans_of(path):
    """[(kind, span id, parent id, url.path, local port, peer port)] from a file exporter's output."""
    out = []
    if not os.path.exists(path):
        return out
    for line in open(path):
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for sp in ss["spans"]:
                    a = {x["key"]: x["value"] for x in sp.get("attributes", [])}
                    out.append((sp["kind"], sp["spanId"], sp.get("parentSpanId", ""),
                                a.get("url.path", {}).get("stringValue", ""), bench.port_of(a, "network.local.port"),
                                bench.port_of(a, "network.peer.port")))
    return out


def parents(spans, front, back, tag):
    """Calls (CLIENT to the backend) and callees (the backend's SERVER spans) of the
    requests tagged `tag`, each with the right parent, a wrong one, or none."""
    server = {p.rsplit("/", 1)[1]: sid for k, sid, _, p, lp, _ in spans if k == 2 and lp == front
              and p.startswith(f"/work/{back}/{tag}")}
    calls = {p: (sid, par) for k, sid, par, p, _, pp in spans if k == 3 and pp == back and p.startswith(f"/users/{tag}")}
    callees = {p: par for k, _, par, p, lp, _ in spans if k == 2 and lp == back and p.startswith(f"/users/{tag}")}
    res = dict(requests=len(server), calls=len(calls), callees=len(callees), right=0, wrong=0, none=0,
               callee_right=0, callee_wrong=0, callee_none=0)
    for path, (sid, par) in calls.items():
        want = server.get(path[len("/users/"):].rsplit("-", 1)[0])
        res["none" if not par else "right" if par == want else "wrong"] += 1
        cpar = callees.get(path)
        if cpar is not None:
            res["callee_none" if not cpar else "callee_right" if cpar == sid else "callee_wrong"] += 1
    return res


def warm(traces, front, back):
    """Until the receiver has probed gofanout (its 3 s scan): a request whose fan-out call
    has a parent."""
    deadline = time.monotonic() + 30
    k = 0
    while time.monotonic() < deadline:
        urllib.request.urlopen(f"http://127.0.0.1:{front}/work/{back}/warm{k}", timeout=10).read()
        time.sleep(0.5)
        got = [s for s in spans_of(traces) if s[0] == 3 and s[3] == f"/users/warm{k}-b2"]
        if got and got[0][2]:
            return
        k += 1
    raise SystemExit("gofanout's calls never got a parent: not probed?")


def traced(d, tag, front, back, pids, stats=False, load=None):
    mport = bench.free_port()
    traces = f"{d}/{tag}.jsonl"
    bench.write_config(f"{d}/{tag}.yaml", f"file: {{path: {traces}, flush_interval: 100ms}}", mport, receiver=SELECT)
    if stats:
        subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=1"], check=True)
    col = subprocess.Popen([bench.BIN, "--config", f"{d}/{tag}.yaml"], stdout=subprocess.DEVNULL,
                           stderr=open(f"{d}/{tag}.log", "w"))
    try:
        bench.wait_ready(mport)
        warm(traces, front, back)
        m0 = {k: bench.metric(mport, f"otelcol_ebpf_{k}") for k in UNKNOWN}
        s0 = bench.bpf_prog_stats(col.pid) if stats else {}
        a0, c0 = sum(bench.cpu_us(p) for p in pids), bench.cpu_us(col.pid)
        reqs, rps, bad = (load or wrk)(d, front, back, tag)
        a1 = sum(bench.cpu_us(p) for p in pids)
        s1 = bench.bpf_prog_stats(col.pid) if stats else {}
        time.sleep(2)  # the last spans out
        c1 = bench.cpu_us(col.pid)
        m1 = {k: bench.metric(mport, f"otelcol_ebpf_{k}") for k in UNKNOWN}
    finally:
        col.terminate()
        col.wait(30)
        if stats:
            subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=0"], check=True)
    spans = spans_of(traces)
    os.remove(traces)
    hooks = []
    for name, (n1, t1) in sorted(s1.items()):
        n0, t0 = s0.get(name, (0, 0))
        if n1 > n0:
            hooks.append((name, (n1 - n0) / reqs, (t1 - t0) / (n1 - n0), (t1 - t0) / reqs / 1000))
    return dict(reqs=reqs, rate=rps, bad=bad, app=(a1 - a0) / reqs, collector=(c1 - c0) / reqs,
                spans=len(spans) / reqs, unknown={k: m1[k] - m0[k] for k in UNKNOWN},
                hooks=hooks, **parents(spans, front, back, tag))


def measure_go_fanout(d):
    fanout, goback = build(d, "gofanoutstd"), build(d, "goback")
    front, back = bench.free_port(), bench.free_port()
    apps = [subprocess.Popen([goback, str(back)]), subprocess.Popen([fanout, str(front)])]
    rows = []
    try:
        bench.wait_port(back)
        bench.wait_port(front)
        pids = [p.pid for p in apps]
        wrk(d, front, back, "warmup")
        for i in range(bench.PAIRS):
            a0 = sum(bench.cpu_us(p) for p in pids)
            reqs, base, bad = wrk(d, front, back, f"u{i}")
            app_base = (sum(bench.cpu_us(p) for p in pids) - a0) / reqs
            t = traced(d, f"t{i}", front, back, pids)
            rows.append(dict(base=base, base_bad=bad, app_base=app_base, **t))
            print(f"go fan-out pair {i + 1}: untraced {base:.0f} req/s ({app_base:.1f} us app CPU/req), traced "
                  f"{t['rate']:.0f} ({t['app']:.1f} us/req, collector {t['collector']:.1f} us/req), ratio "
                  f"{t['rate'] / base:.2f}, spans/req {t['spans']:.2f}, calls right {t['right']}/{t['calls']} wrong "
                  f"{t['wrong']} none {t['none']}, callees right {t['callee_right']}/{t['callees']} wrong "
                  f"{t['callee_wrong']}, non-2xx {bad}/{t['bad']}, {t['unknown']}", flush=True)
        hooks = traced(d, "hooks", front, back, pids, stats=True)
        print("go fan-out kernel hooks: " + ", ".join(f"{n} {r:.2f}/req x {ns:.0f} ns" for n, r, ns, _ in hooks["hooks"]),
              flush=True)
    finally:
        for p in apps:
            p.terminate()
            p.wait()
    return dict(rows=rows, hooks=hooks, exit=measure_exit(d, fanout))


EXIT_PROGRAMS = 10


def measure_exit(d, fanout, rounds=3):
    """Seconds from SIGTERM to the collector's exit with EXIT_PROGRAMS Go programs probed
    (copies of one executable: each file is probed on its own), per way of attaching."""
    copies = []
    for i in range(EXIT_PROGRAMS):
        path = f"{d}/exit{i}/gofanoutstd"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copy(fanout, path)
        copies.append(path)
    apps = [subprocess.Popen([c, str(bench.free_port())]) for c in copies]
    out = {"multi": [], "perf": []}
    try:
        time.sleep(1)
        for _ in range(rounds):
            for way in out:
                mport = bench.free_port()
                cfg = f"{d}/exit-{way}.yaml"
                bench.write_config(cfg, "debug: {verbosity: basic}", mport)
                env = dict(os.environ, **({"OTELCOL_EBPF_PERF_UPROBES": "1"} if way == "perf" else {}))
                col = subprocess.Popen([bench.BIN, "--config", cfg], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, env=env)
                bench.wait_ready(mport)  # the running Go programs are probed before this
                t0 = time.monotonic()
                col.terminate()
                assert col.wait(timeout=300) == 0, f"collector ({way}) exited with {col.returncode}"
                out[way].append(time.monotonic() - t0)
                print(f"exit with {EXIT_PROGRAMS} Go programs probed, {way}: {out[way][-1]:.2f} s", flush=True)
    finally:
        for p in apps:
            p.terminate()
            p.wait()
    return out


def profile(d):
    """Where gofanout's CPU goes when traced: `perf record -a -g` over one traced wrk run,
    gofanout's samples split into uprobe traps (the int3 of a probe, the debug exception
    of a single-stepped instruction; by the Go function hit), syscalls and the rest.
    Returns (share of all samples that are gofanout's, [(share of gofanout's, what)])."""
    fanout, goback = build(d, "gofanoutstd"), build(d, "goback")
    front, back = bench.free_port(), bench.free_port()
    apps = [subprocess.Popen([goback, str(back)]), subprocess.Popen([fanout, str(front)])]
    def recorded(*args):
        perf = subprocess.Popen(["perf", "record", "-q", "-a", "-g", "-F", "499", "-o", f"{d}/perf.data", "--",
                                 "sleep", str(bench.SECS)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out = wrk(*args)
        perf.wait()
        return out

    try:
        bench.wait_port(back)
        bench.wait_port(front)
        traced(d, "profile", front, back, [p.pid for p in apps], load=recorded)
    finally:
        for p in apps:
            p.terminate()
            p.wait()
    return split_samples(f"{d}/perf.data")


def split_samples(data):
    script = subprocess.run(["perf", "script", "-i", data, "-F", "comm,ip,sym"], capture_output=True,
                            text=True, check=True).stdout
    total, mine, kinds = 0, 0, {}
    for block in script.split("\n\n"):
        lines = block.strip().splitlines()
        if not lines:
            continue
        total += 1
        if not lines[0].strip().startswith("gofanoutstd"):
            continue
        mine += 1
        syms = [(ln.split(None, 1) + ["?"])[1] for ln in lines[1:]]  # "ip symbol"
        what = "user space and the rest"
        for trap, name in (("asm_exc_debug", "single-step trap (debug exception)"), ("asm_exc_int3", "uprobe int3")):
            if trap in syms:
                i = syms.index(trap)
                what = f"{name} at {syms[i + 1] if i + 1 < len(syms) else '?'}"
                break
        else:
            if any("entry_SYSCALL" in x for x in syms):
                what = "syscalls (eBPF programs at syscalls and sk_msg included)"
        kinds[what] = kinds.get(what, 0) + 1
    return mine / max(total, 1), sorted(((n / max(mine, 1), w) for w, n in kinds.items()), reverse=True)


def report(res) -> str:
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    rows, hooks = res["rows"], res["hooks"]
    lines = [f"""{SECTION}

`scripts/bench_go.py`: `test/e2e/apps/gofanoutstd` (each request: one call on a pooled
`http.Client`, then two calls from new goroutines, `sync.WaitGroup`) in front of a Go backend
(`apps/goback`, answers "ok"), both built by the local Go ({go_version()}), not stripped;
`wrk -t1 -c{CONNS} -d{bench.SECS}s`, each request with its own id. {len(rows)} pairs, untraced and
traced alternated; traced = the receiver selecting the two Go programs (`exe_path`), wrk not
traced: 7 spans per request (gofanout's SERVER, its 3 CLIENTs, goback's 3 SERVERs), headers
inserted. App CPU: utime+stime of both Go processes per request. Parents from the exported
spans: a call is right when its parent is its own request's SERVER span, a callee when its
parent is the call's CLIENT span.

| pair | untraced req/s | traced req/s | ratio | app CPU µs/req untraced | traced | added | collector CPU µs/req | spans/req | calls | right parent | wrong | none | callees right | wrong | none | unknown context (no goid / no request / stale / unprobed) | events lost | non-2xx |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"""]
    for i, r in enumerate(rows):
        u = r["unknown"]
        lines.append(
            f"| {i + 1} | {r['base']:.0f} | {r['rate']:.0f} | {r['rate'] / r['base']:.2f} | {r['app_base']:.1f} | "
            f"{r['app']:.1f} | {r['app'] - r['app_base']:.1f} | {r['collector']:.1f} | {r['spans']:.2f} | {r['calls']} | "
            f"{r['right']} ({r['right'] / max(r['calls'], 1):.1%}) | {r['wrong']} | {r['none']} | {r['callee_right']} | "
            f"{r['callee_wrong']} | {r['callee_none']} | {u['go_context_unknown_no_goid']:.0f} / "
            f"{u['go_context_unknown_no_request']:.0f} / {u['go_context_unknown_stale']:.0f} / "
            f"{u['go_context_unprobed']:.0f} | {u['events_lost']:.0f} | {r['base_bad']} / {r['bad']} |")
    calls, right = sum(r["calls"] for r in rows), sum(r["right"] for r in rows)
    lines.append(f"""
Median ratio traced/untraced: **{med([r['rate'] / r['base'] for r in rows]):.2f}**; added app CPU:
**{med([r['app'] - r['app_base'] for r in rows]):.1f} µs per request** (on {med([r['app_base'] for r in rows]):.1f} µs untraced); collector:
**{med([r['collector'] for r in rows]):.1f} µs per request**. Calls with the right parent: **{right} of {calls}
({right / max(calls, 1):.2%})**, with a wrong one: **{sum(r['wrong'] for r in rows)}**; callees with the right parent:
{sum(r['callee_right'] for r in rows)} of {sum(r['callees'] for r in rows)}, wrong: {sum(r['callee_wrong'] for r in rows)}.

The eBPF programs' own run time (`kernel.bpf_stats_enabled=1`, one more traced run of
{hooks['reqs']} requests, {hooks['rate']:.0f} req/s): runs per request and mean time. A uprobe's trap
itself (the int3, and the single-step where the kernel cannot emulate the instruction) is not in these figures; it is in the app CPU above.

| program | runs per request | ns per run | µs per request |
|---|---|---|---|""")
    lines += [f"| {n} | {r:.2f} | {ns:.0f} | {us:.2f} |" for n, r, ns, us in hooks["hooks"]]
    lines.append(f"\nTotal: **{sum(h[3] for h in hooks['hooks']):.2f} µs per request** in the eBPF programs.")
    ex = res["exit"]
    lines.append(f"""
Collector exit (SIGTERM to exit) with {EXIT_PROGRAMS} Go programs probed (net/http, each its own
file), {len(ex['multi'])} rounds alternated. Closing a perf-event uprobe waits a grace period per
probe, one after another in the kernel; a uprobe_multi link waits once, and the links are
closed from several threads (`loader/uprobes.rs`).

| uprobes attached as | exit, s (median) | rounds |
|---|---|---|
| uprobe_multi links (Linux 6.6+) | **{med(ex['multi']):.2f}** | {', '.join(f'{x:.2f}' for x in ex['multi'])} |
| perf-event uprobes (older kernels; `OTELCOL_EBPF_PERF_UPROBES=1`) | **{med(ex['perf']):.2f}** | {', '.join(f'{x:.2f}' for x in ex['perf'])} |""")
    return "\n".join(lines) + "\n"


def go_version():
    return subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True).stdout.strip()


def splice(section):
    """Replaces this section of docs/benchmarks.md (or adds it before the notes)."""
    path = os.path.join(bench.ROOT, "docs/benchmarks.md")
    doc = open(path).read()
    if SECTION in doc:
        start = doc.index(SECTION)
        ends = [i for i in (doc.find("\n## ", start + 1), doc.find(bench.NOTES_MARK, start)) if i != -1]
        end = min(ends) if ends else len(doc)
        doc = doc[:start] + section + "\n" + doc[end:].lstrip("\n")
    elif bench.NOTES_MARK in doc:
        i = doc.index(bench.NOTES_MARK)
        doc = doc[:i] + section + "\n" + doc[i:]
    else:
        doc += "\n" + section
    with open(path, "w") as f:
        f.write(doc)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("needs root (the collector loads eBPF programs)")
    os.environ.setdefault("GOGC", "200")
    if sys.argv[1:] == ["--profile"]:  # not part of make bench: printed only
        share, rows = profile(tempfile.mkdtemp())
        print(f"gofanout: {share:.0%} of all samples; of its own:")
        print("\n".join(f"{pct:6.1%}  {what}" for pct, what in rows))
        sys.exit(0)
    text = report(measure_go_fanout(tempfile.mkdtemp()))
    print(text)
    splice(text)
