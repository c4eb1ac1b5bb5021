"""The three-service chain across two network namespaces joined by a veth pair (two
"hosts" on one machine, one collector): one connected trace per request, by inserted trace
headers (`context_propagation: headers`) or, with `off`, by same-node linking on the veth
addresses and in-process parenting."""

import concurrent.futures
import subprocess
import sys
import time

import pytest

from e2elib import (
    APPS,
    CHAIN_SHAPE,
    brief,
    check_propagation_counters,
    free_port,
    payment_chains,
    propagation_before,
    shape,
    touches,
)

NS_A, NS_B = "otelebpf-e2e-a", "otelebpf-e2e-b"
# Addresses of the test's own veth pair, inside its own namespaces only.
ADDR_A, ADDR_B = "10.213.7.1", "10.213.7.2"


# The other order than test_11: its last collector is reused for the first mode here.
@pytest.fixture(scope="module", params=["off", "headers"])
def propagation(request):
    return request.param


@pytest.fixture(scope="module")
def collector(collectors, propagation):
    return collectors.get({"context_propagation": propagation})


def sh(*args):
    subprocess.run(args, check=True, capture_output=True)


@pytest.fixture(scope="module")
def namespaces():
    for ns in (NS_A, NS_B):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    sh("ip", "netns", "add", NS_A)
    sh("ip", "netns", "add", NS_B)
    try:
        sh("ip", "link", "add", "veth-oe-a", "type", "veth", "peer", "name", "veth-oe-b")
        sh("ip", "link", "set", "veth-oe-a", "netns", NS_A)
        sh("ip", "link", "set", "veth-oe-b", "netns", NS_B)
        for ns, dev, addr in ((NS_A, "veth-oe-a", ADDR_A), (NS_B, "veth-oe-b", ADDR_B)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield
    finally:
        for ns in (NS_A, NS_B):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def listening_in(ns, port):
    out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Hltn"], capture_output=True, text=True).stdout
    return any(line.split()[3].endswith(f":{port}") for line in out.splitlines() if len(line.split()) > 3)


def start_in(procs, ns, port, name, bind):
    p = procs.spawn(["ip", "netns", "exec", ns, sys.executable, APPS / "app.py", port, bind],
                    env_extra={"OTEL_SERVICE_NAME": name}, name=name)
    deadline = time.monotonic() + 15
    while not listening_in(ns, port):
        assert p.poll() is None and time.monotonic() < deadline, procs.output_of(p)
        time.sleep(0.05)
    return p


def test_chain_across_namespaces(namespaces, collector, procs, propagation):
    gateway, orders, payments = free_port(), free_port(), free_port()
    start_in(procs, NS_A, gateway, "gateway", "127.0.0.1")
    start_in(procs, NS_B, orders, "orders", ADDR_B)
    start_in(procs, NS_A, payments, "payments", ADDR_A)
    n = 12
    before = propagation_before(collector)

    def call(i):
        p, _ = procs.run(["ip", "netns", "exec", NS_A, "curl", "-sS", "-o", "/dev/null",
                          f"http://127.0.0.1:{gateway}/proxy/{ADDR_B}:{orders}/proxy/{ADDR_A}:{payments}/users/{i}"],
                         name="curl")
        return p

    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        list(pool.map(call, range(1, n + 1)))

    spans = collector.spans.wait(touches({gateway, orders, payments}), 6 * n)
    assert len(spans) == 6 * n, brief(spans)
    connected = 0
    for chain in payment_chains(spans):
        assert shape(chain) == CHAIN_SHAPE, brief(chain)
        assert len({x["trace_id"] for x in chain}) == 1, brief(chain)
        connected += 1
    assert connected == n
    check_propagation_counters(collector, propagation, before, n)
