"""Fixtures of the end-to-end suite: the environment check (root, tools, the collector
binary), the collector manager, per-test process tracking and app launchers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2elib import (  # noqa: E402
    COLLECTOR_BIN,
    CollectorManager,
    Procs,
    free_port,
    require_tools,
    start_app,
)

TOOLS = ("curl", "nginx", "bpftool")


@pytest.fixture(scope="session", autouse=True)
def environment():
    """The suite fails (never skips) when it cannot run for real."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the e2e suite must run as root (it loads eBPF programs)")
    missing = require_tools(*TOOLS)
    if missing:
        problems.append(f"missing tools: {', '.join(missing)} (make deps installs them)")
    if sys.version_info < (3, 11):
        problems.append(f"python 3.11+ needed, this is {sys.version}")
    if not COLLECTOR_BIN.exists():
        problems.append(f"{COLLECTOR_BIN} is missing: run make build first")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def collectors(tmp_path_factory):
    mgr = CollectorManager(tmp_path_factory.mktemp("collectors"))
    yield mgr
    mgr.stop()


@pytest.fixture(scope="module")
def collector(collectors):
    """The collector with `ebpf: {}`: every process on the host is traced."""
    return collectors.get({})


@pytest.fixture
def procs(tmp_path):
    p = Procs(tmp_path)
    yield p
    p.cleanup()


@pytest.fixture
def port():
    return free_port()


@pytest.fixture
def app(procs, port):
    """Starts app.py on a fresh port; returns (process, port)."""
    return start_app(procs, port), port
