"""A request through three services (separate processes), many at once: one connected
trace per request, without any SDK: by inserted trace headers (`context_propagation:
headers`) or, with `off`, by same-node linking and in-process parenting."""

import concurrent.futures

import pytest

from e2elib import (
    CHAIN_SHAPE,
    brief,
    check_propagation_counters,
    free_port,
    payment_chains,
    propagation_before,
    run_curl,
    shape,
    start_app,
    touches,
)


@pytest.fixture(scope="module", params=["headers", "off"])
def propagation(request):
    return request.param


@pytest.fixture(scope="module")
def collector(collectors, propagation):
    return collectors.get({"context_propagation": propagation})


def test_three_service_chain_is_one_trace_per_request(collector, procs, propagation):
    gateway, orders, payments = free_port(), free_port(), free_port()
    for port, name in ((gateway, "gateway"), (orders, "orders"), (payments, "payments")):
        start_app(procs, port, env_extra={"OTEL_SERVICE_NAME": name})
    n = 16
    before = propagation_before(collector)

    def call(i):
        p, _ = run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{gateway}/proxy/{orders}/proxy/{payments}/users/{i}")
        return p.pid

    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        curl_pids = list(pool.map(call, range(1, n + 1)))

    spans = collector.spans.wait(touches({gateway, orders, payments}), 6 * n)
    links = {k: collector.ebpf_counter(k) for k in ("links_made", "links_server_first", "links_timed_out")}
    assert len(spans) == 6 * n, brief(spans)
    connected = 0
    for chain in payment_chains(spans):
        assert shape(chain) == CHAIN_SHAPE, brief(chain) + f" {links}"
        assert len({x["trace_id"] for x in chain}) == 1, brief(chain)
        user = chain[-1]["attrs"]["url.path"]
        assert all(x["attrs"]["url.path"].endswith(user) for x in chain), brief(chain)
        assert chain[0]["resource"]["process.pid"] in curl_pids
        connected += 1
    assert connected == n
    assert len({s["trace_id"] for s in spans}) == n
    check_propagation_counters(collector, propagation, before, n)
