"""Resource attributes of where a span came from, and the discovery selectors on cgroups.

The test makes cgroups under the cgroup v2 root the way container runtimes name them
(Docker's `docker-<id>.scope`, a kubelet's systemd slices `kubepods-...-pod<uid>.slice/
cri-containerd-<id>.scope`, its cgroupfs `kubepods/burstable/pod<uid>/<id>`) with ids it
chooses, starts real servers in them (a shell writes its pid into cgroup.procs, then execs
the server, as runc does) and checks that their spans carry exactly those ids. A Go program
built from a git checkout tagged v1.4.2 carries that version. The cgroups are removed
afterwards."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from e2elib import APPS, PYTHON, brief, client_to, free_port, run_curl, server_on, start_app, wait_listening

TAG = "v1.4.2"
PREFIX = f"otelcol-e2e-{os.getpid()}"


def cgroup2_root() -> Path:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or .../unified on a
    hybrid host)."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        f = line.split()
        if len(f) > 2 and f[2] == "cgroup2":
            return Path(f[1])
    raise AssertionError("no cgroup v2 mount: the receiver's cgroup features need one")


class Cgroups:
    """cgroups made by one test under <v2 root>/<PREFIX>.slice; removed by cleanup()."""

    def __init__(self):
        self.root = cgroup2_root()
        self.made: list[Path] = []

    def make(self, rel: str) -> Path:
        path = self.root / f"{PREFIX}.slice" / rel
        parts = path.relative_to(self.root).parts
        for i in range(1, len(parts) + 1):
            d = self.root.joinpath(*parts[:i])
            if not d.exists():
                d.mkdir()
                self.made.append(d)
        return path

    def cleanup(self) -> None:
        # Deepest first; a cgroup whose last process just exited may still be busy.
        for d in sorted(set(self.made), key=lambda p: len(p.parts), reverse=True):
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
        left = [str(d) for d in self.made if d.exists()]
        self.made.clear()
        assert not left, f"cgroups left behind: {left}"


@pytest.fixture
def cgroups(procs):
    c = Cgroups()
    yield c
    procs.cleanup()  # a cgroup with processes in it cannot be removed
    c.cleanup()


def docker_shaped(cgroups: Cgroups) -> tuple[Path, str]:
    cid = secrets.token_hex(32)
    return cgroups.make(f"docker-{cid}.scope"), cid


def kubepods_shaped(cgroups: Cgroups, systemd: bool = True) -> tuple[Path, str, str]:
    cid, uid = secrets.token_hex(32), str(uuid.uuid4())
    if systemd:
        u = uid.replace("-", "_")
        rel = f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{cid}.scope"
    else:
        rel = f"kubepods/burstable/pod{uid}/{cid}"
    return cgroups.make(rel), cid, uid


def in_cgroup(cg: Path, args: list) -> list:
    """args run inside cgroup cg: a shell moves itself there, then execs them."""
    return ["sh", "-c", 'cg=$1; shift; echo $$ > "$cg/cgroup.procs" && exec "$@"', "sh", cg, *args]


def start_app_in(procs, cg: Path, port: int, env_extra: dict | None = None):
    p = procs.spawn(in_cgroup(cg, [PYTHON, APPS / "app.py", port]), env_extra=env_extra, name="app-in-cgroup")
    wait_listening(port, p, what=f"app.py in {cg}")
    members = (cg / "cgroup.procs").read_text().split()
    assert str(p.pid) in members, f"{p.pid} not in {cg}: {members}"
    return p


@pytest.fixture(scope="module")
def tagged_go(tmp_path_factory) -> Path:
    """apps/goproxy built as the main module of a git checkout tagged v1.4.2 (Go stamps
    the tag as the module's version with -buildvcs=true; GOFLAGS here says false)."""
    src = tmp_path_factory.mktemp("gosrc")
    shutil.copy(APPS / "goproxy" / "main.go", src / "main.go")
    (src / "go.mod").write_text("module example.com/e2e/goproxy\n\ngo 1.22\n")
    git = ["git", "-c", "user.email=e2e@example.com", "-c", "user.name=e2e", "-C", str(src)]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "goproxy"], ["tag", TAG]):
        subprocess.run(git + cmd, check=True, capture_output=True)
    out = tmp_path_factory.mktemp("gobin") / "goproxy"
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="", GO111MODULE="on")
    r = subprocess.run(["go", "build", "-buildvcs=true", "-o", out, "."], cwd=src, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    info = subprocess.run(["go", "version", "-m", out], capture_output=True, text=True, check=True).stdout
    assert f"mod\texample.com/e2e/goproxy\t{TAG}" in info, info
    return out


def test_container_and_pod_of_a_process(collectors, procs, cgroups):
    c = collectors.get({})
    docker_cg, docker_id = docker_shaped(cgroups)
    pod_cg, pod_cid, pod_uid = kubepods_shaped(cgroups)
    fs_cg, fs_cid, fs_uid = kubepods_shaped(cgroups, systemd=False)
    ports = {name: free_port() for name in ("docker", "pod", "cgroupfs", "host")}
    start_app_in(procs, docker_cg, ports["docker"])
    start_app_in(procs, pod_cg, ports["pod"])
    start_app_in(procs, fs_cg, ports["cgroupfs"])
    start_app(procs, ports["host"])
    for port in ports.values():
        run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{port}/users/1")

    def resource(name):
        got = c.spans.wait(server_on(ports[name]), 1)
        assert len(got) == 1, brief(got)
        return got[0]["resource"]

    r = resource("docker")
    assert r["container.id"] == docker_id, r
    assert "k8s.pod.uid" not in r, r
    r = resource("pod")
    assert (r["container.id"], r["k8s.pod.uid"]) == (pod_cid, pod_uid), r
    r = resource("cgroupfs")
    assert (r["container.id"], r["k8s.pod.uid"]) == (fs_cid, fs_uid), r
    r = resource("host")
    assert "container.id" not in r and "k8s.pod.uid" not in r, r
    # The client (curl, outside every container) has none either.
    clients = c.spans.wait(client_to(ports["docker"]), 1)
    assert len(clients) == 1 and "container.id" not in clients[0]["resource"], brief(clients)


def test_containers_only(collectors, procs, cgroups):
    early_cg, early_id = docker_shaped(cgroups)
    late_cg, late_id = docker_shaped(cgroups)
    early, late, host = free_port(), free_port(), free_port()
    # Running before the collector starts: decided by the start-up scan.
    start_app_in(procs, early_cg, early)
    c = collectors.get({"discovery": {"instrument": [{"containers_only": True}]}})
    # Started afterwards: decided at its exec.
    start_app_in(procs, late_cg, late)
    start_app(procs, host)  # the same server, outside any container
    for port in (early, late, host):
        run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{port}/users/1")

    for port, cid in ((early, early_id), (late, late_id)):
        got = c.spans.wait(server_on(port), 1)
        assert len(got) == 1 and got[0]["resource"]["container.id"] == cid, brief(got)
    assert c.spans.wait(server_on(host), 1, timeout=0) == []
    # curl runs outside any container: no client spans.
    curls = [s for s in c.spans.refresh() if s["kind"] == 3 and s["resource"].get("service.name") == "curl"]
    assert curls == [], brief(curls)


def test_cgroup_path_selector(collectors, procs, cgroups):
    pod_cg, pod_cid, pod_uid = kubepods_shaped(cgroups)
    # A second container of the same pod, excluded by its own path.
    sidecar_cid = secrets.token_hex(32)
    sidecar_cg = cgroups.make(str(pod_cg.parent.relative_to(cgroups.root / f"{PREFIX}.slice"))
                              + f"/cri-containerd-{sidecar_cid}.scope")
    docker_cg, _ = docker_shaped(cgroups)
    u = pod_uid.replace("-", "_")
    c = collectors.get({"discovery": {
        "instrument": [{"cgroup_path": f"/{PREFIX}.slice/kubepods.slice/*-pod{u}.slice/*"}],
        "exclude": [{"cgroup_path": f"*/cri-containerd-{sidecar_cid}.scope"}]}})
    app, sidecar, other, host = free_port(), free_port(), free_port(), free_port()
    start_app_in(procs, pod_cg, app)
    start_app_in(procs, sidecar_cg, sidecar)
    start_app_in(procs, docker_cg, other)
    start_app(procs, host)
    for port in (app, sidecar, other, host):
        run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{port}/users/1")

    got = c.spans.wait(server_on(app), 1)
    assert len(got) == 1, brief(got)
    assert (got[0]["resource"]["container.id"], got[0]["resource"]["k8s.pod.uid"]) == (pod_cid, pod_uid)
    for port in (sidecar, other, host):
        none = c.spans.wait(server_on(port), 1, timeout=0)
        assert none == [], brief(none)


def test_go_module_version_and_environment(collectors, procs, tagged_go, tmp_path):
    c = collectors.get({})
    plain, env_set = free_port(), free_port()
    p = procs.spawn([tagged_go, plain], name="goproxy")
    wait_listening(plain, p, what="goproxy")
    p = procs.spawn([tagged_go, env_set], name="goproxy-env",
                    env_extra={"OTEL_RESOURCE_ATTRIBUTES": "service.namespace=shop,service.version=2.0.1"})
    wait_listening(env_set, p, what="goproxy")
    for port in (plain, env_set):
        run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{port}/v")

    got = c.spans.wait(server_on(plain), 1)
    assert len(got) == 1, brief(got)
    r = got[0]["resource"]
    assert (r["service.name"], r["service.version"]) == ("goproxy", TAG), r
    assert "service.namespace" not in r, r
    got = c.spans.wait(server_on(env_set), 1)
    assert len(got) == 1, brief(got)
    r = got[0]["resource"]
    # The environment wins over the build info.
    assert (r["service.namespace"], r["service.version"]) == ("shop", "2.0.1"), r
    # A program that is not Go has no version to tell.
    py = free_port()
    start_app(procs, py)
    run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{py}/users/1")
    got = c.spans.wait(server_on(py), 1)
    assert len(got) == 1 and "service.version" not in got[0]["resource"], brief(got)


def test_collectors_are_excluded_by_default(collectors, procs, tagged_go, tmp_path):
    # The same Go server under a collector's name.
    imposter = tmp_path / "otelcol-imposter"
    shutil.copy(tagged_go, imposter)

    def start(port):
        p = procs.spawn([imposter, port], name="otelcol-imposter")
        wait_listening(port, p, what="otelcol-imposter")
        return p

    # Decided at its exec by the default {}.
    c = collectors.get({})
    port = free_port()
    start(port)
    run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{port}/v")
    # curl's client span shows the exchange happened and was seen.
    assert len(c.spans.wait(client_to(port), 1)) == 1
    assert c.spans.wait(server_on(port), 1, timeout=0) == []
    procs.cleanup()

    # Running before the collector starts (the default written out, so that a new
    # collector starts): decided by the start-up scan.
    early = free_port()
    start(early)
    c = collectors.get({"default_exclude": [{"exe_name": "*otelcol*"}]})
    assert "and default_exclude (" in c.log(), c.log()[-3000:]
    run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{early}/v")
    assert len(c.spans.wait(client_to(early), 1)) == 1
    assert c.spans.wait(server_on(early), 1, timeout=0) == []
    procs.cleanup()

    # default_exclude: [] traces it.
    c = collectors.get({"default_exclude": []})
    port = free_port()
    start(port)
    run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{port}/v")
    got = c.spans.wait(server_on(port), 1)
    assert len(got) == 1 and got[0]["resource"]["service.name"] == "otelcol-imposter", brief(got)
    assert got[0]["resource"]["service.version"] == TAG
