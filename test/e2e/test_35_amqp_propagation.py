"""RabbitMQ (AMQP 0-9-1) with `context_propagation: headers`: the kernel inserts
`traceparent` into the headers table of each message a traced process publishes, and a
traced consumer handling a delivery continues its trace. An HTTP request → its publish →
the consumer → the HTTP call it makes is one trace with exact parents, and the consumer
receives the app's own headers and body unchanged (an app-set traceparent untouched)."""

import json
import secrets
import time
import urllib.parse

import pytest

from e2elib import APPS, PYTHON, brief, free_port, on_port, run_curl, start_app, wait_listening
from rabbitmq_server import RabbitMQ

CLIENT, SERVER, PRODUCER, CONSUMER = 3, 2, 4, 5
APP_TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
# What each message's publisher sets: no table, a table of every kind of value, its own
# traceparent, a small table.
HEADERS = [
    None,
    {"app": "x", "n": 7, "nested": {"a": [1, "b"]}, "flag": True},
    {"traceparent": APP_TP, "app": "own"},
    {"k": "v"},
]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with RabbitMQ(tmp_path_factory.mktemp("rabbitmq")) as b:
        yield b


@pytest.fixture(scope="module")
def collector(collectors):
    return collectors.get({"context_propagation": "headers"})


def wait_consumer(broker, queue, deadline=30):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        out = broker.ctl("list_queues", "name", "consumers", "--quiet")
        if any(line.split() == [queue, "1"] for line in out.splitlines()):
            return
        time.sleep(0.2)
    raise AssertionError(f"no consumer on {queue}: {out}")


def one(spans, pred, what):
    got = [s for s in spans if pred(s)]
    assert len(got) == 1, f"{what}: {brief(got)}\n{brief(spans)}"
    return got[0]


def test_a_trace_goes_through_the_queue(collector, procs, broker, tmp_path):
    front, back, queue = free_port(), free_port(), "orders"
    start_app(procs, back, env_extra={"OTEL_SERVICE_NAME": "back"})
    fp = procs.spawn([PYTHON, APPS / "amqp_app.py", "front", front, broker.port, queue],
                     env_extra={"OTEL_SERVICE_NAME": "front"}, name="front")
    wait_listening(front, fp)
    out = tmp_path / "got.json"
    cons = procs.spawn([PYTHON, APPS / "amqp_app.py", "consume", broker.port, queue, len(HEADERS), back, out],
                       env_extra={"OTEL_SERVICE_NAME": "consumer"}, name="consumer")
    wait_consumer(broker, queue)

    incoming = []  # the traceparent each request to the front carried
    for i, h in enumerate(HEADERS, 1):
        tp = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
        incoming.append(tp)
        q = "" if h is None else "?headers=" + urllib.parse.quote(json.dumps(h))
        run_curl(procs, "-o", "/dev/null", "-H", f"traceparent: {tp}", f"http://127.0.0.1:{front}/publish/{i}{q}")
    cons.wait(60)
    assert cons.returncode == 0, procs.output_of(cons)
    got = json.loads(out.read_text())

    # What the consumer received: bodies as sent; the app's headers unchanged, plus exactly
    # one traceparent of ours in the request's trace, unless the app set its own.
    assert [m["body"] for m in got] == [str(i) for i in range(1, len(HEADERS) + 1)]
    ours = {}
    for i, (m, h, tp) in enumerate(zip(got, HEADERS, incoming), 1):
        hs = dict(m["headers"] or {})
        if h and "traceparent" in h:
            assert hs == h, m
            continue
        inserted = hs.pop("traceparent")
        assert hs == (h or {}), m
        version, trace, parent, flags = inserted.split("-")
        assert (version, trace, flags) == ("00", tp.split("-")[1], "01"), (inserted, tp)
        ours[i] = (trace, parent)

    # Six spans per message: curl's CLIENT (it sent the traceparent itself), front SERVER,
    # PRODUCER, CONSUMER, CLIENT and SERVER of back.
    traces = {tp.split("-")[1] for tp in incoming} | {APP_TP.split("-")[1]}
    spans = collector.spans.wait(lambda s: s["trace_id"] in traces, count=6 * len(HEADERS), timeout=20)
    assert len(spans) == 6 * len(HEADERS), brief(spans)
    for i, (trace, parent) in ours.items():
        mine = [s for s in spans if s["trace_id"] == trace]
        srv = one(mine, lambda s: s["kind"] == SERVER and on_port(front)(s), f"front SERVER {i}")
        pub = one(mine, lambda s: s["kind"] == PRODUCER, f"PRODUCER {i}")
        con = one(mine, lambda s: s["kind"] == CONSUMER, f"CONSUMER {i}")
        call = one(mine, lambda s: s["kind"] == CLIENT and on_port(back)(s), f"CLIENT to back {i}")
        bsrv = one(mine, lambda s: s["kind"] == SERVER and on_port(back)(s), f"back SERVER {i}")
        assert srv["parent_span_id"] == incoming[i - 1].split("-")[2]
        assert pub["name"] == "publish amq.default" and pub["parent_span_id"] == srv["span_id"], brief(mine)
        assert pub["span_id"] == parent, "the header carries the PRODUCER span's id"
        assert pub["attrs"]["messaging.system"] == "rabbitmq"
        assert pub["attrs"]["messaging.rabbitmq.destination.routing_key"] == queue
        assert con["name"] == f"process {queue}" and con["parent_span_id"] == pub["span_id"], brief(mine)
        assert call["parent_span_id"] == con["span_id"], brief(mine)
        assert bsrv["parent_span_id"] == call["span_id"], brief(mine)
        assert bsrv["attrs"]["url.path"] == f"/users/{i}"
    # The app's own traceparent: its consumer span continues the app's trace.
    own = one(spans, lambda s: s["kind"] == CONSUMER and s["trace_id"] == APP_TP.split("-")[1], "own CONSUMER")
    assert own["parent_span_id"] == APP_TP.split("-")[2]
    assert collector.ebpf_counter("amqp_publishes_not_injected") == 0
    assert collector.ebpf_counter("amqp_inject_lost") == 0
