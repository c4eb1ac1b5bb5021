"""Least privilege, for real: the collector runs as the non-root user of
deploy/systemd/otelcol-ebpf.service with exactly the unit's capability set (parsed from
the unit, so the two cannot drift) and the unit's hardening that could touch tracing
emulated (NoNewPrivileges; ProtectSystem=strict, ProtectKernelTunables and
ProtectControlGroups as read-only mounts; ProtectHome as empty read-only mounts), and
traces servers run by root and by another user: plaintext, TLS (uprobes), and a call
from one to the other with the traceparent the kernel inserted. Without one of the
capabilities the programs need, start-up stops naming it."""

from __future__ import annotations

import os
import platform
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from e2elib import (
    APPS,
    COLLECTOR_BIN,
    CLIENT,
    PYTHON,
    REPO,
    SERVER,
    Collector,
    and_,
    brief,
    client_to,
    counters_settled,
    free_port,
    path_is,
    run_curl,
    server_on,
    wait_listening,
)

UNIT = REPO / "deploy" / "systemd" / "otelcol-ebpf.service"
OTHER_USER = "nobody"
# The other user's interpreter: root's python may live under /root (pyenv).
SYSTEM_PYTHON = "/usr/bin/python3"
CAP_BITS = {"CAP_DAC_READ_SEARCH": 2, "CAP_NET_ADMIN": 12, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21,
            "CAP_PERFMON": 38, "CAP_BPF": 39}


def unit_settings() -> dict[str, str]:
    out = {}
    for line in UNIT.read_text().splitlines():
        m = re.fullmatch(r"\s*([A-Za-z]+)=(.*)", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


UNIT_CFG = unit_settings()
USER = UNIT_CFG["User"]
CAPS = UNIT_CFG["AmbientCapabilities"].split()


def kernel_at_least(major: int, minor: int) -> bool:
    m = re.match(r"(\d+)\.(\d+)", platform.release())
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (major, minor)


def ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                        "/usr/sbin/nologin", name], check=True, capture_output=True)
        return pwd.getpwnam(name)


def setpriv_caps(caps: list[str]) -> str:
    return ",".join(["-all", *(f"+{c.removeprefix('CAP_').lower()}" for c in caps)])


def hardened(cmd: list[str], writable: Path) -> list[str]:
    """cmd in a private mount namespace shaped like the unit's sandbox: everything
    read-only but `writable` (ReadWritePaths), /home and /root empty, no new privileges."""
    ro = ["/", "/sys", "/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/proc/sys"]
    script = [f"mount --bind {writable} {writable}", "mount --bind /proc/sys /proc/sys"]
    script += [f"mount -o remount,bind,ro {m}" for m in ro if os.path.ismount(m) or m == "/proc/sys"]
    script += [f"mount -t tmpfs -o ro,mode=0755 tmpfs {h}" for h in ("/home", "/root") if os.path.isdir(h)]
    script.append('exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", "; ".join(script), "sh", *cmd]


class PrivCollector(Collector):
    """The collector as the unit's user, with exactly `caps` (inheritable, ambient and
    bounding), under the emulated sandbox."""

    def __init__(self, caps: list[str], workdir: Path):
        super().__init__({}, workdir)
        self.caps = caps
        self.user = pwd.getpwnam(USER)
        # Its own metrics port is not traced: counter reads stay out of the counters.
        self.receiver["exclude_ports"] = [self.metrics_port]
        os.chown(self.workdir, self.user.pw_uid, self.user.pw_gid)

    def launch(self):
        assert COLLECTOR_BIN.exists(), f"{COLLECTOR_BIN} is missing: build it first (make build)"
        if not self.config_path.exists():
            self.write_config()
        c = setpriv_caps(self.caps)
        cmd = ["setpriv", f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}", "--init-groups",
               "--no-new-privs", f"--inh-caps={c}", f"--ambient-caps={c}", f"--bounding-set={c}",
               str(COLLECTOR_BIN), "--config", str(self.config_path)]
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(hardened(cmd, self.workdir), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir, start_new_session=True,
                                         env={**os.environ, **self.env})
        finally:
            log.close()
        return self.proc


@pytest.fixture(scope="module")
def workroot(collectors):
    """A directory every user can reach (pytest's are root's alone); no other collector runs."""
    collectors.stop()
    ensure_user(USER)
    d = Path(tempfile.mkdtemp(prefix="otelcol-e2e-lp-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def cert(workroot):
    d = workroot / "tls"
    d.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "key.pem",
                    "-out", d / "cert.pem", "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True)
    for f in d.iterdir():
        os.chmod(f, 0o644)
    return d / "cert.pem", d / "key.pem"


def as_other(args: list) -> list:
    return ["setpriv", f"--reuid={OTHER_USER}", f"--regid={pwd.getpwnam(OTHER_USER).pw_gid}", "--clear-groups",
            *args]


def test_unit_caps_are_the_measured_set():
    assert UNIT_CFG["CapabilityBoundingSet"].split() == CAPS
    assert set(CAPS) == set(CAP_BITS), CAPS
    assert UNIT_CFG["NoNewPrivileges"] == "yes" and UNIT_CFG["ProtectSystem"] == "strict"
    assert UNIT_CFG["ProtectHome"] == "yes" and UNIT_CFG["ProtectControlGroups"] == "yes"
    assert UNIT_CFG["ProtectKernelTunables"] == "yes"
    assert "ProtectProc" not in UNIT_CFG and "ProcSubset" not in UNIT_CFG  # other users' /proc must stay visible


def test_non_root_collector_traces_every_user(workroot, procs, cert):
    c = PrivCollector(CAPS, workroot / "collector")
    c.start()
    try:
        status = Path(f"/proc/{c.pid}/status").read_text()
        uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
        eff = int(re.search(r"^CapEff:\s+([0-9a-f]+)", status, re.M).group(1), 16)
        assert uid == pwd.getpwnam(USER).pw_uid
        assert eff == sum(1 << CAP_BITS[x] for x in CAPS), hex(eff)
        assert "NoNewPrivs:\t1" in status
        info = next(line for line in c.log().splitlines() if "eBPF receiver started" in line)
        assert "context propagation: traceparent headers" in info, info
        assert "running without" not in info, info

        # A backend run by another user, a front end run by root that calls it.
        back, front, tls = free_port(), free_port(), free_port()
        pb = procs.spawn(as_other([SYSTEM_PYTHON, APPS / "app.py", back]), name="back",
                         env_extra={"OTEL_SERVICE_NAME": "back-nobody"})
        wait_listening(back, pb, what="app.py as nobody")
        pf = procs.spawn([PYTHON, APPS / "app.py", front], name="front", env_extra={"OTEL_SERVICE_NAME": "front-root"})
        wait_listening(front, pf, what="app.py as root")
        pt = procs.spawn(as_other([SYSTEM_PYTHON, APPS / "https_app.py", tls, *cert]), name="tls",
                         env_extra={"OTEL_SERVICE_NAME": "tls-nobody"})
        wait_listening(tls, pt, what="https_app.py as nobody")

        names = {"context_injected": 0, "links_made": 0}
        before = counters_settled(c, names)
        run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{front}/proxy/{back}/users/7")
        run_curl(procs, "-k", "-o", "/dev/null", f"https://127.0.0.1:{tls}/users/9")

        fs = c.spans.wait(and_(server_on(front), path_is(f"/proxy/{back}/users/7")), 1)
        fc = c.spans.wait(and_(client_to(back), path_is("/users/7")), 1)
        bs = c.spans.wait(and_(server_on(back), path_is("/users/7")), 1)
        ts = c.spans.wait(and_(server_on(tls), path_is("/users/9")), 1)
        assert [len(fs), len(fc), len(bs), len(ts)] == [1, 1, 1, 1], brief(fs + fc + bs + ts)
        fs, fc, bs, ts = fs[0], fc[0], bs[0], ts[0]

        assert fs["resource"]["service.name"] == "front-root"
        assert fs["resource"]["process.pid"] == pf.pid
        assert bs["resource"]["service.name"] == "back-nobody"  # its environ: CAP_DAC_READ_SEARCH + CAP_SYS_PTRACE
        assert bs["resource"]["process.pid"] == pb.pid
        assert bs["resource"]["process.executable.path"] == os.path.realpath(SYSTEM_PYTHON)  # its exe link
        assert ts["resource"]["service.name"] == "tls-nobody"
        for s in (fs, bs, ts):
            assert s["kind"] == SERVER and s["attrs"]["http.response.status_code"] == 200, brief([s])
        assert fs["attrs"]["http.route"] == "/proxy/{id}/users/{id}", brief([fs])
        assert bs["name"] == "GET /users/{id}" and bs["attrs"]["url.scheme"] == "http"
        assert ts["name"] == "GET /users/{id}" and ts["attrs"]["url.scheme"] == "https"  # uprobes (uprobe_multi links)
        assert fc["kind"] == CLIENT and fc["attrs"]["url.full"] == f"http://127.0.0.1:{back}/users/7"

        # One trace: front SERVER -> its CLIENT call -> back SERVER, by the inserted header
        # (sk_msg: CAP_NET_ADMIN), not by same-node linking.
        assert (fc["trace_id"], fc["parent_span_id"]) == (fs["trace_id"], fs["span_id"]), brief([fs, fc])
        assert (bs["trace_id"], bs["parent_span_id"]) == (fc["trace_id"], fc["span_id"]), brief([fc, bs])
        # Headers into curl's and the front end's requests; the TLS call is linked on the node.
        got = counters_settled(c, {"context_injected": before["context_injected"] + 2,
                                   "links_made": before["links_made"] + 1})
        assert (got["context_injected"] - before["context_injected"], got["links_made"] - before["links_made"]) \
            == (2, 1), (before, got)
        assert (Path(c.workdir) / "traces.jsonl").stat().st_uid == pwd.getpwnam(USER).pw_uid
    finally:
        assert c.stop() == 0, c.log()[-3000:]


def start_fails(workroot: Path, name: str, caps: list[str]) -> str:
    c = PrivCollector(caps, workroot / name)
    c.launch()
    code = c.wait_exit(60)
    c.stop()
    assert code not in (0, None), f"collector without {name} did not fail: {c.log()[-3000:]}"
    return c.log()


@pytest.mark.parametrize("dropped", ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"])
def test_start_up_names_a_missing_capability(workroot, dropped):
    # CAP_SYS_ADMIN covers these three in the kernel's checks: dropped with them.
    caps = [x for x in CAPS if x not in (dropped, "CAP_SYS_ADMIN")]
    log = start_fails(workroot, f"no-{dropped}", caps)
    errors = [line for line in log.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, log[-3000:]
    assert f"insufficient privileges: permission denied: missing {dropped} (" in errors[0], errors[0]
    others = {"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"} - {dropped}
    assert not any(f"missing {o}" in errors[0] or f", {o} (" in errors[0] for o in others), errors[0]


def test_without_sys_admin_tls_still_traced(workroot, procs, cert):
    # Linux 6.16 moved perf-event uprobes back to CAP_SYS_ADMIN; uprobe_multi links
    # (6.6+, what the receiver uses) need only CAP_BPF and CAP_PERFMON: HTTPS spans go on.
    assert kernel_at_least(6, 16), platform.release()
    c = PrivCollector([x for x in CAPS if x != "CAP_SYS_ADMIN"], workroot / "no-sys-admin")
    c.start()
    try:
        info = next(line for line in c.log().splitlines() if "eBPF receiver started" in line)
        assert re.search(r"TLS: uprobes on [1-9]\d* libssl file\(s\)", info) and "(uprobe_multi links)" in info, info
        assert "running without" not in info, info
        tls = free_port()
        pt = procs.spawn(as_other([SYSTEM_PYTHON, APPS / "https_app.py", tls, *cert]), name="tls",
                         env_extra={"OTEL_SERVICE_NAME": "tls-nobody"})
        wait_listening(tls, pt, what="https_app.py as nobody")
        run_curl(procs, "-k", "-o", "/dev/null", f"https://127.0.0.1:{tls}/users/9")
        ts = c.spans.wait(and_(server_on(tls), path_is("/users/9")), 1)
        assert len(ts) == 1 and ts[0]["attrs"]["url.scheme"] == "https", brief(ts)
        assert ts[0]["attrs"]["http.response.status_code"] == 200, brief(ts)
    finally:
        assert c.stop() == 0, c.log()[-3000:]


def test_perf_event_uprobes_without_sys_admin_say_so(workroot):
    # On a kernel without uprobe_multi links (forced here), 6.16+ refuses the uprobes
    # without CAP_SYS_ADMIN: the collector runs without TLS and says why.
    c = PrivCollector([x for x in CAPS if x != "CAP_SYS_ADMIN"], workroot / "no-sys-admin-perf")
    c.env["OTELCOL_EBPF_PERF_UPROBES"] = "1"
    c.start()
    try:
        info = next(line for line in c.log().splitlines() if "eBPF receiver started" in line)
        m = re.search(r"running without CAP_SYS_ADMIN \(this kernel refused (\d+) uprobe attach\(es\) without it: "
                      r"no TLS plaintext\)", info)
        assert m and int(m.group(1)) > 0, info
        assert "TLS: uprobes on 0 libssl file(s)" in info, info
        assert "CAP_SYS_PTRACE" not in info and "CAP_DAC_READ_SEARCH" not in info, info
    finally:
        assert c.stop() == 0, c.log()[-3000:]
