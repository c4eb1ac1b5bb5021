"""RabbitMQ (AMQP 0-9-1) spans: a private RabbitMQ broker (Debian's rabbitmq-server, started
by the test), real clients (pika), every basic.publish a PRODUCER span `publish <exchange>`,
every pushed delivery a CONSUMER span `process <queue>` ending at the consumer's ack (the child
of the traceparent the publisher put in the message's headers), basic.get a CLIENT span
(linked to the message's traceparent), errors from the broker's channel.close reply codes,
and get-empty counted;
with pika and the Go client amqp091-go."""

import json

import pytest

from e2elib import PYTHON, brief, counters_settled, free_port, go_build_module
from rabbitmq_server import RabbitMQ

CLIENT_KIND, PRODUCER_KIND, CONSUMER_KIND = 3, 4, 5
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def broker(tmp_path_factory, collector):
    """One private broker for the module (it takes ~6 s to start); stopped with its epmd."""
    b = RabbitMQ(tmp_path_factory.mktemp("rabbitmq"), free_port=free_port)
    b.start()
    yield b
    b.stop()


def rabbit(spans, pid, kind=None):
    return sorted((s for s in spans if s["resource"].get("process.pid") == pid
                   and s["attrs"].get("messaging.system") == "rabbitmq" and (kind is None or s["kind"] == kind)),
                  key=lambda s: s["start"])


def links_of(collector, span_id):
    """The links of one exported span (read from the raw OTLP/JSON lines)."""
    for line in collector.spans.raw_text().splitlines():
        if span_id not in line:
            continue
        for rs in json.loads(line).get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for sp in ss.get("spans", []):
                    if sp.get("spanId") == span_id:
                        return [(lk.get("traceId", ""), lk.get("spanId", "")) for lk in sp.get("links", [])]
    return None


PUBLISHER = r"""
import sys, pika
port, tp = int(sys.argv[1]), sys.argv[2]
c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
ch = c.channel()
ch.queue_declare("e2e.tasks")
ch.exchange_declare("e2e.orders", "direct")
ch.queue_declare("e2e.orders.eu")
ch.queue_bind("e2e.orders.eu", "e2e.orders", "eu")
ch.basic_publish("", "e2e.tasks", b"task body 1",
                 pika.BasicProperties(message_id="task-1", headers={"traceparent": tp, "app": "kept"}))
ch.basic_publish("", "e2e.tasks", b"task-2")
ch.basic_publish("e2e.orders", "eu", b"x" * 5000)          # more than one syscall's capture
conf = c.channel()
conf.confirm_delivery()
conf.basic_publish("e2e.orders", "eu", b"confirmed", pika.BasicProperties(message_id="order-2",
                                                                         headers={"traceparent": tp}))
try:
    conf.basic_publish("e2e.missing", "rk", b"lost")
except pika.exceptions.ChannelClosedByBroker as e:
    print("closed", e.reply_code, flush=True)
c.close()
print("published", flush=True)
"""

CONSUMER = r"""
import sys, pika
port = int(sys.argv[1])
c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
ch = c.channel()
ch.basic_qos(prefetch_count=1)
seen = []
def on_message(chan, method, properties, body):
    seen.append((method.delivery_tag, properties.headers))
    if len(seen) == 1:
        chan.basic_ack(method.delivery_tag)
    else:
        chan.basic_reject(method.delivery_tag, requeue=False)
        chan.stop_consuming()
ch.basic_consume("e2e.tasks", on_message)
ch.start_consuming()
got = [ch.basic_get("e2e.orders.eu", auto_ack=True) for _ in range(2)]
empty = ch.basic_get("e2e.orders.eu", auto_ack=True)
assert empty[0] is None, empty
c.close()
print("consumed", [t for t, _ in seen], [len(b) for _, _, b in got], seen[0][1], flush=True)
"""


def test_pika_publish_consume_get(collector, procs, tmp_path, broker):
    port = broker.port
    pub_py, con_py = tmp_path / "publisher.py", tmp_path / "consumer.py"
    pub_py.write_text(PUBLISHER)
    con_py.write_text(CONSUMER)
    before = counters_settled(collector, {"messaging_empty_polls": 0}, timeout=2, settle=0.5)
    pub, out = procs.run([PYTHON, pub_py, port, TRACEPARENT], name="pika-publisher")
    assert "closed 404" in out and "published" in out, out
    con, out = procs.run([PYTHON, con_py, port], name="pika-consumer")
    assert "consumed [1, 2] [5000, 9]" in out, out

    # Producer: one span per basic.publish, named by the exchange.
    mine = lambda s: s["resource"].get("process.pid") == pub.pid and s["attrs"].get("messaging.system") == "rabbitmq"  # noqa: E731
    pubs = rabbit(collector.spans.wait(mine, 5), pub.pid)
    assert [s["name"] for s in pubs] == ["publish amq.default", "publish amq.default", "publish e2e.orders",
                                         "publish e2e.orders", "publish e2e.missing"], brief(pubs)
    assert all(s["kind"] == PRODUCER_KIND for s in pubs), brief(pubs)
    for s in pubs:
        a = s["attrs"]
        assert a["messaging.operation.type"] == "send" and a["messaging.operation.name"] == "publish", a
        assert a["server.address"] == "127.0.0.1" and a["server.port"] == port, a
        assert s["start"] <= s["end"]
    assert [s["attrs"]["messaging.destination.name"] for s in pubs] == [
        "amq.default", "amq.default", "e2e.orders", "e2e.orders", "e2e.missing"]
    assert [s["attrs"].get("messaging.rabbitmq.destination.routing_key") for s in pubs] == [
        "e2e.tasks", "e2e.tasks", "eu", "eu", "rk"]
    assert [s["attrs"].get("messaging.message.body.size") for s in pubs] == [11, 6, 5000, 9, 4]
    assert [s["attrs"].get("messaging.message.id") for s in pubs] == ["task-1", None, None, "order-2", None]
    assert all(s["status_code"] == 0 and "error.type" not in s["attrs"] for s in pubs[:4]), brief(pubs)
    # The broker closed the channel (404): the publish waiting for its confirm fails.
    missing = pubs[4]
    assert missing["status_code"] == 2 and missing["attrs"]["error.type"] == "NOT_FOUND", brief([missing])

    # Consumer: one span per delivery, named by the queue consumed, ended by the ack/reject.
    mine = lambda s: s["resource"].get("process.pid") == con.pid and s["attrs"].get("messaging.system") == "rabbitmq"  # noqa: E731
    spans = rabbit(collector.spans.wait(mine, 4), con.pid)
    process = [s for s in spans if s["kind"] == CONSUMER_KIND]
    gets = [s for s in spans if s["kind"] == CLIENT_KIND]
    assert [s["name"] for s in process] == ["process e2e.tasks"] * 2, brief(spans)
    assert [s["name"] for s in gets] == ["get e2e.orders.eu"] * 2, brief(spans)
    assert len(spans) == 4, brief(spans)  # get-empty is no span
    first, second = process
    for s in process:
        a = s["attrs"]
        assert a["messaging.operation.type"] == "process" and a["messaging.destination.name"] == "e2e.tasks", a
        assert a["messaging.rabbitmq.destination.routing_key"] == "e2e.tasks", a
        assert a["server.port"] == port and a["server.address"] == "127.0.0.1", a
    assert first["attrs"]["messaging.rabbitmq.message.delivery_tag"] == 1
    assert first["attrs"]["messaging.message.id"] == "task-1"
    assert first["attrs"]["messaging.message.body.size"] == 11
    assert first["status_code"] == 0 and "error.type" not in first["attrs"], brief([first])
    assert second["attrs"]["messaging.rabbitmq.message.delivery_tag"] == 2
    assert second["attrs"]["messaging.message.id"] == "2"  # no message-id: the delivery tag
    assert second["attrs"]["messaging.message.body.size"] == 6
    assert second["status_code"] == 2 and second["attrs"]["error.type"] == "rejected", brief([second])
    # The publisher's traceparent (in the message's headers) is its delivery's parent
    # (not a link too); a message without one starts a trace of its own.
    _, trace_id, span_id, _ = TRACEPARENT.split("-")
    assert (first["trace_id"], first["parent_span_id"]) == (trace_id, span_id), brief([first])
    assert links_of(collector, first["span_id"]) == []
    # The second message had no traceparent: the kernel inserted the PRODUCER span's own
    # (context_propagation: headers, the default), so the delivery is that span's child.
    assert (second["trace_id"], second["parent_span_id"]) == (pubs[1]["trace_id"], pubs[1]["span_id"]), \
        brief([pubs[1], second])
    assert links_of(collector, second["span_id"]) == []
    # basic.get: CLIENT spans with the queue asked for.
    for s, size, tag in zip(gets, (5000, 9), (3, 4)):
        a = s["attrs"]
        assert a["messaging.operation.type"] == "receive" and a["messaging.operation.name"] == "get", a
        assert a["messaging.destination.name"] == "e2e.orders.eu" and a["messaging.message.body.size"] == size, a
        assert a["messaging.rabbitmq.destination.routing_key"] == "eu", a
        assert a["messaging.rabbitmq.message.delivery_tag"] == tag, a
        assert s["status_code"] == 0
    assert gets[1]["attrs"]["messaging.message.id"] == "order-2"
    # A get links to its message's context: the PRODUCER span's (inserted), the app's own.
    assert links_of(collector, gets[0]["span_id"]) == [(pubs[2]["trace_id"], pubs[2]["span_id"])], brief(gets)
    assert links_of(collector, gets[1]["span_id"]) == [(trace_id, span_id)], brief(gets)
    # get-empty: counted, no span.
    after = counters_settled(collector, {"messaging_empty_polls": (before["messaging_empty_polls"] or 0) + 1})
    assert after["messaging_empty_polls"] >= (before["messaging_empty_polls"] or 0) + 1, (before, after)


def test_go_amqp091_publish_confirm_consume(collector, procs, tmp_path, broker):
    """amqp091-go: a publish through the default exchange (message-id, traceparent header), one
    in confirm mode ended by the broker's ack; a consumer with manual ack and nack, reading on
    its own goroutine; a basic.get on an empty queue."""
    port = broker.port
    goamqp = go_build_module(tmp_path, "goamqp")
    before = counters_settled(collector, {"messaging_empty_polls": 0}, timeout=2, settle=0.5)
    pub, out = procs.run([goamqp, "publish", port, TRACEPARENT], name="goamqp-publish")
    assert "published true" in out, out
    con, out = procs.run([goamqp, "consume", port], name="goamqp-consume")
    assert "got 1 go-1 13" in out and "got 2  9" in out and "empty true" in out, out

    mine = lambda s: s["resource"].get("process.pid") == pub.pid and s["attrs"].get("messaging.system") == "rabbitmq"  # noqa: E731
    pubs = rabbit(collector.spans.wait(mine, 2), pub.pid)
    assert [s["name"] for s in pubs] == ["publish amq.default"] * 2, brief(pubs)
    assert all(s["kind"] == PRODUCER_KIND and s["status_code"] == 0 for s in pubs), brief(pubs)
    assert [s["attrs"].get("messaging.message.id") for s in pubs] == ["go-1", None]
    assert [s["attrs"]["messaging.message.body.size"] for s in pubs] == [13, 9]
    assert all(s["attrs"]["messaging.rabbitmq.destination.routing_key"] == "go.tasks" for s in pubs)
    assert all(s["attrs"]["server.port"] == port for s in pubs)

    mine = lambda s: s["resource"].get("process.pid") == con.pid and s["attrs"].get("messaging.system") == "rabbitmq"  # noqa: E731
    spans = rabbit(collector.spans.wait(mine, 2), con.pid)
    assert [s["name"] for s in spans] == ["process go.tasks"] * 2, brief(spans)
    first, second = spans
    assert all(s["kind"] == CONSUMER_KIND for s in spans)
    assert first["attrs"]["messaging.message.id"] == "go-1" and first["status_code"] == 0, brief([first])
    assert first["attrs"]["messaging.rabbitmq.message.delivery_tag"] == 1
    assert second["attrs"]["messaging.message.id"] == "2"
    assert second["status_code"] == 2 and second["attrs"]["error.type"] == "rejected", brief([second])
    _, trace_id, span_id, _ = TRACEPARENT.split("-")
    assert (first["trace_id"], first["parent_span_id"]) == (trace_id, span_id), brief([first])
    after = counters_settled(collector, {"messaging_empty_polls": (before["messaging_empty_polls"] or 0) + 1})
    assert after["messaging_empty_polls"] >= (before["messaging_empty_polls"] or 0) + 1, (before, after)
